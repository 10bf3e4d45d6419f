"""The search: a zoo model, a data set, a tile, an accuracy budget, an agent and an evaluation budget.

Every evaluated policy gets a short brevitas fine-tune from the float network (HAQ), its fake-quantised accuracy
on a validation split (the last quarter of the training split) and its exact tile cost
(:class:`cimtile.search.cost.CostModel` with the policy's own fine-tuned integer weights). The best policy
within the budget gets a longer fine-tune, is exported as QCDQ ONNX, compiled, and run
on the golden model over the test split. With a device model (``SearchConfig.device``, ``--device``), every
evaluated policy's accuracy is instead its compiled bundle's on the golden model with that device (seeded; the
same draws for every policy), and the final figures are measured with it too (docs/devices.md). Writes to the
output directory:

- ``best_policy.json``, ``evaluations.csv`` (every evaluated policy: bits, accuracy, cycles, reward),
- ``model.onnx`` (the fine-tuned model), ``bundle/`` and ``report.md`` (its compiled program and cycle report),
- ``bits.png`` (bits per layer), ``pareto.png`` (accuracy vs speedup, Pareto front, budget line),
- ``summary.json`` (the figures: accuracies, speedups in compute and compute + weight-programming cycles).
"""

from __future__ import annotations

import csv
import json
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cimtile.errors import CimtileError
from cimtile.paths import build_dir

__all__ = ["COSTS", "SearchConfig", "SearchResult", "search"]

#: what a search can minimise (``--cost``): compute cycles, compute + weight programming for one image, for 1,000
COSTS = ("compute", "total", "batch")


class SearchError(CimtileError, ValueError):
    """Bad search settings."""


@dataclass
class SearchConfig:
    """Settings of one search (the ``cimtile search`` options)."""

    model: str = "lenet"
    data: str = "digits"
    tile: str = "isaac"
    agent: str = "ddpg"
    budget: int = 40
    max_loss: float = 1.0
    screen_loss: float | None = None  # the search's target: W8A8 - screen_loss on the short fine-tune (None: max_loss)
    cost: str = "compute"
    finetune_epochs: float = 0.5
    final_epochs: float = 3.0
    pin_first_last: bool = False
    cell_multiples: bool = False
    workers: int = 1
    ray_address: str | None = None
    seed: int = 0
    pretrain_epochs: int = 8
    final_candidates: int = 1  # the cheapest policies within the budget that get the long fine-tune (choice on val)
    final_seeds: int = 1  # long fine-tunes (seeds) of W8A8 and the chosen policy the final figures average over
    progress: bool | None = None
    device: object = None  # a DeviceModel, its preset name, JSON file or dict (docs/devices.md); None: ideal tile


@dataclass
class SearchResult:
    """What a search found and measured (also in ``summary.json``)."""

    config: dict
    policy: list
    acc_w8a8: float  # fake-quantised torch test accuracy of W8A8 after the final fine-tune
    acc_torch: float  # of the chosen policy, fake-quantised torch
    acc_golden: float  # of the chosen policy's compiled bundle on the golden model
    acc_golden_w8a8: float
    cycles: dict  # chosen policy: compute, total (one image), batch (1,000 images)
    cycles_w8a8: dict
    speedup: dict  # W8A8 / policy for each cost kind
    bundle_cycles: int  # cycles per image in the compiled bundle's report
    evaluations: int
    seconds: float
    target: float = 0.0  # validation accuracy a policy had to reach in the search
    table: list = field(default_factory=list)
    device: dict | None = None  # the device model every golden accuracy was measured with (None: ideal tile)
    acc_golden_ideal: float | None = None  # with a device: the chosen policy's golden accuracy on an ideal tile
    acc_golden_w8a8_ideal: float | None = None
    evaluated: int = 0  # evaluations run by this call (the others came from the output directory's journal)
    final_runs: list = field(default_factory=list)  # per final seed: golden and torch accuracies, W8A8 and policy
    candidates: list = field(default_factory=list)  # the long fine-tune's validation check of each candidate

    @property
    def loss(self) -> float:
        """Points below W8A8 on the golden model over the test split (mean over the final seeds)."""
        return self.acc_golden_w8a8 - self.acc_golden

    @property
    def loss_std(self) -> float:
        """Standard deviation of the loss over the final seeds (0 for one seed)."""
        d = [r["golden_w8a8"] - r["golden"] for r in self.final_runs]
        return float(np.std(d, ddof=1)) if len(d) > 1 else 0.0

    def summary(self) -> str:
        s = self.speedup
        dev = ""
        if self.device is not None:
            dev = (f"device {self.device.get('name', '?')} (seed {self.device.get('seed', 0)}): golden accuracy on an "
                   f"ideal tile {self.acc_golden_ideal:.2f}% (W8A8 {self.acc_golden_w8a8_ideal:.2f}%)\n")
        k = len(self.final_runs)
        seeds = (f" (mean of {k} final fine-tune seeds, loss std {self.loss_std:.2f})" if k > 1 else "")
        return (f"best policy {self.policy}\n" + dev +
                f"accuracy: golden {self.acc_golden:.2f}% (W8A8 {self.acc_golden_w8a8:.2f}%, loss {self.loss:.2f} "
                f"points){seeds}; fake-quantised torch {self.acc_torch:.2f}% (W8A8 {self.acc_w8a8:.2f}%)\n"
                f"speedup over W8A8 in tile cycles: compute {s['compute']:.3f}x, compute + weight loads "
                f"{s['total']:.3f}x (one image), {s['batch']:.3f}x (1,000 images)\n"
                f"{self.evaluations} policies evaluated ({self.evaluated} by this run, the others from the "
                f"journal) in {self.seconds:.0f} s")


def budget_floor(reference_acc: float, max_loss: float) -> float:
    """The lowest accuracy (percent) within ``max_loss`` points of ``reference_acc``.

    Accuracies are percentages of a finite test set, so a candidate can sit exactly at the budget; the float
    subtraction (88.2 - 0.1 = 88.10000000000001) must not reject it: the floor is lowered by far less than one
    image of any test set.
    """
    return reference_acc - max_loss - 1e-9


# -- one evaluation (runs in a worker) ---------------------------------------------------------------------

_CTX: dict = {}


def _context(model: str, data: str, tile: str, pretrain_epochs: int, seed: int):
    """Per process: the float network, the data and the cost model (prepared from a W8A8 export, cached on disk)."""
    key = (model, data, tile, pretrain_epochs, seed)
    if key in _CTX:
        return _CTX[key]
    import torch
    from cimtile.zoo import mnist_nets

    from . import qat
    from .cost import CostModel

    torch.set_num_threads(1)
    net, spec = mnist_nets.pretrained(model, data, epochs=pretrain_epochs, seed=seed, progress=False)
    # the search ranks policies on a validation split held out of the training set (never trained on); the test
    # split is only for the final figures, so they carry no selection bias
    xtr, ytr, xva, yva, xte, yte = mnist_nets.splits(data)
    ref = build_dir("search", f"{model}_{data}_s{seed}_e{pretrain_epochs}_w8a8_v3.onnx")
    n = mnist_nets.weight_layers(spec)
    if not ref.exists():
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_suffix(f".tmp{zlib.crc32(str(time.time()).encode())}.onnx")
        qat.export_qcdq(qat.build(spec, [(8, 8)] * n, net), xte, tmp)
        tmp.replace(ref)
    cm = CostModel(ref, tile)
    _CTX[key] = ctx = {"net": net, "spec": spec, "data": (xtr, ytr, xte, yte), "val": (xva, yva),
                                "cost": cm}
    return ctx


def _finetune_seed(seed: int, pol) -> int:
    """The fine-tune's seed (data order): the same for every policy of a search. Common random numbers: two
    policies then differ by their bits only, not by their batches, which cuts the noise between their accuracies
    (with a seed per policy, W8A8 and W8A8-but-one-layer differed by up to 3 points on VGG/MNIST)."""
    del pol
    return seed


def _device(spec):
    """The search's device model (a preset name, JSON file, dict or DeviceModel) or None for an ideal tile."""
    from cimtile.sim.device import DeviceModel, load_device

    dev = DeviceModel.from_dict(spec) if isinstance(spec, dict) else load_device(spec)
    return None if dev is None or dev.off else dev


def golden_accuracy(net, x: np.ndarray, y: np.ndarray, cfg, device=None) -> float:
    """Accuracy (%) of ``net`` exported (QCDQ), compiled for ``cfg`` and run on the golden model with ``device``
    (a :class:`~cimtile.sim.device.DeviceModel`; None: an ideal tile)."""
    import tempfile

    from cimtile.compiler import compile_model, run

    from . import qat

    with tempfile.TemporaryDirectory(prefix="cimtile-search-") as d:
        path = Path(d) / "policy.onnx"
        qat.export_qcdq(net, x, path)
        b = compile_model(path, cfg)
    y_hat = run(b, x, progress=False, device=device)
    return float((np.asarray(y_hat).argmax(1) == y).mean() * 100)


def evaluate_policy(job: dict) -> dict:
    """Fine-tune ``job['policy']`` briefly and measure it (accuracy, exact cycles with its own weights).

    With ``job['device']`` (a DeviceModel as a dict) the accuracy is the compiled policy's on the golden model with
    that device (every policy sees the same seed: common random numbers, and results independent of the workers);
    ``acc_torch`` keeps the fake-quantised accuracy."""
    from . import qat

    ctx = _context(job["model"], job["data"], job["tile"], job["pretrain_epochs"], job["seed"])
    pol = [tuple(p) for p in job["policy"]]
    xtr, ytr, _, _ = ctx["data"]
    xva, yva = ctx["val"]
    net = qat.build(ctx["spec"], pol, ctx["net"])
    qat.finetune(net, xtr, ytr, job["epochs"], _finetune_seed(job["seed"], pol))
    acc = acc_torch = qat.evaluate_acc(net, xva, yva)
    dev = _device(job.get("device"))
    if dev is not None:
        acc = golden_accuracy(net, xva, yva, ctx["cost"].cfg, dev)
    r = ctx["cost"].query(pol, qat.int_weights(net))
    return {"policy": [list(p) for p in pol], "acc": float(acc), "acc_torch": float(acc_torch),
            **{k: int(r.cost(k)) for k in COSTS}}


# -- the search ------------------------------------------------------------------------------------------

def search(cfg: SearchConfig, out: str | Path | None, executor=None, finalize: bool = True):
    """Run a search and write its outputs to ``out`` (see the module doc). ``executor`` defaults to
    :func:`cimtile.search.executor.make_executor` of ``cfg.workers`` / ``cfg.ray_address``.

    Every finished evaluation is journalled (``evaluations.jsonl``, in ``DIR.partial`` while the search runs, then
    in ``DIR``): rerun on the same output directory, an interrupted (or finished) search takes the evaluations it
    already has from the journal instead of running them again (:mod:`cimtile.search.journal`).

    Returns a :class:`SearchResult`; with ``finalize=False`` only the search itself runs (no final fine-tune,
    export or compilation; ``out``, if given, only holds the journal) and the result is
    ``(best policy, table of evaluations, target)``."""
    from cimtile.zoo import mnist_nets

    from cimtile.progress import bar as progress_bar

    from .agents import AGENTS, Space, reward, run_agent
    from .executor import make_executor
    from .journal import Journal

    if cfg.agent not in AGENTS:
        raise SearchError(f"agent {cfg.agent!r}: expected one of {', '.join(AGENTS)}")
    if cfg.model not in mnist_nets.MODELS:
        raise SearchError(f"model {cfg.model!r}: expected one of {', '.join(mnist_nets.MODELS)}")
    if cfg.budget < 1:
        raise SearchError(f"--budget {cfg.budget}: at least 1 policy")
    if cfg.cost not in COSTS:
        raise SearchError(f"--cost {cfg.cost!r}: expected compute, total or batch")
    if cfg.screen_loss is not None and cfg.screen_loss < 0:
        raise SearchError(f"--screen-loss {cfg.screen_loss}: at least 0 points")
    if cfg.final_candidates < 1 or cfg.final_seeds < 1:
        raise SearchError(f"--final-candidates {cfg.final_candidates}, --final-seeds {cfg.final_seeds}: at least 1")
    journal = None
    if out is not None:
        o = Path(out)
        if finalize:
            if o.exists() and (not o.is_dir() or (any(o.iterdir()) and not (o / "summary.json").exists())):
                raise SearchError(f"output {o} exists and is not a previous search's output directory")
            work = _partial(o)
            if work.exists() and not work.is_dir():
                raise SearchError(f"{work} exists and is not a directory (the search's work directory)")
            journal = Journal(work / "evaluations.jsonl", also=[o / "evaluations.jsonl"])
        else:
            if o.exists() and not o.is_dir():
                raise SearchError(f"output {o} exists and is not a directory")
            journal = Journal(o / "evaluations.jsonl")
    dev = _device(cfg.device)  # checked (one-line error) before any work
    t0 = time.time()
    ctx = _context(cfg.model, cfg.data, cfg.tile, cfg.pretrain_epochs, cfg.seed)
    cm = ctx["cost"]
    n = len(cm)
    space = Space(n, cm.cfg.cell_bits, cfg.cell_multiples, cfg.pin_first_last)
    ex = executor if executor is not None else make_executor(cfg.workers, cfg.ray_address)
    base = dict(model=cfg.model, data=cfg.data, tile=cfg.tile, pretrain_epochs=cfg.pretrain_epochs, seed=cfg.seed,
                device=None if dev is None else dev.to_dict())
    table: list[dict] = []
    ran = [0]

    def run_jobs(jobs: list[dict]) -> list[dict]:
        """Results of ``jobs`` in order: from the journal, or evaluated (and journalled as each finishes)."""
        res = [journal.get(j) if journal is not None else None for j in jobs]
        todo = [i for i, r in enumerate(res) if r is None]

        def done(k, r):
            if journal is not None:
                journal.add(jobs[todo[k]], r)

        if todo:
            for i, r in zip(todo, ex.map(evaluate_policy, [jobs[i] for i in todo], on_result=done)):
                res[i] = r
            ran[0] += len(todo)
        return res

    try:
        ref = run_jobs([{**base, "policy": [[8, 8]] * n, "epochs": cfg.finetune_epochs}])[0]
        target = budget_floor(ref["acc"], cfg.max_loss if cfg.screen_loss is None else cfg.screen_loss)
        bar = progress_bar(total=cfg.budget, desc=f"search {cfg.agent}", unit="policy", progress=cfg.progress,
                           leave=True)

        def evaluate(pols):
            res = run_jobs([{**base, "policy": [list(x) for x in p], "epochs": cfg.finetune_epochs}
                            for p in pols])
            for r in res:
                r["ratio"] = r[cfg.cost] / ref[cfg.cost]
                r["reward"] = reward(r["acc"], r["ratio"], target)
                r["index"] = len(table)
                table.append(r)
            bar.update(len(res))
            best = max((t for t in table if t["acc"] >= target), key=lambda t: -t["ratio"], default=None)
            if best is not None:
                bar.set_postfix_str(f"best {1 / best['ratio']:.2f}x at {best['acc']:.1f}%")
            return res

        run_agent(cfg.agent, space, evaluate, cfg.budget, cfg.seed, target, cm.layer_table())
        bar.close()
    finally:
        if executor is None:
            ex.close()
    feasible = sorted((t for t in table if t["acc"] >= target), key=lambda t: (t["ratio"], -t["acc"], t["index"]))
    best = feasible[0]["policy"] if feasible else [[8, 8]] * n
    if not finalize:
        return best, table, target
    cands: list = []
    for t in feasible:
        if t["policy"] not in cands:
            cands.append(t["policy"])
    cands = [[tuple(p) for p in c] for c in cands[:cfg.final_candidates]] or [[(8, 8)] * n]
    res = _finish(cfg, ctx, cands, Path(out), table, ref, target, time.time() - t0, dev)
    res.evaluated = ran[0]
    summ = json.loads((Path(out) / "summary.json").read_text())
    summ["evaluated"], summ["wall_seconds"] = ran[0], time.time() - t0
    (Path(out) / "summary.json").write_text(json.dumps(summ, indent=2) + "\n")
    return res


def _partial(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


def _long_finetune(cfg: SearchConfig, ctx, pol, seed: int):
    from . import qat

    xtr, ytr, _, _ = ctx["data"]
    net = qat.build(ctx["spec"], pol, ctx["net"])
    return qat.finetune(net, xtr, ytr, cfg.final_epochs, _finetune_seed(seed, pol))


def _val_acc(net, ctx, dev) -> float:
    from . import qat

    xva, yva = ctx["val"]
    return qat.evaluate_acc(net, xva, yva) if dev is None else golden_accuracy(net, xva, yva, ctx["cost"].cfg, dev)


def _finish(cfg: SearchConfig, ctx, cands, final: Path, table, ref, target, seconds, dev=None) -> SearchResult:
    """The final step. W8A8 and each candidate (cheapest first) get the long fine-tune (seed ``cfg.seed + 1``, the
    same recipe for all); the chosen policy is the cheapest whose validation accuracy is within ``max_loss`` of
    W8A8's (or, if none is, the most accurate candidate). Then W8A8 and the chosen policy get ``final_seeds`` long
    fine-tunes (seeds ``cfg.seed + 1 ...``; the first is the one already made), each exported, compiled and run on
    the golden model over the test split; the accuracies are the means over those seeds, and the exported model,
    bundle and cycles are the first seed's."""
    from cimtile.compiler import compile_model, report, run, save

    from . import qat

    _, _, xte, yte = ctx["data"]
    cm = ctx["cost"]
    n = len(cm)
    # everything is written to DIR.partial (beside the search's journal) and moved to DIR at the end: a failed run
    # leaves no half-written output
    out = _partial(final)
    out.mkdir(parents=True, exist_ok=True)
    w8 = [(8, 8)] * n
    net8 = _long_finetune(cfg, ctx, w8, cfg.seed + 1)
    val8 = _val_acc(net8, ctx, dev)
    checks, best, best_net = [], None, None
    for pol in cands:
        net = _long_finetune(cfg, ctx, pol, cfg.seed + 1) if list(pol) != w8 else net8
        v = _val_acc(net, ctx, dev)
        short = next((t for t in table if t["policy"] == [list(p) for p in pol]), None)
        checks.append({"policy": [list(p) for p in pol], "val_acc": v, "val_acc_w8a8": val8,
                       "search_speedup": None if short is None else 1 / short["ratio"]})
        if v >= budget_floor(val8, cfg.max_loss):
            best, best_net = pol, net
            break
    if best is None:  # no candidate kept the budget after the long fine-tune: the most accurate one
        i = int(np.argmax([c["val_acc"] for c in checks]))
        best = cands[i]
        best_net = _long_finetune(cfg, ctx, best, cfg.seed + 1) if list(best) != w8 else net8
    runs, finals = [], {}
    for k in range(cfg.final_seeds):
        pair = {"w8a8": (w8, net8), "best": (best, best_net)} if k == 0 else {
            "w8a8": (w8, _long_finetune(cfg, ctx, w8, cfg.seed + 1 + k)),
            "best": (best, _long_finetune(cfg, ctx, best, cfg.seed + 1 + k))}
        row = {"seed": cfg.seed + 1 + k}
        for name, (pol, net) in pair.items():
            acc = qat.evaluate_acc(net, xte, yte)
            onnx_path = out / ("model.onnx" if name == "best" else "w8a8.onnx")
            if k > 0:
                onnx_path = out / f"seed{k}_{onnx_path.name}"
            qat.export_qcdq(net, xte, onnx_path)
            b = compile_model(onnx_path, cm.cfg)
            y = run(b, xte, progress=False)
            golden = ideal = float((np.asarray(y).argmax(1) == yte).mean() * 100)
            if dev is not None:
                golden = float((np.asarray(run(b, xte, progress=False, device=dev)).argmax(1) == yte).mean() * 100)
            sfx = "" if name == "best" else "_w8a8"
            row.update({f"golden{sfx}": golden, f"ideal{sfx}": ideal, f"torch{sfx}": acc})
            if k > 0:
                onnx_path.unlink()  # only the first seed's models are kept (the others are measured, not shipped)
                continue
            r = cm.query(pol, qat.int_weights(net))
            if b.report["totals"]["cycles"] != r.totals["cycles"]:  # pragma: no cover - the cost API's contract
                raise AssertionError(f"cost API {r.totals['cycles']} != compiled {b.report['totals']['cycles']} cycles")
            if name == "best":
                save(b, out / "bundle")
                (out / "report.md").write_text(report(b))
            finals[name] = {"bundle_cycles": b.report["totals"]["cycles"], "cycles": {c: r.cost(c) for c in COSTS}}
        runs.append(row)
    mean = lambda key: float(np.mean([r[key] for r in runs]))
    cyc, cyc8 = finals["best"]["cycles"], finals["w8a8"]["cycles"]
    res = SearchResult(asdict(cfg), [list(p) for p in best], mean("torch_w8a8"), mean("torch"), mean("golden"),
                       mean("golden_w8a8"), cyc, cyc8, {k: cyc8[k] / cyc[k] for k in cyc},
                       finals["best"]["bundle_cycles"], len(table), seconds, target, table)
    res.final_runs, res.candidates = runs, checks
    if dev is not None:
        res.device = dev.to_dict()
        res.acc_golden_ideal, res.acc_golden_w8a8_ideal = mean("ideal"), mean("ideal_w8a8")
    (out / "best_policy.json").write_text(json.dumps(res.policy) + "\n")
    with open(out / "evaluations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index"] + [f"w{i}" for i in range(n)] + [f"a{i}" for i in range(n)] +
                   ["acc", "acc_torch", "compute_cycles", "total_cycles", "batch_cycles", "speedup", "reward"])
        for t in table:
            w.writerow([t["index"]] + [p[0] for p in t["policy"]] + [p[1] for p in t["policy"]] +
                       [f"{t['acc']:.2f}", f"{t['acc_torch']:.2f}", t["compute"], t["total"], t["batch"],
                        f"{1 / t['ratio']:.4f}", f"{t['reward']:.3f}"])
    summ = {k: v for k, v in asdict(res).items() if k != "table"}
    summ.update(loss=res.loss, loss_std=res.loss_std, short_finetune_w8a8_acc=ref["acc"], target_acc=target,
                names=cm.names, cost_kinds={"compute": "compute cycles (no weight programming), one image",
                                            "total": "compute + weight programming cycles, one image",
                                            "batch": "compute + weight programming cycles, 1,000 images"})
    (out / "summary.json").write_text(json.dumps(summ, indent=2) + "\n")
    _plots(out, res, table, ref, target, cm.names, cfg)
    if final.exists():
        shutil.rmtree(final)  # a previous search's output (checked at the start; its journal was read)
    out.rename(final)
    return res


def _plots(out: Path, res: SearchResult, table, ref, target, names, cfg) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pol = np.array(res.policy)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(pol) + 2), 3))
    x = np.arange(len(pol))
    ax.bar(x - 0.2, pol[:, 0], 0.4, label="weight bits")
    ax.bar(x + 0.2, pol[:, 1], 0.4, label="activation bits")
    ax.set_xticks(x, [f"L{i}" for i in x])
    ax.set_ylim(0, 8.5)
    ax.set_ylabel("bits")
    ax.set_title(f"{cfg.model} on {cfg.data}, {cfg.tile}: chosen policy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bits.png", dpi=120)
    plt.close(fig)
    sp = np.array([1 / t["ratio"] for t in table])
    acc = np.array([t["acc"] for t in table])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(sp, acc, s=12, alpha=0.6, label="evaluated policies")
    order = np.argsort(-sp)
    front, best_acc = [], -1.0
    for i in order:
        if acc[i] > best_acc:
            front.append(i)
            best_acc = acc[i]
    ax.plot(sp[front], acc[front], "r-o", ms=3, label="Pareto front")
    ax.scatter([1.0], [ref["acc"]], marker="s", c="k", s=25, label="W8A8")
    chosen = [i for i, t in enumerate(table) if t["policy"] == res.policy]
    if chosen:
        ax.scatter(sp[chosen[:1]], acc[chosen[:1]], marker="*", c="gold", edgecolors="k", s=120, label="chosen",
                   zorder=3)
    screen = cfg.max_loss if cfg.screen_loss is None else cfg.screen_loss
    ax.axhline(target, color="k", ls="--", lw=1, label=f"search target (W8A8 - {screen:g})")
    ax.set_xlabel(f"speedup over W8A8 ({cfg.cost} cycles)")
    where = "fake-quantised" if res.device is None else f"golden model, device {res.device.get('name', '?')}"
    ax.set_ylabel(f"val. accuracy, short fine-tune ({where}) (%)", fontsize=8)
    ax.set_title(f"{cfg.agent}: {len(table)} policies")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)
