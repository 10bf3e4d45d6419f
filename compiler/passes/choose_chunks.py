"""Schedule: how many output positions one run of a layer's programs handles (bounded by the input,
accumulator and output buffers), so that positions run as hardware loops and batches of runs."""

from __future__ import annotations

import numpy as np
from cimtile.hw.params import TileConfig

from ..ir import Model, Schedule, TileLayer


def positions_per_image(L: TileLayer) -> int:
    if L.conv is not None:
        return int(L.out_shape[2] * L.out_shape[3])
    return int(np.prod(L.in_shape[1:-1])) if len(L.in_shape) > 2 else 1


class ChooseChunks:
    """Makes each layer's :class:`~cimtile.compiler.ir.Schedule` (from its graph fields only)."""

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg

    def apply(self, model: Model) -> tuple[Model, bool]:
        c = self.cfg
        for L in model.layers:
            positions = positions_per_image(L)
            depth = min(c.in_depth, c.acc_depth, c.out_depth if L.out_spec is not None else c.acc_depth, 4096)
            L.schedule = Schedule(positions, max(1, min(depth, positions)))
        return model, False
