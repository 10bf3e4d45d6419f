"""Calibrated mapping: choose each layer's ADC range shift from calibration inputs (docs/compiler.md).

In calibrated mode a crossbar tile uses up to the array's rows, so a conversion may clip. For each tile layer in
execution order, the calibration set is run through the network as compiled so far (earlier layers with their
chosen shifts, on the golden model); every candidate shift of the layer is run on the layer's inputs and compared
with the exact-mode layer (the same layer compiled so that nothing clips) on the same inputs; the shift with the
smallest mean squared output error wins (the smaller shift on a tie). Candidates: 0 up to the shift at which the
largest possible column sum of one conversion fits the ADC's range. The clipped fraction of the chosen shift's
conversions is counted from the column sums themselves (the tile's conversion rule, docs/isa.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from cimtile.hw import isa
from cimtile.hw.encoding import adc_range, paired
from cimtile.hw.isa import Opcode

from .errors import CompileError
from .hostops import run_host
from .inputs import check_input
from .ir import Model, TileLayer

__all__ = ["calibrate", "candidate_shifts", "clip_fraction", "check_calibration"]


def check_calibration(x, model: Model) -> np.ndarray:
    """Calibration inputs checked as the runtime checks inputs (type, values, shape): one-line errors."""
    if not isinstance(x, np.ndarray):
        raise CompileError(f"calibration: expected a NumPy array of the model's input, got {type(x).__name__}")
    if x.ndim == 0 or x.shape[0] < 1:
        raise CompileError(f"calibration: expected a batch of at least one input, got shape {x.shape}")
    try:
        return check_input(x, model.tensors[model.inputs[0]], model.meta)
    except CompileError as e:
        raise CompileError(f"calibration {e}") from None


def candidate_shifts(cfg, L: TileLayer) -> range:
    """Shifts 0 .. the smallest at which no conversion can clip (the largest column sum of one conversion,
    ``min(rows_per_conv, rows per tile) x (2^dac_bits - 1) x max_level``, fits the ADC range)."""
    wt, tl = L.weights, L.tiling
    top = min(cfg.rows_per_conv, tl.row_tile) * ((1 << cfg.dac_bits) - 1) * cfg.max_level
    hi = adc_range(cfg, wt.wsigned)[1]
    s = 0
    while (top >> s) > hi and s < 15:
        s += 1
    return range(0, s + 1)


def _set_shift(model: Model, li: int, shift: int) -> None:
    """Layer ``li``'s ADC shift: its Tiling and the CFG words of its programs."""
    L = model.layers[li]
    L.tiling = dataclasses.replace(L.tiling, adc_shift=shift)
    for p in [model.programs[i] for i in L.programs] + [model.batch_programs[i] for i in L.batch_programs]:
        for i, w in enumerate(p.words):
            d = isa.decode(w)
            if d.op is Opcode.CFG and d.args["adc_shift"] != shift:
                p.words[i] = isa.encode(Opcode.CFG, **{**d.args, "adc_shift": shift})


def clip_fraction(cfg, L: TileLayer, levels: np.ndarray, levels_fix, A: np.ndarray, shift: int) -> tuple[int, int]:
    """(clipped, total) conversions of layer ``L`` over the input rows ``A`` (positions x K, the codes as the
    tile reads them), by the conversion rule: ``S >> shift`` outside the ADC's code range."""
    from cimtile.sim.kernels import input_slices

    wt, tl = L.weights, L.tiling
    raw = np.asarray(A).astype(np.int64) & 0xFF
    P = cfg.rows_per_conv
    clipped = total = 0
    tiles = [(ct, rt, False) for ct, rt in tl.pairs()] + [(ct, rt, True) for ct, rt in tl.fix_tiles]
    for ct, rt, fix in tiles:
        (c0, c1), (r0, r1) = tl.col_tiles[ct], tl.row_tiles[rt]
        if fix:  # the -128 correction: 2-bit signed weights
            lv, ws = levels_fix[r0:r1, 2 * c0:2 * c1], True
        else:
            lv, ws = levels[r0:r1, c0 * tl.group:c1 * tl.group], wt.wsigned
        lo, hi = adc_range(cfg, ws)
        an = paired(cfg, ws)
        lvf = lv.astype(np.float64)
        for v, _ in input_slices(raw[:, r0:r1], wt.abits, wt.asigned, cfg.dac_bits):
            vf = v.astype(np.float64)
            for a in range(0, r1 - r0, P):
                S = (vf[:, a:a + P] @ lvf[a:a + P]).astype(np.int64)
                if an:
                    S = S[:, 0::2] - S[:, 1::2]
                c = S >> shift
                clipped += int(np.count_nonzero((c > hi) | (c < lo)))
                total += c.size
    return clipped, total


def _layer_inputs(L: TileLayer, x: np.ndarray) -> np.ndarray:
    """The layer's input rows (im2col for a convolution), as run_layer builds them."""
    from .runtime import im2col

    if L.conv is not None:
        A, _ = im2col(x, L.conv, int(L.in_spec.zero_point))
        return A
    return np.asarray(x).reshape(-1, L.weights.K)


def calibrate(bundle, exact, x: np.ndarray, fixed: dict[str, int], progress: bool | None = None) -> list[dict]:
    """Choose the ADC shift of every tile layer of ``bundle`` (calibrated mapping) not given in ``fixed`` (layer
    name -> shift), on calibration inputs ``x``; ``exact`` is the same model compiled in exact mode. Sets the
    shifts in ``bundle`` (Tiling and CFG words) and returns per layer: shift, candidates tried, output MSE and
    relative error against the exact layer, clipped conversions (fraction) on the calibration set."""
    from cimtile.progress import bar as progress_bar

    from .backends import GoldenBackend
    from .runtime import RunStats, _Blocks, run_layer

    model, cfg = bundle.model, bundle.cfg
    x = check_calibration(x, model)
    env = {model.inputs[0]: x}
    be_c, be_x = GoldenBackend(cfg), GoldenBackend(cfg)
    blk_c, blk_x = _Blocks(bundle), _Blocks(exact)
    st = RunStats()
    index = {id(L): i for i, L in enumerate(model.layers)}
    out = []
    bar = progress_bar(total=len(model.layers), desc="cimtile calibrate", unit="layer", progress=progress)
    for s in model.steps:
        if not isinstance(s, TileLayer):
            args = [env[n] if n in env else model.consts[n] for n in s.inputs if n]
            try:
                env[s.outputs[0]] = run_host(s, args)
            except ValueError as e:
                raise CompileError(f"calibration: host step {s.name!r} ({s.op}): {str(e).splitlines()[0]}") from None
            continue
        li = index[id(s)]
        xi = env[s.input]
        y_ex = run_layer(exact, li, exact.model.layers[li], xi, be_x, blk_x, st).astype(np.float64)
        cands = [fixed[s.name]] if s.name in fixed else list(candidate_shifts(cfg, s))
        best = None
        for sh in cands:
            _set_shift(model, li, sh)
            y = run_layer(bundle, li, s, xi, be_c, blk_c, st)
            mse = float(np.mean((y.astype(np.float64) - y_ex) ** 2))
            if best is None or mse < best[1]:
                best = (sh, mse, y)
        sh, mse, y = best
        _set_shift(model, li, sh)
        env[s.output] = y
        A = _layer_inputs(s, xi)
        c, n = clip_fraction(cfg, s, bundle.levels[li], bundle.levels_fix[li], A, sh)
        ref = float(np.mean(y_ex ** 2))
        out.append({"name": s.name, "adc_shift": sh, "candidates": cands, "mse": mse,
                    "rel_err": float(np.sqrt(mse / ref)) if ref > 0 else 0.0,
                    "clipped": c, "conversions": n, "clip_fraction": c / n if n else 0.0,
                    "chosen_by": "given" if s.name in fixed else "calibration"})
        bar.update(1)
    bar.close()
    return out
