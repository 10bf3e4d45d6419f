"""The program-level fast path (sim/fastrun.py) equals the instruction path: on random layer-shaped programs
(column tiles of accumulating row tiles, REQ and reads, windows that may clip, 2-D and batched input blocks, level
blocks as views of one array or copies), run twice on the same Tiles (the plan and analysis caches), with cells
changed in place between runs, with masks, with a device model, and with feed blocks the handlers reject.
Every result, cycle count and state equals the instruction path's, and the fast path was taken."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.isa import RQ_RECORD, Opcode, field_range
from cimtile.hw.params import PRESETS
from cimtile.sim import fastmvm, fastrun
from cimtile.sim.device import DeviceModel
from cimtile.sim.tile import Feed, FeedError, Tile
from helpers import VARIANT

E = isa.encode
SMALL = PRESETS["tiny"].replace(name="small_adc", adc_bits=3, rows_per_conv=5, in_depth=8, acc_depth=8,
                                out_depth=8)


def layer_program(cfg, rng, *, batch: int):
    """A compiled-layer-shaped program and its feed: per column tile LDRQ, a chain of (LDIN, WIN, LDW, LOOP MVM or
    one MVM of ``lanes`` vectors) over row tiles, a LOOP of REQ (or one REQ of ``lanes`` vectors), RDOUT
    (sometimes RDACC); input blocks shared by the column tiles (one object) and level blocks that are views of one
    array (adjacent column tiles) or copies."""
    wbits = int(rng.choice([2, 4, 8]))
    wsigned = bool(rng.integers(0, 2)) if wbits > 1 else False
    abits, asigned = int(rng.choice([4, 8])), bool(rng.integers(0, 2))
    shift = int(rng.choice([0, 0, 0, 1]))
    lanes = int(rng.integers(1, min(4, cfg.in_depth, cfg.acc_depth, cfg.out_depth) + 1))
    geo = isa.geometry(cfg, wbits, abits, wsigned, asigned, cfg.rows, cfg.cols)
    group = geo.group
    nc = group * int(rng.integers(1, cfg.cols // group + 1))
    n_out = nc // group
    tiles, row_tiles = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    words = [E(Opcode.CFG, wbits=wbits, abits=abits, wsigned=int(wsigned), asigned=int(asigned), adc_shift=shift),
             E(Opcode.CFGRQ, zero_point=int(rng.integers(-5, 6)), clamp_lo=-128, clamp_hi=127,
               relu=int(rng.integers(0, 2)))]
    feed = []
    sparse = rng.random() < 0.6  # sparse levels: lossless windows; dense: some may clip
    big = rng.integers(0, cfg.max_level + 1, (cfg.rows, nc * tiles * row_tiles))
    if sparse:
        big[rng.random(big.shape) < 0.85] = 0
    big = big.astype(np.uint8 if rng.random() < 0.8 else np.int64)
    views = rng.random() < 0.7
    ins = []
    for _ in range(row_tiles):
        shape = (batch, lanes, cfg.rows) if rng.random() < 0.7 else (lanes, cfg.rows)
        x = rng.integers(0, 256, shape)
        ins.append(x.astype(np.uint8) if rng.random() < 0.8 else x - 128 * (rng.random() < 0.5))
    blo, bhi = field_range(RQ_RECORD, "bias")
    mlo, mhi = field_range(RQ_RECORD, "mult")
    slo, shi = field_range(RQ_RECORD, "shift")
    for t in range(tiles):
        words.append(E(Opcode.LDRQ, start=0, count=n_out))
        feed.append(np.stack([rng.integers(max(blo, -1000), min(bhi, 1000), n_out),
                              rng.integers(max(mlo, 1), min(mhi, 1 << 10), n_out),
                              rng.integers(max(slo, 2), min(shi, 12), n_out)], axis=1))
        for r in range(row_tiles):
            nr = int(rng.integers(1, cfg.rows + 1)) if r == row_tiles - 1 else cfg.rows
            c0 = int(rng.integers(0, cfg.cols - nc + 1)) if rng.random() < 0.3 else 0
            words += [E(Opcode.LDIN, start=0, count=lanes),
                      E(Opcode.WIN, row_start=0, row_count=nr, col_start=c0, col_count=nc),
                      E(Opcode.LDW, start=c0, count=nc)]
            accumulate = int(r > 0 or rng.random() < 0.2)
            if rng.random() < 0.5:  # the multi-vector MVM, or the loop of single ones it equals
                words.append(E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=accumulate, count=lanes))
            else:
                words += [E(Opcode.LOOP, count=lanes, body=1, stride_in=1, stride_acc=1, stride_out=0),
                          E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=accumulate)]
            feed.append(ins[r])
            k = t * row_tiles + r
            lv = big[:, k * nc:(k + 1) * nc]
            feed.append(lv if views else lv.copy())
            if rng.random() < 0.1:
                words.append(E(Opcode.NOP))
        words.append(E(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=nc))
        if rng.random() < 0.5:
            words.append(E(Opcode.REQ, acc_addr=0, out_addr=0, count=lanes))
        else:
            words += [E(Opcode.LOOP, count=lanes, body=1, stride_in=0, stride_acc=1, stride_out=1),
                      E(Opcode.REQ, acc_addr=0, out_addr=0)]
        words.append(E(Opcode.RDOUT, start=0, count=lanes))
        if rng.random() < 0.3:
            words.append(E(Opcode.RDACC, start=0, count=lanes))
    if rng.random() < 0.2:
        words.append(E(Opcode.SYNC, tag=int(rng.integers(0, 16))))
    words.append(E(Opcode.HALT))
    return words, feed, big


def _same(a: Tile, b: Tile, ra, rb, what: str) -> None:
    assert (ra.cycles, ra.instructions, ra.halted, ra.cause, ra.pc, ra.sync_tag) == \
        (rb.cycles, rb.instructions, rb.halted, rb.cause, rb.pc, rb.sync_tag), what
    assert len(ra.outputs) == len(rb.outputs), what
    for x, y in zip(ra.outputs, rb.outputs):
        assert x.dtype == y.dtype and np.array_equal(x, y), what
    for k, v in b.state().items():
        assert np.array_equal(a.state()[k], v), f"{what}: state {k}"
    assert (a.layer, a.window, a.rq, a.sync_tag) == (b.layer, b.window, b.rq, b.sync_tag), what


@pytest.mark.parametrize("cfg", [PRESETS["tiny"], VARIANT, SMALL, PRESETS["isaac"]], ids=lambda c: c.name)
def test_fast_path_equals_instruction_path_on_random_layer_programs(cfg):
    rng = np.random.default_rng(zlib.crc32(cfg.name.encode()) % 1000)  # (not hash(): salted per process)
    taken = 0
    cases = 6 if cfg.name == "isaac" else 25
    for case in range(cases):
        batch = int(rng.integers(1, 4))
        words, feed, big = layer_program(cfg, rng, batch=batch)
        fast, ref = Tile(cfg, batch), Tile(cfg, batch, fast=False)
        for run in range(3):
            if run == 2:  # cells changed in place: a kept analysis must not be reused
                big[rng.random(big.shape) < 0.05] = cfg.max_level
            what = f"{cfg.name} case {case} run {run}"
            ra, rb = fast.run(words, list(feed)), ref.run(words, list(feed))
            _same(fast, ref, ra, rb, what)
        taken += fastrun.cached_plan(fast) is not None
    assert taken >= cases * 0.9  # (the generator writes eligible programs; the path was taken)


def test_int8_and_float_products_agree(monkeypatch):
    """The whole-program product through the int8 GEMM (large) and through float (INT_GEMM off, or small) agree."""
    cfg = PRESETS["isaac"]
    rng = np.random.default_rng(3)
    monkeypatch.setattr(fastmvm, "INT_MIN_MACS", 0)
    for case in range(4):
        words, feed, _ = layer_program(cfg, rng, batch=2)
        ref = Tile(cfg, 2, fast=False).run(words, list(feed))
        for on in (True, False):
            monkeypatch.setattr(fastmvm, "INT_GEMM", on)
            fastrun._ANALYSES.clear()
            got = Tile(cfg, 2).run(words, list(feed))
            assert all(np.array_equal(x, y) for x, y in zip(got.outputs, ref.outputs)), (case, on)


def test_masks_and_loads_from_before_the_run():
    """Masked cells (LDM in an earlier run) take effect; a program whose MVM reads inputs loaded by an earlier run is
    not eligible and runs instruction by instruction, with the same results."""
    cfg = PRESETS["tiny"]
    rng = np.random.default_rng(4)
    words, feed, _ = layer_program(cfg, rng, batch=2)
    mask = (rng.random((cfg.rows, cfg.cols)) < 0.2).astype(np.int64)
    fast, ref = Tile(cfg, 2), Tile(cfg, 2, fast=False)
    for t in (fast, ref):
        t.run([E(Opcode.LDM, start=0, count=cfg.cols), E(Opcode.HALT)], [mask]).check()
    _same(fast, ref, fast.run(words, list(feed)), ref.run(words, list(feed)), "masked")
    later = [E(Opcode.CFG, wbits=2, abits=8, wsigned=0, asigned=0, adc_shift=0),
             E(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=2),
             E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0), E(Opcode.RDACC, start=0, count=1), E(Opcode.HALT)]
    fast.load(later)
    assert fastrun.plan(fast) is None  # (inputs from an earlier run)
    _same(fast, ref, fast.run(later, []), ref.run(later, []), "earlier inputs")


@pytest.mark.parametrize("bad", ["level", "shape", "rq", "missing"])
def test_rejected_feed_blocks_raise_as_the_instruction_path(bad):
    cfg = PRESETS["tiny"]
    rng = np.random.default_rng(5)
    words, feed, _ = layer_program(cfg, rng, batch=1)
    feed = list(feed)
    i = len(feed) - 1  # (the last block is a level block: LDIN, then LDW, ends every row tile)
    if bad == "level":
        feed[i] = feed[i].astype(np.uint8).copy()
        feed[i][0, 0] = cfg.max_level + 1
    elif bad == "shape":
        feed[i] = feed[i][:, :-1]
    elif bad == "rq":
        feed[0] = feed[0].copy()
        feed[0][0, 2] = 999
    else:
        feed = feed[:-1]
    errors = []
    tiles = []
    for fast in (True, False):
        t = Tile(cfg, 1, fast=fast)
        tiles.append(t)
        with pytest.raises(FeedError) as e:
            t.run(words, list(feed))
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    for k, v in tiles[1].state().items():
        assert np.array_equal(tiles[0].state()[k], v), k


def test_device_programming_and_stuck_cells_are_exact():
    """With a device model whose read is ideal (programming variation, stuck cells), fast and instruction paths
    store the same levels and compute the same accumulators; the device's streams move alike."""
    cfg = PRESETS["isaac"]
    rng = np.random.default_rng(6)
    dev = DeviceModel(prog_coeff=(0.1,), stuck_low=0.01, stuck_high=0.01, seed=3)
    for case in range(3):
        words, feed, _ = layer_program(cfg, rng, batch=2)
        fast, ref = Tile(cfg, 2, device=dev), Tile(cfg, 2, device=dev, fast=False)
        for run in range(2):
            _same(fast, ref, fast.run(words, list(feed)), ref.run(words, list(feed)), f"device case {case} {run}")
        assert fast.device.writes == ref.device.writes


def test_device_read_noise_matches_the_instruction_path():
    """Read noise, drift and IR drop: the fast path draws the same normals in the same order; only float32 rounding
    of the batched GEMMs may move an output by one level, rarely."""
    cfg = PRESETS["isaac"]
    rng = np.random.default_rng(7)
    dev = DeviceModel(read_sigma=0.05, drift_nu=0.05, drift_t=86400.0, ir_drop=0.1, seed=2)
    diffs = total = 0
    for _ in range(4):
        words, feed, _ = layer_program(cfg, rng, batch=3)
        ra = Tile(cfg, 3, device=dev).run(words, list(feed)).check()
        rb = Tile(cfg, 3, device=dev, fast=False).run(words, list(feed)).check()
        assert (ra.cycles, len(ra.outputs)) == (rb.cycles, len(rb.outputs))
        for x, y in zip(ra.outputs, rb.outputs):
            if x.dtype == np.int64 and x.ndim == 3 and x.shape == y.shape:
                d = np.abs(x.astype(np.int64) - y)
                diffs += int((d > 0).sum())
                total += d.size
                assert d.max() <= 2
    assert diffs <= 0.01 * total


def test_a_feed_that_records_its_takes_gets_the_instruction_path():
    """A Feed subclass overriding take() (the cocotb scoreboard records which load took each block) sees every take:
    the fast path, which reads blocks without take(), leaves such feeds to the instruction path."""

    class Recording(Feed):
        def __init__(self, blocks):
            super().__init__(blocks)
            self.taken = []

        def take(self, pc, d):
            b = super().take(pc, d)
            self.taken.append((pc, d.op))
            return b

    cfg = PRESETS["tiny"]
    words, feed, _ = layer_program(cfg, np.random.default_rng(8), batch=1)
    rec = Recording(list(feed))
    res = Tile(cfg, 1).run(words, rec)
    assert len(rec.taken) == len(feed) and rec.remaining() == 0
    ref = Tile(cfg, 1, fast=False).run(words, list(feed))
    assert res.cycles == ref.cycles and all(np.array_equal(x, y) for x, y in zip(res.outputs, ref.outputs))
    plain = Feed(list(feed))
    Tile(cfg, 1).run(words, plain)
    assert plain.remaining() == 0  # (the fast path took the blocks too)


def test_int8_gemm_takes_read_only_operands_without_warning():
    """The kept weights are read-only arrays: the int8 GEMM takes them without PyTorch's non-writable-array warning
    (which the test suite turns into an error; torch warns once per process, hence a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import numpy as np\nfrom cimtile.sim import fastmvm\nmm = fastmvm._i8mm()\n"
            "a = np.ones((4, 8), np.int8); b = np.ones((8, 3), np.int8); b.flags.writeable = False\n"
            "assert mm is None or (mm(a, b) == 8).all()\n")
    r = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr.strip().splitlines()[-1:]
