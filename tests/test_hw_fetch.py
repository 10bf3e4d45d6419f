"""hw.fetch.Fetch with hw.loop_stack.LoopStack: the registered instruction word is the program's word at
the pc that docs/isa.md's loop rules execute, whatever the instructions' lengths, over two runs of the
same program (the second without reloading it)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import data
from cimtile.hw.fetch import SINGLE_CYCLE, STORED, STORED_BITS, Fetch, predecode
from cimtile.hw.isa import WORD_BITS, Cause, Opcode, decode
from cimtile.hw.loop_stack import LoopStack
from helpers import TINY
from hw_sim import simulate
from loop_programs import nested, reference_trace, words


@pytest.mark.parametrize("seed", range(3))
def test_fetch_presents_the_word_at_pc(seed):
    cfg = TINY
    rng = np.random.default_rng(100 + seed)
    program = nested(rng, cfg.loop_depth, 14)
    image = words(program)
    want = [pc for pc, _ in reference_trace(program)]
    fetch, loops = Fetch(cfg), LoopStack(cfg)
    top = Module()
    top.submodules.fetch, top.submodules.loops = fetch, loops
    top.d.comb += [fetch.next_pc_plus1.eq(loops.next_pc_plus1), fetch.levels.eq(loops.levels),
                   fetch.push.eq(loops.push),
                   fetch.fin.eq(loops.advance), fetch.fin_copy.eq(loops.advance),
                   *[fetch.wrap[i].eq(loops.wrap[i]) for i in range(cfg.loop_depth)]]
    runs = []

    async def bench(ctx):
        ctx.set(loops.prog_len, len(image))
        for addr, w in enumerate(image):
            ctx.set(fetch.load_en, 1)
            ctx.set(fetch.load_addr, addr)
            ctx.set(fetch.load_data, w | (int(rng.integers(0, 16)) << WORD_BITS))
            await ctx.tick()
        ctx.set(fetch.load_en, 0)
        stored = [None] * len(image)
        for _run in range(2):
            ctx.set(fetch.start, 1)
            ctx.set(loops.clear, 1)
            await ctx.tick()
            ctx.set(fetch.start, 0)
            ctx.set(loops.clear, 0)
            ctx.set(fetch.running, 1)
            pc, seen = 0, []
            while pc < len(program) and len(seen) <= len(want):
                ins = program[pc]
                # an instruction of 1 to 3 cycles (LOOP: 1); the word must hold in each of them
                length = 1 if ins[0] == "loop" else int(rng.integers(1, 4))
                seen.append(pc)
                for c in range(length):
                    word = ctx.get(fetch.word)
                    stored[pc] = word if stored[pc] is None else stored[pc]
                    assert word & ((1 << WORD_BITS) - 1) == image[pc]
                    assert word == stored[pc]  # the pre-decoded bits come with the word
                    assert ctx.get(fetch.word_copy) == word  # the second register, for the far units
                    last = c == length - 1
                    ctx.set(loops.pc, pc)
                    ctx.set(loops.advance, last)
                    ctx.set(loops.push, last and ins[0] == "loop")
                    if ins[0] == "loop":
                        ctx.set(loops.push_start, pc + 1)
                        ctx.set(loops.push_end, pc + 1 + ins[2])
                        ctx.set(loops.push_room, ins[2] - 2)
                        ctx.set(loops.push_count, ins[1])
                    next_pc = ctx.get(loops.next_pc)
                    await ctx.tick()
                pc = next_pc
                ctx.set(loops.advance, 0)
                ctx.set(loops.push, 0)
            ctx.set(fetch.running, 0)
            runs.append(seen)
            await ctx.tick()

    simulate(top, bench)
    assert runs == [want, want]


def test_predecode_matches_the_isa_decode():
    """hw.fetch.predecode, stored with every program word: the opcode one-hot is isa.decode's opcode (no bit
    for an undefined one), and the accumulator memory's first-cycle address field is MVM's ``acc_addr``,
    REQ's ``acc_addr`` and a range instruction's ``start``; the range checks' last addresses are MVM's
    ``in_addr`` and ``acc_addr``, REQ's ``acc_addr`` and ``out_addr``, a range instruction's ``start`` (each plus
    ``count - 1``); ``single`` marks the opcodes that end in their first cycle; the word and its cause pass
    through."""
    rng = np.random.default_rng(7)
    word, cause = Signal(WORD_BITS), Signal(Cause)
    stored = Signal(STORED_BITS)
    top = Module()
    top.d.comb += stored.eq(predecode(word, cause))
    view = data.View(STORED, stored)
    ops = [*Opcode, None, None]
    cases = []
    for n in range(400):
        op = ops[n % len(ops)]
        w = int(rng.integers(0, 1 << 62)) << 2 | int(rng.integers(0, 4))
        w = (w & ~0x1F) | (op.value if op is not None else int(rng.integers(len(Opcode), 32)))
        cases.append((w & ((1 << WORD_BITS) - 1), list(Cause)[n % len(Cause)]))

    async def bench(ctx):
        for w, c in cases:
            ctx.set(word, w)
            ctx.set(cause, c)
            d = decode(w)
            assert ctx.get(view.word) == w and ctx.get(view.cause) == c
            assert ctx.get(view.opcodes) == (1 << d.op.value if d.op is not None else 0), hex(w)
            assert ctx.get(view.single) == (d.op in SINGLE_CYCLE), hex(w)
            if d.op is not None and "acc_addr" in d.args:
                assert ctx.get(view.acc_addr) == d.acc_addr, d.text()
            elif d.op is not None and "start" in d.args:
                assert ctx.get(view.acc_addr) == d.start, d.text()
            firsts = {Opcode.MVM: ("in_addr", "acc_addr"), Opcode.REQ: ("acc_addr", "out_addr")}.get(
                d.op, ("start",) if d.op is not None and "start" in d.args else ())
            for k, name in enumerate(firsts):
                assert ctx.get(view.last[k]) == d.args[name] + d.args["count"] - 1, (k, d.text())

    simulate(top, bench, clock=False)
