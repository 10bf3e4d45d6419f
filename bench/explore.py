"""Joint exploration of tile, network and precision against single-sided baselines at the same budget (digits).

Figures (``python -m bench explore``; outputs under ``build/explore/bench/seed<k>`` and
``build/explore/bench_device``), over ``BENCH_EXPLORE_SEEDS`` seeds (default ``0,1,2``), each strategy evaluating
``BENCH_EXPLORE_BUDGET`` candidates (default 20), calibrated ADC mapping (the issue's accuracy scoring):

- ``explore_hv_ratio``: joint / best single-sided baseline, mean over the seeds (goal >= 1.1), with
  ``explore_hv_ratio_min`` / ``_max`` / ``_sd`` and ``explore_hv_ratio_seed<k>``;
- ``explore_hv_<strategy>``: each strategy's normalised hypervolume (accuracy, latency, energy, area) over one
  reference point (:mod:`cimtile.explore.pareto`), mean over the seeds;
- ``explore_hv_ratio_random_init``, ``explore_hv_ratio_one_group_init`` and ``explore_hv_ratio_cnn_only``: the
  ablations (:data:`ABLATIONS`), mean over their seeds: a joint search whose first NSGA-II generation is NSGA-II's
  uniform sampling (``seeding="random"``, as the first session ran it), one whose first generation varies one group
  per individual (``seeding="reference"``, session 4's), and one without the ViT in the network space, each against
  the same best baseline, all measured in one box holding every candidate of the seed (the seeded joint's ratio
  in that box is ``explore_hv_ratio_box_all``);
- ``explore_low_acc_share_<strategy>``: share of a strategy's feasible candidates below 80% accuracy (why a
  joint search loses hypervolume), mean over the seeds;
- ``explore_front_joint``, ``explore_best_acc_joint``, ``explore_ref_acc`` (first seed); ``explore_s``: wall time
  of all seeds' explorations, ``explore_evaluations`` (evaluations performed: a candidate met again is answered
  from the cache), ``explore_s_per_candidate`` (seconds per evaluation performed);
- with the ``rram`` device model (docs/devices.md), a joint search alone on the same budget (first seed):
  ``explore_device_hv_ideal`` / ``explore_device_hv_device`` (its candidates' front on ideal-tile and on device
  accuracy), ``explore_device_left_front`` (candidates of the ideal front not on the device front),
  ``explore_device_mean_acc_drop`` (points).

``BENCH_EXPLORE_AREA`` (``total``, the default, or ``analog``) sets the area objective,
``BENCH_EXPLORE_ACC_FLOOR`` (default 80; 0: none) the NSGA-II strategies' accuracy floor,
``BENCH_EXPLORE_WORKERS`` (default 2) the Ray workers, ``BENCH_EXPLORE_ABLATION_SEEDS`` the seeds the ablation
runs on (default the first); ``BENCH_EXPLORE_DEVICE=0`` skips the device run, ``BENCH_EXPLORE_RESUME=1``
resumes an interrupted bench run's directories instead of starting them again.
``python -m bench.explore --markdown`` prints the tables of docs/explore.md (the space, the constants, and the
figures from build/bench.json); ``--update-doc`` writes them into docs/explore.md.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

GOALS = {"explore_hv_ratio": ">= 1.1"}


def _out_name() -> str:
    """``BENCH_EXPLORE_OUT``: the name of the directory under build/explore that holds the seeds' outputs (``bench``;
    another name keeps a variant's run beside the headline's, for the "What moved" table, :data:`CHANGES`). A name,
    not a path: ``build/explore/long100`` would nest the outputs in build/explore/build/explore/long100."""
    from cimtile.errors import CimtileError

    name = os.environ.get("BENCH_EXPLORE_OUT", "bench")
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise CimtileError(f"BENCH_EXPLORE_OUT={name!r}: give a directory name (the outputs go to "
                           f"build/explore/<name>), not a path")
    return name


ROOT = Path(__file__).resolve().parent.parent


def _cfg(budget: int, workers: int, **kw):
    from cimtile.explore import ExploreConfig

    kw.setdefault("area", os.environ.get("BENCH_EXPLORE_AREA", "total"))
    kw.setdefault("acc_floor", float(os.environ.get("BENCH_EXPLORE_ACC_FLOOR", "80")))
    kw.setdefault("seeding", os.environ.get("BENCH_EXPLORE_SEEDING", "combined"))
    return ExploreConfig(data="digits", budget=budget, float_epochs=4, qat_epochs=1.0, workers=workers,
                         precision_agent="ddpg", population=8, mapping="calibrated", **kw)


def _records(out: Path) -> dict[str, list[dict]]:
    rows = json.loads((out / "candidates.json").read_text())
    per: dict[str, list[dict]] = {}
    for r in rows:
        per.setdefault(r["strategy"], []).append(r)
    return per


#: The ablations of the joint search (each a joint search alone, measured in its seed's box): NSGA-II's own uniform
#: first generation instead of the combined seeding; one group varied per individual (session 4's seeding); the CNN
#: family alone (no ViT in the network space).
ABLATIONS = {"random_init": {"seeding": "random"}, "one_group_init": {"seeding": "reference"},
             "cnn_only": {"space": {"family": ["cnn"]}}}


#: ``BENCH_EXPLORE_RESUME=1``: keep the output directories of an interrupted bench run and resume them (same
#: results: a study resumes where it stopped, and no candidate is evaluated twice); ``explore_s_per_candidate`` is
#: then the time per evaluation performed in this run.
RESUME = os.environ.get("BENCH_EXPLORE_RESUME", "0") == "1"


def _low_acc(rs: list[dict]) -> float:
    ok = [r for r in rs if r["status"] == "ok"]
    return sum(r["acc"] < 80 for r in ok) / max(1, len(ok))


def _seed(seed: int, budget: int, workers: int, ablation: bool) -> dict:
    """One seed: the four strategies, then (``ablation``) the joint search's :data:`ABLATIONS`, all measured in one
    box holding every candidate of the seed."""
    from cimtile.explore import explore
    from cimtile.explore.pareto import Box, hypervolume

    from cimtile.paths import build_dir

    out = build_dir("explore", _out_name(), f"seed{seed}")
    if not RESUME:
        shutil.rmtree(out, ignore_errors=True)
    s = explore(_cfg(budget, workers, seed=seed), out)
    s["out"], s["performed"] = out, s["performed_this_run"]
    per = _records(out)
    s["low_acc"] = {k: _low_acc(rs) for k, rs in per.items()}
    if not ablation:
        return s
    abl = {}
    for name, kw in ABLATIONS.items():
        aout = build_dir("explore", _out_name(), f"seed{seed}_{name}")
        if not RESUME:
            shutil.rmtree(aout, ignore_errors=True)
        s["performed"] += explore(_cfg(budget, workers, seed=seed, strategies=("joint",), **kw),
                                  aout)["performed_this_run"]
        abl[name] = _records(aout)["joint"]
    box = Box([r for rs in [*per.values(), *abl.values()] for r in rs if r["status"] == "ok"] + [s["reference"]])
    hb = hypervolume(per[s["best_single_sided"]], box)
    s["ratio_box_all"] = hypervolume(per["joint"], box) / hb
    for name, rs in abl.items():
        s[f"ratio_{name}"] = hypervolume(rs, box) / hb
        s["low_acc"][f"joint_{name}"] = _low_acc(rs)
    return s


def run() -> dict[str, float]:
    from cimtile.explore import explore

    from cimtile.paths import build_dir

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    budget = int(os.environ.get("BENCH_EXPLORE_BUDGET", "20"))
    workers = int(os.environ.get("BENCH_EXPLORE_WORKERS", "2"))
    seeds = [int(x) for x in os.environ.get("BENCH_EXPLORE_SEEDS", "0,1,2").split(",") if x.strip()]
    figs: dict[str, float] = {"explore_budget": budget, "explore_seeds": len(seeds)}
    t = time.time()
    abl = os.environ.get("BENCH_EXPLORE_ABLATION_SEEDS")
    abl = {int(x) for x in abl.split(",") if x.strip()} if abl is not None else set(seeds[:1])
    runs = [_seed(k, budget, workers, k in abl) for k in seeds]
    figs["explore_s"] = round(time.time() - t, 1)
    n = sum(s["performed"] for s in runs)
    figs["explore_evaluations"] = n
    figs["explore_s_per_candidate"] = round(figs["explore_s"] / max(n, 1), 2)
    mean = lambda xs: sum(xs) / len(xs)
    ratios = [s["explore_hv_ratio"] for s in runs]
    figs["explore_hv_ratio"] = round(mean(ratios), 3)
    figs["explore_hv_ratio_min"], figs["explore_hv_ratio_max"] = round(min(ratios), 3), round(max(ratios), 3)
    figs["explore_hv_ratio_sd"] = round(statistics.stdev(ratios), 3) if len(ratios) > 1 else 0.0
    for k, s in zip(seeds, runs):
        figs[f"explore_hv_ratio_seed{k}"] = round(s["explore_hv_ratio"], 3)
    for k in runs[0]["hypervolume"]:
        figs[f"explore_hv_{k}"] = round(mean([s["hypervolume"][k] for s in runs]), 4)
    ab = [s for s in runs if "ratio_box_all" in s]
    if ab:
        figs["explore_ablation_seeds"] = len(ab)
        figs["explore_hv_ratio_box_all"] = round(mean([s["ratio_box_all"] for s in ab]), 3)
        for name in ABLATIONS:
            figs[f"explore_hv_ratio_{name}"] = round(mean([s[f"ratio_{name}"] for s in ab]), 3)
            figs[f"explore_low_acc_share_joint_{name}"] = round(mean([s["low_acc"][f"joint_{name}"] for s in ab]), 3)
    for k in runs[0]["hypervolume"]:
        figs[f"explore_low_acc_share_{k}"] = round(mean([s["low_acc"][k] for s in runs]), 3)
    first = runs[0]
    figs["explore_front_joint"] = first["front_sizes"]["joint"]
    fr = json.loads((first["out"] / "fronts.json").read_text())
    figs["explore_best_acc_joint"] = round(max(r["acc"] for r in fr["joint"]), 2)
    joint = _records(first["out"])["joint"]
    figs["explore_vit_candidates_joint"] = sum(r["candidate"]["family"] == "vit" for r in joint)
    figs["explore_ref_acc"] = round(first["reference"]["acc"], 2)
    if os.environ.get("BENCH_EXPLORE_DEVICE", "1") == "0":
        return figs
    dout = build_dir("explore", "bench_device")
    shutil.rmtree(dout, ignore_errors=True)
    d = explore(_cfg(budget, workers, seed=seeds[0], strategies=("joint",), device="rram"), dout)["device"]
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
    lines += _controller()
    f = json.loads(path.read_text()) if path.exists() else {}
    g = lambda k, fmt="{:.4f}": fmt.format(f[k]) if k in f else "not measured"
    lines += ["", f"### Strategies at the same budget ({g('explore_budget', '{:.0f}')} candidates each, "
              f"{g('explore_seeds', '{:.0f}')} seeds, digits, calibrated mapping, `python -m bench explore`)", "",
              f"Per seed (from each seed's `build/explore/{_out_name()}/seed<k>/summary.json` of that run):", "",
              "| seed | joint | hardware | network | precision | best single-sided | `explore_hv_ratio` | joint: ViTs "
              "| joint: >= 85% accuracy | best single-sided: >= 85% accuracy |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for d in sorted((path.parent / "explore" / _out_name()).glob("seed*/summary.json")):  # BENCH_EXPLORE_OUT's seeds
        if "_" in d.parent.name or f"explore_hv_ratio_{d.parent.name}" not in f:
            continue  # the ablation's directories, or a seed of another run
        sm = json.loads(d.read_text())
        hv = sm["hypervolume"]
        per = _records(d.parent)
        good = {k: sum(r["status"] == "ok" and r["acc"] >= 85 for r in rs) for k, rs in per.items()}
        lines.append(f"| {d.parent.name[4:]} | " + " | ".join(f"{hv.get(k, float('nan')):.4f}" for k in
                                                              ("joint", "hardware", "network", "precision"))
                     + f" | {sm['best_single_sided']} | {sm['explore_hv_ratio']:.3f} | "
                     f"{sum(r['candidate']['family'] == 'vit' for r in per['joint'])} | {good['joint']} | "
                     f"{good[sm['best_single_sided']]} |")
    lines += ["", "Mean over the seeds:", "", "| strategy | hypervolume | candidates below 80% accuracy |",
              "|---|---|---|"]
    for k in ("joint", "hardware", "network", "precision", *(f"joint_{a}" for a in ABLATIONS)):
        if k.startswith("joint_") and f"explore_low_acc_share_{k}" not in f:
            continue
        hv = g(f"explore_hv_{k}") if not k.startswith("joint_") else f"ablation: `explore_hv_ratio_{k[6:]}`"
        lines.append(f"| {k} | {hv} | {g(f'explore_low_acc_share_{k}', '{:.0%}')} |")
    lines += _why(path.parent / "explore" / _out_name(), f)
    lines += ["", "| figure | value | goal | note |", "|---|---|---|---|"]
    for k, fmt, note in (
            ("explore_hv_ratio", "{:.3f}", "mean over the seeds"), ("explore_hv_ratio_sd", "{:.3f}", "over the seeds"),
            ("explore_hv_ratio_min", "{:.3f}", ""), ("explore_hv_ratio_max", "{:.3f}", ""),
            ("explore_ablation_seeds", "{:.0f}", "seeds the ablations ran on"),
            ("explore_hv_ratio_box_all", "{:.3f}", "seeded joint, in the box with the ablations"),
            ("explore_hv_ratio_random_init", "{:.3f}", "ablation: NSGA-II's uniform first generation"),
            ("explore_hv_ratio_one_group_init", "{:.3f}", "ablation: one group varied per individual (session 4's)"),
            ("explore_hv_ratio_cnn_only", "{:.3f}", "ablation: no ViT in the space"),
            ("explore_front_joint", "{:.0f}", "first seed"), ("explore_best_acc_joint", "{:.2f}", "first seed"),
            ("explore_vit_candidates_joint", "{:.0f}", "first seed"), ("explore_ref_acc", "{:.2f}", "the reference"),
            ("explore_s", "{:.0f}", "this run's wall time (resumed directories are not timed again)"),
            ("explore_evaluations", "{:.0f}", "evaluations this run performed"),
            ("explore_s_per_candidate", "{:.2f}", "seconds per evaluation performed, 2 Ray workers"),
            ("explore_device_hv_ideal", "{:.4f}", "first seed, joint, `rram`"),
            ("explore_device_hv_device", "{:.4f}", ""), ("explore_device_front_ideal", "{:.0f}", ""),
            ("explore_device_left_front", "{:.0f}", ""), ("explore_device_mean_acc_drop", "{:.2f}", "points"),
            ("load_avg_explore", "{:.1f}", "1-minute load average at the end")):
        lines.append(f"| `{k}` | {g(k, fmt)} | {GOALS.get(k, '')} | {note} |")
    return "\n".join(lines) + "\n"


def _controller() -> list[str]:
    """The controller's FPGA-to-mm^2 constants and the fallback model's held-out error (the committed model file
    of ``python -m cimtile.explore.synth fit``)."""
    from cimtile.explore.synth import FPGA_AREA, MODEL_FILE

    out = ["", "### Controller area (mm^2 per FPGA resource, cimtile.explore.synth.FPGA_AREA)", "",
           "| resource | mm^2 | source |", "|---|---|---|"]
    out += [f"| {k} | {v:.4g} | {src} |" for k, (v, src) in FPGA_AREA.items()]
    if not MODEL_FILE.exists():
        return out + ["", "The fallback model is not fitted yet (`python -m cimtile.explore.synth fit`)."]
    m = json.loads(MODEL_FILE.read_text())
    out += ["", f"Synthesised tiles (`yosys synth_ecp5 -noflatten`, controller without the crossbar's and ADCs' RTL "
                f"models) and the fallback model's error on each when held out (fitted on the others; features "
                f"{', '.join(m['model']['features'])}; `{m['command']}`):", "",
            "| tile | yosys s | controller mm^2 | held out: predicted | error |", "|---|---|---|---|---|"]
    out += [f"| {r['tile']} | {r.get('synth_s') or ''} | {r['mm2']:.4f} | {r['predicted_mm2']:.4f} | "
            f"{100 * r['error_mm2']:+.1f}% |" for r in m["held_out"]]
    if m.get("mean_abs_error_mm2") is not None:
        out += ["", f"Mean absolute held-out error: {100 * m['mean_abs_error_mm2']:.1f}% of the controller's mm^2."]
    return out


def _why(root: Path, f: dict) -> list[str]:
    """What each strategy's candidates were, summed over the seeds of the last run (each seed's candidates.json;
    the ablations' under ``seed<k>_<ablation>``): why a front is small."""
    rows: dict[str, list] = {}
    for d in sorted(root.glob("seed*/candidates.json")):
        seed = d.parent.name.split("_")[0]
        if f"explore_hv_ratio_{seed}" not in f:
            continue
        for r in json.loads(d.read_text()):
            k = r["strategy"] + (d.parent.name[len(seed):] if "_" in d.parent.name else "")
            rows.setdefault(k, []).append(r)
    if not rows:
        return []
    out = ["", "What the candidates were (all seeds; each seed's `candidates.json`):", "",
           "| strategy | candidates | infeasible | below 80% accuracy | not fitting `n_tiles` (re-programmed) | ViT "
           "| best accuracy |", "|---|---|---|---|---|---|---|"]
    for k, rs in rows.items():
        ok = [r for r in rs if r["status"] == "ok"]
        out.append(f"| {k} | {len(rs)} | {len(rs) - len(ok)} | {sum(r['acc'] < 80 for r in ok)} | "
                   f"{sum(not r['fits'] for r in ok)} | {sum(r['candidate']['family'] == 'vit' for r in rs)} | "
                   f"{max((r['acc'] for r in ok), default=float('nan')):.1f} |")
    return out


#: The runs of this session's changes to the joint search (budget 20, digits, calibrated mapping, 2 Ray workers, the
#: seeds each ran): (label, commit that ran it, area objective, directory under build/explore holding ``seed<k>/``).
#: Each is ``python -m bench explore`` with ``BENCH_EXPLORE_SEEDS=0,1,2 BENCH_EXPLORE_OUT=<directory>`` (and the
#: variant's setting, e.g. ``BENCH_EXPLORE_SEEDING=combined``); the first is the headline run's directory copied.
CHANGES = (
    ("session 4's joint search, scored with the resident-tile latency fixed (TorchScript export, networks reused: "
     "the same scores)", "d486a7f", "total", "changes_base"),
    ("+ combined seeding (each group varied with probability 1/2 in the joint's first generation)", "90b5cdc",
     "total", "combined"),
    ("the same as the default, seeds 0-4 (the headline run, `python -m bench explore`)", "327f7f5", "total", "bench"),
    ("factorial seeding instead (the 7 group subsets in turn; each gene's values without replacement, in every "
     "NSGA-II strategy's first generation)", "49ee1e0", "total", "factorial"),
)


def changes_markdown(root: Path = ROOT / "build" / "explore") -> str:
    """The table of :data:`CHANGES` from each run's ``seed<k>/summary.json`` (rows whose run is missing say so)."""
    lines = ["| change | commit | area objective | seeds | joint (mean) | best single-sided (mean hypervolume) | "
             "`explore_hv_ratio` per seed | mean |", "|---|---|---|---|---|---|---|---|"]
    for label, commit, area, d in CHANGES:
        runs = [f for f in (root / d).glob("seed[0-9]*/summary.json") if f.parent.name[4:].isdigit()]
        runs.sort(key=lambda f: int(f.parent.name[4:]))
        if not runs:
            lines.append(f"| {label} | {commit} | {area} | not run | | | | |")
            continue
        sms = [json.loads(f.read_text()) for f in runs]
        mean = lambda xs: sum(xs) / len(xs)
        best = sorted({s["best_single_sided"] for s in sms})
        lines.append(f"| {label} | {commit} | {area} | {', '.join(f.parent.name[4:] for f in runs)} | "
                     f"{mean([s['hypervolume']['joint'] for s in sms]):.4f} | {'/'.join(best)} "
                     f"({mean([s['hypervolume'][s['best_single_sided']] for s in sms]):.4f}) | "
                     f"{', '.join(format(s['explore_hv_ratio'], '.3f') for s in sms)} | "
                     f"{mean([s['explore_hv_ratio'] for s in sms]):.3f} |")
    return "\n".join(lines) + "\n"


def fronts_markdown(root: Path = ROOT / "build" / "explore") -> str:
    """Why a strategy wins, per seed of each :data:`CHANGES` run: the hypervolume the joint front and the best
    single-sided front each hold alone (their union's minus the other's, in the seed's box) and each front's best
    normalised value per objective (0: the best any strategy reached; 1: the reference point)."""
    from cimtile.explore.pareto import Box, front, hypervolume

    lines = ["| run | seed | best single-sided | joint alone | best single-sided alone | joint front: best error, "
             "latency, energy, area | its front: best error, latency, energy, area | joint front's tiles |",
             "|---|---|---|---|---|---|---|---|"]
    for _label, _, _, d in CHANGES:
        runs = [f for f in (root / d).glob("seed[0-9]*/summary.json") if f.parent.name[4:].isdigit()]
        for f in sorted(runs, key=lambda f: int(f.parent.name[4:])):
            sm = json.loads(f.read_text())
            per = _records(f.parent)
            box = Box([r for rs in per.values() for r in rs if r["status"] == "ok"] + [sm["reference"]])
            b = sm["best_single_sided"]
            hj, hb, hu = (hypervolume(per["joint"], box), hypervolume(per[b], box),
                          hypervolume(per["joint"] + per[b], box))
            best = lambda rs, box=box: ", ".join(f"{v:.2f}" for v in box.normalise(front(
                [r for r in rs if r["status"] == "ok"])).min(axis=0))
            tiles = sorted({r["candidate"]["n_tiles"] for r in front([r for r in per["joint"] if r["status"] == "ok"])})
            lines.append(f"| {d} | {f.parent.name[4:]} | {b} | {hu - hb:.3f} | {hu - hj:.3f} | {best(per['joint'])} | "
                         f"{best(per[b])} | {', '.join(map(str, tiles))} |")
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
    start = "<!-- generated: explore-changes (python -m bench.explore --changes) -->\n"
    end = "<!-- end: explore-changes -->"
    new, n = re.subn(re.escape(start) + r".*?" + re.escape(end), lambda _: start + changes_markdown() + end, new,
                     flags=re.S)
    start = "<!-- generated: explore-fronts (python -m bench.explore --fronts) -->\n"
    end = "<!-- end: explore-fronts -->"
    new, n = re.subn(re.escape(start) + r".*?" + re.escape(end), lambda _: start + fronts_markdown() + end, new,
                     flags=re.S)
    doc.write_text(new)


def main() -> None:
    """``python -m bench.explore [--changes | --fronts | --markdown | --update-doc]``."""
    if "--changes" in sys.argv:
        print(changes_markdown(), end="")
    elif "--fronts" in sys.argv:
        print(fronts_markdown(), end="")
    elif "--markdown" in sys.argv:
        print(markdown(ROOT / "build" / "bench.json"), end="")
    elif "--update-doc" in sys.argv:
        update_doc()
    else:
        print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    from cimtile.errors import CimtileError

    try:
        main()
    except CimtileError as e:
        raise SystemExit(f"bench.explore: error: {e}") from None
