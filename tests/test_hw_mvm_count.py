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
from helpers import CI, TINY, VARIANT

#: An isaac-like tile small enough for the simulator: isaac's 8 lanes (the shift-and-add's lane-space
#: leaders, not tiny's carry-save), ADC and accumulators, one row group of 16 rows. (isaac itself runs
#: the counted layer program in tests/test_hw_perf.py, and make sim's random programs.) Not in CI-sized runs
#: (about 100 s of CI's cores): there the Verilator co-simulation of isaac runs multi-vector MVMs on the same
#: shift-and-add (test_cosim_isaac, its random programs and layer program; README, "Tests: full size and CI size").
ISAAC16 = PRESETS["isaac"].replace(name="isaac16", rows=16, cols=16, rows_per_conv=16, rq_lanes=8, in_depth=16,
                                   acc_depth=16, out_depth=16)
CONFIGS = {"tiny": TINY, "variant": VARIANT, "isaac16": ISAAC16}
#: The parameters of the tests below: isaac16 skipped in CI-sized runs.
NAMES = [pytest.param(n, marks=pytest.mark.skipif(CI and n == "isaac16", reason="CI-sized run: isaac's MVMs run in "
                                                  "its Verilator co-simulation (test_cosim_isaac)")) for n in CONFIGS]
#: ``make mutate`` runs the RTL tests on a named mutant of the RTL (tb/mutants.py) through this variable.
MUTANT = os.environ.get("CIMTILE_MUTANT") or None

#: (wbits, abits, wsigned, asigned, window rows, window columns): a partial last round on every
#: configuration, signed weights and inputs, one conversion per vector (every round a vector's last),
#: the whole array.
SHAPES = {"partial": (1, 3, 0, 0, 5, 5), "signed": (3, 5, 1, 1, 11, 6), "one_conversion": (1, 1, 0, 0, 4, 1),
          "whole": (8, 8, 1, 0, 16, 16)}


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


def compare(cfg: TileConfig, programs: list) -> list:
    """Each (program, feed blocks) of ``programs``, each followed by a read-back of every accumulator,
    on one golden tile and one simulated RTL tile: the same stop (cause, pc), cycles and data out.
    Returns the golden results of the programs."""
    runs = [r for program in programs for r in (program, (dump(cfg), []))]
    gold = golden_runs(cfg, runs)
    rtl = run_rtl(cfg, [(p, din) for (p, _), (_, din, _) in zip(runs, gold)], mutation=MUTANT)
    for n, ((res, _, dout), r) in enumerate(zip(gold, rtl)):
        what = f"program {n // 2}" + (" (read-back)" if n % 2 else "")
        assert (r.cause, r.pc) == (res.cause, res.pc), f"{what}: RTL {r.cause.name} at {r.pc}, golden " \
            f"{res.cause.name} at {res.pc}"
        assert r.cycles == res.cycles, f"{what}: RTL {r.cycles} cycles, golden {res.cycles}"
        assert r.dout == dout, f"{what}: data out differs"
    return [g[0] for g in gold[::2]]


def mvm_cycles(cfg: TileConfig, shape, count: int) -> int:
    return 1 + count * rounds(cfg, shape)[1] * cfg.adc_cycles + isa.MVM_LATENCY


#: (shape, accumulate) of the programs below, run one after another on one tile
COUNT_CASES = [("partial", 0), ("partial", 1), ("signed", 1), ("one_conversion", 0), ("whole", 1)]


@pytest.mark.parametrize("name", NAMES)
def test_mvm_count_to_the_input_buffer_end(name):
    """Per shape and ``accumulate``: vectors up to the input buffer's last, into accumulators inside
    the buffer, then a second MVM right after, accumulating onto the first's last vector (written
    behind, in its first cycle) and its vectors after: results, cycles (count x one vector's rounds,
    no bubbles) and every accumulator after each program."""
    cfg = CONFIGS[name]
    count = 5
    programs = []
    for n, (which, accumulate) in enumerate(COUNT_CASES):
        shape = SHAPES[which]
        words = prologue(cfg, shape) + [
            encode(Opcode.MVM, in_addr=cfg.in_depth - count, acc_addr=2 + n, accumulate=accumulate, count=count),
            encode(Opcode.MVM, in_addr=3, acc_addr=2 + n + count - 1, accumulate=1, count=3),
            encode(Opcode.HALT)]
        programs.append((words, feed(cfg, 7 + n)))
    results = compare(cfg, programs)
    single = [encode(Opcode.MVM, in_addr=0, acc_addr=0), encode(Opcode.HALT)]
    for (which, _), res in zip(COUNT_CASES, results):
        shape = SHAPES[which]
        assert res.ok
        # the two MVMs take the formula's cycles: one issue and one drain cycle each, whatever the count
        (one, _, _), = golden_runs(cfg, [(prologue(cfg, shape) + single, feed(cfg, 7))])
        rest = one.cycles - mvm_cycles(cfg, shape, 1)
        assert res.cycles - rest == 2 + (count + 3) * rounds(cfg, shape)[1] * cfg.adc_cycles + 2 * isa.MVM_LATENCY


def test_shapes_cover_partial_last_rounds():
    """The directed shapes above do leave a partial last round on each configuration."""
    for cfg in CONFIGS.values():
        assert rounds(cfg, SHAPES["partial"])[0] % cfg.n_adcs != 0, cfg.name
        assert rounds(cfg, SHAPES["one_conversion"])[1] == 1, cfg.name
    assert VARIANT.adc_cycles > 1


@pytest.mark.parametrize("name", NAMES)
def test_mvm_count_in_a_loop_and_range_checks(name):
    """MVMs of three vectors in a hardware loop whose input and accumulator strides are the count (the
    loop offsets add to every vector's addresses), then a REQ and an output read of them. Then the
    range checks: ADDR when the last vector's input or accumulator is beyond its buffer (the whole
    range checked before anything converts; input first), also through a loop offset, none when both
    end exactly at the buffers' ends; a failing MVM writes no accumulator (the read-back after it is
    the golden model's; one round per vector: a boundary in the MVM's first cycle)."""
    cfg = CONFIGS[name]
    looped = prologue(cfg, SHAPES["partial"]) + [
        encode(Opcode.CFGRQ, zero_point=1, clamp_lo=-128, clamp_hi=127, relu=0),
        encode(Opcode.LOOP, count=3, body=2, stride_in=3, stride_acc=3, stride_out=0),
        encode(Opcode.MVM, in_addr=1, acc_addr=0, count=3),
        encode(Opcode.MVM, in_addr=2, acc_addr=0, accumulate=1, count=3),
        encode(Opcode.REQ, acc_addr=4, out_addr=0),
        encode(Opcode.RDOUT, start=0, count=1),
        encode(Opcode.HALT)]
    programs, causes = [(looped, feed(cfg, 11))], [Cause.NONE]
    cases = [(dict(in_addr=cfg.in_depth - 2, acc_addr=cfg.acc_depth - 1, count=3), Cause.ADDR, False),
             (dict(in_addr=0, acc_addr=cfg.acc_depth - 2, count=3), Cause.ADDR, False),
             (dict(in_addr=cfg.in_depth - 3, acc_addr=cfg.acc_depth - 3, count=3), Cause.NONE, False),
             # the loop's second pass moves the input range one vector beyond the buffer's end
             (dict(in_addr=cfg.in_depth - 3, acc_addr=0, count=3), Cause.ADDR, True)]
    for n, (args, cause, looping) in enumerate(cases):
        words = prologue(cfg, SHAPES["one_conversion"]) + [encode(Opcode.MVM, in_addr=0, acc_addr=n, count=2)]
        if looping:
            words += [encode(Opcode.LOOP, count=2, body=1, stride_in=1, stride_acc=0, stride_out=0)]
        programs.append((words + [encode(Opcode.MVM, **args), encode(Opcode.HALT)], feed(cfg, 3 + n)))
        causes.append(cause)
    results = compare(cfg, programs)
    assert [r.cause for r in results] == causes
