"""Joint exploration of tile, network and precision against single-sided baselines at the same budget (digits).

Figures (``python -m bench explore``; outputs under ``build/explore/bench`` and ``build/explore/bench_device``):

- ``explore_hv_joint``, ``explore_hv_hardware``, ``explore_hv_network``, ``explore_hv_precision``: normalised
  hypervolume of each strategy's front (accuracy, latency, energy, area) over one reference point
  (:mod:`cimtile.explore.pareto`), each strategy evaluating ``BENCH_EXPLORE_BUDGET`` candidates (default 20);
- ``explore_hv_ratio``: joint / best single-sided baseline (goal >= 1.1);
- ``explore_front_joint``: candidates on the joint front; ``explore_best_acc_joint``: its best validation
  accuracy (golden model); ``explore_s``: wall time of the exploration, ``explore_s_per_candidate``;
- with the ``rram`` device model (docs/devices.md), a joint search alone on the same budget:
  ``explore_device_hv_ideal`` / ``explore_device_hv_device`` (its candidates' front on ideal-tile and on device
  accuracy), ``explore_device_left_front`` (candidates of the ideal front not on the device front),
  ``explore_device_mean_acc_drop`` (points).

``BENCH_EXPLORE_WORKERS`` (default 2) sets the Ray workers. ``python -m bench.explore --markdown`` prints the
tables of docs/explore.md (the space, the constants, and the figures from build/bench.json);
``--update-doc`` writes them into docs/explore.md.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

GOALS = {"explore_hv_ratio": ">= 1.1"}

ROOT = Path(__file__).resolve().parent.parent


def _cfg(budget: int, workers: int, **kw):
    from cimtile.explore import ExploreConfig

    # the recorded figures (docs/explore.md) were measured with the exact mapping, before the compiler's
    # calibrated mapping (now the explorer's default) landed
    return ExploreConfig(data="digits", budget=budget, float_epochs=4, qat_epochs=1.0, workers=workers,
                         precision_agent="ddpg", population=8, mapping="exact", **kw)


def run() -> dict[str, float]:
    from cimtile.explore import explore

    from cimtile.paths import build_dir

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    budget = int(os.environ.get("BENCH_EXPLORE_BUDGET", "20"))
    workers = int(os.environ.get("BENCH_EXPLORE_WORKERS", "2"))
    figs: dict[str, float] = {"explore_budget": budget}
    out = build_dir("explore", "bench")
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: the timing is the exploration's, not a resume's
    t = time.time()
    s = explore(_cfg(budget, workers), out)
    figs["explore_s"] = round(time.time() - t, 1)
    n = sum(s["evaluations"].values()) + 1
    figs["explore_s_per_candidate"] = round(figs["explore_s"] / n, 2)
    for k, v in s["hypervolume"].items():
        figs[f"explore_hv_{k}"] = round(v, 4)
    figs["explore_hv_ratio"] = round(s["explore_hv_ratio"], 3)
    figs["explore_front_joint"] = s["front_sizes"]["joint"]
    fr = json.loads((out / "fronts.json").read_text())
    figs["explore_best_acc_joint"] = round(max(r["acc"] for r in fr["joint"]), 2)
    figs["explore_ref_acc"] = round(s["reference"]["acc"], 2)
    dout = build_dir("explore", "bench_device")
    shutil.rmtree(dout, ignore_errors=True)
    d = explore(_cfg(budget, workers, strategies=("joint",), device="rram"), dout)["device"]
    figs["explore_device_hv_ideal"] = round(d["hv_ideal"], 4)
    figs["explore_device_hv_device"] = round(d["hv_device"], 4)
    figs["explore_device_left_front"] = d["left_front"]
    figs["explore_device_front_ideal"] = d["front_ideal"]
    figs["explore_device_mean_acc_drop"] = round(d["mean_acc_drop"], 2)
    return figs


def markdown(path: Path) -> str:
    """The generated tables of docs/explore.md: the space, the constants, the figures of the last bench run."""
    from cimtile.explore.space import describe
    from cimtile.sim.energy import AREA, ENERGY

    lines = ["### The declared space", "", "| dimension | group | choices | meaning |", "|---|---|---|---|"]
    for d in describe():
        ch = ", ".join(str(c) for c in d["choices"])
        lines.append(f"| `{d['name']}` | {d['group']} | {ch} | {d['doc']} |")
    lines += ["", "### Energy constants (pJ per event, cimtile.sim.energy.ENERGY)", "", "| event | pJ | source |",
              "|---|---|---|"]
    lines += [f"| {k} | {v:.4g} | {src} |" for k, (v, src) in ENERGY.items()]
    lines += ["", "### Area constants (mm^2 per instance, cimtile.sim.energy.AREA)", "", "| part | mm^2 | source |",
              "|---|---|---|"]
    lines += [f"| {k} | {v:.4g} | {src} |" for k, (v, src) in AREA.items()]
    f = json.loads(path.read_text()) if path.exists() else {}
    g = lambda k, fmt="{:.4f}": fmt.format(f[k]) if k in f else "not measured"
    lines += ["", f"### Strategies at the same budget ({g('explore_budget', '{:.0f}')} candidates each, digits, "
              "`python -m bench explore`)", "", "| strategy | hypervolume |", "|---|---|"]
    for s in ("joint", "hardware", "network", "precision"):
        lines.append(f"| {s} | {g(f'explore_hv_{s}')} |")
    lines += ["", "| figure | value | goal |", "|---|---|---|"]
    for k, fmt in (("explore_hv_ratio", "{:.3f}"), ("explore_front_joint", "{:.0f}"),
                   ("explore_best_acc_joint", "{:.2f}"), ("explore_ref_acc", "{:.2f}"), ("explore_s", "{:.0f}"),
                   ("explore_s_per_candidate", "{:.2f}"), ("explore_device_hv_ideal", "{:.4f}"),
                   ("explore_device_hv_device", "{:.4f}"), ("explore_device_front_ideal", "{:.0f}"),
                   ("explore_device_left_front", "{:.0f}"), ("explore_device_mean_acc_drop", "{:.2f}"),
                   ("load_avg_explore", "{:.1f}")):
        lines.append(f"| `{k}` | {g(k, fmt)} | {GOALS.get(k, '')} |")
    return "\n".join(lines) + "\n"


def update_doc(doc: Path = ROOT / "docs" / "explore.md") -> None:
    """Write :func:`markdown` into docs/explore.md between its ``generated: explore`` markers."""
    import re

    text = doc.read_text()
    start, end = "<!-- generated: explore (python -m bench.explore --markdown) -->\n", "<!-- end: explore -->"
    new, n = re.subn(re.escape(start) + r".*?" + re.escape(end),
                     lambda _: start + markdown(ROOT / "build" / "bench.json") + end, text, flags=re.S)
    if n != 1:
        raise SystemExit(f"{doc}: no generated: explore block")
    doc.write_text(new)


if __name__ == "__main__":
    if "--markdown" in sys.argv:
        print(markdown(ROOT / "build" / "bench.json"), end="")
    elif "--update-doc" in sys.argv:
        update_doc()
    else:
        print(json.dumps(run(), indent=2))
