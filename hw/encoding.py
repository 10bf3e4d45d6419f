"""Logical signed/unsigned integer weights <-> cell levels, for every TileConfig encoding; defined once.

Weight slicing and the differential encoding are those of docs/isa.md (Arithmetic): a weight of
``wbits`` bits occupies ``group`` neighbouring columns, slices least significant first; a signed
weight has a positive and a negative column per slice (``s0+ s0- s1+ s1- ...``). Both encodings of
:data:`cimtile.hw.params.ENCODINGS` store the same levels (they differ in how the ADC converts a pair),
so one encoder serves both. Decoding accepts any levels (for example both cells of a pair non-zero
after VAU updates) and masked cells count zero.
"""

from __future__ import annotations

import numpy as np

from cimtile.errors import CimtileError

from . import isa
from .params import TileConfig

__all__ = ["EncodingError", "column_weights", "decode", "encode", "group", "weight_range"]


class EncodingError(CimtileError, ValueError):
    """Weights do not fit the requested weight bits, or levels do not fit the tile."""


def weight_range(wbits: int, wsigned: bool) -> tuple[int, int]:
    """Lowest and highest logical weight: signed +-(2^(wbits-1)-1), unsigned 0..2^wbits-1."""
    if wsigned:
        if wbits < 2:
            raise EncodingError(f"wbits = {wbits}: signed weights need wbits >= 2")
        return -((1 << (wbits - 1)) - 1), (1 << (wbits - 1)) - 1
    return 0, (1 << wbits) - 1


def group(cfg: TileConfig, wbits: int, wsigned: bool) -> int:
    """Physical columns per logical weight (output)."""
    return isa.weight_slices(wbits, wsigned, cfg.cell_bits) * (2 if wsigned else 1)


def column_weights(cfg: TileConfig, wbits: int, wsigned: bool) -> np.ndarray:
    """Signed weight of each physical column of a group: +-2^(slice*cell_bits)."""
    nws = isa.weight_slices(wbits, wsigned, cfg.cell_bits)
    if wsigned:
        return np.array([v for s in range(nws) for v in (1 << (s * cfg.cell_bits), -(1 << (s * cfg.cell_bits)))],
                        dtype=np.int64)
    return np.array([1 << (s * cfg.cell_bits) for s in range(nws)], dtype=np.int64)


def encode(W: np.ndarray, wbits: int, wsigned: bool, cfg: TileConfig, *, balanced: bool = False) -> np.ndarray:
    """Cell levels ``(K, N * group)`` of integer weights ``W`` ``(K, N)``.

    Canonical (default): one cell of a differential pair is 0. ``balanced`` (signed one-slice weights only):
    both cells sit around the middle level, ``L+ = ceil((max_level + w) / 2)``, ``L- = L+ - w``, so a VAU
    ``diff`` delta moves every weight by twice the delta in both directions until a cell saturates (the
    canonical form moves a weight whose other cell is 0 by 1x one way and 2x the other).

    Raises
    ------
    EncodingError
        A weight outside :func:`weight_range`, or ``balanced`` with unsigned or multi-slice weights.
    """
    W = np.asarray(W)
    if W.ndim != 2:
        raise EncodingError(f"weights of shape {W.shape}: expected a 2-D (inputs, outputs) matrix")
    lo, hi = weight_range(wbits, wsigned)
    if W.size and (W.min() < lo or W.max() > hi):
        raise EncodingError(f"weights {int(W.min())}..{int(W.max())} outside {lo}..{hi} for "
                            f"{'signed' if wsigned else 'unsigned'} {wbits}-bit weights")
    W = W.astype(np.int64)
    nws = isa.weight_slices(wbits, wsigned, cfg.cell_bits)
    cb, ml = cfg.cell_bits, cfg.max_level
    K, N = W.shape
    mag = np.abs(W)
    if balanced:
        if not wsigned or nws != 1:
            raise EncodingError(f"balanced encoding needs signed one-slice weights (wbits <= cell_bits + 1 = "
                                f"{cb + 1}), got {'signed' if wsigned else 'unsigned'} {wbits}-bit")
        out = np.empty((K, N, 2), dtype=np.int64)
        out[:, :, 0] = (ml + W + 1) // 2
        out[:, :, 1] = out[:, :, 0] - W
        return out.reshape(K, N * 2)
    if wsigned:
        out = np.zeros((K, N, nws, 2), dtype=np.int64)
        for s in range(nws):
            sl = (mag >> (s * cb)) & ml
            out[:, :, s, 0] = np.where(W > 0, sl, 0)
            out[:, :, s, 1] = np.where(W < 0, sl, 0)
        return out.reshape(K, N * nws * 2)
    out = np.zeros((K, N, nws), dtype=np.int64)
    for s in range(nws):
        out[:, :, s] = (mag >> (s * cb)) & ml
    return out.reshape(K, N * nws)


def decode(levels: np.ndarray, masks: np.ndarray | None, wbits: int, wsigned: bool,
           cfg: TileConfig) -> np.ndarray:
    """Logical weights ``(K, N)`` that cell levels ``(K, N * group)`` stand for (masked cells count 0)."""
    lv = np.asarray(levels, dtype=np.int64)
    g = group(cfg, wbits, wsigned)
    if lv.ndim != 2 or lv.shape[1] % g:
        raise EncodingError(f"levels of shape {lv.shape}: expected (rows, a multiple of {g} columns)")
    if masks is not None:
        lv = np.where(np.asarray(masks, dtype=bool), 0, lv)
    K = lv.shape[0]
    return (lv.reshape(K, -1, g) * column_weights(cfg, wbits, wsigned)).sum(axis=2)


def expand_mask(mask: np.ndarray, wbits: int, wsigned: bool, cfg: TileConfig) -> np.ndarray:
    """Per-cell mask bits ``(K, N * group)`` of a per-weight mask ``(K, N)`` (every cell of a weight)."""
    m = np.asarray(mask, dtype=bool)
    return np.repeat(m, group(cfg, wbits, wsigned), axis=1)
