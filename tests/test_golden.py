"""The golden model (sim.tile.Tile) against the independent reference model (tests/reference.py).

Random small configurations and random programs covering every opcode are run on the reference, on
the golden model's vectorised path and on its plain path; every output block, the final state, the
cycles, the instruction count, the error cause and pc must agree exactly. Targeted tests pin the
arithmetic (lossless ADC = plain matmul, clipping, signed inputs, masks, saturation), each error
cause, and the host-side API errors. See docs/testing.md.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from cimtile.hw.isa import Cause, Opcode, decode, encode
from cimtile.hw.params import TileConfig
from cimtile.sim.tile import HANDLERS, FeedError, ProgramError, Tile
from helpers import HALT, assert_same
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference import RefTile, input_values, logical_weights, wrap
from strategies import BITS_1_8, RandomFeed, configs, group_of, programs

#: Multiplies every example count, for a deeper search than CI's (``GOLDEN_SCALE=50 pytest ...``).
SCALE = int(os.environ.get("GOLDEN_SCALE", "1"))


def examples(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None)


FAST = examples(60)


def run_all(cfg: TileConfig, batch: int, program: list[int], seeds: list[int]) -> None:
    """Run ``program`` once per seed (state persists between runs) on the reference and both sim paths."""
    rtile = RefTile(cfg, batch)
    tiles = {v: Tile(cfg, batch, vectorize=v) for v in (True, False)}
    timing = Tile(cfg, batch)  # runs the same programs with timing_only=True (no data at all)
    for run, seed in enumerate(seeds):
        feed = RandomFeed(cfg, batch, seed)
        ref = rtile.run(program, feed)
        for v, tile in tiles.items():
            res = tile.run(program, list(feed.blocks))
            assert_same(res, ref, tile, rtile, f"run {run} vectorize={v}")
        t = timing.run(program, timing_only=True)
        got = (t.cycles, t.instructions, t.halted, t.cause, t.pc)
        want = (ref.cycles, ref.instructions, ref.halted, ref.cause, ref.pc)
        assert got == want, f"run {run} timing_only: {got}, reference {want}"
        assert t.outputs == []


# -- random programs --------------------------------------------------------------------------------


@examples(200)
@given(data=st.data())
def test_random_programs_match_reference(data):
    cfg = data.draw(configs(), "cfg")
    batch = data.draw(st.integers(1, 3), "batch")
    program = data.draw(programs(cfg), "program")
    seeds = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=2), "seeds")
    run_all(cfg, batch, program, seeds)


@examples(100)
@given(data=st.data())
def test_legal_programs_match_reference(data):
    """Programs without deliberate errors: longer runs of real arithmetic, loops and reads."""
    cfg = data.draw(configs(max_dim=16), "cfg")
    batch = data.draw(st.integers(1, 2), "batch")
    program = data.draw(programs(cfg, errors=False, budget=20), "program")
    run_all(cfg, batch, program, [data.draw(st.integers(0, 2**32 - 1), "seed")])


# -- arithmetic ----------------------------------------------------------------------------------


def _setup(cfg, wbits, abits, wsigned, asigned, shift, window, levels, masks, x, accumulate=False):
    """A program that programs the array, loads the inputs and runs one MVM per input vector."""
    n = x.shape[-2]
    r0, nr, c0, nc = window
    prog = [
        encode(Opcode.CFG, wbits=wbits, abits=abits, wsigned=int(wsigned), asigned=int(asigned), adc_shift=shift),
        encode(Opcode.WIN, row_start=r0, row_count=nr, col_start=c0, col_count=nc),
        encode(Opcode.LDW, start=0, count=cfg.cols), encode(Opcode.LDM, start=0, count=cfg.cols),
        encode(Opcode.LDIN, start=0, count=n),
    ]
    feed = [levels, masks, x]
    for i in range(n):
        prog.append(encode(Opcode.MVM, in_addr=i, acc_addr=i, accumulate=int(accumulate)))
    prog += [encode(Opcode.RDACC, start=0, count=n), HALT]
    return prog, feed


@st.composite
def mvm_case(draw, adc_bits=None, max_dim=16):
    cfg = draw(configs(max_dim=max_dim, adc_bits=adc_bits))
    wbits, abits = draw(BITS_1_8), draw(BITS_1_8)
    wsigned = wbits >= 2 and draw(st.booleans())
    asigned = draw(st.booleans())
    g = group_of(cfg, wbits, wsigned)
    if g > cfg.cols:
        wbits, wsigned = 1, False
        g = group_of(cfg, 1, False)
    nc = g * draw(st.integers(1, cfg.cols // g))
    c0 = draw(st.integers(0, cfg.cols - nc))
    nr = draw(st.integers(1, cfg.rows))
    r0 = draw(st.integers(0, cfg.rows - nr))
    batch = draw(st.integers(1, 3))
    n = draw(st.integers(1, cfg.in_depth if cfg.in_depth <= cfg.acc_depth else cfg.acc_depth))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    high = draw(st.booleans())  # near the maxima, where single-ended ADCs clip
    if high:
        levels = rng.integers(cfg.max_level // 2, cfg.max_level + 1, size=(cfg.rows, cfg.cols))
        x = rng.integers(-128 if asigned else 128, 256, size=(batch, n, cfg.rows))
    else:
        levels = rng.integers(0, cfg.max_level + 1, size=(cfg.rows, cfg.cols))
        x = rng.integers(-128, 256, size=(batch, n, cfg.rows))
    masks = (rng.random((cfg.rows, cfg.cols)) < draw(st.sampled_from([0.0, 0.3]))).astype(np.int64)
    return cfg, batch, wbits, abits, wsigned, asigned, (r0, nr, c0, nc), levels, masks, x


@FAST
@given(case=mvm_case(adc_bits=14), data=st.data())
def test_lossless_adc_mvm_equals_matmul(case, data):
    """With an ADC wide enough never to clip and no range shift, the MVM is exactly ``x @ w``."""
    cfg, batch, wbits, abits, wsigned, asigned, window, levels, masks, x = case
    # 14 bits hold any column sum of a <= 16-row group: 16 rows * 15 (dac) * 15 (level) < 2^13.
    assert cfg.rows * 15 * 15 < (1 << 13)
    accumulate = data.draw(st.booleans())
    prog, feed = _setup(cfg, wbits, abits, wsigned, asigned, 0, window, levels, masks, x, accumulate)
    res = Tile(cfg, batch).run(prog, feed).check()
    w = logical_weights(levels, masks.astype(bool), cfg, wbits, wsigned, window)
    r0, nr = window[0], window[1]
    xv = input_values(x, abits, asigned)[..., r0:r0 + nr]
    want = np.vectorize(lambda v: wrap(int(v), cfg.acc_bits))(xv @ w) if w.size else np.zeros((batch, x.shape[1], 0))
    got = res.outputs[0][:, :, : w.shape[1]]
    assert np.array_equal(got, want), f"MVM != x @ w:\n{got}\n{want}"
    # Lanes past n_out are left at their previous value (0 here).
    assert not res.outputs[0][:, :, w.shape[1]:].any()


@FAST
@given(case=mvm_case(max_dim=12), shift=st.integers(0, 6), data=st.data())
def test_mvm_matches_reference_with_clipping(case, shift, data):
    """Narrow ADCs, range shifts, signed inputs and masks: sim and reference agree bit for bit."""
    cfg, batch, wbits, abits, wsigned, asigned, window, levels, masks, x = case
    cfg = cfg.replace(adc_bits=data.draw(st.sampled_from([2, 3, 4, cfg.adc_bits]), "adc_bits"))
    accumulate = data.draw(st.booleans(), "accumulate")
    prog, feed = _setup(cfg, wbits, abits, wsigned, asigned, shift, window, levels, masks, x, accumulate)
    rtile = RefTile(cfg, batch)
    ref = rtile.run(prog, list(feed))
    for v in (True, False):
        tile = Tile(cfg, batch, vectorize=v)
        assert_same(tile.run(prog, feed), ref, tile, rtile, f"vectorize={v}")


def test_clipping_and_sign_slice_are_exercised():
    """A case that provably clips, with a negative sign slice: the result differs from ``x @ w``."""
    cfg = TileConfig(name="clip", rows=8, cols=4, cell_bits=2, dac_bits=1, adc_bits=2, n_adcs=1,
                     rows_per_conv=8, acc_depth=2, in_depth=2)
    levels = np.full((8, 4), 3)
    masks = np.zeros((8, 4), dtype=np.int64)
    x = np.array([[[-1] * 8]])  # signed 4-bit -1: every magnitude bit and the sign bit set
    prog, feed = _setup(cfg, 2, 4, False, True, 0, (0, 8, 0, 4), levels, masks, x)
    res = Tile(cfg).run(prog, feed).check()
    rtile = RefTile(cfg)
    ref = rtile.run(prog, list(feed))
    # Each slice's column sum is 8 * 3 = 24 but the 2-bit ADC reads 3: (1 + 2 + 4 - 8) * 3 = -3,
    # where the lossless x @ w would be -1 * 3 * 8 = -24.
    assert res.outputs[0][0, 0, :].tolist() == ref.outputs[0][0, 0, :].tolist() == [-3] * 4


def test_analog_differential_signed_clip():
    """differential-analog: the pair difference is converted once and clips symmetrically."""
    cfg = TileConfig(name="ana", rows=4, cols=2, cell_bits=2, dac_bits=1, adc_bits=3, n_adcs=1,
                     rows_per_conv=4, weight_encoding="differential-analog", in_depth=1, acc_depth=1)
    for pos, neg in ((3, 0), (0, 3), (1, 1), (1, 0), (0, 1)):
        levels = np.tile([pos, neg], (4, 1))
        x = np.array([[[1, 1, 1, 0]]])  # unsigned 1-bit inputs: the pair difference is 3 * (pos - neg)
        prog, feed = _setup(cfg, 2, 1, True, False, 0, (0, 4, 0, 2), levels, np.zeros((4, 2)), x)
        res = Tile(cfg).run(prog, feed).check()
        # Signed 3-bit codes clip to -4..3; one magnitude slice of weight 1, so acc = code.
        assert res.outputs[0][0, 0, 0] == max(-4, min(3, 3 * (pos - neg))), (pos, neg)


# -- loops and the vectorised path ------------------------------------------------------------


@st.composite
def loop_programs(draw):
    """Convolution-like programs: loops (nested) of MVM/REQ/NOP with strides, independent or not."""
    cfg = draw(configs(max_dim=10)).replace(in_depth=12, acc_depth=12, out_depth=12, loop_depth=3)
    batch = draw(st.integers(1, 3))
    wbits = draw(BITS_1_8)
    wsigned = wbits >= 2 and draw(st.booleans())
    g = group_of(cfg, wbits, wsigned)
    if g > cfg.cols:
        wbits, wsigned, g = 1, False, group_of(cfg, 1, False)
    nc = g * draw(st.integers(1, cfg.cols // g))
    prog = [
        encode(Opcode.CFG, wbits=wbits, abits=draw(BITS_1_8), wsigned=int(wsigned),
               asigned=int(draw(st.booleans())), adc_shift=draw(st.integers(0, 3))),
        encode(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=nc),
        encode(Opcode.LDW, start=0, count=cfg.cols), encode(Opcode.LDIN, start=0, count=12),
        encode(Opcode.LDRQ, start=0, count=cfg.cols),
        encode(Opcode.CFGRQ, zero_point=draw(st.integers(-5, 5)), clamp_lo=-128, clamp_hi=127,
               relu=int(draw(st.booleans()))),
    ]
    body_ops = st.sampled_from([Opcode.MVM, Opcode.MVM, Opcode.REQ, Opcode.NOP])

    def body(depth):
        out = []
        for _ in range(draw(st.integers(1, 3))):
            if depth < 2 and draw(st.integers(0, 3)) == 0:
                inner = body(depth + 1)
                out.append(encode(Opcode.LOOP, count=draw(st.integers(1, 3)), body=len(inner),
                                  stride_in=draw(st.integers(0, 2)), stride_acc=draw(st.integers(0, 2)),
                                  stride_out=draw(st.integers(0, 2))))
                out += inner
                continue
            op = draw(body_ops)
            n = draw(st.sampled_from([1, 1, 2, 3]))  # multi-vector MVM/REQ: overlapping iterations, or not
            if op is Opcode.MVM:
                out.append(encode(op, in_addr=draw(st.integers(0, 2)), acc_addr=draw(st.integers(0, 2)),
                                  accumulate=int(draw(st.booleans())), count=n))
            elif op is Opcode.REQ:
                out.append(encode(op, acc_addr=draw(st.integers(0, 2)), out_addr=draw(st.integers(0, 2)), count=n))
            else:
                out.append(encode(op))
        return out

    inner = body(1)
    prog.append(encode(Opcode.LOOP, count=draw(st.integers(1, 4)), body=len(inner),
                       stride_in=draw(st.integers(0, 2)), stride_acc=draw(st.integers(0, 2)),
                       stride_out=draw(st.integers(0, 2))))
    prog += inner
    prog += [encode(Opcode.RDACC, start=0, count=12), encode(Opcode.RDOUT, start=0, count=12), HALT]
    return cfg, batch, prog, draw(st.integers(0, 2**32 - 1))


@examples(100)
@given(case=loop_programs())
def test_loops_vectorised_plain_and_reference_agree(case):
    cfg, batch, prog, seed = case
    run_all(cfg, batch, prog, [seed])


def test_loop_offsets_and_restore():
    """Strides add per iteration, nest, and are restored when a loop ends (hand-checked addresses)."""
    cfg = TileConfig(name="lp", rows=2, cols=2, cell_bits=1, dac_bits=1, adc_bits=4, n_adcs=1,
                     rows_per_conv=2, in_depth=8, acc_depth=8, out_depth=8)
    prog = [
        encode(Opcode.CFG, wbits=1, abits=8, wsigned=0, asigned=0),
        encode(Opcode.WIN, row_start=0, row_count=2, col_start=0, col_count=1),
        encode(Opcode.LDW, start=0, count=2), encode(Opcode.LDIN, start=0, count=8),
        # outer: 2 iterations, input +4 and acc +2 each; inner: 2 iterations, input +1, acc +1.
        encode(Opcode.LOOP, count=2, body=2, stride_in=4, stride_acc=2),
        encode(Opcode.LOOP, count=2, body=1, stride_in=1, stride_acc=1),
        encode(Opcode.MVM, in_addr=0, acc_addr=0),
        encode(Opcode.MVM, in_addr=7, acc_addr=7),  # offsets back at 0 after the loops
        encode(Opcode.RDACC, start=0, count=8), HALT,
    ]
    x = np.arange(8)[:, None] * np.array([[1, 0]])  # input vector i has value i on row 0
    feed = [np.ones((2, 2)), x]
    for v in (True, False):
        res = Tile(cfg, vectorize=v).run(prog, feed).check()
        assert res.outputs[0][0, :, 0].tolist() == [0, 1, 4, 5, 0, 0, 0, 7]
    ref = RefTile(cfg).run(prog, list(feed))
    assert ref.outputs[0][0, :, 0].tolist() == [0, 1, 4, 5, 0, 0, 0, 7]


# -- masks and the VAU ----------------------------------------------------------------------------


@FAST
@given(cfg=configs(max_dim=12), data=st.data())
def test_masked_cells_never_change_and_levels_saturate(cfg, data):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, cfg.max_level + 1, size=(cfg.rows, cfg.cols))
    masks = (rng.random((cfg.rows, cfg.cols)) < 0.4).astype(np.int64)
    deltas = rng.choice([-128, -1, 0, 1, 2, 127], size=(cfg.delta_depth, cfg.delta_len))
    ops = data.draw(st.lists(st.sampled_from([Opcode.VAUR, Opcode.VAUC, Opcode.WSET]), min_size=1, max_size=8))
    prog = [encode(Opcode.LDW, start=0, count=cfg.cols), encode(Opcode.LDM, start=0, count=cfg.cols),
            encode(Opcode.LDD, start=0, count=cfg.delta_depth)]
    for op in ops:
        if op is Opcode.WSET:
            prog.append(encode(op, row=data.draw(st.integers(0, cfg.rows - 1)),
                               col=data.draw(st.integers(0, cfg.cols - 1)),
                               value=data.draw(st.integers(0, cfg.max_level))))
        else:
            prog.append(encode(op, delta_addr=data.draw(st.integers(0, cfg.delta_depth - 1))))
    prog += [encode(Opcode.RDW, start=0, count=cfg.cols), HALT]
    feed = [levels, masks, deltas]
    tile = Tile(cfg)
    res = tile.run(prog, feed).check()
    after = res.outputs[0]
    m = masks.astype(bool)
    assert np.array_equal(after[m], levels[m]), "a masked cell changed"
    assert after.min() >= 0 and after.max() <= cfg.max_level
    rtile = RefTile(cfg)
    assert_same(res, rtile.run(prog, list(feed)), tile, rtile, "vau")


# -- errors ---------------------------------------------------------------------------------------

TINY = TileConfig(name="t", rows=4, cols=4, cell_bits=2, dac_bits=1, adc_bits=4, n_adcs=2, rows_per_conv=4,
                  in_depth=2, acc_depth=2, out_depth=2, delta_depth=1, loop_depth=2, prog_depth=16)
NOP = encode(Opcode.NOP)
CFG1 = encode(Opcode.CFG, wbits=1, abits=1)  # one column per output: any window is whole groups

ERROR_CASES = {
    "opcode": ([NOP, 22, HALT], Cause.OPCODE, 1),
    "reserved": ([NOP, NOP | (1 << 63), HALT], Cause.RESERVED, 1),
    "addr_mvm_in": ([CFG1, encode(Opcode.MVM, in_addr=2, acc_addr=0), HALT], Cause.ADDR, 1),
    "addr_mvm_acc": ([CFG1, encode(Opcode.MVM, in_addr=0, acc_addr=2), HALT], Cause.ADDR, 1),
    "addr_rdw": ([encode(Opcode.RDW, start=3, count=2), HALT], Cause.ADDR, 0),
    "addr_ldin": ([encode(Opcode.LDIN, start=1, count=2), HALT], Cause.ADDR, 0),
    "addr_req": ([CFG1, encode(Opcode.REQ, acc_addr=0, out_addr=2), HALT], Cause.ADDR, 1),
    "addr_vau": ([encode(Opcode.VAUC, delta_addr=1), HALT], Cause.ADDR, 0),
    "addr_wset": ([encode(Opcode.WSET, row=4, col=0, value=0), HALT], Cause.ADDR, 0),
    "addr_loop_offset": ([encode(Opcode.LOOP, count=3, body=1, stride_acc=1),
                          encode(Opcode.RDACC, start=0, count=1), HALT], Cause.ADDR, 1),
    "window_outside": ([encode(Opcode.WIN, row_start=2, row_count=3, col_start=0, col_count=4), HALT],
                       Cause.WINDOW, 0),
    "window_misaligned": ([encode(Opcode.CFG, wbits=4, abits=1, wsigned=0),
                           encode(Opcode.WIN, row_start=0, row_count=4, col_start=0, col_count=3),
                           encode(Opcode.MVM, in_addr=0, acc_addr=0), HALT], Cause.WINDOW, 2),
    "config_signed_1bit": ([encode(Opcode.CFG, wbits=1, abits=4, wsigned=1), HALT], Cause.CONFIG, 0),
    "config_clamp_order": ([encode(Opcode.CFGRQ, clamp_lo=5, clamp_hi=4), HALT], Cause.CONFIG, 0),
    "config_clamp_range": ([encode(Opcode.CFGRQ, clamp_lo=-129, clamp_hi=4), HALT], Cause.CONFIG, 0),
    "value_wset": ([encode(Opcode.WSET, row=0, col=0, value=4), HALT], Cause.VALUE, 0),
    "value_mset": ([encode(Opcode.MSET, row=0, col=0, value=2), HALT], Cause.VALUE, 0),
    "loop_depth": ([encode(Opcode.LOOP, count=2, body=3), encode(Opcode.LOOP, count=2, body=2),
                    encode(Opcode.LOOP, count=2, body=1), NOP, HALT], Cause.LOOP_DEPTH, 2),
    "loop_nest_program": ([NOP, encode(Opcode.LOOP, count=2, body=3), NOP, HALT], Cause.LOOP_NEST, 1),
    "loop_nest_enclosing": ([encode(Opcode.LOOP, count=2, body=2), encode(Opcode.LOOP, count=2, body=2),
                             NOP, NOP, HALT], Cause.LOOP_NEST, 1),
    "pc_range": ([NOP, encode(Opcode.SYNC, tag=7)], Cause.PC_RANGE, 2),
    "error_in_loop_body": ([encode(Opcode.LOOP, count=2, body=2), NOP, 31, HALT], Cause.OPCODE, 2),
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_error_causes(name):
    program, cause, pc = ERROR_CASES[name]
    rtile = RefTile(TINY)
    ref = rtile.run(program, [])
    assert (ref.cause, ref.pc) == (cause, pc), "reference disagrees with the hand-written expectation"
    for v in (True, False):
        tile = Tile(TINY, vectorize=v)
        res = tile.run(program, [])
        assert_same(res, ref, tile, rtile, name)
        assert not res.halted and res.text  # the failing instruction is disassembled for the host
    t = Tile(TINY).run(program, timing_only=True)
    assert (t.cause, t.pc, t.cycles) == (cause, pc, ref.cycles)


def test_every_cause_is_covered():
    covered = {c for _, c, _ in ERROR_CASES.values()}
    assert covered == set(Cause) - {Cause.NONE}


@examples(100)
@given(word=st.one_of(
    st.integers(22, 31).flatmap(lambda op: st.integers(0, (1 << 59) - 1).map(lambda hi: op | (hi << 5))),
    st.sampled_from(list(Opcode)).flatmap(lambda op: st.integers(5, 63).map(lambda b: op.value | (1 << b))),
))
def test_illegal_words(word):
    """An undefined opcode is OPCODE, a set bit outside the fields is RESERVED; never silently ignored."""
    d = decode(word)
    assume(d.cause is not Cause.NONE)  # a bit inside a field makes a legal word
    ref = RefTile(TINY).run([NOP, word, HALT], [])
    res = Tile(TINY).run([NOP, word, HALT], [])
    assert res.cause == ref.cause == d.cause and res.pc == ref.pc == 1
    assert res.cycles == ref.cycles == 2


# -- the host API ---------------------------------------------------------------------------------


BAD_FEEDS = {
    "ldw_shape": (encode(Opcode.LDW, start=0, count=2), np.zeros((4, 3)), "LDW"),
    "ldw_range": (encode(Opcode.LDW, start=0, count=2), np.full((4, 2), 4), "LDW"),
    "ldm_range": (encode(Opcode.LDM, start=0, count=1), np.full((4, 1), 2), "LDM"),
    "ldin_shape": (encode(Opcode.LDIN, start=0, count=1), np.zeros((1, 5)), "LDIN"),
    "ldin_range_hi": (encode(Opcode.LDIN, start=0, count=1), np.full((1, 4), 256), "LDIN"),
    "ldin_range_lo": (encode(Opcode.LDIN, start=0, count=1), np.full((1, 4), -129), "LDIN"),
    "ldd_range": (encode(Opcode.LDD, start=0, count=1), np.full((1, 4), 128), "LDD"),
    "ldd_shape": (encode(Opcode.LDD, start=0, count=1), np.zeros((2, 4)), "LDD"),
    "ldrq_shape": (encode(Opcode.LDRQ, start=0, count=2), np.zeros((2, 2)), "LDRQ"),
    "ldrq_mult": (encode(Opcode.LDRQ, start=0, count=1), np.array([[0, -1, 0]]), "LDRQ"),
    "ldrq_shift": (encode(Opcode.LDRQ, start=0, count=1), np.array([[0, 1, 64]]), "LDRQ"),
    "missing": (encode(Opcode.LDW, start=0, count=1), None, "LDW"),
}


@pytest.mark.parametrize("name", sorted(BAD_FEEDS))
def test_feed_errors(name):
    word, block, mnemonic = BAD_FEEDS[name]
    feed = [] if block is None else [block]
    with pytest.raises(FeedError) as e:
        Tile(TINY).run([NOP, word, HALT], feed)
    msg = str(e.value)
    assert "\n" not in msg and mnemonic in msg and "pc 1" in msg, msg


def test_ldin_batch_shape_error():
    with pytest.raises(FeedError, match="LDIN"):
        Tile(TINY, batch=2).run([encode(Opcode.LDIN, start=0, count=1), HALT], [np.zeros((3, 1, 4))])


def test_program_longer_than_prog_depth():
    with pytest.raises(ProgramError, match="prog_depth"):
        Tile(TINY).run([NOP] * (TINY.prog_depth + 1))
    assert Tile(TINY).run([NOP] * (TINY.prog_depth - 1) + [HALT]).ok


def test_every_opcode_has_a_handler():
    assert set(HANDLERS) == set(Opcode)
    assert all(callable(h) for h in HANDLERS.values())
