"""Float scales to the tile's fixed-point requantisation: ``s_in * s_w / s_out ~= mult / 2^shift`` per output
channel, with a 16-bit multiplier and a 6-bit shift; output zero point, clamp and ReLU go to CFGRQ."""

from __future__ import annotations

import numpy as np

from ..errors import node_error
from ..ir import Model

MULT_BITS = 16
MAX_SHIFT = 63


def fixed_point(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multiplier (< 2^16) and shift (0..63) with ``mult / 2^shift`` closest to ``m`` (the multiplier normalised
    to [2^15, 2^16) for the most precision)."""
    m = np.asarray(m, dtype=np.float64)
    mult = np.zeros(m.shape, dtype=np.int64)
    shift = np.zeros(m.shape, dtype=np.int64)
    pos = m > 0
    e = np.floor(np.log2(np.where(pos, m, 1.0))).astype(np.int64)
    sh = np.clip(MULT_BITS - 1 - e, 0, MAX_SHIFT)
    mu = np.round(m * np.exp2(sh)).astype(np.int64)
    over = mu >= 1 << MULT_BITS
    mu = np.where(over & (sh > 0), np.round(m * np.exp2(sh - 1)).astype(np.int64), mu)
    sh = np.where(over & (sh > 0), sh - 1, sh)
    mult[pos], shift[pos] = mu[pos], sh[pos]
    return mult, shift


class FoldScales:
    def apply(self, model: Model) -> tuple[Model, bool]:
        for L in model.layers:
            if L.out_spec is None:
                continue
            m = L.acc_scale / float(L.out_spec.scale)
            mult, shift = fixed_point(m)
            if np.any(mult >= 1 << MULT_BITS):
                raise node_error(L.name, L.op, f"requantisation factor {float(m.max()):.4g} too large for a "
                                 "16-bit multiplier")
            L.rq_mult, L.rq_shift = mult, shift
            L.zp_out = int(L.out_spec.zero_point)
            L.clamp = (int(L.out_spec.lo), int(L.out_spec.hi))
            if not (-128 <= L.zp_out <= 255 and -128 <= L.clamp[0] <= L.clamp[1] <= 255):
                raise node_error(L.name, L.op, "output zero point or range outside -128..255")
        return model, False
