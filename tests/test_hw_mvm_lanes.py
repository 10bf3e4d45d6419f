"""hw.mvm_lanes.MvmLanes: the crossbar requests, word lines and conversion descriptors of every
conversion of an MVM, against sim.kernels.input_slices, hw.encoding.column_role and hw.isa.adc_bound."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.adc import LATENCY as ADC_LATENCY
from cimtile.hw.crossbar import SUM_STAGES
from cimtile.hw.encoding import column_role
from cimtile.hw.layer import lane_radix_value
from cimtile.hw.mvm_lanes import MvmLanes
from cimtile.hw.shift_add import carry_save
from cimtile.sim.kernels import input_slices
from helpers import TINY, VARIANT
from hw_sim import digits, simulate

CONFIGS = {"tiny": TINY, "variant": VARIANT}
#: (wbits, abits, wsigned, asigned, row_start, rows, col_start, outputs)
SHAPES = [(8, 8, 1, 0, 0, 16, 0, 2), (3, 5, 1, 1, 3, 11, 2, 3), (2, 8, 0, 1, 0, 16, 0, 16), (1, 1, 0, 0, 5, 4, 7, 9)]


def set_layer(ctx, dut, cfg, layer):
    """The lanes' layer and their copy of its radices (hw.layer.LayerRegisters gives both)."""
    ctx.set(dut.layer, layer)
    ctx.set(dut.lane_radix, lane_radix_value(cfg, layer))


def expected(cfg, shape, raw):
    """Per conversion j: (column, word lines per row, (o, shift, neg)) by the golden model's definitions."""
    wbits, abits, wsigned, asigned, r0, nr, c0, n_out = shape
    g = isa.geometry(cfg, wbits, abits, bool(wsigned), bool(asigned), nr, 1)
    analog = bool(wsigned) and cfg.analog_diff
    gconv, step = (g.nws, 2) if analog else (g.group, 1)
    slices = input_slices(raw, abits, bool(asigned), cfg.dac_bits)
    out = []
    for j in range(g.nis * g.nrg * n_out * gconv):
        k, rg, o, q = digits(j, n_out, g.nrg, gconv)
        values, weight = slices[k]
        lo, hi = r0 + rg * cfg.rows_per_conv, min(r0 + (rg + 1) * cfg.rows_per_conv, r0 + nr)
        wl = [int(values[r]) if lo <= r < hi else 0 for r in range(cfg.rows)]
        wslice, negcol = (q, False) if analog else column_role(q, bool(wsigned))
        shift = abs(weight).bit_length() - 1 + 1 + wslice * cfg.cell_bits  # adc_shift = 1
        out.append((c0 + o * g.group + q * step, wl, (o, shift, int((weight < 0) ^ negcol))))
    return g, gconv, step, analog, out


def run_lanes(cfg, shape, raws):
    """Run the lanes over the vectors ``raws`` (one MVM of ``len(raws)`` vectors), the tile's input
    buffer emulated: the next vector is on ``x`` from two cycles after ``next_vector`` (read in the
    cycle after it, data in the next). Returns the conversions seen (column, word lines, descriptor),
    the rounds issued, the cycles until ``finished``, and the cycles ``next_vector`` was high."""
    wbits, abits, wsigned, asigned, r0, nr, c0, n_out = shape
    g = isa.geometry(cfg, wbits, abits, bool(wsigned), bool(asigned), nr, 1)
    analog = bool(wsigned) and cfg.analog_diff
    gconv, step = (g.nws, 2) if analog else (g.group, 1)
    dut = MvmLanes(cfg)
    lanes = cfg.n_adcs
    per_vector = g.nis * g.nrg * n_out * gconv
    seen, rounds, cycles, boundaries = [], [0], [0], []

    def word(raw):
        return sum(int(v) << (8 * r) for r, v in enumerate(raw))

    async def bench(ctx):
        set_layer(ctx, dut, cfg, {"wbits_m1": wbits - 1, "abits_m1": abits - 1, "wsigned": wsigned, "asigned": asigned,
                            "adc_shift": 1, "row_start": r0, "row_count": nr, "col_start": c0,
                            "col_count": n_out * g.group, "nis": g.nis, "nws": g.nws, "group": g.group,
                            "nrg": g.nrg, "n_out": n_out, "gconv": gconv, "step": step, "aligned": 1,
                            "analog": int(analog)})
        def lane_digits(j):  # the digits of conversion j and its column in the window (hw.layer.DIGITS)
            k, rg, o, q = digits(j, n_out, g.nrg, gconv)
            return {"k": k, "g": rg, "o": o, "q": q, "c": o * g.group + q * step}

        for i in range(lanes):
            ctx.set(dut.lane_start[i], lane_digits(i))
        ctx.set(dut.lane_step, lane_digits(lanes))
        ctx.set(dut.count_m1, len(raws) - 1)
        ctx.set(dut.x, word(raws[0]))
        # Outside an MVM the tile rewinds the lanes to their start digits (one cycle suffices).
        ctx.set(dut.rewind, 1)
        await ctx.tick()
        ctx.set(dut.rewind, 0)
        ctx.set(dut.run, 1)
        pending = []  # (cycle issued, lane, column)
        vector = 0
        for t in range(len(raws) * per_vector * cfg.adc_cycles + 7 + SUM_STAGES + ADC_LATENCY):
            if t - 2 in boundaries:
                vector += 1
                ctx.set(dut.x, word(raws[vector]))
            if ctx.get(dut.issuing):
                rounds[0] += 1
                pending += [(t, i, ctx.get(dut.col[i])) for i in range(lanes)]
            if ctx.get(dut.next_vector):
                boundaries.append(t)
            if not ctx.get(dut.finished):
                cycles[0] = t + 1
            wl_now = {i: ctx.get(dut.wl[i]) for i in range(lanes)}
            for t0, i, col in [p for p in pending if p[0] == t - 1]:
                d = cfg.dac_bits
                wl = [(wl_now[i] >> (r * d)) & ((1 << d) - 1) for r in range(cfg.rows)]
                pending.append((t0, i, (col, wl)))
            # the descriptor arrives with the ADC's code, 1 + SUM_STAGES + ADC_LATENCY cycles after the issue
            for _t0, i, (col, wl) in [p for p in pending if p[0] == t - 1 - SUM_STAGES - ADC_LATENCY
                                      and isinstance(p[2], tuple)]:
                c = ctx.get(dut.conversion[i])
                # the one-hot registered beside it (for the carry-save shift-and-add): the output's bit when valid
                hit = (1 << c["o"]) if c["valid"] and c["o"] < cfg.cols and carry_save(cfg) else 0
                assert ctx.get(dut.hit[i]) == hit
                if c["valid"]:
                    seen.append((col, wl, (c["o"], c["shift"], c["neg"])))
                assert c["diff"] == int(analog)
            await ctx.tick()

    simulate(dut, bench)
    return seen, rounds[0], cycles[0], boundaries


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("shape", SHAPES, ids=range(len(SHAPES)))
def test_lanes_issue_every_conversion_once(name, shape):
    cfg = CONFIGS[name]
    wbits, abits, wsigned, asigned, r0, nr, c0, n_out = shape
    raw = np.random.default_rng(8).integers(0, 256, cfg.rows)
    g, gconv, step, analog, want = expected(cfg, shape, raw)
    seen, rounds, cycles, boundaries = run_lanes(cfg, shape, [raw])
    assert seen == want
    assert rounds == -(-len(want) // cfg.n_adcs)
    assert boundaries == []
    geo = isa.geometry(cfg, wbits, abits, bool(wsigned), bool(asigned), nr, n_out * g.group)
    assert cycles == isa.adc_bound(cfg, geo)


#: Shapes whose conversions leave the last round partial on tiny (4 lanes) and the variant (3), and
#: one that fits a single round (every round a vector's last).
BOUNDARY_SHAPES = [(3, 5, 1, 1, 3, 11, 2, 3), (1, 1, 0, 0, 5, 4, 7, 1), (2, 3, 0, 0, 0, 16, 0, 5)]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("shape", BOUNDARY_SHAPES, ids=range(len(BOUNDARY_SHAPES)))
def test_lanes_run_vectors_back_to_back(name, shape):
    """An MVM of three vectors: each vector's conversions exactly as a single MVM's (its own input
    vector on the word lines, a partial last round never mixing vectors), vector v+1's round 0 in the
    ``adc_cycles`` after vector v's last round, ``next_vector`` in each vector's last round but the
    final one's, and three times one vector's cycles in all."""
    cfg = CONFIGS[name]
    wbits, abits, wsigned, asigned, r0, nr, c0, n_out = shape
    raws = np.random.default_rng(9).integers(0, 256, (3, cfg.rows))
    wants = [expected(cfg, shape, raw) for raw in raws]
    g = wants[0][0]
    seen, rounds, cycles, boundaries = run_lanes(cfg, shape, list(raws))
    assert seen == [c for w in wants for c in w[-1]]
    per_vector_rounds = -(-len(wants[0][-1]) // cfg.n_adcs)
    assert rounds == 3 * per_vector_rounds
    geo = isa.geometry(cfg, wbits, abits, bool(wsigned), bool(asigned), nr, n_out * g.group)
    assert cycles == 3 * isa.adc_bound(cfg, geo)
    assert boundaries == [(v * per_vector_rounds + per_vector_rounds - 1) * cfg.adc_cycles for v in range(2)]


@pytest.mark.parametrize("name", CONFIGS)
def test_lanes_vector_count_restarts_for_each_mvm(name):
    """The vector counter restarts for every MVM, as the tile drives the lanes: back-to-back MVMs (``run``
    held, ``rewind`` only in the first one's last cycle) and an MVM stopped by an error (``abort``, then a
    cycle without ``run``) each see ``next_vector`` once per vector but the last, and ``last`` in the
    ``MVM_LATENCY``-th cycle after the lanes finish. (The counter restarts when the lanes finish or do not
    run, not on ``rewind``: hw/mvm_lanes.py.)"""
    cfg = CONFIGS[name]
    wbits, abits, wsigned, asigned, r0, nr, c0, n_out = (1, 1, 0, 0, 5, 4, 7, 1)  # one round per vector
    g = isa.geometry(cfg, wbits, abits, bool(wsigned), bool(asigned), nr, 1)
    dut = MvmLanes(cfg)
    log = []

    def lane_digits(j):
        k, rg, o, q = digits(j, n_out, g.nrg, g.group)
        return {"k": k, "g": rg, "o": o, "q": q, "c": o * g.group + q}

    async def bench(ctx):
        set_layer(ctx, dut, cfg, {"wbits_m1": wbits - 1, "abits_m1": abits - 1, "wsigned": wsigned, "asigned": asigned,
                            "adc_shift": 1, "row_start": r0, "row_count": nr, "col_start": c0,
                            "col_count": n_out * g.group, "nis": g.nis, "nws": g.nws, "group": g.group,
                            "nrg": g.nrg, "n_out": n_out, "gconv": g.group, "step": 1, "aligned": 1,
                            "analog": 0})
        for i in range(cfg.n_adcs):
            ctx.set(dut.lane_start[i], lane_digits(i))
        ctx.set(dut.lane_step, lane_digits(cfg.n_adcs))
        ctx.set(dut.count_m1, 2)  # three vectors
        ctx.set(dut.rewind, 1)
        await ctx.tick()

        async def mvm(abort_after=None):
            """One MVM: run until the lanes finish, then its last cycle (rewind); or stopped by an error in
            the cycle after its ``abort_after``-th vector boundary, then a cycle outside any MVM."""
            ctx.set(dut.run, 1)
            ctx.set(dut.rewind, 0)
            seen = 0
            for _ in range(40):
                if ctx.get(dut.finished):
                    break
                if abort_after is not None and seen == abort_after:
                    ctx.set(dut.abort, 1)
                    await ctx.tick()
                    ctx.set(dut.abort, 0)
                    ctx.set(dut.run, 0)
                    ctx.set(dut.rewind, 1)
                    await ctx.tick()
                    return seen
                seen += ctx.get(dut.next_vector)
                await ctx.tick()
            for _ in range(isa.MVM_LATENCY):  # the pipeline drains; then the MVM's last cycle: last, rewind
                assert ctx.get(dut.finished) and not ctx.get(dut.last)
                await ctx.tick()
            assert ctx.get(dut.finished) and ctx.get(dut.last)
            ctx.set(dut.rewind, 1)
            await ctx.tick()
            return seen

        log.append(await mvm())
        log.append(await mvm())  # back to back: run never drops
        log.append(await mvm(abort_after=1))
        log.append(await mvm())

    simulate(dut, bench)
    assert log == [2, 2, 1, 2]


@pytest.mark.parametrize("name", CONFIGS)
def test_lanes_word_lines_only_after_a_round(name):
    """The word-line enables are registered when a round issues and cleared in every other cycle: with
    ``x`` all ones, ``wl[i]`` in cycle t+1 is the word lines of lane i's conversion when a round issued
    in cycle t and that conversion exists, and zero otherwise (between rounds with ``adc_cycles`` > 1,
    after a cycle without ``run``, for a partial last round's idle lanes, after the lanes finish). The
    first round issues in the first cycle the layer (and the lanes' start digits) of a new window is
    seen, as an MVM right after a WIN does: its rows are the new window's, not the previous layer's."""
    cfg = CONFIGS[name]
    lanes, ones = cfg.n_adcs, np.full(cfg.rows, 255)
    old, new = (1, 1, 0, 0, 0, 16, 0, 1), (2, 3, 0, 0, 3, 11, 2, 2)  # the previous layer, the new window
    dut = MvmLanes(cfg)

    def setup(ctx, shape):
        wbits, abits, wsigned, asigned, r0, nr, c0, n_out = shape
        g = isa.geometry(cfg, wbits, abits, bool(wsigned), bool(asigned), nr, 1)
        set_layer(ctx, dut, cfg, {"wbits_m1": wbits - 1, "abits_m1": abits - 1, "wsigned": wsigned, "asigned": asigned,
                            "adc_shift": 1, "row_start": r0, "row_count": nr, "col_start": c0,
                            "col_count": n_out * g.group, "nis": g.nis, "nws": g.nws, "group": g.group,
                            "nrg": g.nrg, "n_out": n_out, "gconv": g.group, "step": 1, "aligned": 1,
                            "analog": 0})

        def lane_digits(j):
            k, rg, o, q = digits(j, n_out, g.nrg, g.group)
            return {"k": k, "g": rg, "o": o, "q": q, "c": o * g.group + q}

        for i in range(lanes):
            ctx.set(dut.lane_start[i], lane_digits(i))
        ctx.set(dut.lane_step, lane_digits(lanes))

    want = [wl for _, wl, _ in expected(cfg, new, ones)[-1]]
    got, issued_at = [], []

    async def bench(ctx):
        setup(ctx, old)
        ctx.set(dut.x, sum(255 << (8 * r) for r in range(cfg.rows)))
        ctx.set(dut.rewind, 1)
        await ctx.tick()
        await ctx.tick()  # the previous layer has been seen for two cycles
        setup(ctx, new)  # a WIN committed at the last edge: the MVM's first cycle sees the new layer
        ctx.set(dut.rewind, 0)
        ctx.set(dut.run, 1)
        rounds = 0
        for t in range(len(want) * cfg.adc_cycles + 12):
            if t >= 1:  # the word lines of the cycle before's round, or none
                wl_now = [ctx.get(dut.wl[i]) for i in range(lanes)]
                got.append([[(w >> (r * cfg.dac_bits)) & ((1 << cfg.dac_bits) - 1) for r in range(cfg.rows)]
                            for w in wl_now])
            ctx.set(dut.run, int(t != 3))  # a cycle without run mid-MVM: no round, no word lines after it
            if ctx.get(dut.issuing):
                issued_at.append(t)
                rounds += 1
            await ctx.tick()

    simulate(dut, bench)
    zero = [0] * cfg.rows
    expect = []
    for t in range(len(got)):  # got[t]: the word lines in cycle t + 1
        if t in issued_at:
            first = issued_at.index(t) * lanes
            expect.append([want[first + i] if first + i < len(want) else zero for i in range(lanes)])
        else:
            expect.append([zero] * lanes)
    assert issued_at[0] == 0 and 3 not in issued_at
    assert len(issued_at) == -(-len(want) // lanes)
    assert any(w == zero for w in want) is False  # every conversion drives some word line (x all ones)
    assert got == expect
