"""hw.requant_bank.RequantBank: LDRQ records into its parameter memories and REQ's chunks through the
lanes, against sim.kernels.requantise."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.isa import RQ_RECORD, RQ_RECORD_BITS
from cimtile.hw.requant import LATENCY
from cimtile.hw.requant_bank import RequantBank, bank_count
from cimtile.sim.kernels import requantise
from helpers import TINY, VARIANT
from hw_sim import simulate

ISAACISH = TINY.replace(name="wide_bus", bus_bits=256, rq_lanes=3)  # 4 records a word over 6 memories
LANES8 = TINY.replace(name="lanes8", rq_lanes=8)  # isaac's 8 lanes: two chunks of a 16-column vector


def pack(vector, bits: int) -> int:
    """An accumulator vector as the accumulator memory's word."""
    return sum((int(v) & ((1 << bits) - 1)) << (j * bits) for j, v in enumerate(vector))


async def configure_output(ctx, dut, zp, lo, hi, relu) -> None:
    """CFGRQ's output parameters, written and committed in one cycle."""
    ctx.set(dut.cfgrq, {"zero_point": zp, "clamp_lo": lo, "clamp_hi": hi, "relu": relu})
    ctx.set(dut.cfgrq_write, 1)
    ctx.set(dut.commit, 1)
    await ctx.tick()
    ctx.set(dut.cfgrq_write, 0)


async def load_params(ctx, dut, cfg, loads) -> None:
    """LDRQ's strobes for each ``(start, count, records)`` of ``loads``."""
    per = cfg.rq_per_word
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
        await load_params(ctx, dut, cfg, loads)
        await configure_output(ctx, dut, zp, lo, hi, relu)
        ctx.set(dut.acc, pack(acc, bits))
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


CASES = [(TINY, 16, 3), (TINY, 5, 4), (TINY, 2, 3), (TINY, 1, 2), (TINY, 7, 1), (VARIANT, 16, 3), (VARIANT, 3, 3),
         (VARIANT, 8, 2), (ISAACISH, 10, 3), (LANES8, 16, 3), (LANES8, 12, 2), (LANES8, 3, 4)]


@pytest.mark.parametrize("cfg, n_out, count", CASES,
                         ids=[f"{c.name}-n{n}-x{k}" for c, n, k in CASES])
def test_multi_vector_req_chunks(cfg, n_out, count):
    """REQ over ``count`` vectors: vector v+1's chunk 0 enters in the cycle after vector v's last chunk
    (its accumulator vector read in that cycle: ``next_vector``), the parameters are those of chunk 0
    again, every vector's bytes equal sim.kernels.requantise's, and the output address steps
    (``out_next``) right after each vector but the last. Full, partial and single chunks."""
    rng = np.random.default_rng(100 + n_out * 7 + count)
    cols, bits, lanes = cfg.cols, cfg.acc_bits, cfg.rq_lanes
    recs = [(int(rng.integers(-3000, 3000)), int(rng.integers(0, 1 << 16)), int(rng.integers(0, 24)))
            for _ in range(cols)]
    bias, mult, shift = (np.array(x) for x in zip(*recs))
    zp, lo, hi, relu = -4, -120, 110, 0
    accs = rng.integers(-(1 << 20), 1 << 20, (count, cols))
    want = [(requantise(a, bias, mult, shift, zp, lo, hi, bool(relu))[:n_out] & 0xFF).tolist() for a in accs]
    chunks = -(-n_out // lanes)
    dut = RequantBank(cfg)
    got = [{} for _ in range(count)]
    seen = {"next_vector": [], "out_next": [], "out_en": [], "advance": []}

    async def bench(ctx):
        await load_params(ctx, dut, cfg, [(0, cols, recs)])
        await configure_output(ctx, dut, zp, lo, hi, relu)
        ctx.set(dut.n_out, n_out)
        read, vector = 0, 0  # the accumulator vector the (emulated) memory reads next; the output vector
        # cycle 0: REQ's first cycle reads vector 0 (its data is on acc from cycle 1, like a memory's)
        ctx.set(dut.req_start, 1)
        ctx.set(dut.req_more, int(count > 1))
        await ctx.tick()
        ctx.set(dut.req_start, 0)
        ctx.set(dut.acc, pack(accs[0], bits))
        read = 1
        for cycle in range(1, count * chunks + LATENCY + 2):
            advance = ctx.get(dut.chunks_left)
            ctx.set(dut.req_advance, advance)
            ctx.set(dut.req_more, int(read < count))
            en, data = ctx.get(dut.out_en), ctx.get(dut.out_data)
            for j in range(cols):
                if en >> j & 1:
                    assert j not in got[vector], f"vector {vector} column {j} written twice"
                    got[vector][j] = (data >> (8 * j)) & 0xFF
            for name, value in (("next_vector", ctx.get(dut.next_vector)), ("out_next", ctx.get(dut.out_next)),
                                ("out_en", en != 0), ("advance", advance)):
                if value:
                    seen[name].append(cycle)
            if ctx.get(dut.out_next):
                vector += 1
            nxt = ctx.get(dut.next_vector)
            await ctx.tick()
            if nxt:
                ctx.set(dut.acc, pack(accs[read], bits))
                read += 1

    simulate(dut, bench)
    for v in range(count):
        assert sorted(got[v]) == list(range(n_out)), f"vector {v}: columns {sorted(got[v])} written"
        assert [got[v][j] for j in range(n_out)] == want[v], f"vector {v}"
    assert seen["advance"] == list(range(1, 1 + count * chunks))
    assert seen["next_vector"] == [v * chunks + chunks for v in range(count - 1)]
    # out_next: next_vector delayed by the lanes' LATENCY stages, with the vector's last chunk's bytes
    assert seen["out_next"] == [v * chunks + chunks + LATENCY for v in range(count - 1)]
    # the last chunk's bytes in the cycle after REQ's last (1 + count * chunks + REQ_LATENCY cycles)
    assert max(seen["out_en"]) == 1 + count * chunks + isa.REQ_LATENCY


@pytest.mark.parametrize("cfg", [TINY, ISAACISH, LANES8], ids=["tiny", "wide_bus", "lanes8"])
def test_req_with_stalls_after_reload(cfg):
    """Two REQs with an LDRQ between them that rewrites some columns, each REQ with cycles in which no
    chunk enters (``req_advance`` low): the lanes' parameters are registers loaded with the chunk
    registers (chunk 0's at req_start, the next chunk's as one enters) from the memories, so each chunk
    must meet its own columns' records, held through the stalls, and the second REQ the rewritten ones."""
    rng = np.random.default_rng(17)
    cols, bits = cfg.cols, cfg.acc_bits

    def records(n):
        # products of about 2**22 shifted by 10..17: most quotients inside the clamp bounds, so each byte
        # depends on its own column's record
        return [(int(rng.integers(-3000, 3000)), int(rng.integers(1, 1 << 10)), int(rng.integers(10, 18)))
                for _ in range(n)]
    first = records(cols)
    start = int(rng.integers(0, cols // 2))
    count = int(rng.integers(1, cols - start + 1))
    second = records(count)
    params = [list(first)]
    params.append(first[:start] + second + first[start + count:])
    zp, lo, hi, relu = 5, -128, 127, 0
    accs = rng.integers(-3000, 3000, (2, cols))
    n_out = cols
    want = []
    for k in range(2):
        bias, mult, shift = (np.array(x) for x in zip(*params[k]))
        q = requantise(accs[k], bias, mult, shift, zp, lo, hi, bool(relu))
        assert np.sum((q > lo) & (q < hi)) > cols // 2  # mostly not clamped
        want.append((q & 0xFF).tolist())
    dut = RequantBank(cfg)
    got = [{}, {}]

    async def req(ctx, k):
        ctx.set(dut.n_out, n_out)
        ctx.set(dut.req_start, 1)
        await ctx.tick()
        ctx.set(dut.req_start, 0)
        ctx.set(dut.acc, pack(accs[k], bits))
        for i in range(4 * cols + 8):
            # a stall before the first chunk and after every second one, and back-to-back chunks
            advance = ctx.get(dut.chunks_left) & int(i % 3 != 0)
            ctx.set(dut.req_advance, advance)
            en, data = ctx.get(dut.out_en), ctx.get(dut.out_data)
            for j in range(cols):
                if en >> j & 1:
                    assert j not in got[k], f"REQ {k}: column {j} written twice"
                    got[k][j] = (data >> (8 * j)) & 0xFF
            await ctx.tick()
        ctx.set(dut.req_advance, 0)

    async def bench(ctx):
        await load_params(ctx, dut, cfg, [(0, cols, first)])
        await configure_output(ctx, dut, zp, lo, hi, relu)
        await req(ctx, 0)
        await load_params(ctx, dut, cfg, [(start, count, second)])
        await req(ctx, 1)

    simulate(dut, bench)
    for k in range(2):
        assert sorted(got[k]) == list(range(n_out)), f"REQ {k}: columns {sorted(got[k])} written"
        assert [got[k][j] for j in range(n_out)] == want[k], f"REQ {k}"
