"""The exploration: a joint multi-objective search of tile, network and precision, and single-sided baselines on
the same evaluation budget, compared by the hypervolume of their fronts over one reference point.

Strategies (each evaluates ``budget`` candidates):

- ``joint``: optuna's NSGA-II over every tile, network and precision dimension of the space;
- ``hardware``: NSGA-II over the tile dimensions only (network and precision fixed at the reference);
- ``network``: NSGA-II over the network dimensions only (tile and precision fixed);
- ``precision``: the mixed-precision search's agent (:func:`cimtile.search.agents.run_agent`: DDPG by default,
  CIM-AQ's reward on latency over the reference's) over per-layer bits, tile and network fixed.

Resumable: the NSGA-II studies live in optuna's SQLite storage (``study.db``) and every evaluation in
``evaluations.jsonl`` under the output directory; a run interrupted and started again with the same settings
continues where it stopped, and no candidate is evaluated twice (a repeated candidate is answered from the
file; the precision agent replays its seeded decisions against it). Evaluations run through
:mod:`cimtile.search.executor` in batches of a fixed size, so a seed gives the same results for any worker count.

Writes ``candidates.csv`` / ``candidates.json`` (every evaluated candidate of every strategy), ``fronts.json``
(each strategy's Pareto front), ``summary.json`` (hypervolumes, ``explore_hv_ratio``, the box, timings, the
device comparison), ``objectives.png`` and ``fronts.png``.
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .space import DIMENSIONS, REFERENCE, ExploreError, Space

__all__ = ["STRATEGIES", "ExploreConfig", "Evaluator", "explore"]

STRATEGIES = ("joint", "hardware", "network", "precision")
#: The area objective: ``total`` (the synthesised or modelled controller plus the analog parts) or ``analog``.
AREAS = ("total", "analog")
#: The first NSGA-II generation: ``combined`` (the default: the reference, then each group varied with probability
#: 1/2 per individual), ``reference`` (the reference, then one group varied per individual) or ``random`` (NSGA-II's
#: own uniform sampling), or ``factorial`` (the joint's individuals take the 7 non-empty subsets of the 3 groups in
#: turn, and every NSGA-II strategy draws each gene's values without replacement over its first generation).
SEEDINGS = ("combined", "reference", "factorial", "random")
#: Candidates asked per round (fixed: never the number of workers, so results do not depend on it).
BATCH = 4
_GROUPS = {"joint": ("tile", "network", "precision"), "hardware": ("tile",), "network": ("network",),
           "precision": ("precision",)}


@dataclass
class ExploreConfig:
    """Settings of one exploration (the ``cimtile explore`` options)."""

    data: str = "digits"
    budget: int = 24
    strategies: tuple = STRATEGIES
    seed: int = 0
    float_epochs: int = 4
    qat_epochs: float = 1.0
    batch: int = 1000
    mapping: str = "calibrated"
    device: object = None  # a DeviceModel, preset name, JSON path or dict; None: ideal tile
    precision_agent: str = "ddpg"
    max_loss: float = 1.0
    acc_floor: float = 80.0  # NSGA-II constraint: a candidate below this accuracy (%) is infeasible as a parent
    population: int = 8
    seeding: str = "combined"  # NSGA-II's first generation (initial_population): combined, reference or random
    sparsity: bool = False
    space: dict = field(default_factory=dict)  # {dimension: [choices]} narrowing the declared space
    base: str = "isaac"
    synth: bool = False  # synthesise every candidate's tile not yet cached (minutes each; cimtile.explore.synth)
    area: str = "total"  # the area objective: total (controller + analog) or analog (the analog parts only)
    workers: int = 1
    ray_address: str | None = None
    progress: bool | None = None


def _check(cfg: ExploreConfig):
    from cimtile.search.agents import AGENTS

    from .score import MAPPINGS

    if cfg.data not in ("digits", "mnist"):
        raise ExploreError(f"data {cfg.data!r}: expected digits or mnist")
    if not isinstance(cfg.budget, int) or cfg.budget < 1:
        raise ExploreError(f"budget {cfg.budget!r}: at least 1 candidate per strategy")
    bad = [s for s in cfg.strategies if s not in STRATEGIES]
    if bad or not cfg.strategies:
        raise ExploreError(f"strategy {bad[0] if bad else ''!r}: expected some of {', '.join(STRATEGIES)}")
    if cfg.mapping not in MAPPINGS:
        raise ExploreError(f"mapping {cfg.mapping!r}: expected one of {', '.join(MAPPINGS)}")
    if cfg.mapping != "exact":
        import inspect

        from cimtile.compiler import compile_model

        if "mapping" not in inspect.signature(compile_model).parameters:
            raise ExploreError(f"mapping {cfg.mapping!r}: this compiler has only the exact ADC mapping")
    if cfg.precision_agent not in AGENTS:
        raise ExploreError(f"precision agent {cfg.precision_agent!r}: expected one of {', '.join(AGENTS)}")
    if cfg.seeding not in SEEDINGS:
        raise ExploreError(f"seeding {cfg.seeding!r}: expected one of {', '.join(SEEDINGS)}")
    if cfg.synth not in (True, False):
        raise ExploreError(f"synth {cfg.synth!r}: expected true or false")
    if cfg.area not in AREAS:
        raise ExploreError(f"area objective {cfg.area!r}: expected one of {', '.join(AREAS)}")
    if cfg.float_epochs < 0 or cfg.qat_epochs < 0 or cfg.batch < 1 or cfg.population < 2:
        raise ExploreError("epochs must be >= 0, batch >= 1 and population >= 2")
    if cfg.workers < 1:
        raise ExploreError(f"workers {cfg.workers}: at least 1")
    if not 0 <= cfg.acc_floor <= 100:
        raise ExploreError(f"accuracy floor {cfg.acc_floor}: expected 0 to 100 (%)")


#: Settings an earlier version's ``settings.json`` lacks, at the values that version ran with (no accuracy floor, the
#: analog area objective, no synthesis), so its output directories resume as what they are.
_EARLIER = {"acc_floor": 0.0, "area": "analog", "synth": False}


def _device(spec):
    if spec is None:
        return None
    from cimtile.sim.device import DeviceModel, load_device

    dev = DeviceModel.from_dict(spec) if isinstance(spec, dict) else load_device(spec)
    return None if dev is None or dev.off else dev


class Evaluator:
    """Evaluates candidates through an executor, answering candidates already evaluated (this run or an earlier
    run of the same output directory) from ``evaluations.jsonl``. ``performed`` counts real evaluations."""

    def __init__(self, executor, job: dict, path: Path, bar=None, synth: bool = False, area: str = "total",
                 progress=None):
        self.ex, self.job, self.path, self.bar = executor, job, path, bar
        self.synth, self.area, self.progress = synth, area, progress
        self.space = Space(**job["space"])
        self.model = None
        self.cache: dict[str, dict] = {}
        self.performed = 0
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue  # a line cut by an interruption: evaluated again
                    self.cache[r["key"]] = r

    def __call__(self, cands: list[dict]) -> list[dict]:
        from .score import evaluate

        keys = [Space.key(c) for c in cands]
        todo = {}
        for k, c in zip(keys, cands):
            if k not in self.cache and k not in todo:
                todo[k] = c
        if todo:
            if self.synth:
                self._synthesise(list(todo.values()))
            res = [self._with_controller(r)
                   for r in self.ex.map(evaluate, [{**self.job, "candidate": c} for c in todo.values()])]
            for r in res:
                self.cache[r["key"]] = r
            with open(self.path, "a") as f:
                for r in res:
                    self.cache[r["key"]] = r
                    f.write(json.dumps(r) + "\n")
            self.performed += len(res)
        if self.bar is not None:
            self.bar.update(len(cands))
        return [self._with_controller(self.cache[k]) for k in keys]


    def _synthesise(self, cands: list[dict]) -> None:
        """Synthesise the distinct tiles of ``cands`` not in the cache, as evaluations on the executor."""
        from cimtile.progress import bar as progress_bar

        from .synth import lookup, synthesise

        tiles = {}
        for c in cands:
            t = self.space.tile(c)
            if lookup(t) is None:
                tiles.setdefault(t.to_dict()["name"], t.to_dict())
        if not tiles:
            return
        with progress_bar(total=len(tiles), desc="synth", unit="tile", progress=self.progress, leave=False) as b:
            self.ex.map(synthesise, list(tiles.values()), lambda i, r: b.update(1))

    def _with_controller(self, r: dict) -> dict:
        """Add the controller's area (n_tiles controllers: the cache, else the fallback model) and set the area
        objective (``area_mm2``); the record's ``area_source`` says where the controller came from. Recomputed for
        records answered from the cache too, so that every candidate of a run is measured with the same cache and
        model (a resumed run after a refit re-measures the earlier candidates with the new model)."""
        if r.get("status") != "ok":
            return r
        from .synth import ControllerModel, controller_area, lookup

        c = r["candidate"]
        tile = self.space.tile(c)
        if self.model is None and lookup(tile) is None:
            self.model = ControllerModel.load()
        ctl = controller_area(tile, self.model)
        area = {k: v for k, v in r["area"].items() if k not in ("analog", "controller", "total")}
        analog = sum(area.values())  # the analog parts (cimtile.sim.energy.analog_area_mm2)
        area.update(analog=analog, controller=ctl["mm2"] * c["n_tiles"])
        area["total"] = analog + area["controller"]
        return {**r, "area": area, "controller": ctl, "area_source": ctl["source"],
                "area_analog_mm2": analog, "area_total_mm2": area["total"],
                "area_mm2": area["total"] if self.area == "total" else analog}


def _fixed(space: Space) -> dict:
    return {n: REFERENCE[n] if REFERENCE[n] in space.choices[n] else space.choices[n][0] for n in DIMENSIONS}


def _nsga(name: str, cfg: ExploreConfig, space: Space, ev: Evaluator, out: Path) -> list[dict]:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    from .pareto import objectives

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = space.names(_GROUPS[name])
    fixed = _fixed(space)
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    study = optuna.create_study(study_name=name, storage=storage, directions=["minimize"] * 4,
                                load_if_exists=True)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)  # asked before an interruption, never told
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
            if "key" in t.user_attrs]
    recs = [ev.cache[t.user_attrs["key"]] for t in done if t.user_attrs["key"] in ev.cache]
    if len(recs) != len(done):
        raise ExploreError(f"{out}: study.db and evaluations.jsonl disagree (delete the directory to start again)")
    if ev.bar is not None:
        ev.bar.update(len(recs))
    dists = {n: CategoricalDistribution(list(space.choices[n])) for n in names}
    if not study.get_trials(deepcopy=False) and cfg.seeding != "random":
        for params in initial_population(name, space, cfg.population, cfg.seed, cfg.seeding):
            study.enqueue_trial(params)
    floor = accuracy_floor(cfg.acc_floor)
    # one expected mutation per searched group and child: optuna's default (1 / parameters) is that for a one-group
    # baseline, but mutates the joint search's tile group once in about 12 children (36 parameters)
    mutation = len(_GROUPS[name]) / len(names)
    while len(recs) < cfg.budget:
        # reseeded per round from the number of candidates so far: a resumed run asks what an uninterrupted one would
        with warnings.catch_warnings():  # optuna 5 deprecates constraints_func (kept: optuna 3.5-4 lack the successor)
            warnings.simplefilter("ignore", FutureWarning)
            study.sampler = optuna.samplers.NSGAIISampler(population_size=cfg.population,
                                                          seed=cfg.seed * 7919 + len(recs) + STRATEGIES.index(name),
                                                          constraints_func=floor, mutation_prob=mutation)
        k = min(BATCH, cfg.budget - len(recs))
        trials = [study.ask(dists) for _ in range(k)]
        for t in trials:
            if "fixed_params" in study._storage.get_trial_system_attrs(t._trial_id):
                # an enqueued trial (the seeded first generation) gets no NSGA-II generation of its own: optuna would
                # count it in none, draw a second, uniform first generation after it and breed from that one
                study._storage.set_trial_system_attr(t._trial_id, _GENERATION_KEY, 0)
        cands = [space.complete(t.params, fixed) for t in trials]
        for t, r in zip(trials, ev(cands)):
            t.set_user_attr("key", r["key"])
            if r["status"] == "ok":
                t.set_user_attr("acc", r["acc"])  # read by the accuracy floor's constraint
                study.tell(t, objectives(r))
            else:
                study.tell(t, state=TrialState.FAIL)
            recs.append(r)
    return recs


#: optuna's NSGA-II generation attribute (``NSGAIISampler._get_generation_key()``).
_GENERATION_KEY = "NSGAIISampler:generation"


def accuracy_floor(floor: float):
    """optuna's ``constraints_func`` of every NSGA-II strategy: ``floor - accuracy`` (feasible when <= 0).

    NSGA-II ranks a feasible candidate above every infeasible one and infeasible ones by how far they miss, so a
    candidate below the floor is a parent only when too few candidates reach it. It guides the search only: every
    evaluated candidate still counts in the fronts and hypervolumes. Without it a small inaccurate network (a ViT
    at 4 epochs) is non-dominated by its area alone and breeds. None when ``floor`` is 0 (no constraint)."""
    if floor <= 0:
        return None

    def constraint(trial) -> list[float]:
        return [floor - float(trial.user_attrs.get("acc", 0.0))]

    return constraint


def initial_population(strategy: str, space: Space, population: int, seed: int, seeding: str = "combined"
                       ) -> list[dict]:
    """The first NSGA-II generation of ``strategy`` (``--seeding combined``, the default, or ``reference``).

    Every NSGA-II strategy starts from the reference, the point each single-sided baseline fixes its other
    dimensions at. A single-sided strategy fills the rest of its first generation with NSGA-II's own uniform
    sampling of its group (which is a variation of the reference in that group). The joint search fills it from
    the same per-group distributions: with ``reference``, individual ``i`` draws group ``i mod 3`` (tile, network,
    precision) uniformly and keeps the reference's other groups, so its first generation is drawn from the union of
    the baselines' spaces; with ``combined``, individual ``i`` draws each group uniformly with probability 1/2 (at
    least one group), so a group is varied in about 4 of 7 individuals instead of 2 or 3, and some individuals
    already combine variations of two or three groups. Seeded by ``seed``: a resumed or re-run study enqueues the
    same points."""
    import random

    names = space.names(_GROUPS[strategy])
    fixed = _fixed(space)
    first = {n: fixed[n] for n in names}
    if seeding == "factorial":
        return _factorial(strategy, space, population, seed)
    if strategy != "joint":
        return [first]
    rng = random.Random(f"explore-init-{seed}")
    out = [first]
    groups = [g for g in _GROUPS["joint"] if space.names((g,))]
    for i in range(1, population):
        if seeding == "combined" and groups:
            varied: set = set()
            while not varied:
                varied = {g for g in groups if rng.random() < 0.5}
        else:
            varied = {groups[(i - 1) % len(groups)]} if groups else set()
        out.append({n: (rng.choice(space.choices[n]) if DIMENSIONS[n].group in varied else fixed[n]) for n in names})
    return out


def _factorial(strategy: str, space: Space, population: int, seed: int) -> list[dict]:
    """``--seeding factorial``: the reference, then ``population - 1`` individuals. The joint search's individuals
    vary the non-empty subsets of its groups in turn (a shuffled cycle: with 3 groups and a population of 8, each
    of the 7 subsets once, so each group is varied in exactly 4 individuals and every combination occurs); a
    single-sided strategy's individuals vary its one group. Each gene's values are drawn without replacement over
    the individuals that vary its group (a shuffled cycle of its choices, as a Latin hypercube draws a
    categorical), so the first generation covers each gene's choices as evenly as its size allows. The same
    marginal distributions as uniform draws, without their chance of missing a group or a value."""
    import itertools
    import random

    rng = random.Random(f"explore-factorial-{seed}-{strategy}")
    names = space.names(_GROUPS[strategy])
    fixed = _fixed(space)
    groups = [g for g in _GROUPS[strategy] if space.names((g,))]
    subsets = [set(c) for k in range(1, len(groups) + 1) for c in itertools.combinations(groups, k)]
    pools: dict[str, list] = {}

    def draw(n: str):
        if not pools.get(n):
            pools[n] = list(space.choices[n])
            rng.shuffle(pools[n])
        return pools[n].pop()

    out = [{n: fixed[n] for n in names}]
    order: list[set] = []
    for _ in range(1, population):
        if not order:
            order = list(subsets)
            rng.shuffle(order)
        varied = order.pop() if subsets else set()
        out.append({n: (draw(n) if DIMENSIONS[n].group in varied else fixed[n]) for n in names})
    return out


def _precision(cfg: ExploreConfig, space: Space, ev: Evaluator, ref: dict) -> list[dict]:
    from cimtile.search.agents import Space as BitSpace
    from cimtile.search.agents import run_agent

    fixed = _fixed(space)
    n = ref["layers"]
    bits = BitSpace(n, space.tile(fixed).cell_bits)
    recs: list[dict] = []

    def evaluate(pols):
        cands = [space.complete({**{f"w{i}": w for i, (w, _) in enumerate(p)},
                                 **{f"a{i}": a for i, (_, a) in enumerate(p)}}, fixed) for p in pols]
        out = []
        for r in ev(cands):
            recs.append(r)
            ok = r["status"] == "ok"
            out.append({**r, "acc": r["acc"] if ok else 0.0, "ratio": r["latency"] / ref["latency"] if ok else 1e9})
        return out

    run_agent(cfg.precision_agent, bits, evaluate, cfg.budget, cfg.seed, ref["acc"] - cfg.max_loss,
              ref["layer_table"])
    return recs


def explore(cfg: ExploreConfig, out: str | Path, executor=None) -> dict:
    """Run (or resume) an exploration into ``out``; returns the summary (also ``out/summary.json``).

    ``executor`` defaults to :func:`cimtile.search.executor.make_executor` of ``cfg.workers`` /
    ``cfg.ray_address``."""
    from cimtile.search.executor import make_executor

    from cimtile.progress import bar as progress_bar

    _check(cfg)
    if isinstance(cfg.space, (str, Path)):
        space = Space.load(cfg.space, sparsity=cfg.sparsity, base=cfg.base)
    else:
        space = Space(cfg.space, sparsity=cfg.sparsity, base=cfg.base)
    dev = _device(cfg.device)
    out = Path(out)
    settings = {"data": cfg.data, "seed": cfg.seed, "float_epochs": cfg.float_epochs, "qat_epochs": cfg.qat_epochs,
                "batch": cfg.batch, "mapping": cfg.mapping, "device": None if dev is None else dev.to_dict(),
                "space": {"overrides": {k: list(v) for k, v in space.choices.items()}, "sparsity": cfg.sparsity,
                          "base": space.base.name}, "population": cfg.population,
                "seeding": cfg.seeding,
                "precision_agent": cfg.precision_agent, "max_loss": cfg.max_loss, "acc_floor": cfg.acc_floor,
                "area": cfg.area, "synth": cfg.synth}
    sfile = out / "settings.json"
    if out.exists():
        if not out.is_dir():
            raise ExploreError(f"output {out} exists and is not a directory")
        if any(out.iterdir()) and not sfile.exists():
            raise ExploreError(f"output {out} exists and is not an exploration's output directory")
        old = {**_EARLIER, **json.loads(sfile.read_text())} if sfile.exists() else None
        if old is not None and old != json.loads(json.dumps(settings)):
            diff = next(k for k in settings if json.loads(json.dumps(settings[k])) != old.get(k))
            raise ExploreError(f"output {out} holds an exploration with other settings ({diff}); use another "
                               "directory to start a new one")
    out.mkdir(parents=True, exist_ok=True)
    sfile.write_text(json.dumps(settings, indent=2) + "\n")
    job = {"data": cfg.data, "seed": cfg.seed, "float_epochs": cfg.float_epochs, "qat_epochs": cfg.qat_epochs,
           "batch": cfg.batch, "mapping": cfg.mapping, "device": settings["device"],
           "space": {"overrides": settings["space"]["overrides"], "sparsity": cfg.sparsity, "base": space.base},
           "table": True, "reuse": str(out / "reuse")}  # networks met again within this directory (score._network)
    t0 = time.time()
    ex = executor if executor is not None else make_executor(cfg.workers, cfg.ray_address)
    total = cfg.budget * len(cfg.strategies) + 1
    bar = progress_bar(total=total, desc="explore", unit="cand", progress=cfg.progress, leave=True)
    ev = Evaluator(ex, job, out / "evaluations.jsonl", bar, synth=cfg.synth, area=cfg.area, progress=cfg.progress)
    per: dict[str, list[dict]] = {}
    try:
        ref = ev([space.complete({}, _fixed(space))])[0]
        if ref["status"] != "ok":
            raise ExploreError(f"the reference candidate is infeasible: {ref['reason']}")
        for s in cfg.strategies:
            bar.set_postfix_str(s)
            per[s] = _precision(cfg, space, ev, ref) if s == "precision" else _nsga(s, cfg, space, ev, out)
    finally:
        bar.close()
        if executor is None:
            ex.close()
    summary = _finish(cfg, out, per, ref, space, ev, time.time() - t0)
    return summary


def _finish(cfg: ExploreConfig, out: Path, per: dict, ref: dict, space: Space, ev: Evaluator, seconds: float):
    from .pareto import Box, front, hypervolume

    allrec = [r for rs in per.values() for r in rs if r["status"] == "ok"] + [ref]
    box = Box(allrec)
    hv = {s: hypervolume(rs, box) for s, rs in per.items()}
    fronts = {s: front([r for r in rs if r["status"] == "ok"]) for s, rs in per.items()}
    singles = {s: v for s, v in hv.items() if s != "joint"}
    summary = {"strategies": list(per), "budget": cfg.budget, "evaluations": {s: len(rs) for s, rs in per.items()},
               "infeasible": {s: sum(r["status"] != "ok" for r in rs) for s, rs in per.items()},
               "performed_this_run": ev.performed, "seconds": round(seconds, 1), "hypervolume": hv,
               "box": box.to_json(), "reference": _brief(ref),
               "front_sizes": {s: len(f) for s, f in fronts.items()}}
    if "joint" in hv and singles:
        best = max(singles, key=lambda s: singles[s])
        summary["best_single_sided"] = best
        summary["explore_hv_ratio"] = hv["joint"] / singles[best] if singles[best] > 0 else float("inf")
    if "joint" in per and any("acc_device" in r for r in per["joint"]):
        summary["device"] = _device_change(per["joint"], box)
    _write(out, per, fronts, summary)
    from .plots import plots

    plots(out, per, fronts, ref)
    return summary


def _device_change(recs: list[dict], box) -> dict:
    """How the joint front changes when accuracy is measured with the device instead of on an ideal tile."""
    from .pareto import front, hypervolume

    ok = [r for r in recs if r["status"] == "ok"]
    ideal = [{**r, "acc": r["acc_ideal"]} for r in ok]
    fi, fd = {r["key"] for r in front(ideal)}, {r["key"] for r in front(ok)}
    drop = [r["acc_ideal"] - r["acc_device"] for r in ok]
    return {"hv_ideal": hypervolume(ideal, box), "hv_device": hypervolume(ok, box), "front_ideal": len(fi),
            "front_device": len(fd), "front_common": len(fi & fd), "left_front": len(fi - fd),
            "mean_acc_drop": sum(drop) / len(drop) if drop else 0.0, "max_acc_drop": max(drop, default=0.0)}


def _brief(r: dict) -> dict:
    keys = ("key", "tile", "layers", "params", "status", "acc", "acc_ideal", "acc_device", "acc_torch", "latency",
            "cycles", "compute_cycles", "program_cycles", "bundle_cycles", "batch_cycles", "golden_cycles",
            "golden_images", "report_batch_cycles", "xbar_tiles", "fits",
            "energy_pj", "area_mm2", "area_analog_mm2", "area_total_mm2", "area_source", "controller")
    return {k: r[k] for k in keys if k in r}


def _write(out: Path, per: dict, fronts: dict, summary: dict) -> None:
    rows = [{"strategy": s, "index": i, **_brief(r)} for s, rs in per.items() for i, r in enumerate(rs)]
    for row, (s, i) in zip(rows, [(s, i) for s, rs in per.items() for i in range(len(rs))]):
        row["candidate"] = per[s][i]["candidate"]
        row["energy"] = per[s][i].get("energy")
        row["area"] = per[s][i].get("area")
        row["reason"] = per[s][i].get("reason")
    tmp = out / "candidates.json.tmp"
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(out / "candidates.json")
    cols = ["strategy", "index", "status"] + list(DIMENSIONS) + [
        "layers", "params", "acc", "acc_ideal", "acc_device", "latency", "batch_cycles", "cycles", "compute_cycles",
        "program_cycles", "xbar_tiles", "fits", "energy_pj", "area_mm2", "area_analog_mm2", "area_total_mm2",
        "area_source"]
    with open(out / "candidates.csv.tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in rows:
            c = row["candidate"]
            w.writerow([row.get(k, c.get(k, "")) if k not in DIMENSIONS else c[k] for k in cols])
    (out / "candidates.csv.tmp").replace(out / "candidates.csv")
    fr = {s: [{**_brief(r), "candidate": r["candidate"]} for r in f] for s, f in fronts.items()}
    (out / "fronts.json").write_text(json.dumps(fr, indent=1) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")


def _jsonable(v):
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    raise TypeError(type(v).__name__)


def config_dict(cfg: ExploreConfig) -> dict:
    return asdict(cfg)
