"""VAU polarity (pair modes, slice selection) and the one weight encoder: logical weights move as documented."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw import encoding
from cimtile.hw.isa import Opcode, encode, vau_column_sign
from cimtile.hw.params import PRESETS, TileConfig
from cimtile.sim.tile import Tile
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import RefTile

TINY = PRESETS["tiny"]
HALT = encode(Opcode.HALT)


@settings(max_examples=40, deadline=None)
@given(wbits=st.integers(1, 8), wsigned=st.booleans(), seed=st.integers(0, 2**32 - 1),
       enc=st.sampled_from(["differential", "differential-analog"]), cell_bits=st.integers(1, 4))
def test_encode_decode_round_trip(wbits, wsigned, seed, enc, cell_bits):
    if wsigned and wbits < 2:
        with pytest.raises(encoding.EncodingError):
            encoding.weight_range(wbits, wsigned)
        return
    cfg = TINY.replace(weight_encoding=enc, cell_bits=cell_bits)
    lo, hi = encoding.weight_range(wbits, wsigned)
    W = np.random.default_rng(seed).integers(lo, hi + 1, size=(5, 3))
    lv = encoding.encode_weights(cfg, W, wbits, wsigned)
    assert lv.shape == (5, 3 * encoding.group_size(cfg, wbits, wsigned))
    assert lv.min() >= 0 and lv.max() <= cfg.max_level
    assert np.array_equal(encoding.decode_weights(cfg, lv, None, wbits, wsigned), W)
    mask = np.random.default_rng(seed + 1).random(W.shape) < 0.5
    dec = encoding.decode_weights(cfg, lv, encoding.expand_mask(cfg, mask, wbits, wsigned), wbits, wsigned)
    assert np.array_equal(dec, np.where(mask, 0, W))


def test_encode_rejects_out_of_range():
    with pytest.raises(encoding.EncodingError, match="outside -3..3"):
        encoding.encode_weights(TINY, np.array([[4]]), 3, True)


def _run_vau(cfg, W, wbits, op, delta, **fields):
    lv = encoding.encode_weights(cfg, W, wbits, True)
    K, C = lv.shape
    levels = np.zeros((cfg.rows, cfg.cols), dtype=np.int64)
    levels[:K, :C] = lv
    dv = np.zeros((1, cfg.delta_len), dtype=np.int64)
    dv[0, :len(delta)] = delta
    prog = [encode(Opcode.CFG, wbits=wbits, abits=8, wsigned=1, asigned=0, adc_shift=0),
            encode(Opcode.WIN, row_start=0, row_count=K, col_start=0, col_count=C),
            encode(Opcode.LDW, start=0, count=cfg.cols), encode(Opcode.LDM, start=0, count=cfg.cols),
            encode(Opcode.LDD, start=0, count=1),
            encode(op, delta_addr=0, **fields), encode(Opcode.RDW, start=0, count=cfg.cols), HALT]
    feed = [levels, np.zeros_like(levels), dv]
    out = Tile(cfg).run(prog, list(feed)).check().outputs[0]
    ref = RefTile(cfg).run(prog, list(feed)).outputs[0]
    assert np.array_equal(out, ref)
    return encoding.decode_weights(cfg, out[:K, :C], None, wbits, True)


def test_same_mode_leaves_differential_weights_unchanged_diff_mode_moves_them():
    W = np.array([[1, -1, 0, 2], [-2, 0, 1, -1], [0, 0, 0, 0]])
    # pair=0 on a weight with both cells below saturation: both cells move alike, the weight stays.
    assert np.array_equal(_run_vau(TINY, W, 3, Opcode.VAUR, [1, 1, 1], pair=0), W)
    moved = _run_vau(TINY, W, 3, Opcode.VAUR, [1, -1, 1], pair=1)
    # diff: +1 on the positive cell, -1 on the negative one (clipped at 0): a weight moves by 1 or 2.
    lv = encoding.encode_weights(TINY, W, 3, True)
    d = np.array([1, -1, 1])[:, None]
    pos = np.clip(lv[:, 0::2] + d, 0, 3)
    neg = np.clip(lv[:, 1::2] - d, 0, 3)
    assert np.array_equal(moved, pos - neg)
    assert ((moved - W) * np.array([1, -1, 1])[:, None] > 0).all(), "every weight moved the delta's way"


def test_pos_neg_modes_and_slice_selection():
    W = np.array([[5, -5, 0, 9]])
    # pos: only positive cells, +1 each, in slice 1 only (weight +4 when the cell has room).
    out = _run_vau(TINY, W, 5, Opcode.VAUC, [1] * 16, pair=2, only=1, slice=1)
    assert np.array_equal(out, W + 4)
    # neg: -delta on negative cells only: weight -5 (neg cells 1,1) -> neg cells 0,0 -> 0; slice 0 only: -5 -> -4.
    out = _run_vau(TINY, W, 5, Opcode.VAUC, [1] * 16, pair=3, only=1, slice=0)
    assert np.array_equal(out, np.array([[5, -4, 0, 9]]))


@given(pair=st.integers(0, 3), only=st.integers(0, 1), sl=st.integers(0, 7), wsigned=st.booleans(),
       group=st.sampled_from([1, 2, 4, 6, 8, 16]), p=st.integers(0, 63))
def test_column_sign_table(pair, only, sl, wsigned, group, p):
    """The one definition agrees with the documented rule written out independently."""
    if wsigned and group % 2:
        return
    q = p % group
    neg = wsigned and q % 2 == 1
    s = q // 2 if wsigned else q
    want = {0: 1, 1: -1 if neg else 1, 2: 0 if neg else 1, 3: -1 if neg else 0}[pair]
    if only and s != sl:
        want = 0
    assert vau_column_sign(pair, only, sl, wsigned, group, p) == want


def test_vau_cost_is_one_sweep_of_columns():
    cfg = TileConfig(rows=64, cols=64)
    prog = [encode(Opcode.VAUR, delta_addr=0, pair=1), HALT]
    a = Tile(cfg).run(prog, [], timing_only=True).cycles
    prog = [encode(Opcode.VAUR, delta_addr=0, pair=3, only=1, slice=2), HALT]
    # one sweep of the 64 columns, the write-back latency, 4 pulse phases of pulse_cycles, HALT
    assert Tile(cfg).run(prog, [], timing_only=True).cycles == a == 1 + 64 + 2 + 4 * cfg.pulse_cycles + 1
