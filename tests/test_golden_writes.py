"""Writes to the cell array between MVMs, and repeated instruction words, on the golden model's fast paths.

The fast MVM keeps nothing between MVMs that could go stale: it checks every window for the lossless
column bound afresh (``sim.fastmvm._linear``), and the general path compares cached analyses with the
current levels and masks. The Tile remembers decodings, cycle counts and loop independence per
instruction word (and geometry). These tests change cells with every write path (LDW, LDM, VAUR, VAUC,
WSET, MSET) between MVMs of the same words, on a lossless and on a clipping ADC, and run the same loop
words under different windows and layers; every result must equal the reference tile's.
"""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw.isa import Opcode, encode
from cimtile.hw.params import TileConfig
from cimtile.sim import fastmvm
from cimtile.sim.tile import Tile
from helpers import HALT, assert_same
from reference import RefTile

E = encode


def _cfg(adc_bits: int) -> TileConfig:
    return TileConfig(name="w", rows=8, cols=8, cell_bits=2, dac_bits=1, adc_bits=adc_bits, n_adcs=1,
                      rows_per_conv=8, weight_encoding="differential", in_depth=4, acc_depth=16, out_depth=4,
                      delta_depth=2)


def _program(cfg: TileConfig) -> list[int]:
    """Program the array, then alternate MVMs (same word, next accumulator) with one write each."""
    mvm = iter(range(cfg.acc_depth))
    M = lambda: E(Opcode.MVM, in_addr=0, acc_addr=next(mvm), accumulate=0)
    return [
        E(Opcode.CFG, wbits=5, abits=8, wsigned=1, asigned=0, adc_shift=0),
        E(Opcode.WIN, row_start=0, row_count=8, col_start=0, col_count=8),
        E(Opcode.LDW, start=0, count=8), E(Opcode.LDM, start=0, count=8), E(Opcode.LDIN, start=0, count=1),
        E(Opcode.LDD, start=0, count=2),
        M(),
        E(Opcode.WSET, row=0, col=0, value=3), M(),
        E(Opcode.WSET, row=5, col=3, value=0), M(),
        E(Opcode.MSET, row=2, col=2, value=1), M(),
        E(Opcode.VAUR, delta_addr=0), M(),
        E(Opcode.VAUC, delta_addr=1), M(),
        E(Opcode.MSET, row=2, col=2, value=0), M(),
        E(Opcode.WIN, row_start=2, row_count=6, col_start=4, col_count=4), M(),  # a smaller window
        E(Opcode.WIN, row_start=0, row_count=8, col_start=0, col_count=8),
        E(Opcode.LDW, start=4, count=4), M(),
        E(Opcode.LDM, start=0, count=8), M(),
        E(Opcode.RDACC, start=0, count=10), HALT,
    ]


def _feed(cfg: TileConfig, rng, levels_high: bool, dtype) -> list:
    lo = cfg.max_level - 1 if levels_high else 0
    levels = rng.integers(lo, cfg.max_level + 1, (cfg.rows, cfg.cols))
    levels[0, 0], levels[5, 3], levels[2, 2] = 0, 3, 3  # so that WSET and MSET change them
    return [
        levels.astype(dtype),
        np.zeros((cfg.rows, cfg.cols), dtype=dtype),
        rng.integers(150 if levels_high else 0, 256, (2, 1, cfg.rows)).astype(dtype),
        np.array([[1, -1, 2, -2, 1, -1, 2, -2], [-1, 1, 1, -1, 0, 2, -2, 1]]),
        rng.integers(0, cfg.max_level + 1, (cfg.rows, 4)).astype(dtype),
        (rng.random((cfg.rows, cfg.cols)) < 0.3).astype(dtype),
    ]


@pytest.mark.parametrize("adc_bits, high, lossless", [(12, False, True), (4, True, False)])
@pytest.mark.parametrize("dtype", [np.int64, np.uint8])
def test_writes_between_mvms_match_reference(adc_bits, high, lossless, dtype):
    cfg = _cfg(adc_bits)
    prog = _program(cfg)
    rtile = RefTile(cfg, batch=2)
    tiles = [Tile(cfg, batch=2, vectorize=v) for v in (True, False)]
    for seed in range(3):  # state (levels, masks, caches) persists from run to run, as in a network
        feed = _feed(cfg, np.random.default_rng(seed), high, dtype)
        ref = rtile.run(prog, list(feed))
        for t in tiles:
            assert_same(t.run(prog, list(feed)), ref, t, rtile, f"seed {seed}, vectorize={t.vectorize}")
        acc = ref.outputs[0]
        # Every write changed the product: a stale window analysis would repeat the previous row.
        assert all(not np.array_equal(acc[:, i], acc[:, i + 1]) for i in range(9)), acc
        # The first MVM ran on the path the case is meant for (lossless: one GEMM; else corrections).
        t = tiles[0]
        linear = fastmvm._linear(feed[0].astype(np.int64), np.zeros((8, 8), bool), t.layer, t.geometry(), cfg)
        assert (linear is not None) == lossless


def test_same_loop_words_under_other_windows_and_layers():
    """Identical LOOP/MVM words run under different windows and precisions: cycles and results follow
    the geometry in force (remembered cycle counts and loop checks are keyed by it)."""
    cfg = _cfg(6).replace(in_depth=8, acc_depth=8)
    loop = [E(Opcode.LOOP, count=4, body=1, stride_in=1, stride_acc=1, stride_out=0),
            E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=1)]
    prog = [E(Opcode.CFG, wbits=5, abits=8, wsigned=1, asigned=0, adc_shift=0),
            E(Opcode.WIN, row_start=0, row_count=8, col_start=0, col_count=8),
            E(Opcode.LDW, start=0, count=8), E(Opcode.LDIN, start=0, count=8), *loop,
            E(Opcode.WIN, row_start=1, row_count=5, col_start=4, col_count=4), *loop,
            E(Opcode.CFG, wbits=3, abits=4, wsigned=1, asigned=1, adc_shift=1), *loop,
            E(Opcode.CFG, wbits=8, abits=8, wsigned=1, asigned=0, adc_shift=0), *loop,  # 8 columns per output
            E(Opcode.RDACC, start=0, count=8), HALT]
    rng = np.random.default_rng(7)
    rtile, tile = RefTile(cfg, batch=3), Tile(cfg, batch=3)
    for _ in range(2):
        feed = [rng.integers(0, cfg.max_level + 1, (8, 8)), rng.integers(-128, 256, (3, 8, 8))]
        assert_same(tile.run(prog, list(feed)), rtile.run(prog, list(feed)), tile, rtile, "loops")


@pytest.mark.parametrize("stride_acc", [1, 2])  # consecutive lanes (slices, accumulated in place) or not
def test_accumulating_mvms_wrap_like_the_reference(stride_acc):
    """Accumulating MVMs of large products on a 16-bit accumulator wrap, in loops and one at a time."""
    cfg = _cfg(12).replace(acc_bits=16, in_depth=4, acc_depth=8)
    loop = [E(Opcode.LOOP, count=3, body=1, stride_in=1, stride_acc=stride_acc, stride_out=0),
            E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=1)]
    prog = [E(Opcode.CFG, wbits=8, abits=8, wsigned=0, asigned=0, adc_shift=0),
            E(Opcode.WIN, row_start=0, row_count=8, col_start=0, col_count=8),
            E(Opcode.LDW, start=0, count=8), E(Opcode.LDIN, start=0, count=4),
            *loop, *loop, E(Opcode.MVM, in_addr=3, acc_addr=7, accumulate=1),
            E(Opcode.MVM, in_addr=3, acc_addr=7, accumulate=1), E(Opcode.RDACC, start=0, count=8), HALT]
    rng = np.random.default_rng(3)
    rtile = RefTile(cfg, batch=2)
    tiles = [Tile(cfg, batch=2, vectorize=v) for v in (True, False)]
    wrapped = False
    for _ in range(3):
        feed = [rng.integers(2, cfg.max_level + 1, (8, 8)), rng.integers(100, 256, (2, 4, 8))]
        ref = rtile.run(prog, list(feed))
        for t in tiles:
            assert_same(t.run(prog, list(feed)), ref, t, rtile, f"vectorize={t.vectorize}")
        wrapped |= bool((ref.outputs[0] < 0).any())  # unsigned products: negative only by wrapping
    assert wrapped
