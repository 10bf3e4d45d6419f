"""Float scales to the tile's fixed-point requantisation: ``s_in * s_w / s_out ~= mult / 2^shift`` per output
channel, with the multiplier and shift of the lane record (cimtile.hw.isa.RQ_RECORD); output zero point, clamp and ReLU
go to CFGRQ."""

from __future__ import annotations

import numpy as np
from cimtile.hw.isa import RQ_RECORD, RQ_VALUE_RANGE, field_range

from ..errors import node_error
from ..ir import Model, Requant

#: The lane record's multiplier width and largest shift (LDRQ's record, cimtile.hw.isa.RQ_RECORD).
MULT_BITS = RQ_RECORD["mult"].width
MAX_SHIFT = field_range(RQ_RECORD, "shift")[1]


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
    """Makes the :class:`~cimtile.compiler.ir.Requant` of each layer with an output quantizer (needs Weights)."""

    def apply(self, model: Model) -> tuple[Model, bool]:
        for L in model.layers:
            if L.out_spec is None:
                continue
            wt = L.need("weights", "FoldScales")
            m = wt.acc_scale / float(L.out_spec.scale)
            mult, shift = fixed_point(m)
            if np.any(mult >= 1 << MULT_BITS):
                raise node_error(L.name, L.op, f"requantisation factor {float(m.max()):.4g} too large for a "
                                 f"{MULT_BITS}-bit multiplier")
            zp, clamp = int(L.out_spec.zero_point), (int(L.out_spec.lo), int(L.out_spec.hi))
            vlo, vhi = RQ_VALUE_RANGE
            if not (vlo <= zp <= vhi and vlo <= clamp[0] <= clamp[1] <= vhi):
                raise node_error(L.name, L.op, f"output zero point {zp} and range {clamp[0]}..{clamp[1]}: "
                                 f"the tile's requantisation needs both inside {vlo}..{vhi}")
            L.requant = Requant(mult, shift, zp, clamp)
        return model, False
