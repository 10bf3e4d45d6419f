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
    # the model: outputs below n_out start at 0 unless accumulating; each code adds +-code << shift
    want = old.copy()
    if not accumulate:
        want[:n_out] = 0
    for rnd in rounds:
        for valid, o, shift, neg, code in rnd:
            if valid:
                want[o] += (-code if neg else code) << shift
    want = wrap(want, bits)
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
                ctx.set(dut.code[i], code)
            result = ctx.get(dut.result)
            await ctx.tick()
        got.extend((result >> (j * bits)) & ((1 << bits) - 1) for j in range(cols))

    simulate(dut, bench)
    assert wrap(np.array(got, dtype=np.int64), bits).tolist() == want.tolist()
