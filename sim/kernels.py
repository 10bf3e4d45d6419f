"""The tile's arithmetic, defined plainly in NumPy: input slicing, the bit-sliced MVM (ADC conversion,
shift-and-add), accumulator wrapping and requantisation. The weight layout is :mod:`cimtile.hw.encoding`'s.

These are the definitions. The bit-sliced MVM the golden model runs is :func:`cimtile.sim.fastmvm.mvm`,
which computes the same integers much faster and is tested against :func:`mvm_sliced`
(docs/golden-model.md gives the exactness argument).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cimtile.hw.encoding import adc_range, conversion_weights, paired
from cimtile.hw.isa import Geometry
from cimtile.hw.params import TileConfig

__all__ = ["F32_EXACT", "F64_EXACT", "Layer", "input_slices", "input_values", "mvm_sliced", "requantise",
           "requantise_float", "rq_params", "wrap"]

#: Integers below these are exact in float32 and float64.
F32_EXACT = 1 << 24
F64_EXACT = 1 << 53


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


def input_slices(raw: np.ndarray, abits: int, asigned: bool, dac_bits: int) -> list[tuple[np.ndarray, int]]:
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


def _gemm(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """Exact integer product through float BLAS: float32 below 2**24, float64 below 2**53."""
    if bound < F32_EXACT:
        return (a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)
    if bound < F64_EXACT:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    raise OverflowError(f"GEMM of {a.shape} x {b.shape}: integer sums up to {bound} exceed the float64 exact "
                        f"range (below 2**53 = {F64_EXACT})")


def mvm_sliced(raw: np.ndarray, levels: np.ndarray, masks: np.ndarray, layer: Layer, geo: Geometry,
               cfg: TileConfig) -> np.ndarray:
    """Bit-sliced MVM, the straightforward way: the definition :func:`cimtile.sim.fastmvm.mvm` is tested against.

    One exact GEMM per input slice and row group gives every column sum; each is converted
    (shift, clip, shift back) and added with its input-slice and column weights.
    Returns (M x n_out) int64, before wrapping to the accumulator width.
    """
    M = raw.shape[0]
    lv = np.where(masks, 0, levels).astype(np.int64)
    nr = lv.shape[0]
    sh = layer.adc_shift
    analog = paired(cfg, layer.wsigned)
    lo_code, hi_code = adc_range(cfg, layer.wsigned)
    maxv = (1 << cfg.dac_bits) - 1
    P = cfg.rows_per_conv
    cw = conversion_weights(cfg, layer.wbits, layer.wsigned)  # a pair converted once weighs as its + column
    per_out = cw.shape[0]
    y = np.zeros((M, geo.n_out), dtype=np.int64)
    for v, wk in input_slices(raw, layer.abits, layer.asigned, cfg.dac_bits):
        for a in range(0, nr, P):
            b = min(a + P, nr)
            S = _gemm(v[:, a:b], lv[a:b], (b - a) * maxv * cfg.max_level + 1)
            if analog:
                S = S[:, 0::2] - S[:, 1::2]
            code = np.clip(S >> sh, lo_code, hi_code) << sh
            y += wk * (code.reshape(M, geo.n_out, per_out) * cw).sum(axis=2)
    return y


def wrap(v: np.ndarray, bits: int) -> np.ndarray:
    """Two's complement wrap to ``bits`` (int64; ``v`` itself when it is int64, or int32 as a Tile's accumulators
    may be, and already in range)."""
    v = np.asarray(v)
    half = 1 << (bits - 1)
    # Two read-only passes usually prove that nothing wraps, saving three full int64 passes.
    if v.dtype in (np.int64, np.int32) and (v.size == 0 or (v.min() >= -half and v.max() < half)):
        return v
    m = (v.astype(np.int64) + half) & ((1 << bits) - 1)
    m -= half
    return m


def requantise(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray, zero_point: int,
               clamp_lo: int, clamp_hi: int, relu: bool) -> np.ndarray:
    """Requantise accumulators (any leading shape, lanes last) to output values (int64, not yet bytes)."""
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu" or acc.dtype.itemsize > 4:
        acc = acc.astype(np.int64, copy=False)
    if acc.size:
        # Accumulators of 32 bits or fewer (a Tile's int32 storage) are bounded by their type, which saves two passes
        # over them and their conversion to int64.
        if acc.dtype.itemsize <= 4:
            info = np.iinfo(acc.dtype)
            top = max(-int(info.min), int(info.max))
        else:
            top = max(-int(acc.min()), int(acc.max()))
        P = rq_params(bias, mult, shift, zero_point, clamp_lo, clamp_hi, relu, top)
        if P is not None:
            return requantise_float(acc, P).astype(np.int64) + zero_point
    bias, mult, shift = (np.asarray(v, dtype=np.int64) for v in (bias, mult, shift))
    lo = max(clamp_lo, zero_point) if relu else clamp_lo
    rnd = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    acc = acc.astype(np.int64, copy=False)
    p = (acc + bias) * mult
    r = (p + rnd) >> shift
    return np.clip(r + zero_point, lo, clamp_hi)


def rq_params(bias: np.ndarray, mult: np.ndarray, shift: np.ndarray, zero_point: int, clamp_lo: int, clamp_hi: int,
              relu: bool, top: int) -> tuple | None:
    """The float64 form of :func:`requantise` for accumulators of magnitude at most ``top`` (see
    :func:`requantise_float`), or None when an intermediate could reach ``2**53`` (then only the int64 formula is
    exact).

    Float64 when every intermediate is an integer below 2**53 (always, for accumulators of up to 36 bits): int64
    multiplies and per-lane shifts have no SIMD form here, float64 ones do."""
    bias, mult, shift = (np.asarray(v, dtype=np.int64) for v in (bias, mult, shift))
    if not shift.size:
        return None
    lo = max(clamp_lo, zero_point) if relu else clamp_lo
    rnd = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    bound = (top + int(np.abs(bias).max())) * int(np.abs(mult).max()) + int(rnd.max())
    if bound >= F64_EXACT:
        return None
    return (mult.astype(np.float64), (bias * mult + rnd).astype(np.float64), np.ldexp(1.0, -shift),
            float(lo - zero_point), float(clamp_hi - zero_point))


def requantise_float(acc: np.ndarray, P: tuple) -> np.ndarray:
    """``requantise(...) - zero_point`` as float64 (exact integers), with ``P`` from :func:`rq_params`:
    ``((acc + bias) * mult + rnd) >> shift == floor((acc * mult + (bias * mult + rnd)) * 2**-shift)``, every
    intermediate an integer below 2**53, scaling by a power of two and ``floor`` exact."""
    mult_f, add_f, scale, lo, hi = P
    p = np.multiply(acc, mult_f, dtype=np.float64)
    p += add_f
    p *= scale
    np.floor(p, out=p)
    np.clip(p, lo, hi, out=p)
    return p
