"""The Python API: the same verbs as the command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from cimtile.hw import isa
from cimtile.hw.params import ConfigError, TileConfig, load_config

from .bundle import Bundle, load_bundle, save_bundle
from .calibrate import _set_shift, calibrate
from .codegen import EmitPrograms
from .errors import CompileError
from .frontend import import_model, load_onnx
from .outputs import check_bundle_target
from .passes import pipeline
from .passes.split_tiles import MAPPINGS
from .report import build_report, format_report
from .runtime import RunStats, execute

__all__ = ["compile_model", "run", "report", "disasm", "load", "save"]


def _cfg(tile) -> TileConfig:
    try:
        return load_config(tile)
    except ConfigError as e:
        raise CompileError(str(e)) from None


def compile_model(model: str | Path | onnx.ModelProto, tile: str | TileConfig = "isaac",
                  out: str | Path | None = None, *, mapping: str = "exact", calibration: np.ndarray | None = None,
                  adc: dict | None = None, progress: bool | None = None) -> Bundle:
    """Compile a quantised ONNX model (path or ModelProto) for a tile (preset name, JSON path or TileConfig).

    Everything is checked and built in memory first; the bundle directory ``out`` (if given) is written only
    when compilation succeeded.

    Parameters
    ----------
    mapping : {"exact", "calibrated"}
        ``exact`` (default): rows per crossbar tile such that no ADC conversion can clip (the tile computes the
        exact integer product). ``calibrated``: up to the array's rows per crossbar tile, each layer's ADC range
        shift chosen from ``calibration`` (docs/compiler.md, Calibrated mapping).
    calibration : ndarray, optional
        Calibration inputs (a batch of the model's first input, as :func:`run` takes it); needed in calibrated
        mode unless ``adc`` gives every layer's shift.
    adc : dict, optional
        Per-layer ADC choice in calibrated mode, ``{layer name: {"shift": s, "rows": r}}``: a given ``shift``
        (0..15) is used as it is, a given ``rows`` (rows per crossbar tile, 1..rows) replaces the array's rows.
    progress : bool, optional
        A progress bar for the calibration (default: on a terminal).
    """
    if out is not None:
        check_bundle_target(out)  # before the work: a bad -o fails in a moment, not after compiling
    cfg = _cfg(tile)
    if mapping not in MAPPINGS:
        raise CompileError(f"mapping {mapping!r}: expected one of {', '.join(MAPPINGS)}")
    if mapping == "exact" and calibration is not None:
        raise CompileError("calibration inputs are for mapping='calibrated' (exact mode never clips)")
    proto = load_onnx(model) if not isinstance(model, onnx.ModelProto) else model
    b = _build(proto, cfg, mapping, adc)
    if mapping == "calibrated":
        fixed = {n: d["shift"] for n, d in (adc or {}).items() if "shift" in d}
        missing = [L.name for L in b.model.layers if L.name not in fixed]
        if missing and calibration is None:
            raise CompileError(f"mapping='calibrated' needs calibration inputs (--calibrate X.npy) or a shift for "
                               f"every tile layer in adc (none for {missing[0]!r})")
        if missing:
            exact = _build(proto, cfg, "exact", None)
            stats = calibrate(b, exact, calibration, fixed, progress)
        else:
            stats = [{"name": n, "adc_shift": fixed[n], "chosen_by": "given"} for n in (L.name for L in b.model.layers)]
            for i, L in enumerate(b.model.layers):
                _set_shift(b.model, i, fixed[L.name])
        b.report = build_report(b.model, cfg)
        b.report["calibration"] = {"images": None if calibration is None else int(np.asarray(calibration).shape[0])}
        for row, st in zip(b.report["layers"], stats):
            row.update({k: v for k, v in st.items() if k != "name"})
        b.model.meta["mapping"] = "calibrated"
    if out is not None:
        save_bundle(b, out)
    return b


def _build(proto: onnx.ModelProto, cfg: TileConfig, mapping: str, adc: dict | None) -> Bundle:
    ir = import_model(proto)
    ir = pipeline(ir, cfg, mapping, adc)
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
    return Bundle(cfg, ir, levels, rq, rep, levels_fix)


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
    for i, p in enumerate(b.model.batch_programs):  # the stationary batch schedule (docs/compiler.md)
        owner = f"layer {names[p.layer]}, " + ("weights program (once per batch)" if p.role == "weights" else
                                               f"crossbar tile run, weights in batch program {p.setup}")
        out.append(f"; batch program {i} (batches of more than one image): {owner}, {len(p.words)} words, "
                   f"{p.cycles} cycles per run")
        out.append(isa.disassemble(p.words, addresses=True).rstrip("\n"))
    return "\n".join(out) + "\n"


__all__ += ["RunStats"]
