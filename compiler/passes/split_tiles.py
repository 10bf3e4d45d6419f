"""Split each layer into crossbar tiles: weight slicing and the signed (differential) encoding give the cell
levels; rows per tile are chosen so that no ADC conversion can clip (the tile then computes the exact integer
product; mapping ``exact``) or are the array's rows (mapping ``calibrated``: conversions may clip, the ADC range
shift is chosen from calibration data, :mod:`cimtile.compiler.calibrate`); columns per tile hold whole weight
groups."""

from __future__ import annotations

import dataclasses

import numpy as np
from cimtile.hw.encoding import adc_range, encode_weights, group_size, paired
from cimtile.hw.params import TileConfig

from ..errors import CompileError, node_error
from ..ir import Model, TileLayer, Tiling, Weights

#: Mapping modes (docs/compiler.md): ``exact`` (default) never clips; ``calibrated`` uses the array's rows.
MAPPINGS = ("exact", "calibrated")
#: Keys of a layer's entry in the per-layer ADC choice (``adc={layer name: {...}}``).
ADC_KEYS = ("shift", "rows")


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


def check_adc(adc, names: list[str], cfg: TileConfig) -> dict[str, dict]:
    """A per-layer ADC choice ``{layer name: {"shift": s, "rows": r}}`` checked against the model's tile layers
    (one-line :class:`CompileError` naming the offending entry): ``shift`` the CFG ADC range shift (0..15),
    ``rows`` the rows per crossbar tile (1..rows of the array); either may be left out."""
    if adc is None:
        return {}
    if not isinstance(adc, dict):
        raise CompileError(f"adc: expected a dict of tile layer name -> {{'shift': s, 'rows': r}}, got "
                           f"{type(adc).__name__}")
    out = {}
    for name, d in adc.items():
        if name not in names:
            raise CompileError(f"adc: {name!r} is not a tile layer (tile layers: {', '.join(names)})")
        if not isinstance(d, dict) or set(d) - set(ADC_KEYS):
            raise CompileError(f"adc[{name!r}]: expected a dict with keys among {', '.join(ADC_KEYS)}, got {d!r}")
        for k, hi in (("shift", 15), ("rows", cfg.rows)):
            v = d.get(k)
            if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not
                                  (0 if k == "shift" else 1) <= v <= hi):
                raise CompileError(f"adc[{name!r}][{k!r}] = {v!r}: expected an integer in "
                                   f"{0 if k == 'shift' else 1}..{hi}")
        out[name] = {k: int(d[k]) for k in ADC_KEYS if d.get(k) is not None}
    return out


class SplitTiles:
    """Makes each layer's :class:`~cimtile.compiler.ir.Tiling` (needs Weights).

    ``mapping``: ``exact`` (no conversion can clip) or ``calibrated`` (rows per tile up to the array's rows; the
    ADC shift is set later by calibration, or by ``adc``). ``adc``: per-layer choice, see :func:`check_adc`;
    its ``rows``/``shift`` apply in calibrated mode only."""

    def __init__(self, cfg: TileConfig, mapping: str = "exact", adc: dict | None = None):
        if mapping not in MAPPINGS:
            raise CompileError(f"mapping {mapping!r}: expected one of {', '.join(MAPPINGS)}")
        if adc is not None and mapping != "calibrated":
            raise CompileError("adc: a per-layer ADC choice needs mapping='calibrated' (exact mode never clips)")
        self.cfg, self.mapping, self.adc = cfg, mapping, adc

    def apply(self, model: Model) -> tuple[Model, bool]:
        adc = check_adc(self.adc, [L.name for L in model.layers], self.cfg)
        for L in model.layers:
            L.tiling = self.split(L, L.need("weights", "SplitTiles"), adc.get(L.name, {}))
        return model, False

    def split(self, L: TileLayer, wt: Weights, choice: dict | None = None) -> Tiling:
        t = self._split(L, wt, (choice or {}).get("rows"))
        if self.mapping == "calibrated":
            t = dataclasses.replace(t, mapping="calibrated", adc_shift=(choice or {}).get("shift", 0))
        return t

    def _split(self, L: TileLayer, wt: Weights, rows: int | None) -> Tiling:
        cfg = self.cfg
        calibrated = self.mapping == "calibrated"
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
            row_tile = (min(rows or cfg.rows, wt.K) if calibrated else
                        row_height(L, cfg, lim, np.concatenate([levels, levels_fix], axis=1)))
            row_tiles = Tiling.ranges(wt.K, row_tile)
            fix_tiles = tuple((ct, rt) for ct, (c0, c1) in enumerate(col_tiles)
                              for rt, (r0, r1) in enumerate(row_tiles) if wt.w_fix[r0:r1, c0:c1].any())
        else:
            row_tile = min(rows or cfg.rows, wt.K) if calibrated else row_height(L, cfg, lim, levels)
            row_tiles = Tiling.ranges(wt.K, row_tile)
        col_rows: tuple = ()
        if L.groups > 1:
            row_tile, outs_per_tile, col_tiles, row_tiles, col_rows = self.grouped(L, wt, row_tile, outs_per_tile, lim,
                                                                                   levels, levels_fix)
            if wt.w_fix is not None:
                fix_tiles = tuple((ct, rt) for ct, (c0, c1) in enumerate(col_tiles) for rt in col_rows[ct]
                                  if wt.w_fix[row_tiles[rt][0]:row_tiles[rt][1], c0:c1].any())
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
        return Tiling(levels, group, row_tile, outs_per_tile, row_tiles, col_tiles, levels_fix, fix_tiles, col_rows)

    def grouped(self, L: TileLayer, wt: Weights, row_tile: int, outs_per_tile: int, lim: np.ndarray,
                levels: np.ndarray, levels_fix: np.ndarray | None):
        """Tiles of a block-diagonal (grouped) weight matrix: ``gpt`` whole groups per crossbar tile on the diagonal
        (``gpt * K/G`` rows, ``gpt * N/G`` outputs), so that column tile i uses row tile i only and no tile holds
        only zeros; the largest ``gpt`` the rows, the columns and the ADC bound allow. If even one group's rows
        do not fit a tile, dense tiles of the matrix with the all-zero ones skipped."""
        cfg = self.cfg
        G = L.groups
        kg, ng = wt.K // G, wt.N // G
        lv = levels if levels_fix is None else np.concatenate([levels, levels_fix], axis=1)
        gpt = min(row_tile // kg, outs_per_tile // ng, G)
        while gpt >= 1 and self.mapping == "exact" and not _fits(lv, gpt * kg, cfg.rows_per_conv, lim):
            gpt -= 1
        if gpt >= 1:
            rt_, ot_ = gpt * kg, gpt * ng
            row_tiles, col_tiles = Tiling.ranges(wt.K, rt_), Tiling.ranges(wt.N, ot_)
            return rt_, ot_, col_tiles, row_tiles, tuple((i,) for i in range(len(col_tiles)))
        row_tiles, col_tiles = Tiling.ranges(wt.K, row_tile), Tiling.ranges(wt.N, outs_per_tile)
        col_rows = []
        for c0, c1 in col_tiles:
            r0, r1 = (c0 // ng) * kg, ((c1 - 1) // ng + 1) * kg  # rows of the groups of outputs c0 .. c1-1
            col_rows.append(tuple(i for i, (a, b) in enumerate(row_tiles) if a < r1 and b > r0))
        return row_tile, outs_per_tile, col_tiles, row_tiles, tuple(col_rows)
