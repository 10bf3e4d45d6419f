"""Scoring one candidate: accuracy, latency, energy and area (runs in a worker of the executor).

- **Accuracy**: the candidate network is trained briefly in float (:func:`cimtile.zoo.fit.fit`), given its
  quantised twin at the candidate's per-layer bits (:func:`cimtile.search.qat.build`), optionally pruned, fine-tuned
  with quantisation-aware training (:func:`cimtile.search.qat.finetune`), exported as QCDQ ONNX, compiled for the
  candidate's tile and run on the golden model over the validation split (never trained on). With a device model
  the same bundle is also run with the device (seeded; the same draws for every candidate).
- **Latency**: tile cycles per image of a batch of ``batch`` images from the cost API
  (:class:`cimtile.search.cost.CostModel` with the candidate's own fine-tuned integer weights), checked equal to
  the compiled bundle's report and, for the validation batch, to the golden model's run. When the network's
  crossbar tiles do not fit in ``n_tiles`` tiles the batch runs as the compiled programs run it on one tile (the
  compiler's schedule: weights programmed once per batch for crossbar tiles that stay in the array, reloaded
  every run for the others). When they fit, every crossbar tile has a tile of its own: each is programmed once
  per batch and no run reloads (the reload LDWs' exact cycles are removed from every run but the first).
- **Energy**: :func:`cimtile.sim.energy.energy_pj` of the bundle's operation counts (cited constants); cell
  writes follow the same programming rule, spread over the batch.
- **Area**: analog parts of ``n_tiles`` tiles from cited constants (:func:`cimtile.sim.energy.analog_area_mm2`);
  the synthesised controller's LUTs/FFs/BRAMs are added by :mod:`cimtile.explore.synth` when asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from cimtile.errors import CimtileError

__all__ = ["MAPPINGS", "evaluate"]

#: Compiler ADC mapping modes (:func:`cimtile.compiler.compile_model`): ``calibrated`` (the explorer's default: a
#: smaller ADC clips, and so costs accuracy as in hardware) or ``exact`` (no conversion can clip: a smaller ADC
#: costs rows per crossbar tile, so latency).
MAPPINGS = ("exact", "calibrated")

_DATA: dict = {}


def _data(name: str):
    if name not in _DATA:
        from cimtile.zoo import mnist_nets

        xf, yf, xv, yv, _, _ = mnist_nets.splits(name)
        _DATA[name] = (xf, yf, xv, yv)
    return _DATA[name]


def _compile(path: Path, cfg, mapping: str, x_cal: np.ndarray):
    from cimtile.compiler import compile_model

    if mapping == "exact":
        return compile_model(path, cfg)
    if "mapping" not in inspect.signature(compile_model).parameters:
        raise CimtileError(f"mapping {mapping!r}: this compiler has no ADC mapping modes (only exact)")
    return compile_model(path, cfg, mapping=mapping, calibration=x_cal, progress=False)


def _prune(net, sparsity: float) -> None:
    """Magnitude pruning of every weight layer to ``sparsity`` (torch's pruning hooks: the mask stays applied
    through the fine-tune; :func:`_unprune` makes it permanent)."""
    import torch.nn.utils.prune as prune

    for m in net.layers:
        prune.l1_unstructured(m, "weight", amount=sparsity)


def _unprune(net) -> None:
    import torch.nn.utils.prune as prune

    for m in net.layers:
        if prune.is_pruned(m):
            prune.remove(m, "weight")


#: Version of what :func:`_network` stores: part of every key, so a change to the training or the export misses the
#: entries of an earlier version.
REUSE_VERSION = 1


def _key(d: dict) -> str:
    return hashlib.sha256(json.dumps({"version": REUSE_VERSION, **d}, sort_keys=True).encode()).hexdigest()[:32]


def _network(job: dict, spec: list, pol: list, sparsity: float, tmp: Path) -> tuple[Path, list, float, str | None]:
    """The candidate's quantised network: its QCDQ ONNX file, integer weights (as the tile stores them) and
    fake-quantised accuracy, and what was reused (``network``, ``float`` or None).

    These depend on the network, its per-layer bits, its sparsity and the training settings (data, seed, epochs),
    never on the tile: the strategies of one seed meet the same network many times (every hardware-only candidate
    is the reference network at the reference bits; every precision-only candidate trains the reference network in
    float). With ``job['reuse']`` (a directory: ``cimtile explore`` passes ``OUT/reuse``), the float-trained weights
    (keyed by the data, seed, float epochs and layer list) and the exported network (keyed by those, the QAT
    epochs, the bits and the sparsity) are stored there and loaded when met again: the same arrays and the same
    file a new training would give (training is seeded from these inputs alone; tests/test_explore.py compares a
    reused evaluation with a fresh one). Stored atomically (a directory renamed into place), since two workers may
    train the same network at once; both then store equal entries and one rename wins."""
    import torch
    from cimtile.search import qat
    from cimtile.zoo import mnist_nets
    from cimtile.zoo.fit import fit

    xf, yf, xv, yv = _data(job["data"])
    seed = job["seed"]
    fdesc = {"data": job["data"], "seed": seed, "float_epochs": job["float_epochs"], "spec": spec}
    ndesc = {**fdesc, "qat_epochs": job["qat_epochs"], "policy": [list(p) for p in pol], "sparsity": sparsity}
    root = Path(job["reuse"]) if job.get("reuse") else None
    if root is not None:
        hit = root / f"net-{_key(ndesc)}"
        if (hit / "meta.json").exists():
            meta = json.loads((hit / "meta.json").read_text())
            with np.load(hit / "weights.npz", allow_pickle=False) as z:
                iw = [z[f"w{i}"] for i in range(meta["layers"])]
            return hit / "candidate.onnx", iw, meta["acc_torch"], "network"
    # one float net per network (torch_net seeds its own initial weights), trained with the search's seed
    net = mnist_nets.torch_net(spec)
    reused = None
    ffile = root / f"float-{_key(fdesc)}.npz" if root is not None else None
    if ffile is not None and ffile.exists():
        with np.load(ffile, allow_pickle=False) as z:
            net.load_state_dict({k: torch.from_numpy(z[k].copy()) for k in z.files})
        net.eval()
        reused = "float"
    else:
        fit(net, xf, yf, epochs=job["float_epochs"], lr=2e-3, seed=seed)
        if ffile is not None:
            _store_file(ffile, lambda f: np.savez(f, **{k: v.detach().numpy() for k, v in net.state_dict().items()}))
    q = qat.build(spec, pol, net)
    if sparsity > 0:
        _prune(q, sparsity)
    qat.finetune(q, xf, yf, job["qat_epochs"], seed)
    _unprune(q)
    acc = qat.evaluate_acc(q, xv, yv)
    iw = qat.int_weights(q)
    path = tmp / "candidate.onnx"
    with contextlib.redirect_stdout(io.StringIO()):  # torch's exporter narrates its steps on stdout
        # the TorchScript exporter: about 10x faster than the dynamo exporter on these CNNs, and the same compiled
        # bundle (tests/test_explore.py); the ViT takes it anyway
        qat.export_qcdq(q, xv, path)
    if root is None:
        return path, iw, acc, reused
    part = root / f"tmp-{_key(ndesc)}-{os.getpid()}"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    shutil.copyfile(path, part / "candidate.onnx")
    np.savez(part / "weights.npz", **{f"w{i}": w for i, w in enumerate(iw)})
    (part / "meta.json").write_text(json.dumps({"acc_torch": acc, "layers": len(iw), **ndesc}) + "\n")
    try:
        part.rename(root / f"net-{_key(ndesc)}")
    except OSError:  # another worker stored the same network first
        shutil.rmtree(part, ignore_errors=True)
    return path, iw, acc, reused


def _store_file(path: Path, write) -> None:
    """``write(f)`` into a file of this process, then renamed to ``path`` (atomic: workers may store it at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    with open(tmp, "wb") as f:
        write(f)
    tmp.replace(path)


def resident_batch_cycles(cost, batch: int) -> int:
    """Cycles of a batch of ``batch`` images when every crossbar tile of the network has a tile of its own
    (weight-stationary on ``n_tiles`` tiles): each layer runs the schedule the compiler's runtime picks for the
    batch (:func:`cimtile.compiler.report.batch_terms`), its weights programs once, the weights its runs reload
    (one run's reload LDWs) programmed once as well, and every run without those reloads:
    ``once + reload + runs x (run - reload)`` of that schedule's terms. Derived from the exact cycles of the
    single-tile programs (the compiler does not yet emit multi-tile programs)."""
    from cimtile.compiler.report import batch_terms

    total = cost.init_cycles
    for lc in cost.layers:
        t = batch_terms(lc.__dict__, batch)
        if t["schedule"] == "stationary":
            once, run, reload = lc.batch_prog_once, lc.batch_run_cycles, lc.batch_reload_cycles
        else:
            once, run, reload = lc.prog_once, lc.run_cycles, lc.reload_cycles
        total += once + reload + t["runs"] * (run - reload)
    return total


def evaluate(job: dict) -> dict:
    """Score ``job['candidate']`` (a full candidate dict). ``job`` also carries the settings: ``data``, ``seed``,
    ``float_epochs``, ``qat_epochs``, ``batch``, ``mapping``, ``device`` (a DeviceModel dict or None), ``space``
    (overrides, sparsity flag, base preset), ``table`` (return the cost model's layer table too).

    Returns a record: the candidate, ``status`` (``ok`` or ``infeasible`` with ``reason``: the compiler refused
    the network on that tile), accuracies, cycles, operation counts, energy and area."""
    import torch
    from cimtile.compiler import run
    from cimtile.compiler.report import for_batch
    from cimtile.search.cost import CostModel
    from cimtile.sim.energy import analog_area_mm2, energy_pj, operation_counts
    from cimtile.zoo import mnist_nets

    from .space import Space

    t0 = time.time()
    torch.set_num_threads(1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed": not ours
    sp = Space(**job["space"])
    c = job["candidate"]
    cfg = sp.tile(c)
    xf, yf, xv, yv = _data(job["data"])
    spec = sp.layers(c, xf.shape[-1])
    n = mnist_nets.weight_layers(spec)
    pol = sp.policy(c, n)
    rec = {"key": sp.key(c), "candidate": c, "tile": cfg.name, "layers": n,
           "params": int(sum(m.weight.numel() for m in mnist_nets.torch_net(spec).layers))}  # what the tiles hold
    with tempfile.TemporaryDirectory(prefix="cimtile-explore-") as d:
        path, iw, rec["acc_torch"], rec["reused"] = _network(job, spec, pol, c["sparsity"], Path(d))
        try:
            b = _compile(path, cfg, job["mapping"], xf[:256])
            cm = CostModel(path, cfg, mapping=job["mapping"])
        except CimtileError as e:
            rec.update(status="infeasible", reason=str(e)[:200], seconds=time.time() - t0)
            return rec
    cost = cm.query(pol, iw)
    y, st = run(b, xv, progress=False, stats=True)
    rec["acc_ideal"] = float((np.asarray(y).argmax(1) == yv).mean() * 100)
    rec["acc"] = rec["acc_ideal"]
    if job.get("device") is not None:
        from cimtile.sim.device import DeviceModel

        dev = DeviceModel.from_dict(job["device"])
        rec["acc_device"] = float((np.asarray(run(b, xv, progress=False, device=dev)).argmax(1) == yv).mean() * 100)
        rec["acc"] = rec["acc_device"]
    t = cost.totals
    rep = b.report["totals"]
    if rep["cycles"] != t["cycles"]:  # the cost API's contract with the compiler (tested)
        raise AssertionError(f"cost API {t['cycles']} != compiled bundle {rep['cycles']} cycles")
    # the golden model ran the validation split as one batch: the report for that batch counts the same cycles
    golden = for_batch(b.report, len(xv))["totals"]["cycles"]
    if st.cycles != golden or cost.cost("batch", len(xv)) != golden:  # pragma: no cover - tested
        raise AssertionError(f"golden model {st.cycles} != report {golden} cycles for {len(xv)} images")
    batch = job["batch"]
    fits = t["xbar_tiles"] <= c["n_tiles"]
    # weight-stationary on n_tiles tiles when every crossbar tile has a tile of its own; else one tile at a time, as
    # the compiled programs run a batch (the compiler's schedule)
    per_batch = resident_batch_cycles(cost, batch) if fits else cost.cost("batch", batch)
    if not 0 < per_batch <= cost.cost("batch", batch):  # pragma: no cover - more tiles never cost more cycles
        raise AssertionError(f"{per_batch} cycles per batch on {c['n_tiles']} tiles, "
                             f"{cost.cost('batch', batch)} on one tile")
    latency = per_batch / batch
    counts = operation_counts(b)
    if counts["adc_conversions"] != rep["adc_conversions"]:  # pragma: no cover - energy.py's count drifted
        raise AssertionError("operation_counts disagrees with the report's ADC conversions")
    # cell writes per image of a batch: each cell once per batch when it stays programmed (every layer when the
    # network fits in n_tiles; else the layers the runtime's batch schedule programs once per batch: every layer
    # for more than one image, docs/compiler.md "Batch schedule"), once per run for reloaded layers
    writes = 0
    for lc, lay in zip(cost.layers, counts["layers"]):
        if fits or lc.stationary(batch):
            writes += lay["cells_stored"]
        else:
            writes += lay["cells_stored"] * math.ceil(batch * lc.positions / lc.chunk)
    counts = dict(counts, cell_writes=writes)
    share = 1.0 / batch
    energy = energy_pj(counts, cfg, share)
    area = analog_area_mm2(cfg, c["n_tiles"])
    rec.update(status="ok", cycles=t["cycles"], compute_cycles=t["compute_cycles"], program_cycles=t["program_cycles"],
               init_cycles=cost.init_cycles, bundle_cycles=rep["cycles"], golden_cycles=st.cycles,
               golden_images=len(xv), report_batch_cycles=golden,
               xbar_tiles=t["xbar_tiles"], fits=fits, latency=latency, batch_cycles=per_batch,
               counts={k: v for k, v in counts.items() if k != "layers"},
               energy=energy, energy_pj=energy["total"], area=area, area_mm2=area["total"],
               policy=[list(p) for p in pol], seconds=time.time() - t0)
    if job.get("table"):
        rec["layer_table"] = cm.layer_table()
    return rec
