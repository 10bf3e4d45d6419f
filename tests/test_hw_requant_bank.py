"""hw.requant_bank.RequantBank: LDRQ records into its parameter memories and REQ's chunks through the
lanes, against sim.kernels.requantise."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.isa import RQ_RECORD, RQ_RECORD_BITS
from cimtile.hw.requant_bank import RequantBank, bank_count
from cimtile.sim.kernels import requantise
from helpers import TINY, VARIANT
from hw_sim import simulate

ISAACISH = TINY.replace(name="wide_bus", bus_bits=256, rq_lanes=3)  # 4 records a word over 6 memories


@pytest.mark.parametrize("cfg", [TINY, VARIANT, ISAACISH], ids=["tiny", "variant", "wide_bus"])
def test_ldrq_then_req_matches_requantise(cfg):
    rng = np.random.default_rng(6)
    cols, per, bits = cfg.cols, cfg.rq_per_word, cfg.acc_bits
    assert bank_count(cfg) % cfg.rq_lanes == 0 and bank_count(cfg) >= per
    bias = np.full(cols, isa.RESET_LANE["bias"])
    mult = np.full(cols, isa.RESET_LANE["mult"])
    shift = np.full(cols, isa.RESET_LANE["shift"])
    loads = []
    for _ in range(3):
        start = int(rng.integers(0, cols))
        count = int(rng.integers(1, cols - start + 1))
        recs = [(int(rng.integers(-3000, 3000)), int(rng.integers(0, 1 << 16)), int(rng.integers(0, 24)))
                for _ in range(count)]
        loads.append((start, count, recs))
        for i, (b, mu, s) in enumerate(recs):
            bias[start + i], mult[start + i], shift[start + i] = b, mu, s
    zp, lo, hi, relu = 3, -100, 120, 1
    acc = rng.integers(-(1 << 20), 1 << 20, cols)
    n_out = int(rng.integers(1, cols + 1))
    want = requantise(acc, bias, mult, shift, zp, lo, hi, bool(relu))[:n_out] & 0xFF
    dut = RequantBank(cfg)
    got = {}

    async def bench(ctx):
        for start, count, recs in loads:
            ctx.set(dut.ldrq_column, start)
            ctx.set(dut.ldrq_count, count)
            ctx.set(dut.ldrq_start, 1)
            await ctx.tick()
            ctx.set(dut.ldrq_start, 0)
            for w in range(0, count, per):
                word = 0
                for q, (b, mu, s) in enumerate(recs[w:w + per]):
                    rec = RQ_RECORD.const({"bias": b, "mult": mu, "shift": s}).as_bits()
                    word |= rec << (q * RQ_RECORD_BITS)
                ctx.set(dut.ldrq_data, word)
                ctx.set(dut.ldrq_word, 1)
                await ctx.tick()
            ctx.set(dut.ldrq_word, 0)
        ctx.set(dut.cfgrq, {"zero_point": zp, "clamp_lo": lo, "clamp_hi": hi, "relu": relu})
        ctx.set(dut.cfgrq_write, 1)
        ctx.set(dut.commit, 1)
        await ctx.tick()
        ctx.set(dut.cfgrq_write, 0)
        ctx.set(dut.acc, sum((int(v) & ((1 << bits) - 1)) << (j * bits) for j, v in enumerate(acc)))
        ctx.set(dut.n_out, n_out)
        ctx.set(dut.req_start, 1)
        await ctx.tick()
        ctx.set(dut.req_start, 0)
        for _ in range(cols + 4):
            ctx.set(dut.req_advance, ctx.get(dut.chunks_left))
            en, data = ctx.get(dut.out_en), ctx.get(dut.out_data)
            for j in range(cols):
                if en >> j & 1:
                    assert j not in got, f"column {j} written twice"
                    got[j] = (data >> (8 * j)) & 0xFF
            await ctx.tick()

    simulate(dut, bench)
    assert sorted(got) == list(range(n_out))
    assert [got[j] for j in range(n_out)] == want.tolist()
