"""Split each layer into crossbar tiles: weight slicing and the signed (differential) encoding give the cell
levels; rows per tile are chosen so that no ADC conversion can clip (the tile then computes the exact integer
product); columns per tile hold whole weight groups."""

from __future__ import annotations

import numpy as np
from cimtile.hw.encoding import adc_range, encode_weights, group_size, paired
from cimtile.hw.params import TileConfig

from ..errors import node_error
from ..ir import Model, TileLayer, Tiling, Weights


def cell_levels(W: np.ndarray, wbits: int, wsigned: bool, cfg: TileConfig) -> tuple[np.ndarray, int]:
    """Cell levels (K, N * group) of integer weights W (K, N) by :func:`cimtile.hw.encoding.encode_weights`,
    and the group (physical columns per output)."""
    return encode_weights(cfg, W, wbits, wsigned), group_size(cfg, wbits, wsigned)


def _column_limits(cfg: TileConfig, group: int, ncols: int, wsigned: bool) -> np.ndarray:
    """Largest column sum of levels (per physical column) a conversion takes without clipping: the top of the
    ADC range for a column converted alone; for a pair converted once, the positive column may reach the top
    and the negative one the bottom of the signed range."""
    maxv = (1 << cfg.dac_bits) - 1
    lo, hi = adc_range(cfg, wsigned)
    per = np.tile(np.array([hi, -lo]), group // 2) if paired(cfg, wsigned) else np.full(group, hi)
    return np.tile(per, ncols // group) // maxv


def _fits(levels: np.ndarray, h: int, P: int, lim: np.ndarray) -> bool:
    """True if, with tiles of ``h`` rows converted in groups of ``P`` rows, no column sum exceeds ``lim``."""
    K, C = levels.shape
    T = -(-K // h)
    g = min(h, P)
    ng = -(-h // g)
    # zero rows pad every tile to ng whole groups: they add nothing to any sum
    lv = levels
    if T * h != K:
        lv = np.concatenate([lv, np.zeros((T * h - K, C), dtype=lv.dtype)])
    lv = lv.reshape(T, h, C)
    if ng * g != h:
        lv = np.concatenate([lv, np.zeros((T, ng * g - h, C), dtype=lv.dtype)], axis=1)
    sums = lv.reshape(T * ng, g, C).sum(axis=1, dtype=np.int16 if g * 15 < 32767 else np.int32)
    return bool((sums.max(axis=0) <= lim).all())


def row_height(L: TileLayer, cfg: TileConfig, lim: np.ndarray, levels: np.ndarray) -> int:
    """Rows per crossbar tile: as many as fit the array with every conversion provably unclipped (``L`` only
    names the layer in errors)."""
    K = levels.shape[0]
    hmax = min(cfg.rows, K)
    P = cfg.rows_per_conv
    lmin = int(lim.min())
    if min(P, hmax) * cfg.max_level <= lmin:
        return hmax  # no column sum can exceed the ADC range, whatever the weights
    safe = lmin // cfg.max_level
    if safe < 1:
        safe = 0
    # the weights themselves may allow more rows than the worst case: try a few heights, largest first
    step = max(1, (hmax - safe) // 12)
    for h in range(hmax, max(safe, 0), -step):
        if _fits(levels, h, P, lim):
            return h
    for h in range(min(hmax, safe + step - 1), max(safe, 0), -1):
        if _fits(levels, h, P, lim):
            return h
    if safe >= 1:
        return safe
    raise node_error(L.name, L.op, f"layer cannot fit: a single cell ({cfg.max_level} x {(1 << cfg.dac_bits) - 1})"
                     f" exceeds the {cfg.adc_bits}-bit ADC range")


class SplitTiles:
    """Makes each layer's :class:`~cimtile.compiler.ir.Tiling` (needs Weights)."""

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg

    def apply(self, model: Model) -> tuple[Model, bool]:
        for L in model.layers:
            L.tiling = self.split(L, L.need("weights", "SplitTiles"))
        return model, False

    def split(self, L: TileLayer, wt: Weights) -> Tiling:
        cfg = self.cfg
        levels, group = cell_levels(wt.w_int, wt.wbits, wt.wsigned, cfg)
        if group > cfg.cols:
            raise node_error(L.name, L.op, f"layer cannot fit: one {wt.wbits}-bit weight needs {group} columns, "
                             f"the crossbar has {cfg.cols}")
        outs_per_tile = cfg.cols // group
        col_tiles = Tiling.ranges(wt.N, outs_per_tile)
        lim = _column_limits(cfg, group, levels.shape[1], wt.wsigned)
        levels_fix, fix_tiles = None, ()
        if wt.w_fix is not None:
            levels_fix, fgroup = cell_levels(wt.w_fix, 2, True, cfg)
            # the correction's columns must convert without clipping too: check them with the weights
            lim = np.concatenate([lim, _column_limits(cfg, fgroup, levels_fix.shape[1], True)])
            row_tile = row_height(L, cfg, lim, np.concatenate([levels, levels_fix], axis=1))
            row_tiles = Tiling.ranges(wt.K, row_tile)
            fix_tiles = tuple((ct, rt) for ct, (c0, c1) in enumerate(col_tiles)
                              for rt, (r0, r1) in enumerate(row_tiles) if wt.w_fix[r0:r1, c0:c1].any())
        else:
            row_tile = row_height(L, cfg, lim, levels)
            row_tiles = Tiling.ranges(wt.K, row_tile)
        # accumulator range: the exact sum must not wrap
        lo, hi = L.in_spec.lo, L.in_spec.hi
        xmax = max(abs(lo), abs(hi))
        wabs = np.abs(wt.w_int).sum(axis=0, dtype=np.int64)
        if wt.w_fix is not None:
            wabs = wabs + np.abs(wt.w_fix).sum(axis=0, dtype=np.int64)
        bound = int(wabs.max(initial=0)) * xmax
        if bound >= 1 << (cfg.acc_bits - 1):
            raise node_error(L.name, L.op, f"layer cannot fit: sums up to {bound} overflow the {cfg.acc_bits}-bit "
                             "accumulator")
        return Tiling(levels, group, row_tile, outs_per_tile, row_tiles, col_tiles, levels_fix, fix_tiles)
