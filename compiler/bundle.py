"""The program bundle: what ``cimtile compile`` writes and ``cimtile run`` reads.

Directory layout (all written together, or nothing):

- ``tile.json``: the TileConfig;
- ``network.json``: format version, tensors, steps (host steps and tile layers) in execution order, the
  programs (offset and length in the microcode, layer, data-in plan, read plan, cycles of one run);
- ``microcode.npy``: every program's 64-bit words, concatenated (uint64);
- ``weights.npz``: per layer ``L<i>.levels`` (K x N*group cell levels), ``L<i>.bias``, ``.mult``, ``.shift``
  (the LDRQ records) and ``.acc_scale``; ``masks`` (rows x cols: all 0, or the fault mask every program
  loads after fault masking); ``R<i>.<t>``: physical rows of row tile t of layer i, where remapped;
- ``consts.npz``: constants of host steps (reshape targets, residual constants);
- ``report.json`` and ``report.txt``: the per-layer cycle report.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cimtile.hw.params import ConfigError, TileConfig

from .errors import CompileError
from .ir import (
    FaultMaskBlock,
    HostStep,
    Model,
    Program,
    QSpec,
    Requant,
    Schedule,
    Tensor,
    TileLayer,
    Tiling,
    Weights,
    feed_from_json,
    read_from_json,
    ref_to_json,
)
from .outputs import check_bundle_target, new_sibling_dir, replace_dir

__all__ = ["Bundle", "save_bundle", "load_bundle", "FORMAT_VERSION"]

# 3: weights programs (Program.role, .setup), batch terms in the report;
# 2: typed data references (ir.FeedRef, ir.OutputSlice) in the programs; stage records
FORMAT_VERSION = 3

#: Graph fields of a tile layer, and the scalar fields of its stage records (their arrays go to weights.npz).
_LAYER_FIELDS = ("name", "op", "input", "output", "conv", "out_dtype", "relu", "in_shape", "out_shape", "programs")
# fields a bundle of an earlier build may lack, with their defaults
_LAYER_OPTIONAL = {"batch_programs": []}
_WEIGHTS_FIELDS = ("K", "N", "wbits", "wsigned", "wbits_declared", "abits", "asigned")
_TILING_FIELDS = ("group", "row_tile", "outs_per_tile", "fix_tiles", "col_rows", "mapping", "adc_shift")


@dataclass
class Bundle:
    """A compiled network: the IR (steps in order), programs, cell-level images and the report."""

    cfg: TileConfig
    model: Model
    levels: list[np.ndarray]
    rq: list[dict]
    report: dict = field(default_factory=dict)
    levels_fix: list = field(default_factory=list)  # per layer: -128 correction levels, or None
    # fault masking (compiler/faults.py): the mask every program loads (rows x cols bool), or None; and the
    # physical rows of a (layer, first logical row of a row tile), where remapped
    fault_mask: np.ndarray | None = None
    row_maps: dict = field(default_factory=dict)

    def __post_init__(self):
        from cimtile.sim.fastrun import freeze, frozen

        # Cell levels are frozen (read-only over immutable memory, sim.fastrun.freeze): the golden model's fast path
        # then knows, without comparing them, that a layer's cells are those it analysed for the previous image.
        self.levels = [lv if frozen(lv) else freeze(lv) for lv in self.levels]
        self.levels_fix = [lv if lv is None or frozen(lv) else freeze(lv) for lv in self.levels_fix]
        # (the requantisation arrays too: the runtime keeps the LDRQ blocks made from them)
        self.rq = [{k: freeze(v) if isinstance(v, np.ndarray) and not frozen(v) else v for k, v in rq.items()}
                   for rq in self.rq]
        self._feed_cache: dict = {}  # the runtime's input-independent feed blocks (runtime._Blocks)

    def __getstate__(self) -> dict:
        # (not the feed blocks made from the arrays: unpickled arrays are copies, frozen again by __setstate__)
        return {k: v for k, v in self.__dict__.items() if k != "_feed_cache"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def programs(self) -> list[Program]:
        return self.model.programs

    def words(self) -> np.ndarray:
        return np.array([w for p in self.programs for w in p.words], dtype=np.uint64)


def _enc(v):
    if isinstance(v, QSpec):
        return {"__spec__": v.to_json()}
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    return v


def _dec(v):
    if isinstance(v, dict):
        if "__spec__" in v:
            return QSpec.from_json(v["__spec__"])
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


def _tuples(conv):
    return None if conv is None else {k: tuple(v) for k, v in conv.items()}


def to_json(b: Bundle) -> dict:
    m = b.model
    steps = []
    for s in m.steps:
        if isinstance(s, HostStep):
            steps.append({"type": "host", "name": s.name, "op": s.op, "inputs": s.inputs, "outputs": s.outputs,
                          "attrs": _enc(s.attrs)})
        else:
            d = {k: _enc(getattr(s, k)) for k in (*_LAYER_FIELDS, *_LAYER_OPTIONAL)}
            d.update(type="tile", in_spec=s.in_spec.to_json(), out_spec=None if s.out_spec is None else
                     s.out_spec.to_json(),
                     weights={k: _enc(getattr(s.weights, k)) for k in _WEIGHTS_FIELDS},
                     requant=None if s.requant is None else {"zero_point": s.requant.zero_point,
                                                             "clamp": list(s.requant.clamp)},
                     tiling={k: _enc(getattr(s.tiling, k)) for k in _TILING_FIELDS},
                     groups=s.groups,
                     schedule={"positions": s.schedule.positions, "chunk": s.schedule.chunk})
            steps.append(d)
    progs, off = [], 0
    for p in m.programs:
        progs.append({"layer": p.layer, "offset": off, "length": len(p.words), "feed": [ref_to_json(f) for f in p.feed],
                      "reads": [ref_to_json(r) for r in p.reads], "cycles": p.cycles, "role": p.role,
                      "setup": p.setup})
        off += len(p.words)
    # the stationary batch schedule's programs (small: LDW or one crossbar tile's run), words kept inline
    batch = [{"layer": p.layer, "words": [int(w) for w in p.words], "feed": [ref_to_json(f) for f in p.feed],
              "reads": [ref_to_json(r) for r in p.reads], "cycles": p.cycles, "role": p.role, "setup": p.setup}
             for p in m.batch_programs]
    tensors = {n: {"kind": t.kind, "shape": list(t.shape), "dtype": t.dtype,
                   "spec": None if t.spec is None else t.spec.to_json()} for n, t in m.tensors.items()}
    return {"format": "cimtile-bundle", "version": FORMAT_VERSION, "tile": b.cfg.name, "inputs": m.inputs,
            "outputs": m.outputs, "tensors": tensors, "steps": steps, "programs": progs, "batch_programs": batch,
            "meta": _enc(m.meta)}


def save_bundle(b: Bundle, out: str | Path) -> None:
    """Write the bundle to directory ``out`` atomically: into a new sibling directory, then renamed.

    ``out`` may be new, an empty directory or an existing bundle (replaced); anything else is a
    :class:`CompileError` (see :mod:`cimtile.compiler.outputs`).
    """
    out = check_bundle_target(out)
    tmp = new_sibling_dir(out)
    try:
        b.cfg.save(tmp / "tile.json")
        (tmp / "network.json").write_text(json.dumps(to_json(b)) + "\n")
        np.save(tmp / "microcode.npy", b.words())
        arrays = {"masks": np.zeros((b.cfg.rows, b.cfg.cols), dtype=np.uint8) if b.fault_mask is None
                  else b.fault_mask.astype(np.uint8)}
        for (li, rt), rows in b.row_maps.items():
            arrays[f"R{li}.{rt}"] = np.asarray(rows, dtype=np.int64)
        for i, (lv, rq) in enumerate(zip(b.levels, b.rq)):
            arrays[f"L{i}.levels"] = lv
            for k, v in rq.items():
                arrays[f"L{i}.{k}"] = v
            if i < len(b.levels_fix) and b.levels_fix[i] is not None:
                arrays[f"L{i}.fix"] = b.levels_fix[i]
        np.savez(tmp / "weights.npz", **arrays)
        used = {n for s in b.model.steps if isinstance(s, HostStep) for n in s.inputs}
        np.savez(tmp / "consts.npz", **{k: np.asarray(v) for k, v in b.model.consts.items() if k in used})
        (tmp / "report.json").write_text(json.dumps(b.report, indent=1) + "\n")
        from .report import format_report

        (tmp / "report.txt").write_text(format_report(b.report))
        replace_dir(tmp, out)
    except OSError as e:
        raise CompileError(f"output {out}: cannot write: {e.strerror or type(e).__name__}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle directory written by :func:`save_bundle` (one-line :class:`CompileError` if it is not one)."""
    p = Path(path)
    try:
        net = json.loads((p / "network.json").read_text())
        cfg = TileConfig.load(p / "tile.json")
        words = np.load(p / "microcode.npy")
        wz = np.load(p / "weights.npz")
        cz = np.load(p / "consts.npz")
        report = json.loads((p / "report.json").read_text())
    except (OSError, ValueError, ConfigError) as e:
        raise CompileError(f"{path}: not a cimtile bundle ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if net.get("format") != "cimtile-bundle" or net.get("version") != FORMAT_VERSION:
        raise CompileError(f"{path}: not a cimtile bundle of format version {FORMAT_VERSION}")
    tensors = {n: Tensor(n, d["kind"], tuple(d["shape"]), None if d["spec"] is None else QSpec.from_json(d["spec"]),
                         d["dtype"]) for n, d in net["tensors"].items()}
    steps, levels, rq, levels_fix = [], [], [], []
    li = 0
    for d in net["steps"]:
        if d["type"] == "host":
            steps.append(HostStep(d["name"], d["op"], d["inputs"], d["outputs"], _dec(d["attrs"])))
            continue
        kw = {k: d[k] for k in _LAYER_FIELDS}
        kw.update({k: d.get(k, v) for k, v in _LAYER_OPTIONAL.items()})
        kw["groups"] = int(d.get("groups", 1))
        kw["conv"] = _tuples(kw["conv"])
        kw["in_shape"], kw["out_shape"] = tuple(kw["in_shape"]), tuple(kw["out_shape"])
        r = {k: wz[f"L{li}.{k}"] for k in ("bias", "mult", "shift", "acc_scale", "bias_f")}
        w = d["weights"]
        if f"L{li}.zp_w" in wz.files:
            r["zp_w"] = wz[f"L{li}.zp_w"]
        wt = Weights(None, None, **{k: w[k] for k in _WEIGHTS_FIELDS}, rq_bias=r["bias"], acc_scale=r["acc_scale"],
                     bias_f=r["bias_f"], zp_w=r.get("zp_w"))
        q = d["requant"]
        t = d["tiling"]
        tiling = Tiling(None, t["group"], t["row_tile"], t["outs_per_tile"], Tiling.ranges(wt.K, t["row_tile"]),
                        Tiling.ranges(wt.N, t["outs_per_tile"]), None, tuple(tuple(x) for x in t["fix_tiles"]),
                        tuple(tuple(x) for x in t.get("col_rows", ())), t["mapping"], int(t["adc_shift"]))
        L = TileLayer(weight=None, in_spec=QSpec.from_json(d["in_spec"]),
                      out_spec=None if d["out_spec"] is None else QSpec.from_json(d["out_spec"]), weights=wt,
                      requant=None if q is None else Requant(r["mult"], r["shift"], q["zero_point"], tuple(q["clamp"])),
                      tiling=tiling, schedule=Schedule(**d["schedule"]), **kw)
        steps.append(L)
        levels.append(wz[f"L{li}.levels"])
        levels_fix.append(wz[f"L{li}.fix"] if f"L{li}.fix" in wz.files else None)
        rq.append(r)
        li += 1
    programs = []
    for d in net["programs"]:
        w = [int(x) for x in words[d["offset"]:d["offset"] + d["length"]]]
        programs.append(Program(d["layer"], w, [feed_from_json(f) for f in d["feed"]],
                                [read_from_json(r) for r in d["reads"]], d["cycles"], d["role"], d["setup"]))
    batch = [Program(d["layer"], [int(w) for w in d["words"]], [feed_from_json(f) for f in d["feed"]],
                     [read_from_json(r) for r in d["reads"]], d["cycles"], d["role"], d["setup"])
             for d in net.get("batch_programs", [])]
    model = Model(tensors, steps, net["inputs"], net["outputs"], {k: cz[k] for k in cz.files}, programs,
                  net.get("meta", {}), batch)
    fault_mask = None
    if "masks" in wz.files and any(isinstance(f, FaultMaskBlock) for p in programs for f in p.feed):
        fault_mask = wz["masks"].astype(bool)
    row_maps = {tuple(int(x) for x in k[1:].split(".")): wz[k] for k in wz.files if k.startswith("R")}
    return Bundle(cfg, model, levels, rq, report, levels_fix, fault_mask, row_maps)
