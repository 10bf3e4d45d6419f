"""The multi-vector MVM (``MVM ... count=N``) of the Amaranth tile against the golden model: vectors
back to back over the input buffer's end, partial last rounds, ``accumulate``, ``adc_cycles`` > 1,
the lane-space accumulation of wider tiles, loop offsets, range errors, and an MVM right after
another on the vectors it wrote (Amaranth's simulator)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.isa import Cause, Opcode, encode
from cimtile.hw.params import PRESETS, TileConfig
from cimtile.tb.amaranth_sim import golden_runs, run_rtl
from helpers import TINY, VARIANT

#: An isaac-like tile small enough for the simulator: 8 lanes (the shift-and-add's lane-space
#: leaders, not tiny's carry-save), one row group of 32 rows.
ISAAC32 = PRESETS["isaac"].replace(name="isaac32", rows=32, cols=32, rows_per_conv=32, rq_lanes=8, in_depth=16,
                                   acc_depth=16, out_depth=16)
CONFIGS = {"tiny": TINY, "variant": VARIANT, "isaac32": ISAAC32}
#: ``make mutate`` runs the RTL tests on a named mutant of the RTL (tb/mutants.py) through this variable.
MUTANT = os.environ.get("CIMTILE_MUTANT") or None

#: (wbits, abits, wsigned, asigned, window rows, window columns): a partial last round on every
#: configuration, one conversion per vector (every round a vector's last), the whole array.
SHAPES = [(3, 5, 1, 1, 11, 6), (1, 1, 0, 0, 4, 1), (8, 8, 1, 0, 16, 16)]


def rounds(cfg: TileConfig, shape) -> tuple[int, int]:
    """(conversions of one vector, rounds of one vector) of ``shape`` on ``cfg``."""
    wbits, abits, ws, as_, nr, nc = shape
    g = isa.geometry(cfg, wbits, abits, bool(ws), bool(as_), min(nr, cfg.rows), min(nc, cfg.cols))
    n = g.nis * g.nrg * g.nconv
    return n, -(-n // cfg.n_adcs)


def prologue(cfg: TileConfig, shape) -> list[int]:
    wbits, abits, ws, as_, nr, nc = shape
    nr, nc = min(nr, cfg.rows), min(nc, cfg.cols)
    return [encode(Opcode.CFG, wbits=wbits, abits=abits, wsigned=ws, asigned=as_, adc_shift=1),
            encode(Opcode.WIN, row_start=cfg.rows - nr, row_count=nr, col_start=0, col_count=nc),
            encode(Opcode.LDW, start=0, count=cfg.cols), encode(Opcode.LDIN, start=0, count=cfg.in_depth)]


def feed(cfg: TileConfig, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, cfg.max_level + 1, (cfg.rows, cfg.cols)), rng.integers(0, 256, (cfg.in_depth, cfg.rows))]


def dump(cfg: TileConfig) -> list[int]:
    return [encode(Opcode.RDACC, start=0, count=cfg.acc_depth), encode(Opcode.HALT)]


def compare(cfg: TileConfig, program: list[int], blocks: list) -> list:
    """``program`` then a read-back of every accumulator, on the golden model and the RTL: the same
    stop (cause, pc), cycles and data out. Returns the golden results."""
    runs = [(program, blocks), (dump(cfg), [])]
    gold = golden_runs(cfg, runs)
    rtl = run_rtl(cfg, [(p, din) for (p, _), (_, din, _) in zip(runs, gold)], mutation=MUTANT)
    for n, ((res, _, dout), r) in enumerate(zip(gold, rtl)):
        assert (r.cause, r.pc) == (res.cause, res.pc), f"run {n}: RTL {r.cause.name} at {r.pc}, golden " \
            f"{res.cause.name} at {res.pc}"
        assert r.cycles == res.cycles, f"run {n}: RTL {r.cycles} cycles, golden {res.cycles}"
        assert r.dout == dout, f"run {n}: data out differs"
    return gold


def mvm_cycles(cfg: TileConfig, shape, count: int) -> int:
    return 1 + count * rounds(cfg, shape)[1] * cfg.adc_cycles + isa.MVM_LATENCY


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("shape", SHAPES, ids=["partial", "one_conversion", "whole"])
@pytest.mark.parametrize("accumulate", [0, 1])
def test_mvm_count_to_the_input_buffer_end(name, shape, accumulate):
    """Vectors up to the input buffer's last, into accumulators inside the buffer, then a second MVM
    right after, accumulating onto the first's last vector (written behind, in its first cycle) and
    its vectors after: results, cycles (count x one vector's rounds, no bubbles) and every accumulator."""
    cfg = CONFIGS[name]
    count = 5
    words = prologue(cfg, shape) + [
        encode(Opcode.MVM, in_addr=cfg.in_depth - count, acc_addr=2, accumulate=accumulate, count=count),
        encode(Opcode.MVM, in_addr=3, acc_addr=2 + count - 1, accumulate=1, count=3),
        encode(Opcode.HALT)]
    (res, _, _), _ = compare(cfg, words, feed(cfg, 7 + accumulate))
    assert res.ok
    # the two MVMs' cycles are the formula's: one issue and one drain cycle each, whatever the count
    mvms = mvm_cycles(cfg, shape, count) + mvm_cycles(cfg, shape, 3)
    assert mvms == 2 + (count + 3) * rounds(cfg, shape)[1] * cfg.adc_cycles + 2 * isa.MVM_LATENCY
    rest = res.cycles - mvms
    single = [encode(Opcode.MVM, in_addr=0, acc_addr=0), encode(Opcode.HALT)]
    (one, _, _), = golden_runs(cfg, [(prologue(cfg, shape) + single, feed(cfg, 7))])
    assert rest == one.cycles - mvm_cycles(cfg, shape, 1)


def test_shapes_cover_partial_last_rounds():
    """The directed shapes above do leave a partial last round on each configuration."""
    for cfg in CONFIGS.values():
        assert rounds(cfg, SHAPES[0])[0] % cfg.n_adcs != 0, cfg.name
        assert rounds(cfg, SHAPES[1])[1] == 1, cfg.name


@pytest.mark.parametrize("name", CONFIGS)
def test_mvm_count_in_a_loop_with_offsets(name):
    """MVMs of three vectors in a hardware loop whose input and accumulator strides are the count:
    the loop offsets add to every vector's addresses; then a REQ and an output read of them."""
    cfg = CONFIGS[name]
    shape = SHAPES[0]
    words = prologue(cfg, shape) + [
        encode(Opcode.CFGRQ, zero_point=1, clamp_lo=-128, clamp_hi=127, relu=0),
        encode(Opcode.LOOP, count=3, body=2, stride_in=3, stride_acc=3, stride_out=0),
        encode(Opcode.MVM, in_addr=1, acc_addr=0, count=3),
        encode(Opcode.MVM, in_addr=2, acc_addr=0, accumulate=1, count=3),
        encode(Opcode.REQ, acc_addr=4, out_addr=0),
        encode(Opcode.RDOUT, start=0, count=1),
        encode(Opcode.HALT)]
    (res, _, _), _ = compare(cfg, words, feed(cfg, 11))
    assert res.ok


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("case", ["in_range", "acc_range", "both_at_the_end", "offset"])
def test_mvm_count_range_checks(name, case):
    """ADDR when the last vector's input or accumulator is beyond its buffer (the whole range checked
    before anything converts; input first), none when both end exactly at the buffers' ends; a
    failing MVM writes no accumulator (the read-back after it is the golden model's)."""
    cfg = CONFIGS[name]
    shape = SHAPES[1]  # one round per vector: a boundary in the MVM's first cycle
    args = {"in_range": dict(in_addr=cfg.in_depth - 2, acc_addr=cfg.acc_depth + 1, count=3),
            "acc_range": dict(in_addr=0, acc_addr=cfg.acc_depth - 2, count=3),
            "both_at_the_end": dict(in_addr=cfg.in_depth - 3, acc_addr=cfg.acc_depth - 3, count=3),
            "offset": dict(in_addr=cfg.in_depth - 4, acc_addr=0, count=3)}[case]
    words = prologue(cfg, shape) + [encode(Opcode.MVM, in_addr=0, acc_addr=cfg.acc_depth - 1)]
    if case == "offset":  # the loop's second pass moves the input range one vector beyond the end
        words += [encode(Opcode.LOOP, count=2, body=1, stride_in=1, stride_acc=0, stride_out=0)]
    words += [encode(Opcode.MVM, **args), encode(Opcode.HALT)]
    (res, _, _), _ = compare(cfg, words, feed(cfg, 3))
    assert (res.cause is Cause.NONE) == (case == "both_at_the_end"), res.cause
