"""Fault masking and remapping: a compiled bundle adapted to a tile whose stuck cells are known.

Masking: every program first loads the fault mask into the sparsity bits (``LDM``), so a stuck cell
contributes exactly zero instead of its stuck level (docs/isa.md, Masks). Remapping: the rows of each
row tile are placed on the physical rows (spare rows included) where the weight lost to masked cells is
smallest. Find the stuck cells with :func:`cimtile.sim.device.find_stuck` (program, read back with RDW).
docs/devices.md, "Fault masking", has the measurements.
"""

from __future__ import annotations

import copy

import numpy as np
from cimtile.hw import encoding, isa
from cimtile.hw.isa import Opcode

from .bundle import Bundle
from .errors import CompileError
from .ir import FaultMaskBlock, Program
from .report import build_report

__all__ = ["mask_faults"]


def _abs_column_weights(L, cfg) -> np.ndarray:
    """|weight| of each physical column of one weight group."""
    W = L.need("weights", "mask_faults")
    return np.abs(encoding.column_weights(cfg, W.wbits, W.wsigned)).astype(np.float64)


def _row_map(cost: np.ndarray) -> np.ndarray:
    """Physical row of each logical row (rows of ``cost``, n x R): greedy, the rows with the most weight at
    stake first, each to the free physical row where it loses least (the lowest such row on ties)."""
    n, R = cost.shape
    free = np.ones(R, dtype=bool)
    out = np.empty(n, dtype=np.int64)
    for i in np.argsort(-cost.max(axis=1), kind="stable"):
        c = np.where(free, cost[i], np.inf)
        p = int(np.argmin(c))
        out[i] = p
        free[p] = False
    return out


def mask_faults(bundle: Bundle, fault_map: np.ndarray, remap: bool = False) -> Bundle:
    """A copy of ``bundle`` whose programs mask the cells of ``fault_map`` (rows x cols, True = stuck), with the
    rows of every row tile remapped to avoid them if ``remap``. The report is rebuilt (the LDM words cost
    cycles; a remapped window may span more rows).
    """
    cfg = bundle.cfg
    fm = np.asarray(fault_map)
    if fm.shape != (cfg.rows, cfg.cols) or fm.dtype.kind not in "bui":
        raise CompileError(f"fault map: expected a ({cfg.rows}, {cfg.cols}) boolean array, got shape {fm.shape}")
    fm = fm.astype(bool)
    if remap and cfg.rows_per_conv != cfg.rows:
        raise CompileError(f"tile {cfg.name}: remapping rows needs rows_per_conv == rows (it would change which rows "
                           "share a conversion)")
    model = copy.copy(bundle.model)
    model.programs = [Program(p.layer, list(p.words), list(p.feed), list(p.reads), p.cycles, p.role, p.setup)
                      for p in bundle.programs]
    model.batch_programs = [Program(p.layer, list(p.words), list(p.feed), list(p.reads), p.cycles, p.role, p.setup)
                            for p in bundle.model.batch_programs]
    row_maps: dict = {}
    height: dict[int, int] = {}  # layer -> rows its windows must span
    if remap:
        F = fm.astype(np.float64)
        for li, L in enumerate(model.layers):
            lv = bundle.levels[li].astype(np.float64)
            acw = _abs_column_weights(L, cfg)
            T = L.need("tiling", "mask_faults")
            fixes = set(map(tuple, T.fix_tiles))
            need = 0
            for rt, (r0, r1) in enumerate(T.row_tiles):
                cost = np.zeros((r1 - r0, cfg.rows))
                for ct, (c0, c1) in enumerate(T.col_tiles):
                    blk = lv[r0:r1, c0 * T.group:c1 * T.group] * np.tile(acw, c1 - c0)
                    cost += blk @ F[:, :blk.shape[1]].T  # weight lost if logical row i sits on physical row p
                    if (ct, rt) in fixes:  # the -128 correction tile (2-bit signed: column weights 1, 1)
                        fix = bundle.levels_fix[li][r0:r1, 2 * c0:2 * c1].astype(np.float64)
                        cost += fix @ F[:, :fix.shape[1]].T
                rows = _row_map(cost)
                if not np.array_equal(rows, np.arange(r1 - r0)):
                    row_maps[(li, r0)] = rows
                need = max(need, int(rows.max()) + 1)
            height[li] = need
    mask_word = isa.encode(Opcode.LDM, start=0, count=cfg.cols)
    for p in (*model.programs, *model.batch_programs):
        if p.layer < 0 or p.role == "weights":  # masks persist: the run program that follows loads them
            continue
        words = p.words
        if height.get(p.layer):
            for i, w in enumerate(words):
                d = isa.decode(w)
                if d.op is Opcode.WIN and d.args["row_count"] < height[p.layer]:
                    words[i] = isa.encode(Opcode.WIN, **{**d.args, "row_count": height[p.layer]})
        if len(words) + 1 > cfg.prog_depth:
            raise CompileError(f"program of layer {model.layers[p.layer].name!r}: no room for the fault mask's LDM "
                               f"(prog_depth {cfg.prog_depth})")
        p.words = [mask_word] + words
        p.feed = [FaultMaskBlock(cfg.rows, cfg.cols)] + p.feed
    report = build_report(model, cfg)
    return Bundle(cfg, model, bundle.levels, bundle.rq, report, bundle.levels_fix, fm, row_maps)
