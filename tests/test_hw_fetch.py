"""hw.fetch.Fetch with hw.loop_stack.LoopStack: the registered instruction word is the program's word at
the pc that docs/isa.md's loop rules execute, whatever the instructions' lengths, over two runs of the
same program (the second without reloading it)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module
from cimtile.hw.fetch import Fetch
from cimtile.hw.isa import WORD_BITS
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
                   fetch.fin.eq(loops.advance),
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
