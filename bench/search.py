"""Mixed-precision search: the cost API's speed, CIM-AQ's formula, and searches on MNIST (1,000 test images).

Figures (``BENCH_SEARCH_PARTS``, default all of ``cost,cimaq,models,agents,device``, selects the parts run; a partial
run keeps the other figures in build/bench.json):

- ``cost``: ``cost_full_compile_resnet18_ms``, one full compile of the 8-bit ResNet-18 of ``bench.compiler`` on
  isaac (what a cost query meant before the cost API); ``cost_prepare_resnet18_s``: the cost API's one-time
  preparation (every layer at every (w, a) in 2..8); ``cost_query_resnet18_ms``: one query of a random policy after
  it (mean of 200); ``cost_query_cold_resnet18_ms``: the first query of a fresh cost model (nothing memoised).
- ``cimaq``: ``cimaq_vgg16_formula_speedup``, CIM-AQ's formula on VGG-16 (ImageNet shapes) with the paper's policy;
  ``cimaq_vgg16_tile_speedup_compute`` / ``_total``: the same policy in isaac's exact cycles from shapes alone.
- ``models``: per model M in ``BENCH_SEARCH_MODELS`` (default lenet, vgg, resnet, vit) the documented search
  (``BENCH_SEARCH_AGENT``, default random; ``--max-loss 0.1 --screen-loss 1.0``, compute cycles; budget, final
  candidates and final seeds per model in ``SETTINGS``, ``BENCH_SEARCH_BUDGET`` overrides the budget; into the
  documented commands' output directories ``build/s_M_AGENT``, resumed from their journals, or with
  ``BENCH_SEARCH_REUSE=1`` read from a finished search of the same settings there): ``mpq_speedup_M`` (compute
  cycles, W8A8 / policy), ``mpq_speedup_total_M``
  (compute + weight programming, one image), ``mpq_speedup_batch_M`` (the same for 1,000 images), ``mpq_loss_M``
  (points below W8A8, both compiled and run on the golden model over the 1,000 test images, mean over the final seeds),
  ``mpq_loss_std_M``, ``mpq_sal_M`` (speedup / loss, the paper's S/AL; inf when the loss is 0 or negative),
  ``mpq_acc_M``, ``mpq_acc_w8a8_M``, ``mpq_acc_torch_M``, ``mpq_acc_torch_w8a8_M``, ``mpq_search_s_M``,
  ``mpq_wall_s_M``, ``mpq_evaluated_M`` (evaluations run, not taken from the output directory's journal).
- ``agents``: DDPG, TPE, random and greedy on ``BENCH_SEARCH_AGENT_MODEL`` (default lenet) over
  ``BENCH_SEARCH_AGENT_SEEDS`` seeds (default 3), ``BENCH_SEARCH_AGENT_BUDGET`` evaluations (default 32):
  ``agent_A_M_bB_mean`` / ``_std`` / ``_min`` / ``_max``, the best compute speedup among the policies that met the
  target (validation split) within the first B evaluations; plot ``build/bench_search/agents_M.png``.
- ``device``: the same random search (``BENCH_SEARCH_DEVICE_MODEL`` lenet, ``BENCH_SEARCH_DEVICE_DATA`` mnist,
  ``BENCH_SEARCH_DEVICE_BUDGET`` 16 policies, --max-loss 1) ranked on an ideal tile and with the device model
  ``BENCH_SEARCH_DEVICE`` (default rram): ``device_M_D_*`` (speedups, mean bits, golden accuracies of each chosen
  policy with the device, the ideal one also on an ideal tile); plot ``build/bench_search/device_M_D.png``.

``BENCH_SEARCH_WORKERS`` (default 1: in-process) runs the evaluations on that many local Ray workers.
``python -m bench.search --markdown`` prints the tables of docs/search.md from build/bench.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

GOALS = {"cost_query_resnet18_ms": "<= 5", "mpq_speedup_vgg": ">= 2.5", "mpq_loss_vgg": "<= 0.1",
         "cimaq_vgg16_formula_speedup": "2.482 (paper)"}

AGENTS = ("ddpg", "tpe", "random", "greedy")
MODELS = ("lenet", "vgg", "resnet", "vit")
#: per model: the documented search's budget, final candidates and final seeds (what 2 shared cores allowed)
SETTINGS = {"lenet": {"budget": 32, "final_candidates": 4, "final_seeds": 3},
            "vgg": {"budget": 40, "final_candidates": 3, "final_seeds": 2},
            "resnet": {"budget": 12, "final_candidates": 2, "final_seeds": 2},
            "vit": {"budget": 12, "final_candidates": 2, "final_seeds": 2}}
PARTS = ("cost", "cimaq", "models", "agents", "device")
OUT_DIR = Path(__file__).resolve().parent.parent / "build" / "bench_search"


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


def _searches(budget: int | None, workers: int, models, agent: str, reuse: bool) -> dict[str, float]:
    """Per model, the documented search (docs/search.md) into its documented output directory ``build/s_M_AGENT``:
    ``agent``, ``--max-loss 0.1 --screen-loss 1.0``, the budget, final candidates and final seeds of
    :data:`SETTINGS` (``budget``, if given, for every model). The search resumes from the directory's journal; with
    ``reuse`` a finished search of the same settings there is read instead of run again (its final step
    included)."""
    from cimtile.search.executor import InProcessExecutor, RayExecutor
    from cimtile.search.run import SearchConfig, search

    from cimtile.paths import build_dir

    figs: dict[str, float] = {}
    ex = RayExecutor(workers) if workers > 1 else InProcessExecutor()
    try:
        for m in models:
            st = {**SETTINGS[m], **({"budget": budget} if budget else {})}
            cfg = SearchConfig(model=m, data="mnist", tile="isaac", agent=agent, max_loss=0.1, screen_loss=1.0,
                               finetune_epochs=0.5, final_epochs=3.0, seed=0, progress=False, **st)
            d = build_dir(f"s_{m}_{agent}")
            if not (reuse and (d / "summary.json").exists() and _same(json.loads((d / "summary.json").read_text())[
                    "config"], asdict(cfg))):
                search(cfg, d, ex)
            r = json.loads((d / "summary.json").read_text())
            loss, sp = r["loss"], _speedups(d, cfg.tile)
            figs.update({f"mpq_speedup_{m}": sp["compute"], f"mpq_speedup_total_{m}": sp["total"],
                         f"mpq_speedup_batch_{m}": sp["batch"], f"mpq_loss_{m}": loss,
                         f"mpq_loss_std_{m}": r["loss_std"],
                         f"mpq_sal_{m}": sp["compute"] / loss if loss > 0 else float("inf"),
                         f"mpq_acc_{m}": r["acc_golden"], f"mpq_acc_w8a8_{m}": r["acc_golden_w8a8"],
                         f"mpq_acc_torch_{m}": r["acc_torch"], f"mpq_acc_torch_w8a8_{m}": r["acc_w8a8"],
                         f"mpq_search_s_{m}": r["seconds"], f"mpq_wall_s_{m}": r.get("wall_seconds", float("nan")),
                         f"mpq_evaluated_{m}": r["evaluated"], f"mpq_budget_{m}": cfg.budget,
                         f"mpq_final_candidates_{m}": cfg.final_candidates, f"mpq_final_seeds_{m}": cfg.final_seeds})
            for k, run_ in enumerate(r["final_runs"]):
                figs[f"mpq_loss_seed{k + 1}_{m}"] = run_["golden_w8a8"] - run_["golden"]
            print(f"{m} {agent}: policy {r['policy']}, loss {loss:.2f} +- {r['loss_std']:.2f} points, speedup "
                  + ", ".join(f"{k} {v:.3f}x" for k, v in sp.items()))
    finally:
        ex.close()
    figs["search_agent_" + agent] = 1
    return figs


def _speedups(d: Path, tile: str) -> dict[str, float]:
    """W8A8 / policy cycles of a finished search's shipped models (``w8a8.onnx``, ``model.onnx``, the first final
    seed's), compiled now: compute cycles, compute + weight programming for one image and for 1,000 images, by the
    compiler's report (the cost arithmetic of this checkout, whenever the search ran)."""
    from cimtile.compiler import compile_model
    from cimtile.compiler.report import for_batch

    cyc = {}
    for name in ("w8a8", "model"):
        rep = compile_model(d / f"{name}.onnx", tile).report
        cyc[name] = {"compute": rep["totals"]["compute_cycles"], "total": rep["totals"]["cycles"],
                     "batch": for_batch(rep, 1000)["totals"]["cycles"]}
    return {k: cyc["w8a8"][k] / cyc["model"][k] for k in cyc["model"]}


def _same(a: dict, b: dict) -> bool:
    """Two search configurations that give the same results (the executor does not change them)."""
    keep = ("progress", "workers", "ray_address")
    return {k: v for k, v in a.items() if k not in keep} == {k: v for k, v in b.items() if k not in keep}


def _agents(model: str, budget: int, seeds, workers: int) -> dict[str, float]:
    """Every agent, ``budget`` evaluations, on each seed (the seed also draws the float network's training): the best
    compute speedup among the policies that met the target (validation split, short fine-tune) within the first
    b evaluations, b in :func:`_budgets`. One journal per seed is shared by the agents (an evaluation depends on
    the policy and the seed, not on the agent that asked for it), so the W8A8 reference and any policy two agents
    both try are evaluated once."""
    from cimtile.search.executor import InProcessExecutor, RayExecutor
    from cimtile.search.run import SearchConfig, search

    from cimtile.paths import build_dir

    out = build_dir("bench_search")
    ex = RayExecutor(workers) if workers > 1 else InProcessExecutor()
    runs: dict = {}
    try:
        for seed in seeds:
            for agent in AGENTS:
                cfg = SearchConfig(model=model, data="mnist", tile="isaac", agent=agent, budget=budget, max_loss=0.1,
                                   finetune_epochs=0.5, seed=seed, progress=False)
                t0 = time.time()
                _, table, target = search(cfg, out / f"journal_{model}_s{seed}", ex, finalize=False)
                curve = {b: max((1 / t["ratio"] for t in table[:b] if t["acc"] >= target), default=1.0)
                         for b in _budgets(budget)}
                runs[f"{agent}/{seed}"] = {"curve": curve, "s": time.time() - t0, "n": len(table)}
                print(f"{model} {agent} seed {seed}: " + ", ".join(f"{b}: {v:.3f}x" for b, v in curve.items()) +
                      f" ({time.time() - t0:.0f} s)")
    finally:
        ex.close()
    figs: dict[str, float] = {f"agents_{model}_seeds": len(seeds), f"agents_{model}_budget": budget}
    for agent in AGENTS:
        for b in _budgets(budget):
            v = np.array([runs[f"{agent}/{s}"]["curve"][b] for s in seeds])
            figs[f"agent_{agent}_{model}_b{b}_mean"] = float(v.mean())
            figs[f"agent_{agent}_{model}_b{b}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
            figs[f"agent_{agent}_{model}_b{b}_min"], figs[f"agent_{agent}_{model}_b{b}_max"] = float(v.min()), float(
                v.max())
    _agent_plot(model, budget, seeds, runs)
    return figs


def _budgets(budget: int) -> list[int]:
    out, b = [], budget
    while b >= 8 and len(out) < 3:
        out.insert(0, b)
        b //= 2
    return out or [budget]


def _agent_plot(model: str, budget: int, seeds, runs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bs = _budgets(budget)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, agent in enumerate(AGENTS):
        v = np.array([[runs[f"{agent}/{s}"]["curve"][b] for b in bs] for s in seeds])
        x = np.array(bs) * (1 + 0.03 * (k - 1.5))
        ax.errorbar(x, v.mean(0), yerr=v.std(0, ddof=1) if len(v) > 1 else 0, marker="o", capsize=3, label=agent)
    ax.set_xscale("log", base=2)
    ax.set_xticks(bs, [str(b) for b in bs])
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best speedup within 0.1 points (compute)")
    ax.set_title(f"{model} on MNIST, isaac: mean and std over {len(seeds)} seeds", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT_DIR / f"agents_{model}.png", dpi=120)
    plt.close(fig)


def _device(model: str, data: str, preset: str, budget: int) -> dict[str, float]:
    """The same search (random agent, seed 0) on an ideal tile and with the device ``preset``: the chosen policies,
    their speedups, and each chosen policy's golden accuracy on the other tile (the ideal search's bundle run with
    the device), so the figure shows what ranking policies under the device's noise changes."""
    from cimtile.compiler import load, run
    from cimtile.search.executor import InProcessExecutor
    from cimtile.search.run import SearchConfig, search
    from cimtile.sim.device import load_device
    from cimtile.zoo.mnist_nets import load_data

    from cimtile.paths import build_dir

    out = build_dir("bench_search")
    _, _, xte, yte = load_data(data)
    dev = load_device(preset)
    res = {}
    for name, d in (("ideal", None), (preset, preset)):
        cfg = SearchConfig(model=model, data=data, tile="isaac", agent="random", budget=budget, max_loss=1.0,
                           finetune_epochs=0.5, final_epochs=2.0, seed=0, progress=False, device=d)
        res[name] = search(cfg, out / f"device_{model}_{data}_{name}", InProcessExecutor())
    ideal, noisy = res["ideal"], res[preset]
    b = load(out / f"device_{model}_{data}_ideal" / "bundle")
    ideal_on_dev = float((np.asarray(run(b, xte, progress=False, device=dev)).argmax(1) == yte).mean() * 100)
    p = f"device_{model}_{preset}"
    figs = {f"{p}_ideal_policy_speedup": ideal.speedup["compute"], f"{p}_policy_speedup": noisy.speedup["compute"],
            f"{p}_ideal_policy_acc_ideal": ideal.acc_golden, f"{p}_ideal_policy_acc_device": ideal_on_dev,
            f"{p}_policy_acc_device": noisy.acc_golden, f"{p}_w8a8_acc_device": noisy.acc_golden_w8a8,
            f"{p}_w8a8_acc_ideal": ideal.acc_golden_w8a8, f"{p}_mean_wbits_ideal": float(np.mean(
                [w for w, _ in ideal.policy])), f"{p}_mean_wbits_device": float(np.mean([w for w, _ in noisy.policy])),
            f"{p}_mean_abits_ideal": float(np.mean([a for _, a in ideal.policy])),
            f"{p}_mean_abits_device": float(np.mean([a for _, a in noisy.policy]))}
    (OUT_DIR / f"{p}.json").write_text(json.dumps({"ideal": ideal.policy, preset: noisy.policy, "figures": figs},
                                                    indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
    for ax, (name, r) in zip(axs, (("ideal tile", ideal), (f"device {preset}", noisy))):
        pol = np.array(r.policy)
        x = np.arange(len(pol))
        ax.bar(x - 0.2, pol[:, 0], 0.4, label="weight bits")
        ax.bar(x + 0.2, pol[:, 1], 0.4, label="activation bits")
        ax.set_xticks(x, [f"L{i}" for i in x])
        ax.set_title(f"{name}: {r.speedup['compute']:.2f}x, {r.acc_golden:.1f}%", fontsize=9)
    axs[0].set_ylabel("bits")
    axs[0].legend(fontsize=7)
    fig.suptitle(f"{model} on {data}, isaac, random search ({budget} policies, --max-loss 1)", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT_DIR / f"{p}.png", dpi=120)
    plt.close(fig)
    return figs


def run() -> dict[str, float]:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    env = os.environ.get
    parts = [p for p in env("BENCH_SEARCH_PARTS", ",".join(PARTS)).split(",") if p]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        raise SystemExit(f"BENCH_SEARCH_PARTS: unknown {', '.join(bad)} (expected some of {', '.join(PARTS)})")
    workers = int(env("BENCH_SEARCH_WORKERS", "1"))
    figs: dict[str, float] = {}
    if "cost" in parts:
        figs.update(_cost())
    if "cimaq" in parts:
        figs.update(_cimaq())
    if "models" in parts:
        models = [m for m in env("BENCH_SEARCH_MODELS", ",".join(MODELS)).split(",") if m]
        figs.update(_searches(int(env("BENCH_SEARCH_BUDGET", "0")) or None, workers, models,
                              env("BENCH_SEARCH_AGENT", "random"), env("BENCH_SEARCH_REUSE", "0") == "1"))
    if "agents" in parts:
        seeds = range(int(env("BENCH_SEARCH_AGENT_SEEDS", "3")))
        figs.update(_agents(env("BENCH_SEARCH_AGENT_MODEL", "lenet"), int(env("BENCH_SEARCH_AGENT_BUDGET", "32")),
                            list(seeds), workers))
    if "device" in parts:
        figs.update(_device(env("BENCH_SEARCH_DEVICE_MODEL", "lenet"), env("BENCH_SEARCH_DEVICE_DATA", "mnist"),
                            env("BENCH_SEARCH_DEVICE", "rram"), int(env("BENCH_SEARCH_DEVICE_BUDGET", "16"))))
    return figs


def markdown(path: Path) -> str:
    """The tables of docs/search.md from a bench.json."""
    f = json.loads(path.read_text())
    g = lambda k, fmt="{:.3f}": (fmt.format(f[k]) if f[k] == f[k] else "not recorded") if k in f else "not measured"
    lines = ["| figure | value | goal |", "|---|---|---|"]
    for k in ("cost_full_compile_resnet18_ms", "cost_prepare_resnet18_s", "cost_query_cold_resnet18_ms",
              "cost_query_resnet18_ms", "cimaq_vgg16_formula_speedup", "cimaq_vgg16_tile_speedup_compute",
              "cimaq_vgg16_tile_speedup_total"):
        lines.append(f"| `{k}` | {g(k)} | {GOALS.get(k, '')} |")
    agent = next((k[len("search_agent_"):] for k in f if k.startswith("search_agent_")), "?")
    lines += ["", f"Searches on MNIST, isaac, agent {agent}, --max-loss 0.1 --screen-loss 1.0; accuracies the "
              "mean over the final fine-tune seeds (golden model, "
              "1,000 test images); speedups W8A8 / policy in compute cycles, compute + weight programming for one "
              "image, and for a batch of 1,000 images:", "",
              "| model | budget | final candidates, seeds | golden W8A8 % | golden policy % | loss (points) | "
              "loss std | loss per final seed | torch W8A8 % | "
              "torch policy % | speedup compute | + weights, 1 image | + weights, 1,000 images | S/AL | evaluated | "
              "search s | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in MODELS:
        if f"mpq_speedup_{m}" not in f:
            lines.append(f"| {m} | not measured |" + " |" * 15)
            continue
        lines.append(f"| {m} | {g(f'mpq_budget_{m}', '{:.0f}')} | {g(f'mpq_final_candidates_{m}', '{:.0f}')}, "
                     f"{g(f'mpq_final_seeds_{m}', '{:.0f}')} | {g(f'mpq_acc_w8a8_{m}', '{:.2f}')} | "
                     f"{g(f'mpq_acc_{m}', '{:.2f}')} | "
                     f"{g(f'mpq_loss_{m}', '{:.2f}')} | {g(f'mpq_loss_std_{m}', '{:.2f}')} | "
                     + ", ".join(f"{f[k]:.1f}" for k in sorted(x for x in f if x.startswith("mpq_loss_seed")
                                                                  and x.endswith(f"_{m}"))) + " | "
                     f"{g(f'mpq_acc_torch_w8a8_{m}', '{:.2f}')} | {g(f'mpq_acc_torch_{m}', '{:.2f}')} | "
                     f"{g(f'mpq_speedup_{m}')}x | {g(f'mpq_speedup_total_{m}')}x | {g(f'mpq_speedup_batch_{m}')}x | "
                     f"{g(f'mpq_sal_{m}', '{:.1f}')} | {g(f'mpq_evaluated_{m}', '{:.0f}')} | "
                     f"{g(f'mpq_search_s_{m}', '{:.0f}')} | {g(f'mpq_wall_s_{m}', '{:.0f}')} |")
    for m in MODELS:
        if f"agents_{m}_seeds" not in f:
            continue
        budget, seeds = int(f[f"agents_{m}_budget"]), int(f[f"agents_{m}_seeds"])
        bs = _budgets(budget)
        lines += ["", f"Agents on {m} (MNIST, isaac, --max-loss 0.1), {seeds} seeds: best compute speedup among the "
                  "policies that met the target (validation split, short fine-tune) within the first b "
                  f"evaluations of a {budget}-evaluation run; mean +- std (min-max) over the seeds:", "",
                  "| agent | " + " | ".join(f"b = {b}" for b in bs) + " |", "|---|" + "---|" * len(bs)]
        for a in AGENTS:
            cells = [f"{f[f'agent_{a}_{m}_b{b}_mean']:.3f} +- {f[f'agent_{a}_{m}_b{b}_std']:.3f} "
                     f"({f[f'agent_{a}_{m}_b{b}_min']:.2f}-{f[f'agent_{a}_{m}_b{b}_max']:.2f})" for b in bs]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        wins = [max(AGENTS, key=lambda a, b=b: f[f"agent_{a}_{m}_b{b}_mean"]) for b in bs]
        lines.append("| highest mean | " + " | ".join(wins) + " |")
    for k in f:
        if k.startswith("device_") and k.endswith("_ideal_policy_speedup"):
            p = k[:-len("_ideal_policy_speedup")]
            dev = p.split("_", 2)[2]
            lines += ["", f"The same random search ({p.split('_')[1]}, seed 0) ranked on an ideal tile and on the "
                      f"golden model with device `{dev}` (final figures on the golden model, 1,000 test images):", "",
                      "| search ranked on | speedup compute | mean w bits | mean a bits | "
                      f"its golden acc, ideal tile % | its golden acc, {dev} % | W8A8 golden acc, same tile % |",
                      "|---|---|---|---|---|---|---|",
                      f"| ideal tile | {g(p + '_ideal_policy_speedup')}x | {g(p + '_mean_wbits_ideal', '{:.2f}')} | "
                      f"{g(p + '_mean_abits_ideal', '{:.2f}')} | {g(p + '_ideal_policy_acc_ideal', '{:.2f}')} | "
                      f"{g(p + '_ideal_policy_acc_device', '{:.2f}')} | {g(p + '_w8a8_acc_ideal', '{:.2f}')} |",
                      f"| {dev} | {g(p + '_policy_speedup')}x | {g(p + '_mean_wbits_device', '{:.2f}')} | "
                      f"{g(p + '_mean_abits_device', '{:.2f}')} | not measured | "
                      f"{g(p + '_policy_acc_device', '{:.2f}')} | {g(p + '_w8a8_acc_device', '{:.2f}')} |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "--markdown" in sys.argv:
        print(markdown(Path(__file__).resolve().parent.parent / "build" / "bench.json"), end="")
    else:
        print(json.dumps(run(), indent=2))
