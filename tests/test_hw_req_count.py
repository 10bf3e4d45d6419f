"""The multi-vector REQ (``REQ ... count=N``) of the Amaranth tile against the golden model: vectors back
to back up to the buffers' ends, partial last chunks, one chunk per vector (``rq_lanes >= n_out``), loop
offsets, the ADDR errors one past either buffer's end, a REQ right after a multi-vector MVM and an RDOUT
right after a multi-vector REQ (Amaranth's simulator). The isaac preset itself runs a multi-vector REQ in
tests/test_hw_perf.py (``test_isaac_rtl_runs_a_layer_program``) and in the co-simulation's random programs.

Each test is one simulator run of several programs (state persisting), because elaborating the tile
costs more than simulating these programs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cimtile.hw.isa import Cause, Opcode, encode
from cimtile.hw.params import PRESETS, TileConfig
from cimtile.tb.amaranth_sim import golden_runs, run_rtl
from helpers import TINY, VARIANT

#: isaac's 8 requantisation lanes and 256-bit bus on a tile small enough for the simulator (and a short
#: write-and-verify: LDW's cycles are not what is tested here).
ISAAC32 = PRESETS["isaac"].replace(name="isaac32", rows=32, cols=32, rows_per_conv=32, rq_lanes=8, in_depth=16,
                                   acc_depth=16, out_depth=16, write_cycles=1)
CONFIGS = {"tiny": TINY, "variant": VARIANT, "isaac32": ISAAC32}
#: ``make mutate`` runs the RTL tests on a named mutant of the RTL (tb/mutants.py) through this variable.
MUTANT = os.environ.get("CIMTILE_MUTANT") or None
E = encode


def dump(cfg: TileConfig) -> list[int]:
    """Reads every output and accumulator vector."""
    return [E(Opcode.RDOUT, start=0, count=cfg.out_depth), E(Opcode.RDACC, start=0, count=cfg.acc_depth),
            E(Opcode.HALT)]


def compare(cfg: TileConfig, programs: list[tuple[list[int], list]]) -> list:
    """Each ``(program, feed blocks)`` of ``programs`` in turn on one golden tile and one RTL tile (state
    persisting): the same stop (cause, pc), cycles and data out for each. Returns the golden results."""
    gold = golden_runs(cfg, programs)
    rtl = run_rtl(cfg, [(p, din) for (p, _), (_, din, _) in zip(programs, gold)], mutation=MUTANT)
    for n, ((res, _, dout), r) in enumerate(zip(gold, rtl)):
        assert (r.cause, r.pc) == (res.cause, res.pc), f"run {n}: RTL {r.cause.name} at {r.pc}, golden " \
            f"{res.cause.name} at {res.pc} ({res.detail})"
        assert r.cycles == res.cycles, f"run {n}: RTL {r.cycles} cycles, golden {res.cycles}"
        assert len(r.dout) == len(dout), f"run {n}: RTL sent {len(r.dout)} words, golden {len(dout)}"
        bad = [i for i, (a, b) in enumerate(zip(r.dout, dout)) if a != b]
        assert not bad, f"run {n}: data-out words {bad[:8]} differ"
    return gold


def n_out_cases(cfg: TileConfig) -> list[int]:
    """Outputs per vector: the most (2-column weights), a partial last chunk, and single chunks
    (``n_out`` equal to ``rq_lanes`` and below it)."""
    most, lanes = cfg.cols // 2, cfg.rq_lanes
    partial = next(n for n in range(most, 0, -1) if n % lanes and n > lanes) if most > lanes else most
    return sorted({most, partial, min(lanes, most), 1}, reverse=True)


def prologue(cfg: TileConfig, rng, *, loads: bool = True) -> tuple[list[int], list]:
    """Requantisation parameters (random lane records) and, with ``loads``, random 2-bit weights and
    every input vector (4-bit activations: half the conversions of 8); the feed blocks for its loads."""
    words = [E(Opcode.CFG, wbits=2, abits=4, wsigned=1, asigned=0, adc_shift=0),
             E(Opcode.CFGRQ, zero_point=5, clamp_lo=-90, clamp_hi=100, relu=0), E(Opcode.LDRQ, start=0, count=cfg.cols)]
    # small multipliers and moderate shifts: most results inside the clamp, so the rounding shows
    cols = cfg.cols
    blocks = [np.stack([rng.integers(-60, 60, cols), rng.integers(1, 5, cols), rng.integers(2, 8, cols)], 1)]
    if loads:
        words += [E(Opcode.LDW, start=0, count=cfg.cols), E(Opcode.LDIN, start=0, count=cfg.in_depth)]
        blocks += [rng.integers(0, cfg.max_level + 1, (cfg.rows, cfg.cols)),
                   rng.integers(0, 256, (cfg.in_depth, cfg.rows))]
    return words, blocks


def window(cfg: TileConfig, n_out: int) -> int:
    """A window of ``n_out`` outputs (2-bit signed weights: 2 columns each)."""
    return E(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=2 * n_out)


def section(cfg: TileConfig, n_out: int) -> list[int]:
    """Multi-vector REQs on a layer of ``n_out`` outputs, each followed by an RDOUT of what it wrote:
    one ending at both buffers' last vector (the RDOUT right after reads that vector through the
    transparent port, as it is written behind), one from vector 0, a REQ count=1, one in a loop
    (offsets added to both ranges, stride_out != stride_acc), one right after a multi-vector MVM
    whose last vector (written behind, in the REQ's first cycle) is the REQ's first, and one over all
    of an accumulating MVM's vectors."""
    acc_end, out_end, in_end = cfg.acc_depth, cfg.out_depth, cfg.in_depth
    count = min(acc_end, out_end, in_end, 5)
    return [window(cfg, n_out),
            E(Opcode.MVM, in_addr=0, acc_addr=0, count=7), E(Opcode.MVM, in_addr=in_end - count,
                                                              acc_addr=acc_end - count, count=count),
            E(Opcode.REQ, acc_addr=acc_end - count, out_addr=out_end - count, count=count),
            E(Opcode.RDOUT, start=out_end - count, count=count),
            E(Opcode.REQ, acc_addr=0, out_addr=0, count=3), E(Opcode.RDOUT, start=0, count=3),
            E(Opcode.REQ, acc_addr=3, out_addr=3), E(Opcode.RDOUT, start=3, count=1),
            E(Opcode.LOOP, count=2, body=1, stride_in=0, stride_acc=1, stride_out=3),
            E(Opcode.REQ, acc_addr=4, out_addr=4, count=2), E(Opcode.RDOUT, start=4, count=5),
            E(Opcode.MVM, in_addr=0, acc_addr=1, count=3), E(Opcode.REQ, acc_addr=3, out_addr=2, count=2),
            E(Opcode.RDOUT, start=2, count=2),
            E(Opcode.MVM, in_addr=3, acc_addr=0, count=4, accumulate=1),
            E(Opcode.REQ, acc_addr=0, out_addr=5, count=4), E(Opcode.RDOUT, start=5, count=4)]


@pytest.mark.parametrize("name", CONFIGS)
def test_req_count_programs(name):
    """:func:`section` for every :func:`n_out_cases` (full chunks, a partial last chunk, one chunk per
    vector), then every output and accumulator vector: outputs, cycles and buffers equal the golden
    model's."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(31)
    words, blocks = prologue(cfg, rng)
    for n_out in n_out_cases(cfg):
        words += section(cfg, n_out)
    (res, _, _), _ = compare(cfg, [(words + [E(Opcode.HALT)], blocks), (dump(cfg), [])])
    assert res.ok


ERRORS = {
    # (acc_addr, out_addr, count) one past a buffer's end, from (acc_depth, out_depth)
    "out_one_past": lambda a, o: (0, o - 2, 3),
    "acc_one_past": lambda a, o: (a - 2, 0, 3),
    "both_past": lambda a, o: (a - 1, o - 1, 2),  # the accumulator range is checked first (both ADDR)
}


@pytest.mark.parametrize("name", CONFIGS)
def test_req_count_range_errors(name):
    """For each of :data:`ERRORS`: ADDR at the REQ when a range passes its buffer's end by one vector,
    with no output written (a read-back of every output after it), likewise when a loop's offsets
    put the second iteration's range one past; the REQ one vector shorter is legal."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(7)
    setup, blocks = prologue(cfg, rng, loads=False)
    outputs = [E(Opcode.RDOUT, start=0, count=cfg.out_depth), E(Opcode.HALT)]
    runs, failing = [(setup + [window(cfg, 3), E(Opcode.HALT)], blocks)], []
    for where in ERRORS.values():
        acc, out, count = where(cfg.acc_depth, cfg.out_depth)
        runs += [([E(Opcode.REQ, acc_addr=acc, out_addr=out, count=count), E(Opcode.HALT)], []),
                 ([E(Opcode.LOOP, count=2, body=1, stride_in=0, stride_acc=1, stride_out=1),
                   E(Opcode.REQ, acc_addr=max(acc - 1, 0), out_addr=max(out - 1, 0), count=count), E(Opcode.HALT)], []),
                 (outputs, []),
                 ([E(Opcode.REQ, acc_addr=acc, out_addr=out, count=count - 1), E(Opcode.HALT)], []),
                 (outputs, [])]
        failing += [len(runs) - 5, len(runs) - 4]
    gold = compare(cfg, runs)
    assert [n for n, (res, _, _) in enumerate(gold) if not res.ok] == failing
    assert {gold[n][0].cause for n in failing} == {Cause.ADDR}
