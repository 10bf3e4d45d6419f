"""hw.read_formatter.ReadFormatter: the items of RDOUT/RDACC/RDW/RDM, read from a memory at the addresses
it gives, leave as the bus words the host unpacks (hw.dataformat.unpack with the formats of
hw.dataformat.formats) whatever the host's back-pressure."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from cimtile.hw.dataformat import formats, ints_to_words, unpack
from cimtile.hw.params import ADDR_BITS, PRESETS
from cimtile.hw.read_formatter import READ_OPCODES, ReadFormatter
from helpers import TINY, VARIANT
from hw_sim import simulate

CONFIGS = {"tiny": TINY, "variant": VARIANT, "cimaq": PRESETS["cimaq"]}


def item_value(values, bits) -> int:
    return sum((int(v) & ((1 << bits) - 1)) << (i * bits) for i, v in enumerate(values))


@pytest.mark.parametrize("always_reads", [False, True], ids=["enabled-port", "crossbar-port"])
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("op", READ_OPCODES, ids=lambda o: o.name)
def test_read_words_unpack_to_the_items(name, op, always_reads):
    """The source is a synchronous memory: with an enable (the output and accumulator buffers) or
    reading the address it is given in every cycle (the crossbar's lane-0 port)."""
    cfg = CONFIGS[name]
    fmt = formats(cfg)[op]
    rng = np.random.default_rng(zlib.crc32(f"{name} {op.name} {always_reads}".encode()))
    count, base = 4, (1 << ADDR_BITS) - 2  # the addresses wrap
    lo, hi = (-(1 << (fmt.bits - 1)), 1 << (fmt.bits - 1)) if fmt.signed else (0, 1 << fmt.bits)
    memory = {a: rng.integers(lo, hi, fmt.elems) for a in range(1 << ADDR_BITS)}
    dut = ReadFormatter(cfg)
    assert dut.words == {o: formats(cfg)[o].words for o in READ_OPCODES}
    item = getattr(dut.items, op.name.lower())
    assert len(item) == fmt.elems * fmt.bits
    words, reads = [], []

    async def bench(ctx):
        ctx.set(dut.opcode, op)
        ctx.set(dut.start, 1)
        ctx.set(dut.base, base)
        ctx.set(dut.count, count)
        assert ctx.get(dut.read_en) and ctx.get(dut.read_addr) == base
        addr = base
        await ctx.tick()
        ctx.set(dut.start, 0)
        data = item_value(memory[addr], fmt.bits)
        while len(words) < count * fmt.words:
            ctx.set(item, data)
            sent = bool(rng.random() < 0.7)  # the host's back-pressure: dout not ready
            ctx.set(dut.sent, sent)
            ctx.set(dut.ready, sent)  # (the tile's bus ready, which is sent while the read executes)
            assert ctx.get(dut.last) == (len(words) == count * fmt.words - 1)
            # the registers the tile's read enables and crossbar column start from
            assert ctx.get(dut.item_last) == (len(words) % fmt.words == fmt.words - 1)
            assert ctx.get(dut.next_read_addr) == ctx.get(dut.read_addr)
            if sent:
                words.append(ctx.get(dut.word))
            if ctx.get(dut.read_en):
                reads.append(ctx.get(dut.read_addr))
            if always_reads or ctx.get(dut.read_en):
                data = item_value(memory[ctx.get(dut.read_addr)], fmt.bits)
            await ctx.tick()

    simulate(dut, bench)
    got = unpack(ints_to_words(words, cfg.bus_bits), count, fmt.elems, fmt.bits, fmt.signed, cfg.bus_bits)
    want = np.array([memory[(base + i) % (1 << ADDR_BITS)] for i in range(count)])
    np.testing.assert_array_equal(got, want)
    # each item is read once, in order (the last read is one item beyond: harmless)
    assert reads == [(base + i) % (1 << ADDR_BITS) for i in range(1, count + 1)]
    # the padding above the item in its last word is zero
    pad = fmt.words * cfg.bus_bits - fmt.elems * fmt.bits
    if pad:
        assert all(w >> (cfg.bus_bits - pad) == 0 for w in words[fmt.words - 1::fmt.words])

