"""Compiler passes, one per file; each is a class whose ``apply(model)`` returns ``(model, changed)``."""

from __future__ import annotations

from cimtile.hw.params import TileConfig

from ..ir import Model
from .check_layers import CheckLayers
from .choose_chunks import ChooseChunks
from .fold_clip import FoldClip
from .fold_scales import FoldScales
from .fold_weights import FoldWeights
from .fuse_input_dequant import FuseInputDequant
from .fuse_output_quant import FuseOutputQuant
from .move_dequant_down import MoveDequantDown
from .split_tiles import SplitTiles

__all__ = ["Pass", "run_passes", "pipeline"]


class Pass:
    """A transformation of the IR (QONNX style)."""

    def apply(self, model: Model) -> tuple[Model, bool]:  # pragma: no cover - interface
        raise NotImplementedError


def run_passes(model: Model, passes, *, fixed_point: bool = False) -> Model:
    """Apply ``passes`` in order; with ``fixed_point`` repeat each until it reports no change."""
    for p in passes:
        while True:
            model, changed = p.apply(model)
            if not (fixed_point and changed):
                break
    return model


def pipeline(model: Model, cfg: TileConfig, mapping: str = "exact", adc: dict | None = None) -> Model:
    """The whole middle end: fusion to a fixed point, checks, folding, tiling, scheduling. ``mapping`` and ``adc``:
    :class:`~cimtile.compiler.passes.split_tiles.SplitTiles`."""
    model = run_passes(model, [MoveDequantDown(), FuseInputDequant(), FuseOutputQuant(), FoldClip()], fixed_point=True)
    model = run_passes(model, [CheckLayers(), FoldWeights(), FoldScales(), SplitTiles(cfg, mapping, adc),
                               ChooseChunks(cfg)])
    return model
