"""Mixed-precision search: the cost API's speed, CIM-AQ's formula, and searches on MNIST (1,000 test images).

Figures:

- ``cost_full_compile_resnet18_ms``: one full compile of the 8-bit ResNet-18 of ``bench.compiler`` on isaac (what
  a cost query meant before the cost API); ``cost_prepare_resnet18_s``: the cost API's one-time preparation (every
  layer at every (w, a) in 2..8); ``cost_query_resnet18_ms``: one query of a random policy after it (mean of 200);
  ``cost_query_cold_resnet18_ms``: the first query of a fresh cost model (nothing memoised).
- ``cimaq_vgg16_formula_speedup``: CIM-AQ's formula on VGG-16 (ImageNet shapes) with the paper's policy;
  ``cimaq_vgg16_tile_speedup_compute`` / ``_total``: the same policy in isaac's exact cycles from shapes alone.
- per model M in (lenet, vgg, resnet), a DDPG search (``--max-loss 0.1``, compute cycles) then the final fine-tune:
  ``mpq_speedup_M`` (compute cycles, W8A8 / policy), ``mpq_speedup_total_M`` (compute + weight loads, one image;
  a batch of 1,000 has the same ratio: the tile reloads weights on every run), ``mpq_loss_M`` (points below
  W8A8, both compiled and run on the golden model over the test split), ``mpq_sal_M`` (speedup / loss, the paper's
  S/AL; 0 loss gives the speedup divided by one test image, 0.1 points), ``mpq_acc_M``, ``mpq_acc_torch_M``,
  ``mpq_search_s_M``.
- agent comparison on VGG at equal budgets: ``agent_A_speedup_vgg`` (best compute speedup among the policies that
  met the accuracy target on the validation split), for A in ddpg, tpe, random, greedy.

``BENCH_SEARCH_BUDGET`` (default 32) sets the evaluation budget per search; ``BENCH_SEARCH_WORKERS`` (default 2) the
Ray workers for the batched agents (DDPG evaluates one episode at a time); ``BENCH_SEARCH_MODELS`` (default
``lenet,vgg,resnet``) the models searched (a partial run keeps the other models' figures in build/bench.json).
``python -m bench.search --markdown`` prints the tables of docs/search.md from build/bench.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

GOALS = {"cost_query_resnet18_ms": "<= 5", "mpq_speedup_vgg": ">= 2.5", "mpq_loss_vgg": "<= 0.1",
         "cimaq_vgg16_formula_speedup": "2.482 (paper)"}

AGENTS = ("ddpg", "tpe", "random", "greedy")
MODELS = ("lenet", "vgg", "resnet")


def _cost() -> dict[str, float]:
    from cimtile.compiler import compile_model
    from cimtile.search.cost import CostModel

    from bench.compiler import resnet18_qdq

    q = resnet18_qdq()
    t0 = time.perf_counter()
    compile_model(q, "isaac")
    full = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    cm = CostModel(q, "isaac")
    cm.query(cm.harmonise(rng.integers(2, 9, (len(cm), 2))))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    cm.prepare(progress=False)
    prep = time.perf_counter() - t0
    pols = [cm.harmonise(rng.integers(2, 9, (len(cm), 2))) for _ in range(200)]
    t0 = time.perf_counter()
    for p in pols:
        cm.query(p)
    warm = (time.perf_counter() - t0) / len(pols)
    print(f"resnet18 on isaac: full compile {full:.2f} s; cost API: preparation {prep:.1f} s, query {warm * 1e3:.3f} ms"
          f" (cold {cold:.2f} s)")
    return {"cost_full_compile_resnet18_ms": full * 1e3, "cost_prepare_resnet18_s": prep,
            "cost_query_resnet18_ms": warm * 1e3, "cost_query_cold_resnet18_ms": cold * 1e3}


def _cimaq() -> dict[str, float]:
    from importlib.resources import files

    from cimtile.search.cimaq import formula_latency, load_layers, tile_cost_from_shapes
    from cimtile.search.cost import load_policy

    d = files("cimtile.search") / "data"
    layers, pol = load_layers(str(d / "vgg16_imagenet.yaml")), load_policy(str(d / "vgg16_cimaq_policy.json"))
    w8 = [(8, 8)] * len(layers)
    f = sum(formula_latency(layers, w8)) / sum(formula_latency(layers, pol))
    tp, t8 = tile_cost_from_shapes(layers, pol, "isaac"), tile_cost_from_shapes(layers, w8, "isaac")
    tot = lambda t, k: sum(x[k] for x in t)
    comp = (tot(t8, "cycles") - tot(t8, "program_cycles")) / (tot(tp, "cycles") - tot(tp, "program_cycles"))
    return {"cimaq_vgg16_formula_speedup": f, "cimaq_vgg16_tile_speedup_compute": comp,
            "cimaq_vgg16_tile_speedup_total": tot(t8, "cycles") / tot(tp, "cycles")}


def _searches(budget: int, workers: int, models) -> dict[str, float]:
    from cimtile.search.executor import InProcessExecutor, RayExecutor
    from cimtile.search.run import SearchConfig, search

    from cimtile.paths import build_dir

    figs: dict[str, float] = {}
    out = build_dir("bench_search")
    ray_ex = RayExecutor(workers) if workers > 1 else None
    try:
        for m in models:
            for agent in AGENTS if m == "vgg" else ("ddpg",):
                cfg = SearchConfig(model=m, data="mnist", tile="isaac", agent=agent, budget=budget, max_loss=0.1,
                                   finetune_epochs=0.5, final_epochs=3.0, seed=0, progress=False)
                ex = InProcessExecutor() if (agent == "ddpg" or ray_ex is None) else ray_ex
                t0 = time.time()
                if agent == "ddpg":
                    r = search(cfg, out / f"{m}_{agent}", ex)
                    table, target = r.table, r.target
                    figs.update({f"mpq_speedup_{m}": r.speedup["compute"], f"mpq_speedup_total_{m}": r.speedup["total"],
                                 f"mpq_loss_{m}": r.loss, f"mpq_sal_{m}": r.speedup["compute"] / max(r.loss, 0.1),
                                 f"mpq_acc_{m}": r.acc_golden, f"mpq_acc_w8a8_{m}": r.acc_golden_w8a8,
                                 f"mpq_acc_torch_{m}": r.acc_torch, f"mpq_search_s_{m}": r.seconds})
                    print(f"{m} ddpg: {r.summary()}")
                else:
                    _, table, target = search(cfg, None, ex, finalize=False)
                sec = time.time() - t0
                best = max((1 / t["ratio"] for t in table if t["acc"] >= target), default=1.0)
                if m == "vgg":
                    figs[f"agent_{agent}_speedup_vgg"] = best
                    figs[f"agent_{agent}_s_vgg"] = sec
                (out / f"{m}_{agent}_table.json").write_text(json.dumps(table))
                print(f"{m} {agent}: best feasible compute speedup {best:.3f}x in {len(table)} policies, {sec:.0f} s")
    finally:
        if ray_ex is not None:
            ray_ex.close()
    return figs


def run() -> dict[str, float]:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    budget = int(os.environ.get("BENCH_SEARCH_BUDGET", "32"))
    workers = int(os.environ.get("BENCH_SEARCH_WORKERS", "2"))
    figs = _cost()
    figs.update(_cimaq())
    models = [m for m in os.environ.get("BENCH_SEARCH_MODELS", ",".join(MODELS)).split(",") if m]
    figs.update(_searches(budget, workers, models))
    figs["search_budget"] = budget
    return figs


def markdown(path: Path) -> str:
    """The tables of docs/search.md from a bench.json."""
    f = json.loads(path.read_text())
    g = lambda k, fmt="{:.3f}": fmt.format(f[k]) if k in f else "not measured"
    lines = ["| figure | value | goal |", "|---|---|---|"]
    for k in ("cost_full_compile_resnet18_ms", "cost_prepare_resnet18_s", "cost_query_cold_resnet18_ms",
              "cost_query_resnet18_ms", "cimaq_vgg16_formula_speedup", "cimaq_vgg16_tile_speedup_compute",
              "cimaq_vgg16_tile_speedup_total"):
        lines.append(f"| `{k}` | {g(k)} | {GOALS.get(k, '')} |")
    budget = g("search_budget", "{:.0f}")
    lines += ["", f"Searches on MNIST, isaac, DDPG, budget {budget} policies, --max-loss 0.1:", "",
              "| model | golden acc W8A8 | golden acc policy | loss (points) | torch acc policy | speedup compute "
              "| speedup compute + weight loads | S/AL | search s |", "|---|---|---|---|---|---|---|---|---|"]
    for m in MODELS:
        lines.append(f"| {m} | {g(f'mpq_acc_w8a8_{m}', '{:.1f}')} | {g(f'mpq_acc_{m}', '{:.1f}')} | "
                     f"{g(f'mpq_loss_{m}', '{:.1f}')} | {g(f'mpq_acc_torch_{m}', '{:.1f}')} | "
                     f"{g(f'mpq_speedup_{m}')}x | {g(f'mpq_speedup_total_{m}')}x | {g(f'mpq_sal_{m}', '{:.1f}')} | "
                     f"{g(f'mpq_search_s_{m}', '{:.0f}')} |")
    lines += ["", "Agents on VGG (MNIST), equal budget: best compute speedup among policies that met the target "
              "(validation split, short fine-tune):", "", "| agent | best speedup | wall s |", "|---|---|---|"]
    for a in AGENTS:
        lines.append(f"| {a} | {g(f'agent_{a}_speedup_vgg')}x | {g(f'agent_{a}_s_vgg', '{:.0f}')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "--markdown" in sys.argv:
        print(markdown(Path(__file__).resolve().parent.parent / "build" / "bench.json"), end="")
    else:
        print(json.dumps(run(), indent=2))
