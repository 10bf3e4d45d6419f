"""Pure NumPy arithmetic of the tile: input and weight slicing, ADC conversion, shift-and-add, requantisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.isa import Geometry
from hw.params import TileConfig

__all__ = ["Layer", "input_values", "input_slices", "mvm", "requantise", "effective_weights"]

F32_EXACT = 1 << 24


@dataclass(frozen=True)
class Layer:
    """The CFG register: the per-layer precision that MVM uses."""

    wbits: int = 8
    abits: int = 8
    wsigned: bool = True
    asigned: bool = False
    adc_shift: int = 0


def input_values(raw: np.ndarray, abits: int, asigned: bool) -> np.ndarray:
    """Integer value of input bytes: the low ``abits`` bits, two's complement when signed."""
    u = raw.astype(np.int64) & ((1 << abits) - 1)
    if asigned:
        u = np.where(u >> (abits - 1), u - (1 << abits), u)
    return u


def input_slices(raw: np.ndarray, abits: int, asigned: bool, dac_bits: int):
    """Slices of input bytes: a list of (slice values, slice weight).

    Signed inputs: slices of the low ``abits-1`` bits, then the sign bit with weight ``-2**(abits-1)``.
    """
    u = raw.astype(np.int64) & ((1 << abits) - 1)
    mag_bits = abits - 1 if asigned else abits
    mag = u & ((1 << mag_bits) - 1)
    out = []
    k = 0
    while k * dac_bits < mag_bits:
        out.append(((mag >> (k * dac_bits)) & ((1 << dac_bits) - 1), 1 << (k * dac_bits)))
        k += 1
    if asigned:
        out.append(((u >> mag_bits) & 1, -(1 << mag_bits)))
    return out


def column_weights(geo: Geometry, cfg: TileConfig, wsigned: bool) -> np.ndarray:
    """Signed weight of each physical column within a group: +-2**(slice*cell_bits)."""
    if wsigned:
        w = []
        for s in range(geo.nws):
            w += [1 << (s * cfg.cell_bits), -(1 << (s * cfg.cell_bits))]
        return np.array(w, dtype=np.int64)
    return np.array([1 << (s * cfg.cell_bits) for s in range(geo.nws)], dtype=np.int64)


def effective_weights(levels: np.ndarray, masks: np.ndarray, geo: Geometry, cfg: TileConfig, wsigned: bool):
    """Integer weight matrix (rows x n_out) the window's cells represent (masked cells count 0)."""
    lv = np.where(masks, 0, levels).astype(np.int64)
    cw = column_weights(geo, cfg, wsigned)
    return (lv.reshape(lv.shape[0], geo.n_out, geo.group) * cw).sum(axis=2)


def _gemm(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """Exact integer product through float BLAS: float32 below 2**24, float64 below 2**53."""
    if bound < F32_EXACT:
        return (a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)
    if bound < (1 << 53):
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    raise OverflowError("integer product exceeds the float64 exact range")


def mvm(raw: np.ndarray, levels: np.ndarray, masks: np.ndarray, layer: Layer, geo: Geometry,
        cfg: TileConfig) -> np.ndarray:
    """Bit-sliced MVM of input bytes ``raw`` (M x window rows) over window cells (rows x cols).

    Returns (M x n_out) int64, before wrapping to the accumulator width.
    """
    M = raw.shape[0]
    lv = np.where(masks, 0, levels).astype(np.int64)
    nr, nc = lv.shape
    sh = layer.adc_shift
    analog = layer.wsigned and cfg.analog_diff
    slices = input_slices(raw, layer.abits, layer.asigned, cfg.dac_bits)
    maxv = (1 << cfg.dac_bits) - 1
    P = cfg.rows_per_conv
    groups = [(q, min(q + P, nr)) for q in range(0, nr, P)]

    # Can any conversion clip?  Bounds per (row group, conversion column) from the programmed levels.
    if analog:
        lo_code, hi_code = -(1 << (cfg.adc_bits - 1)), (1 << (cfg.adc_bits - 1)) - 1
    else:
        lo_code, hi_code = 0, cfg.adc_max
    lossless = sh == 0
    if lossless:
        for a, b in groups:
            colsum = lv[a:b].sum(axis=0) * maxv
            if analog:
                hi_b, lo_b = colsum[0::2].max(initial=0), -colsum[1::2].max(initial=0)
            else:
                hi_b, lo_b = colsum.max(initial=0), 0
            if hi_b > hi_code or lo_b < lo_code:
                lossless = False
                break
    if lossless:
        W = effective_weights(levels, masks, geo, cfg, layer.wsigned)
        x = input_values(raw, layer.abits, layer.asigned)
        bound = (1 << layer.abits) * int(np.abs(W).sum(axis=0).max(initial=0))
        return _gemm(x, W, bound)

    cw = column_weights(geo, cfg, layer.wsigned)
    if analog:
        cw = cw[0::2]  # one conversion per pair, weighted like its positive column
    per_out = cw.shape[0]
    y = np.zeros((M, geo.n_out), dtype=np.int64)
    for v, wk in slices:
        for a, b in groups:
            S = _gemm(v[:, a:b], lv[a:b], (b - a) * maxv * cfg.max_level + 1)
            if analog:
                S = S[:, 0::2] - S[:, 1::2]
            code = np.clip(S >> sh, lo_code, hi_code) << sh
            y += wk * (code.reshape(M, geo.n_out, per_out) * cw).sum(axis=2)
    return y


def wrap(v: np.ndarray, bits: int) -> np.ndarray:
    """Two's complement wrap to ``bits``."""
    m = (v.astype(np.int64) + (1 << (bits - 1))) & ((1 << bits) - 1)
    return m - (1 << (bits - 1))


def requantise(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray, zero_point: int,
               clamp_lo: int, clamp_hi: int, relu: bool) -> np.ndarray:
    """Requantise accumulators (any leading shape, lanes last) to output values (int64, not yet bytes)."""
    p = (acc.astype(np.int64) + bias) * mult
    rnd = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    r = (p + rnd) >> shift
    lo = max(clamp_lo, zero_point) if relu else clamp_lo
    return np.clip(r + zero_point, lo, clamp_hi)
