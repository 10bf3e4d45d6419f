"""Each block of the tile on its own, in Amaranth's simulator, against a NumPy model."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator
from cimtile.hw.adc import LATENCY as ADC_LATENCY
from cimtile.hw.adc import Adc
from cimtile.hw.crossbar import SUM_STAGES, Crossbar
from cimtile.hw.params import PRESETS
from cimtile.hw.requant import LATENCY, Requant
from cimtile.sim.kernels import requantise, wrap
from hypothesis import given, settings
from hypothesis import strategies as st

TINY = PRESETS["tiny"]


def simulate(dut, bench, clock=True):
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("gaps", [False, True])
def test_requant_lane_matches_kernel(gaps):
    """Every input in a cycle of its own, or (``gaps``) with idle cycles between them in which
    ``advance`` is low and the inputs are garbage: the lane holds its stages then."""
    cfg = TINY
    rng = np.random.default_rng(0)
    n = 300
    acc = rng.integers(-(1 << (cfg.acc_bits - 1)), 1 << (cfg.acc_bits - 1), n)
    acc[:20] = [-(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1] * 10
    bias = np.where(rng.random(n) < 0.3, rng.integers(-(1 << 31), 1 << 31, n), rng.integers(-300, 300, n))
    mult = np.where(rng.random(n) < 0.3, rng.integers(0, 1 << 16, n), rng.integers(0, 300, n))
    shift = rng.integers(0, 64, n)
    shift[::7] = 0
    zp = rng.integers(-128, 256, n)
    lo = rng.integers(-128, 256, n)
    hi = np.maximum(lo, rng.integers(-128, 256, n))
    hi[::11] = lo[::11] - 1  # relu can push lo above hi: hi wins, as np.clip
    relu = rng.integers(0, 2, n)
    # Quotients around the +-1023 saturation of the output stage, with and without rounding.
    near = slice(200, 300)
    acc[near] = rng.integers(-2100, 2100, 100)
    bias[near], mult[near], shift[near] = 0, 1, rng.integers(0, 2, 100)
    want = [int(requantise(np.array([acc[i]]), bias[i], mult[i], shift[i], int(zp[i]), int(lo[i]), int(hi[i]),
                           bool(relu[i]))[0]) for i in range(n)]
    dut = Requant(cfg)
    got = []

    # the cycle each input is presented in; idle cycles get the next input's values, advance low
    starts = np.cumsum(1 + (rng.integers(0, 3, n) if gaps else np.zeros(n, int)))
    inputs = ((dut.acc, acc), (dut.bias, bias), (dut.mult, mult), (dut.shift, shift),
              (dut.zero_point, zp), (dut.clamp_lo, lo), (dut.clamp_hi, hi), (dut.relu, relu))

    async def bench(ctx):
        due = {int(t) + LATENCY for t in starts}
        nxt = 0
        for cycle in range(1, int(starts[-1]) + LATENCY + 1):
            if cycle in due:
                got.append(ctx.get(dut.q))
            if nxt < n:
                here = int(cycle == starts[nxt])
                i = nxt if here else (nxt + 1) % n
                for port, v in inputs:
                    ctx.set(port, int(v[i]))
                ctx.set(dut.advance, here)
                nxt += here
            else:
                ctx.set(dut.advance, 0)
            await ctx.tick()

    simulate(dut, bench)
    bad = [i for i in range(n) if got[i] != want[i]]
    assert not bad, f"lane {bad[0]}: RTL {got[bad[0]]}, kernel {want[bad[0]]}"


@pytest.mark.parametrize("diff", [0, 1])
def test_adc_clips_after_range_shift(diff):
    cfg = TINY
    dut = Adc(cfg, 12)
    rng = np.random.default_rng(1)
    sums = rng.integers(-2048, 2048, 400) if diff else rng.integers(0, 2048, 400)
    shifts = rng.integers(0, 16, 400)
    lo, hi = (-(1 << (cfg.adc_bits - 1)), (1 << (cfg.adc_bits - 1)) - 1) if diff else (0, cfg.adc_max)
    want = np.clip(sums >> shifts, lo, hi)
    # the term (the code's contribution): negated and shifted by the descriptor of the cycle before the code
    negs, term_shifts = rng.integers(0, 2, 400), rng.integers(0, 64, 400)
    terms = [(-int(w) if n else int(w)) << int(t) for w, n, t in zip(want, negs, term_shifts)]
    want_terms = wrap(np.array([v % (1 << cfg.acc_bits) for v in terms], dtype=np.int64), cfg.acc_bits)

    async def bench(ctx):
        ctx.set(dut.diff, diff)
        for s, k, w, n, t, wt in zip(sums, shifts, want, negs, term_shifts, want_terms):
            ctx.set(dut.shift, int(k))  # the range (a layer's): registered, a cycle before the sum
            await ctx.tick()
            ctx.set(dut.sum, int(s))
            for stage in range(ADC_LATENCY):  # the code is registered: it follows the sum by ADC_LATENCY cycles
                if stage == ADC_LATENCY - 1:
                    ctx.set(dut.term_neg, int(n))
                    ctx.set(dut.term_shift, int(t))
                await ctx.tick()
            assert ctx.get(dut.code) == w, f"sum {s} >> {k}: code {ctx.get(dut.code)}, expected {w}"
            assert ctx.get(dut.term) == wt, f"code {w}, neg {n}, << {t}: term {ctx.get(dut.term)}, expected {wt}"

    simulate(dut, bench)


@pytest.mark.parametrize("encoding", ["differential", "differential-analog"])
@pytest.mark.parametrize("cell_bits, rows, dac_bits", [(2, 16, 2), (1, 70, 1), (3, 37, 2), (4, 33, 1), (2, 128, 1)])
def test_crossbar_column_sums(encoding, cell_bits, rows, dac_bits):
    """Column sums in chunks (crossbar.chunk_rows) of one, several and a partial last chunk, every cell width,
    up to the largest sum."""
    cfg = TINY.replace(dac_bits=dac_bits, n_adcs=3, weight_encoding=encoding, cell_bits=cell_bits, rows=rows)
    R, C, L, d = cfg.rows, cfg.cols, cfg.n_adcs, cfg.dac_bits
    rng = np.random.default_rng(2)
    levels = rng.integers(0, cfg.max_level + 1, (R, C))
    masks = rng.random((R, C)) < 0.3
    dut = Crossbar(cfg)
    reqs = []
    for _ in range(40):
        cols = rng.integers(0, C - 1, L)
        wl = rng.integers(0, 1 << d, (L, R))
        wl[rng.random((L, R)) < 0.2] = 0
        pair = rng.integers(0, 2, L) if cfg.analog_diff else np.zeros(L, int)
        reqs.append((cols, wl, pair))
    # The largest sum: a full column, every row driven at full scale (the halving's top bits in use).
    levels[:, 0], masks[:, 0] = cfg.max_level, False
    reqs.insert(0, (np.zeros(L, int), np.full((L, R), (1 << d) - 1), np.zeros(L, int)))
    lv = np.where(masks, 0, levels)

    def expect(col, wl, pair):
        s = int(wl @ lv[:, col])
        return s - int(wl @ lv[:, col + 1]) if pair else s

    async def bench(ctx):
        for c in range(C):
            ctx.set(dut.wr_col, c)
            ctx.set(dut.wr_levels, sum(int(levels[r, c]) << (r * cfg.cell_bits) for r in range(R)))
            ctx.set(dut.wr_mask, sum(int(masks[r, c]) << r for r in range(R)))
            ctx.set(dut.wr_levels_en, 1)
            ctx.set(dut.wr_mask_en, 1)
            await ctx.tick()
        ctx.set(dut.wr_levels_en, 0)
        ctx.set(dut.wr_mask_en, 0)
        pending = []
        due = 1 + SUM_STAGES  # the sum's cycle after the column's
        for t in range(len(reqs) + due):
            if t < len(reqs):
                cols, _, pair = reqs[t]
                for i in range(L):
                    ctx.set(dut.col[i], int(cols[i]))
                    ctx.set(dut.pair[i], int(pair[i]))
                ctx.set(dut.rd_col, int(cols[-1]))  # the read port, beside the lanes (the last one's column)
            if t >= 1 and t - 1 < len(reqs):  # word lines one cycle after the column
                _, wl, _ = reqs[t - 1]
                for i in range(L):
                    ctx.set(dut.wl[i], sum(int(wl[i, r]) << (r * d) for r in range(R)))
                rd = reqs[t - 1][0][-1]
                assert ctx.get(dut.rd_levels) == sum(int(levels[r, rd]) << (r * cfg.cell_bits) for r in range(R))
                assert ctx.get(dut.rd_mask) == sum(int(masks[r, rd]) << r for r in range(R))
            if t >= due:
                cols, wl, pair = reqs[t - due]
                got = [ctx.get(dut.sum[i]) for i in range(L)]
                pending.append((got, [expect(cols[i], wl[i], pair[i]) for i in range(L)]))
            await ctx.tick()
        for got, want in pending:
            assert got == want

    simulate(dut, bench)


def run_lane(cfg, rows):
    """The Requant lane's output for each row ``(acc, bias, mult, shift, zero_point, clamp_lo, clamp_hi,
    relu)``, one row a cycle."""
    dut = Requant(cfg)
    ports = (dut.acc, dut.bias, dut.mult, dut.shift, dut.zero_point, dut.clamp_lo, dut.clamp_hi, dut.relu)
    got = []

    async def bench(ctx):
        for cycle in range(len(rows) + LATENCY):
            if cycle >= LATENCY:
                got.append(ctx.get(dut.q))
            if cycle < len(rows):
                for port, v in zip(ports, rows[cycle]):
                    ctx.set(port, int(v))
            await ctx.tick()

    simulate(dut, bench)
    return got


def kernel(rows):
    return [int(requantise(np.array([a]), b, m, s, zp, lo, hi, bool(relu))[0])
            for a, b, m, s, zp, lo, hi, relu in rows]


@pytest.mark.parametrize("acc_bits", [16, 24, 40])
def test_requant_lane_corners(acc_bits):
    """The extremes of every factor of ``(acc + bias) * mult`` (the RTL adds ``bias * mult`` after the
    multipliers, and splits the accumulator at bit 17), at the smallest, tiny's and the largest
    accumulator width, over shifts that put the output window at each end of the product: each
    combination, against the kernel."""
    cfg = replace(TINY, acc_bits=acc_bits)
    top = 1 << (acc_bits - 1)
    accs = sorted(a for a in {-top, -top + 1, -(1 << 17) - 1, -(1 << 17), -1, 0, 1, (1 << 17) - 1, 1 << 17, top - 2,
                              top - 1} if -top <= a < top)
    biases = [-(1 << 31), -(1 << 31) + 1, -(1 << 17), -1, 0, 1, (1 << 31) - 1]
    mults = [0, 1, 1 << 15, (1 << 16) - 1]
    shifts = [0, 1, 2, 16, 17, 18, 31, 32, 33, acc_bits + 14, acc_bits + 15, 46, 47, 48, 49, 63]
    rows = [(a, b, m, s, 0, -256, 255, 0) for a, b, m, s in itertools.product(accs, biases, mults, shifts)]
    got, want = run_lane(cfg, rows), kernel(rows)
    bad = [i for i in range(len(rows)) if got[i] != want[i]]
    assert not bad, f"{rows[bad[0]]}: RTL {got[bad[0]]}, kernel {want[bad[0]]}"


@st.composite
def lane_rows(draw):
    acc_bits = draw(st.sampled_from([16, 17, 18, 24, 32, 33, 40]))
    top = 1 << (acc_bits - 1)
    row = st.tuples(st.integers(-top, top - 1), st.integers(-(1 << 31), (1 << 31) - 1), st.integers(0, (1 << 16) - 1),
                    st.integers(0, 63), st.integers(-256, 255), st.integers(-256, 255), st.integers(-256, 255),
                    st.integers(0, 1))
    return acc_bits, draw(st.lists(row, min_size=1, max_size=40))


@settings(max_examples=12)
@given(lane_rows())
def test_requant_lane_hypothesis(case):
    """Random lanes at accumulator widths around the 17-bit split and up to the largest, against the kernel."""
    acc_bits, rows = case
    rows = [(a, b, m, s, zp, lo, max(lo, hi), relu) for a, b, m, s, zp, lo, hi, relu in rows]
    assert run_lane(replace(TINY, acc_bits=acc_bits), rows) == kernel(rows)


@pytest.mark.parametrize("acc_bits", [24, 40])
def test_requant_lane_saturation_bounds(acc_bits):
    """Products at and beside +-2**k, with shifts that put the 11-bit quotient's saturation bound
    there (k = shift + 10) or one bit either side: the saturation and rounding at their edges, for
    every k a product of this width reaches."""
    cfg = replace(TINY, acc_bits=acc_bits)
    acc_top, bias_top = (1 << (acc_bits - 1)) - 1, (1 << 31) - 1
    rows = []
    for k in range(10, 64):
        # the smallest power-of-two multiplier 2**j for which (acc + bias) = 2**(k-j) + 1 is reachable
        j = next((j for j in range(16) if (1 << (k - j)) + 1 <= acc_top + bias_top), None)
        if j is None:
            continue
        for v in ((1 << (k - j)) + d for d in (-1, 0, 1)):
            for value in (v, -v):
                bias = max(-bias_top - 1, min(bias_top, value))
                for shift in (s for s in (k - 11, k - 10, k - 9) if 0 <= s < 64):
                    rows.append((value - bias, bias, 1 << j, shift, 0, -256, 255, 0))
    assert len(rows) > 200
    got, want = run_lane(cfg, rows), kernel(rows)
    bad = [i for i in range(len(rows)) if got[i] != want[i]]
    assert not bad, f"{rows[bad[0]]}: RTL {got[bad[0]]}, kernel {want[bad[0]]}"


@pytest.mark.parametrize("acc_bits", [24, 40])
def test_requant_lane_every_window(acc_bits):
    """Every shift 0..63, with products whose quotient ``p >> shift`` lies inside the clamp bounds (so each
    of its bits reaches the byte) and random low bits (the rounding bit, bit shift - 1, both ways): the
    window and rounding bit are selections from the product by the shift, so a wrong select for any
    shift (or a wrong sign extension above the product's width) changes the byte."""
    cfg = replace(TINY, acc_bits=acc_bits)
    rng = np.random.default_rng(acc_bits)
    top_acc, top_bias = (1 << (acc_bits - 1)) - 1, (1 << 31) - 1
    rows = []
    for shift in range(64):
        for _ in range(12):
            mult = int(rng.choice([1, 3, 255, (1 << 16) - 1]))
            quotient = int(rng.integers(-256, 256))
            low = int(rng.integers(0, 1 << shift)) if shift else 0
            v = ((quotient << shift) + low) // mult  # acc + bias, so that p = v * mult is near quotient << shift
            if not -top_acc - top_bias - 1 <= v <= top_acc + top_bias:
                v = int(rng.integers(-top_acc - top_bias - 1, top_acc + top_bias + 1)) >> min(shift, 40)
            bias = max(-top_bias - 1, min(top_bias, v))
            acc = v - bias
            zp = int(rng.integers(-20, 20))
            rows.append((acc, bias, mult, shift, zp, -256, 255, 0))
    got, want = run_lane(cfg, rows), kernel(rows)
    inside = sum(-256 < w < 255 for w in want)
    assert inside > len(rows) // 2  # mostly unclamped: the window's bits are seen
    bad = [i for i in range(len(rows)) if got[i] != want[i]]
    assert not bad, f"{rows[bad[0]]}: RTL {got[bad[0]]}, kernel {want[bad[0]]}"


def test_requant_lane_clamp_edges():
    """Quotients at and beside ``lo - zp`` and ``hi - zp`` with the rounding bit 0 and 1 (shift 1, p odd or
    even), ReLU on and off, bounds crossing: the clamp's comparisons take the rounding bit as their adders'
    carry-in (``t < lo`` as the sign of ``quotient + rbit + (zp - lo)``, ``t > hi`` of
    ``quotient + rbit + ~(hi - zp)``), so an off-by-one in either shows at these edges."""
    rows = []
    for zp, lo, hi in ((0, -256, 255), (3, -100, 120), (-7, -8, -8), (100, 50, 60), (255, -256, -256),
                       (-256, 255, 255), (10, 20, 5)):
        for relu in (0, 1):
            for edge in (lo - zp, hi - zp, max(lo, zp) - zp):
                for q in range(edge - 2, edge + 3):
                    for rbit in (0, 1):
                        p = 2 * q + rbit  # shift 1: quotient q, rounding bit rbit
                        rows.append((p, 0, 1, 1, zp, lo, hi, relu))
    got, want = run_lane(TINY, rows), kernel(rows)
    bad = [i for i in range(len(rows)) if got[i] != want[i]]
    assert not bad, f"{rows[bad[0]]}: RTL {got[bad[0]]}, kernel {want[bad[0]]}"
