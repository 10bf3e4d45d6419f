"""hw.shift_add.ShiftAdd against the accumulation of sim.kernels (codes shifted, signed, summed per
output, wrapped at acc_bits)."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw.shift_add import ShiftAdd
from cimtile.sim.kernels import wrap
from helpers import TINY, VARIANT
from hw_sim import simulate

#: Eight lanes on twelve outputs (not a power of two): lanes often share an output, which the
#: lane-space grouping (one leader per output) must sum exactly once.
EIGHT_LANES = TINY.replace(name="eight_lanes", cols=12, n_adcs=8, rq_lanes=2)


def _accumulated(old, rounds, n_out: int, accumulate: int, bits: int) -> np.ndarray:
    """The model: outputs below ``n_out`` start at 0 unless accumulating; each valid lane's code adds
    ``+-code << shift`` to its output; the sums wrap at ``bits``."""
    want = old.copy()
    if not accumulate:
        want[:n_out] = 0
    for rnd in rounds:
        for valid, o, shift, neg, code in rnd:
            if valid:
                want[o] += (-code if neg else code) << shift
    return wrap(want, bits)


def _hit(valid: int, o: int, cols: int) -> int:
    """The lanes' registered one-hot of a conversion (hw.mvm_lanes.one_hot, which the lanes' test checks)."""
    return (1 << o) if valid and o < cols else 0


def _term(code: int, shift: int, neg: int, bits: int) -> int:
    """The ADC's term of a code (hw.adc.Adc.term): ``+-code << shift`` as a signed ``bits``-bit value."""
    return int(wrap(np.array([(-code if neg else code) << shift], dtype=np.int64), bits)[0])


@pytest.mark.parametrize("cfg", [TINY, VARIANT, EIGHT_LANES], ids=["tiny", "variant", "eight_lanes"])
@pytest.mark.parametrize("accumulate", [0, 1])
def test_shift_add_sums_codes_into_outputs(cfg, accumulate):
    rng = np.random.default_rng(4 + accumulate)
    lanes, cols, bits = cfg.n_adcs, cfg.cols, cfg.acc_bits
    n_out = int(rng.integers(1, cols + 1))
    old = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), cols)
    rounds = []
    for _ in range(30):
        rounds.append([(int(rng.random() < 0.8), int(rng.integers(0, n_out)), int(rng.integers(0, 20)),
                        int(rng.integers(0, 2)), int(rng.integers(-(1 << cfg.adc_bits) // 2, 1 << cfg.adc_bits)))
                       for _ in range(lanes)])
    want = _accumulated(old, rounds, n_out, accumulate, bits)
    dut = ShiftAdd(cfg)
    got = []

    async def bench(ctx):
        ctx.set(dut.old, sum((int(v) & ((1 << bits) - 1)) << (j * bits) for j, v in enumerate(old)))
        ctx.set(dut.accumulate, accumulate)
        ctx.set(dut.n_out, n_out)
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        ctx.set(dut.run, 1)
        for rnd in rounds:
            for i, (valid, o, shift, neg, code) in enumerate(rnd):
                ctx.set(dut.conversion[i], {"valid": valid, "o": o, "shift": shift, "neg": neg, "diff": 0})
                ctx.set(dut.hit[i], _hit(valid, o, cols))
                ctx.set(dut.term[i], _term(code, shift, neg, bits))
            result = ctx.get(dut.result)
            await ctx.tick()
        got.extend((result >> (j * bits)) & ((1 << bits) - 1) for j in range(cols))

    simulate(dut, bench)
    assert wrap(np.array(got, dtype=np.int64), bits).tolist() == want.tolist()


@pytest.mark.parametrize("cfg", [TINY, VARIANT, EIGHT_LANES], ids=["tiny", "variant", "eight_lanes"])
@pytest.mark.parametrize("accumulate", [0, 1])
@pytest.mark.parametrize("gap", [0, 1], ids=["adc_cycles1", "adc_cycles2"])
def test_shift_add_vector_boundaries(cfg, accumulate, gap):
    """A multi-vector MVM's boundaries (hw.tile): in the cycle a vector's last codes arrive, ``load``
    takes the next vector's old accumulator vector while ``result`` (the finished vector, written to
    the accumulator memory in that cycle) still adds those codes; the next vector's codes follow in
    the next cycle (``adc_cycles`` = 1) or after a cycle without codes (``gap``, ``adc_cycles`` > 1).
    Each vector as a single MVM would give it (the golden model's accumulation)."""
    rng = np.random.default_rng(10 + accumulate + 2 * gap)
    lanes, cols, bits = cfg.n_adcs, cfg.cols, cfg.acc_bits
    n_out = int(rng.integers(1, cols + 1))
    vectors = 3
    olds = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (vectors, cols))
    rounds = [[[(int(rng.random() < 0.8), int(rng.integers(0, n_out)), int(rng.integers(0, 20)),
                 int(rng.integers(0, 2)), int(rng.integers(-(1 << cfg.adc_bits) // 2, 1 << cfg.adc_bits)))
                for _ in range(lanes)] for _ in range(int(rng.integers(1, 6)))] for _ in range(vectors)]
    wants = [_accumulated(old, vector_rounds, n_out, accumulate, bits).tolist()
             for old, vector_rounds in zip(olds, rounds)]
    dut = ShiftAdd(cfg)
    got = []

    def word(values):
        return sum((int(v) & ((1 << bits) - 1)) << (j * bits) for j, v in enumerate(values))

    async def bench(ctx):
        ctx.set(dut.accumulate, accumulate)
        ctx.set(dut.n_out, n_out)
        ctx.set(dut.old, word(olds[0]))
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        ctx.set(dut.run, 1)
        await ctx.tick()  # the tile's cycle 2: no codes yet
        for v, vector_rounds in enumerate(rounds):
            for n, rnd in enumerate(vector_rounds):
                last = n == len(vector_rounds) - 1
                for i, (valid, o, shift, neg, code) in enumerate(rnd):
                    ctx.set(dut.conversion[i], {"valid": valid, "o": o, "shift": shift, "neg": neg, "diff": 0})
                    ctx.set(dut.hit[i], _hit(valid, o, cols))
                    ctx.set(dut.term[i], _term(code, shift, neg, cfg.acc_bits))
                boundary = last and v + 1 < vectors
                ctx.set(dut.load, boundary)
                if boundary:
                    ctx.set(dut.old, word(olds[v + 1]))
                if last:
                    got.append(ctx.get(dut.result))
                await ctx.tick()
                ctx.set(dut.load, 0)
                for i in range(lanes):
                    ctx.set(dut.conversion[i], {"valid": 0, "o": 0, "shift": 0, "neg": 0, "diff": 0})
                    ctx.set(dut.hit[i], 0)
                for _ in range(gap):
                    await ctx.tick()

    simulate(dut, bench)
    for result, want in zip(got, wants):
        values = [(result >> (j * bits)) & ((1 << bits) - 1) for j in range(cols)]
        assert wrap(np.array(values, dtype=np.int64), bits).tolist() == want
    assert len(got) == vectors


def test_lanes_register_the_one_hots_only_for_the_carry_save_form():
    """The lanes' ``hit`` registers feed the carry-save form only (tiny, variant: 2 or 3 lanes); with more lanes
    (isaac's 8, the leaders' form) they are not built."""
    from cimtile.hw.mvm_lanes import MvmLanes
    from cimtile.hw.shift_add import CARRY_SAVE_LANES, carry_save

    assert carry_save(TINY) and carry_save(VARIANT) and not carry_save(EIGHT_LANES)
    assert [carry_save(TINY.replace(n_adcs=n)) for n in (1, 2, CARRY_SAVE_LANES, CARRY_SAVE_LANES + 1)] == \
        [False, True, True, False]
    from amaranth.hdl import Fragment

    for cfg, want in ((TINY, True), (EIGHT_LANES, False)):
        lanes = MvmLanes(cfg)
        Fragment.get(lanes, None)  # (elaborated: an unused elaboratable warns when collected)
        assert lanes._hits == want
