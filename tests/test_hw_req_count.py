"""The multi-vector REQ (``REQ ... count=N``) of the Amaranth tile against the golden model: vectors back
to back up to the buffers' ends, partial last chunks, one chunk per vector (``rq_lanes >= n_out``), loop
offsets, the ADDR errors one past either buffer's end, a REQ right after a multi-vector MVM and an RDOUT
right after a multi-vector REQ (Amaranth's simulator; isaac itself in a slow test)."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
from cimtile.hw.isa import Cause, Opcode, encode
from cimtile.hw.params import PRESETS, TileConfig
from cimtile.tb.amaranth_sim import golden_runs, run_rtl
from helpers import TINY, VARIANT

#: isaac's 8 requantisation lanes and 256-bit bus on a tile small enough for the simulator.
ISAAC32 = PRESETS["isaac"].replace(name="isaac32", rows=32, cols=32, rows_per_conv=32, rq_lanes=8, in_depth=16,
                                   acc_depth=16, out_depth=16)
CONFIGS = {"tiny": TINY, "variant": VARIANT, "isaac32": ISAAC32}
#: ``make mutate`` runs the RTL tests on a named mutant of the RTL (tb/mutants.py) through this variable.
MUTANT = os.environ.get("CIMTILE_MUTANT") or None
E = encode


def dump(cfg: TileConfig) -> list[int]:
    """Reads every output and accumulator vector."""
    return [E(Opcode.RDOUT, start=0, count=cfg.out_depth), E(Opcode.RDACC, start=0, count=cfg.acc_depth),
            E(Opcode.HALT)]


def compare(cfg: TileConfig, program: list[int], blocks: list) -> list:
    """``program`` then :func:`dump`, on the golden model and the RTL: the same stop (cause, pc),
    cycles and data out. Returns the golden results."""
    runs = [(program, blocks), (dump(cfg), [])]
    gold = golden_runs(cfg, runs)
    rtl = run_rtl(cfg, [(p, din) for (p, _), (_, din, _) in zip(runs, gold)], mutation=MUTANT)
    for n, ((res, _, dout), r) in enumerate(zip(gold, rtl)):
        assert (r.cause, r.pc) == (res.cause, res.pc), f"run {n}: RTL {r.cause.name} at {r.pc}, golden " \
            f"{res.cause.name} at {res.pc} ({res.detail})"
        assert r.cycles == res.cycles, f"run {n}: RTL {r.cycles} cycles, golden {res.cycles}"
        assert len(r.dout) == len(dout), f"run {n}: RTL sent {len(r.dout)} words, golden {len(dout)}"
        bad = [i for i, (a, b) in enumerate(zip(r.dout, dout)) if a != b]
        assert not bad, f"run {n}: data-out words {bad[:8]} differ"
    return gold


def n_out_cases(cfg: TileConfig) -> list[int]:
    """Outputs per vector: the most (2-column weights), a partial last chunk, and a single chunk."""
    most, lanes = cfg.cols // 2, cfg.rq_lanes
    partial = next(n for n in range(most, 0, -1) if n % lanes and n > lanes) if most > lanes else most
    return sorted({most, partial, min(lanes, most), 1}, reverse=True)


CASES = [(name, n) for name, cfg in CONFIGS.items() for n in n_out_cases(cfg)]


def prologue(cfg: TileConfig, n_out: int, rng) -> tuple[list[int], list]:
    """A layer of ``n_out`` outputs (2-bit signed weights over 2 columns each), random lane parameters,
    and every input vector loaded; the feed blocks for its loads."""
    words = [E(Opcode.CFG, wbits=2, abits=8, wsigned=1, asigned=0, adc_shift=1),
             E(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=2 * n_out),
             E(Opcode.CFGRQ, zero_point=5, clamp_lo=-90, clamp_hi=100, relu=0),
             E(Opcode.LDRQ, start=0, count=cfg.cols), E(Opcode.LDW, start=0, count=cfg.cols),
             E(Opcode.LDIN, start=0, count=cfg.in_depth)]
    # small multipliers and moderate shifts: most results inside the clamp, so the rounding shows
    rq = np.stack([rng.integers(-60, 60, cfg.cols), rng.integers(1, 5, cfg.cols), rng.integers(2, 8, cfg.cols)], 1)
    blocks = [rq, rng.integers(0, cfg.max_level + 1, (cfg.rows, cfg.cols)),
              rng.integers(0, 256, (cfg.in_depth, cfg.rows))]
    return words, blocks


@pytest.mark.parametrize("name, n_out", CASES, ids=[f"{name}-n{n}" for name, n in CASES])
def test_req_count_to_the_buffer_ends(name, n_out):
    """MVMs fill every accumulator vector; then REQs over several vectors: one whose vectors end at
    both buffers' last (an RDOUT of that last vector right after it: the write behind, read through
    the transparent port), one from vector 0, and one in a loop (offsets added to both ranges, with
    stride_out != stride_acc); a REQ count=1 among them. Outputs, cycles and every buffer's vector."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(31 + n_out)
    words, blocks = prologue(cfg, n_out, rng)
    acc_end, out_end = cfg.acc_depth, cfg.out_depth
    count = min(acc_end, out_end, 5)
    filled = [*range(8), *range(acc_end - count, acc_end)]
    words += [E(Opcode.MVM, in_addr=v % cfg.in_depth, acc_addr=v) for v in filled]
    words += [E(Opcode.REQ, acc_addr=acc_end - count, out_addr=out_end - count, count=count),
              E(Opcode.RDOUT, start=out_end - 1, count=1),
              E(Opcode.REQ, acc_addr=0, out_addr=0, count=3), E(Opcode.RDOUT, start=0, count=3),
              E(Opcode.REQ, acc_addr=3, out_addr=3),
              E(Opcode.LOOP, count=2, body=1, stride_in=0, stride_acc=1, stride_out=3),
              E(Opcode.REQ, acc_addr=4, out_addr=4, count=2),
              E(Opcode.HALT)]
    (res, _, _), _ = compare(cfg, words, blocks)
    assert res.ok


@pytest.mark.parametrize("name, n_out", CASES, ids=[f"{name}-n{n}" for name, n in CASES])
def test_req_count_after_mvm_count(name, n_out):
    """A multi-vector REQ right after a multi-vector MVM on the vectors it wrote (its last one written
    behind, in the REQ's first cycle, when the REQ reads it: ``acc_addr`` the MVM's last vector), and
    one over all of them, with an RDOUT right after it."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(53 + n_out)
    words, blocks = prologue(cfg, n_out, rng)
    words += [E(Opcode.MVM, in_addr=0, acc_addr=1, count=3), E(Opcode.REQ, acc_addr=3, out_addr=2, count=2),
              E(Opcode.MVM, in_addr=3, acc_addr=0, count=4, accumulate=1),
              E(Opcode.REQ, acc_addr=0, out_addr=5, count=4), E(Opcode.RDOUT, start=8, count=1), E(Opcode.HALT)]
    (res, _, _), _ = compare(cfg, words, blocks)
    assert res.ok


ERRORS = {
    # (acc_addr, out_addr, count) one past a buffer's end, as a function of (acc_depth, out_depth)
    "out_one_past": lambda a, o: (0, o - 2, 3),
    "acc_one_past": lambda a, o: (a - 2, 0, 3),
    "both_past": lambda a, o: (a - 1, o - 1, 2),  # the accumulator range is checked first (both ADDR)
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("case", ERRORS)
def test_req_count_range_errors(name, case):
    """ADDR when a range passes its buffer's end by one vector, with no output written (the state dump),
    and the same REQ ending at the last vector is legal; in a loop, the offsets count."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(7)
    words, blocks = prologue(cfg, 2, rng)
    acc, out, count = ERRORS[case](cfg.acc_depth, cfg.out_depth)
    words += [E(Opcode.MVM, in_addr=0, acc_addr=v) for v in range(cfg.acc_depth)]
    legal = words + [E(Opcode.REQ, acc_addr=acc, out_addr=out, count=count - 1), E(Opcode.HALT)]
    (res, _, _), _ = compare(cfg, legal, blocks)
    assert res.ok
    failing = words + [E(Opcode.REQ, acc_addr=acc, out_addr=out, count=count), E(Opcode.HALT)]
    (res, _, _), _ = compare(cfg, failing, blocks)
    assert (res.cause, res.pc) == (Cause.ADDR, len(words))
    # in a loop: the second iteration's offsets put the range one past the end
    looped = words + [E(Opcode.LOOP, count=2, body=1, stride_in=0, stride_acc=1, stride_out=1),
                      E(Opcode.REQ, acc_addr=max(acc - 1, 0), out_addr=max(out - 1, 0), count=count), E(Opcode.HALT)]
    (res, _, _), _ = compare(cfg, looped, blocks)
    assert res.cause is Cause.ADDR


@pytest.mark.slow
def test_req_count_on_isaac():
    """The isaac preset itself (128 columns, 8 lanes): REQ count 3 after MVM count 3 with a partial last
    chunk and over the output buffer's end, an RDOUT right after; the outputs and cycles equal the
    golden model's (run in a thread with a large stack: see tests/test_hw_perf.py)."""
    cfg = PRESETS["isaac"]
    rng = np.random.default_rng(12)
    n_out = 61  # 7 full chunks and a partial one
    words = [E(Opcode.CFG, wbits=2, abits=8, wsigned=1, asigned=0, adc_shift=3),
             E(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=2 * n_out),
             E(Opcode.CFGRQ, zero_point=-3, clamp_lo=-128, clamp_hi=127, relu=1),
             E(Opcode.LDRQ, start=0, count=cfg.cols), E(Opcode.LDW, start=0, count=cfg.cols),
             E(Opcode.LDIN, start=0, count=3),
             E(Opcode.MVM, in_addr=0, acc_addr=cfg.acc_depth - 3, count=3),
             E(Opcode.REQ, acc_addr=cfg.acc_depth - 3, out_addr=cfg.out_depth - 3, count=3),
             E(Opcode.RDOUT, start=cfg.out_depth - 3, count=3), E(Opcode.HALT)]
    rq = np.stack([rng.integers(-60, 60, cfg.cols), rng.integers(1, 5, cfg.cols), rng.integers(4, 10, cfg.cols)], 1)
    blocks = [rq, rng.integers(0, cfg.max_level + 1, (cfg.rows, cfg.cols)), rng.integers(0, 256, (3, cfg.rows))]
    (res, din, dout), = golden_runs(cfg, [(words, blocks)])
    assert res.ok
    out = {}

    def target():
        try:
            out["r"] = run_rtl(cfg, [(words, din)], mutation=MUTANT)[0]
        except BaseException as e:  # reported in the test's thread
            out["e"] = e

    limit = sys.getrecursionlimit()
    old_stack = threading.stack_size(512 * 1024 * 1024)
    sys.setrecursionlimit(200_000)
    try:
        th = threading.Thread(target=target)
        th.start()
        th.join()
    finally:
        sys.setrecursionlimit(limit)
        threading.stack_size(old_stack)
    if "e" in out:
        raise out["e"]
    r = out["r"]
    assert (r.cause, r.cycles) == (res.cause, res.cycles)
    assert r.dout == dout
