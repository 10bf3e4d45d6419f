"""The golden model's speed-ups of issue 15 keep every result: frozen feed blocks (their checks and the kept analysis
reused without comparing cells), programs remembered by Tile.load, REQ from int32 accumulators, the device model's
batched programming and its weights kept under frozen blocks, and the runtime's byte im2col and max pool."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from cimtile.compiler import hostops
from cimtile.compiler.runtime import _im2col_bytes, im2col
from cimtile.hw import isa
from cimtile.hw.isa import Opcode
from cimtile.hw.params import PRESETS
from cimtile.sim import fastrun, kernels
from cimtile.sim.device import DeviceModel
from cimtile.sim.tile import FeedError, ProgramError, Tile
from test_fastrun import _same, layer_program

E = isa.encode
LOADS = (Opcode.LDW, Opcode.LDIN, Opcode.LDRQ)


def _ops(words):
    return [d.op for d in map(isa.decode, words) if d.op in LOADS]


def _frozen_feed(words, feed, change=None):
    """``feed`` with its LDW and LDRQ blocks frozen (LDW blocks passed through ``change`` first)."""
    out = []
    for op, b in zip(_ops(words), feed):
        if op is Opcode.LDW:
            b = np.array(b) if change is None else change(np.array(b))
        out.append(b if op is Opcode.LDIN else fastrun.freeze(b))
    return out


def test_freeze_cannot_be_undone():
    a = fastrun.freeze(np.arange(12, dtype=np.uint8).reshape(3, 4))
    v = a[1:, 2:]
    assert fastrun.frozen(a) and fastrun.frozen(v)
    for x in (a, v):
        with pytest.raises(ValueError):
            x.flags.writeable = True
        with pytest.raises(ValueError):
            x[0, 0] = 1
    ro = np.zeros((2, 2))
    ro.flags.writeable = False  # read-only, but its owner may make it writeable again: not frozen
    assert not fastrun.frozen(ro) and not fastrun.frozen(np.zeros(3)) and not fastrun.frozen([1, 2])


@pytest.mark.parametrize("cfg", [PRESETS["tiny"], PRESETS["isaac"]], ids=lambda c: c.name)
def test_frozen_blocks_equal_the_instruction_path_and_never_go_stale(cfg):
    """Frozen LDW and LDRQ blocks run three times (checks and analysis remembered), then other frozen blocks with other
    levels at the same loads, then new frozen blocks after the first are gone (their ids may be reused): every result,
    cycle count and state equals the instruction path's."""
    rng = np.random.default_rng(7)
    for case in range(8):
        batch = int(rng.integers(1, 3))
        words, feed, _ = layer_program(cfg, rng, batch=batch)
        fast, ref = Tile(cfg, batch), Tile(cfg, batch, fast=False)
        fz = _frozen_feed(words, feed)
        assert all(fastrun.frozen(b) for op, b in zip(_ops(words), fz) if op is not Opcode.LDIN)

        def bump(b):
            b[rng.random(b.shape) < 0.1] = cfg.max_level
            return b

        for run, blocks in enumerate([fz, fz, fz, _frozen_feed(words, feed, bump)]):
            _same(fast, ref, fast.run(words, list(blocks)), ref.run(words, list(blocks)), f"case {case} run {run}")
        del fz, blocks
        gc.collect()
        fz = _frozen_feed(words, feed, bump)
        _same(fast, ref, fast.run(words, list(fz)), ref.run(words, list(fz)), f"case {case} after gc")
        assert fastrun.cached_plan(fast) is not None


def test_frozen_blocks_with_bad_values_are_rejected_as_before():
    """A frozen LDW block with a level above max_level is rejected by the instruction path's error, also after a
    good block ran at the same load."""
    cfg = PRESETS["tiny"]
    rng = np.random.default_rng(8)
    words, feed, _ = layer_program(cfg, rng, batch=1)
    good = _frozen_feed(words, feed)
    fast, ref = Tile(cfg, 1), Tile(cfg, 1, fast=False)
    for t in (fast, ref):
        t.run(words, list(good)).check()
    bad = _frozen_feed(words, feed, lambda b: np.full_like(b, cfg.max_level + 1))
    errors = []
    for t in (fast, ref):
        with pytest.raises(FeedError) as e:
            t.run(words, list(bad))
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "cell levels outside" in errors[0]
    for k, v in ref.state().items():
        assert np.array_equal(fast.state()[k], v), k


def test_load_remembers_only_plain_int_programs():
    cfg = PRESETS["tiny"]
    words = [E(Opcode.NOP), E(Opcode.HALT)]
    t = Tile(cfg)
    assert t.run(words).ok and t.run(tuple(words)).ok
    assert t.run(np.array(words, dtype=np.uint64)).ok  # (numpy words: checked again each time)
    with pytest.raises(ProgramError):
        t.run([True, words[1]])  # the same value as 1, still rejected after ints were remembered
    three = [E(Opcode.NOP), E(Opcode.NOP), E(Opcode.HALT)]
    assert t.run(three).ok
    with pytest.raises(ProgramError):
        Tile(cfg.replace(prog_depth=2)).run(three)  # remembered per prog_depth


def test_requantise_of_int32_accumulators_equals_int64():
    rng = np.random.default_rng(9)
    for _ in range(30):
        acc = rng.integers(-(1 << 31), 1 << 31, (5, 7), dtype=np.int64)
        if rng.random() < 0.5:
            acc //= 1 << int(rng.integers(0, 28))
        n = acc.shape[1]
        bias = rng.integers(-(1 << 31), 1 << 31, n)
        mult = rng.integers(0, 1 << 16, n)
        shift = rng.integers(0, 64 if rng.random() < 0.3 else 40, n)
        args = (int(rng.integers(-128, 128)), -128, 255, bool(rng.integers(0, 2)))
        want = kernels.requantise(acc, bias, mult, shift, *args)
        got = kernels.requantise(acc.astype(np.int32), bias, mult, shift, *args)
        assert got.dtype == want.dtype == np.int64 and np.array_equal(got, want)
        # the Python-integer definition
        lo = max(args[1], args[0]) if args[3] else args[1]
        ref = [[min(max((((int(a) + int(b)) * int(m) + ((1 << int(s) - 1) if s else 0)) >> int(s)) + args[0], lo),
                        args[2]) for a, b, m, s in zip(row, bias, mult, shift)] for row in acc]
        assert np.array_equal(got, np.array(ref))


@pytest.mark.parametrize("conv", [
    dict(kernel=(3, 3), strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1)),
    dict(kernel=(7, 7), strides=(2, 2), dilations=(1, 1), pads=(3, 3, 3, 3)),
    dict(kernel=(2, 3), strides=(2, 1), dilations=(2, 1), pads=(0, 1, 2, 1)),
    dict(kernel=(1, 1), strides=(2, 2), dilations=(1, 1), pads=(0, 0, 0, 0))])
@pytest.mark.parametrize("channels", [3, 20])
def test_byte_im2col_equals_im2col(conv, channels):
    rng = np.random.default_rng(10)
    for x, zp in ((rng.integers(-128, 128, (2, channels, 9, 11)), -3),
                  (rng.integers(0, 256, (1, channels, 8, 8)).astype(np.uint8), 200),
                  (rng.integers(-128, 128, (1, channels, 7, 6)).astype(np.float64), 5)):
        A, shape = im2col(x, conv, zp)
        P = 7
        Ap, shape2 = _im2col_bytes(x, conv, zp, P)
        want = np.full((-(-A.shape[0] // P) * P, A.shape[1]), zp & 0xFF, dtype=np.uint8)
        want[:A.shape[0]] = A.astype(np.uint8)
        assert shape == shape2 and Ap.dtype == np.uint8 and np.array_equal(Ap, want)


def test_max_pool_equals_the_window_maximum():
    rng = np.random.default_rng(11)

    class Step:
        attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}

    for x in (rng.integers(-128, 128, (1, 4, 13, 12)), rng.standard_normal((2, 3, 9, 9)).astype(np.float32)):
        for attrs in (Step.attrs, {"kernel_shape": [2, 3], "strides": [1, 2], "pads": [0, 1, 1, 0], "ceil_mode": 1}):
            Step.attrs = attrs
            fill = -np.inf if x.dtype.kind == "f" else np.iinfo(np.int64).min
            win, *_ = hostops._pool_windows(x.astype(np.float32) if x.dtype.kind == "f" else x.astype(np.int64),
                                            attrs, fill)
            assert np.array_equal(hostops._maxpool(Step, x), win.max(axis=(-2, -1)))


def test_device_programming_in_one_batch_equals_block_by_block():
    """program_many (one candidate search for a run's LDW blocks) stores what program_levels block by block stores,
    with the same record of moved cells; with stuck cells it programs block by block."""
    cfg = PRESETS["isaac"]
    r = np.random.default_rng(12)
    blocks = [r.integers(0, cfg.max_level + 1, (cfg.rows, n)).astype(np.uint8) for n in (1, 16, 90, 1, 37, 16)]
    loads = [(fastrun.freeze(b), 16 * i) for i, b in enumerate(blocks)]
    for dev in (DeviceModel(prog_coeff=(0.05,), seed=2), DeviceModel(prog_coeff=(0.05,), seed=3, stuck_low=0.01)):
        a, b = dev.array(cfg), dev.array(cfg)
        many = a.program_many(loads)
        one = [b.program_levels(x, s) for x, s in loads]
        assert a.writes == b.writes == len(loads)
        moved = 0
        for (x, _), m, o in zip(loads, many, one):
            assert m.dtype == o.dtype == np.uint8 and np.array_equal(m, o)
            if m is not x and not dev.stuck_low:
                rr, cc = np.nonzero(m != x)
                rec = a._moved[id(m)][1]  # (row, col, level given, level stored), in stream order
                assert [(r, c) for r, c, _, _ in rec] == list(zip(rr.tolist(), cc.tolist()))
                assert all(x[r, c] == g and m[r, c] == v for r, c, g, v in rec)
                moved += 1
        assert dev.stuck_low or moved >= 3  # (variation did act)


def test_device_model_gives_the_same_results_on_frozen_blocks():
    """Read noise, drift, IR drop and programming variation on frozen LDW blocks (the weights kept under the blocks,
    the moved cells from programming's record) give exactly what the same blocks give unfrozen, run after run."""
    cfg = PRESETS["isaac"]
    dev = DeviceModel(prog_coeff=(0.05,), read_sigma=0.03, drift_nu=0.05, drift_t=100.0, ir_drop=0.1, seed=4)
    rng = np.random.default_rng(13)
    for case in range(4):
        words, feed, _ = layer_program(cfg, rng, batch=2)
        fz = _frozen_feed(words, feed)
        a, b = Tile(cfg, 2, device=dev), Tile(cfg, 2, device=dev)
        for run in range(3):
            ra, rb = a.run(words, list(fz)), b.run(words, [np.array(x) for x in feed])
            _same(a, b, ra, rb, f"case {case} run {run}")


def test_bundle_levels_are_frozen_and_stay_frozen_through_pickle():
    import copy
    import pickle

    from cimtile.compiler.bundle import Bundle
    from cimtile.compiler.ir import Model

    lv = np.arange(12, dtype=np.uint8).reshape(3, 4)
    b = Bundle(PRESETS["tiny"], Model({}, [], [], []), [lv], [{"bias": np.zeros(2, dtype=np.int64)}])
    b._feed_cache["x"] = 1
    for c in (b, pickle.loads(pickle.dumps(b)), copy.deepcopy(b)):
        assert fastrun.frozen(c.levels[0]) and fastrun.frozen(c.rq[0]["bias"]) and np.array_equal(c.levels[0], lv)
        with pytest.raises(ValueError):
            c.levels[0][0, 0] = 1  # (in place: refused, so the runtime's cached blocks cannot go stale)
    assert pickle.loads(pickle.dumps(b))._feed_cache == {}
