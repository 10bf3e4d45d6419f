"""The Python API: the same verbs as the command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from cimtile.hw import isa
from cimtile.hw.params import ConfigError, TileConfig, load_config

from .bundle import Bundle, load_bundle, save_bundle
from .codegen import EmitPrograms
from .errors import CompileError
from .frontend import import_model, load_onnx
from .outputs import check_bundle_target
from .passes import pipeline
from .report import build_report, format_report
from .runtime import RunStats, execute

__all__ = ["compile_model", "run", "report", "disasm", "load", "save"]


def _cfg(tile) -> TileConfig:
    try:
        return load_config(tile)
    except ConfigError as e:
        raise CompileError(str(e)) from None


def compile_model(model: str | Path | onnx.ModelProto, tile: str | TileConfig = "isaac",
                  out: str | Path | None = None) -> Bundle:
    """Compile a quantised ONNX model (path or ModelProto) for a tile (preset name, JSON path or TileConfig).

    Everything is checked and built in memory first; the bundle directory ``out`` (if given) is written only
    when compilation succeeded.
    """
    if out is not None:
        check_bundle_target(out)  # before the work: a bad -o fails in a moment, not after compiling
    cfg = _cfg(tile)
    proto = load_onnx(model) if not isinstance(model, onnx.ModelProto) else model
    ir = import_model(proto)
    ir = pipeline(ir, cfg)
    ir, _ = EmitPrograms(cfg).apply(ir)
    rep = build_report(ir, cfg)
    levels = [L.tiling.levels for L in ir.layers]
    levels_fix = [L.tiling.levels_fix for L in ir.layers]
    rq = []
    for L in ir.layers:
        wt, n = L.weights, L.weights.N
        q = L.requant
        rq.append({"bias": wt.rq_bias.astype(np.int64),
                   "mult": (q.mult if q is not None else np.ones(n, np.int64)).astype(np.int64),
                   "shift": (q.shift if q is not None else np.zeros(n, np.int64)).astype(np.int64),
                   "acc_scale": np.asarray(wt.acc_scale, dtype=np.float64),
                   "bias_f": np.asarray(wt.bias_f, dtype=np.float64)})
        if wt.zp_w is not None:  # the weight zero points the host corrects for (asymmetric weights)
            rq[-1]["zp_w"] = np.asarray(wt.zp_w, dtype=np.int64)
        # the codes are folded into the levels, which the bundle keeps apart: do not keep two copies
        L.weight = None
        L.weights = dataclasses.replace(wt, w_int=None, w_fix=None)
        L.tiling = dataclasses.replace(L.tiling, levels=None, levels_fix=None)
    b = Bundle(cfg, ir, levels, rq, rep, levels_fix)
    if out is not None:
        save_bundle(b, out)
    return b


def load(path: str | Path) -> Bundle:
    """Read a bundle directory."""
    return load_bundle(path)


def save(bundle: Bundle, path: str | Path) -> None:
    save_bundle(bundle, path)


def run(bundle: Bundle | str | Path, x: np.ndarray, backend: str = "golden", *, progress: bool | None = None,
        stats: bool = False, device=None):
    """Run a compiled network on ``x`` (the model's first input as ONNX takes it).

    Returns the first output as onnxruntime would (and a :class:`RunStats` with the cycles if ``stats``).
    ``device``: a device model (:class:`cimtile.sim.device.DeviceModel`, a preset name or a JSON file; None:
    an ideal tile). On the RTL backend only its programming effects are allowed (docs/devices.md).
    """
    from cimtile.sim.device import load_device

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    outs, st = execute(b, x, backend, progress, device=load_device(device))
    y = outs[b.model.outputs[0]]
    return (y, st) if stats else y


def report(bundle: Bundle | str | Path, as_json: bool = False, batch: int = 1):
    """The per-layer cycle report for ``batch`` images (dict if ``as_json``, else the formatted table)."""
    from .report import for_batch

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    rep = b.report if batch == b.report.get("images", 1) else for_batch(b.report, batch)
    return rep if as_json else format_report(rep)


def disasm(bundle: Bundle | str | Path) -> str:
    """Readable microcode of every program, with the layer each belongs to."""
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    names = [L.name for L in b.model.layers]
    out = []
    for i, p in enumerate(b.programs):
        owner = "init" if p.layer < 0 else f"layer {names[p.layer]}"
        if p.role == "weights":
            owner += ", weights program (once per batch)"
        elif p.setup is not None:
            owner += f", weights in program {p.setup}"
        out.append(f"; program {i}: {owner}, {len(p.words)} words, {p.cycles} cycles per run")
        out.append(isa.disassemble(p.words, addresses=True).rstrip("\n"))
    return "\n".join(out) + "\n"


__all__ += ["RunStats"]
