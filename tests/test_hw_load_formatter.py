"""hw.load_formatter.LoadFormatter: the bus words of LDW/LDM/LDIN/LDD (as the host packs them,
hw.dataformat.pack with the formats of hw.dataformat.formats) become whole items at consecutive
addresses, with the host's gaps between words."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from cimtile.hw.dataformat import formats, pack, words_to_ints
from cimtile.hw.isa import Opcode
from cimtile.hw.load_formatter import LOAD_OPCODES, LoadFormatter
from cimtile.hw.params import ADDR_BITS, PRESETS
from helpers import TINY, VARIANT
from hw_sim import simulate

CONFIGS = {"tiny": TINY, "variant": VARIANT, "cimaq": PRESETS["cimaq"]}


def item_value(values, bits) -> int:
    """An item as the element values at ``[i * bits, (i + 1) * bits)`` (two's complement)."""
    return sum((int(v) & ((1 << bits) - 1)) << (i * bits) for i, v in enumerate(values))


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("op", LOAD_OPCODES, ids=lambda o: o.name)
def test_load_items_are_the_packed_values(name, op):
    cfg = CONFIGS[name]
    fmt = formats(cfg)[op]
    rng = np.random.default_rng(zlib.crc32(f"{name} {op.name}".encode()))
    count = 5
    lo, hi = (-(1 << (fmt.bits - 1)), 1 << (fmt.bits - 1)) if fmt.signed else (0, 1 << fmt.bits)
    values = rng.integers(lo, hi, (count, fmt.elems))
    words = words_to_ints(pack(values, fmt.bits, fmt.words, cfg.bus_bits))
    assert len(words) == count * fmt.words
    # the first item's address near the top of the address space: addresses wrap
    base = (1 << ADDR_BITS) - 2
    item_bits = fmt.elems * fmt.bits
    dut = LoadFormatter(cfg)
    assert dut.words == {o: formats(cfg)[o].words for o in LOAD_OPCODES}
    item = getattr(dut.items, op.name.lower())
    assert len(item) == fmt.words * cfg.bus_bits
    got = []

    async def bench(ctx):
        assert ctx.get(dut.empty)  # before the first start
        ctx.set(dut.opcode, op)
        ctx.set(dut.start, 1)
        ctx.set(dut.base, base)
        ctx.set(dut.count, count)
        await ctx.tick()
        ctx.set(dut.start, 0)
        sent = 0
        while sent < len(words):
            assert not ctx.get(dut.empty)
            take = bool(rng.random() < 0.7)  # the host's gaps: din not valid
            ctx.set(dut.take, take)
            ctx.set(dut.word, words[sent] if take else int(rng.integers(0, 2**62)))
            assert ctx.get(dut.last) == (sent == len(words) - 1)
            # the register the tile's write enables start from: the next word taken is its item's last
            assert ctx.get(dut.item_last) == ((sent + 1) % fmt.words == 0)
            if ctx.get(dut.item_valid):
                assert take and (sent + 1) % fmt.words == 0  # only with an item's last word
                got.append((ctx.get(dut.item_addr), ctx.get(item) & ((1 << item_bits) - 1)))
            sent += take
            await ctx.tick()
        ctx.set(dut.take, 0)
        assert ctx.get(dut.empty) and not ctx.get(dut.item_valid)

    simulate(dut, bench)
    want = [((base + i) % (1 << ADDR_BITS), item_value(values[i], fmt.bits)) for i in range(count)]
    assert got == want


def test_a_short_item_after_a_long_one_is_its_own_words():
    """An LDM column (one word on cimaq) after an LDIN vector (four words): the column's bits are its
    own word, not the vector's staged words."""
    cfg = PRESETS["cimaq"]
    long, short = formats(cfg)[Opcode.LDIN], formats(cfg)[Opcode.LDM]
    assert long.words > short.words
    dut = LoadFormatter(cfg)
    got = []

    async def bench(ctx):
        for op, n_words, word in ((Opcode.LDIN, long.words, (1 << cfg.bus_bits) - 1), (Opcode.LDM, short.words, 0x5A)):
            ctx.set(dut.opcode, op)
            ctx.set(dut.start, 1)
            ctx.set(dut.base, 3)
            ctx.set(dut.count, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.take, 1)
            for _ in range(n_words):
                ctx.set(dut.word, word)
                if ctx.get(dut.item_valid):
                    got.append(ctx.get(getattr(dut.items, op.name.lower()))
                               & ((1 << (short.words * cfg.bus_bits)) - 1))
                await ctx.tick()
            ctx.set(dut.take, 0)

    simulate(dut, bench)
    assert got == [(1 << cfg.bus_bits) - 1, 0x5A]

