"""hw.loop_stack.LoopStack against the loop semantics of docs/isa.md (LOOP), the golden model counting
the same instructions."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw.loop_stack import LoopStack, space_depths
from cimtile.sim.tile import Tile
from helpers import TINY
from hw_sim import simulate
from loop_programs import nested, reference_trace, words


@pytest.mark.parametrize("stalls", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_loop_stack_walks_nested_loops(seed, stalls):
    cfg = TINY
    rng = np.random.default_rng(seed)
    program = nested(rng, cfg.loop_depth, 12)
    enclosing = []
    # (the stack is told the program ends before the HALT, so that the last next_pc is beyond it)
    want = reference_trace(program, ends=enclosing, prog_len=len(program))
    # the golden model executes as many instructions (each NOP and LOOP costs one cycle; + HALT)
    assert Tile(cfg).run(words(program), []).cycles == len(want) + 1
    dut = LoopStack(cfg)
    got, rooms, loop_rooms, beyond = [], [], [], []

    async def bench(ctx):
        ctx.set(dut.prog_len, len(program))
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        pc = 0
        while pc < len(program) and len(got) <= len(want):
            ins = program[pc]
            got.append((pc, tuple(ctx.get(o) for o in dut.offsets)))
            rooms.append(tuple(ctx.get(r) for r in dut.room))
            ctx.set(dut.pc, pc)
            loop_rooms.append(ctx.get(dut.loop_room))
            # a multi-cycle instruction's cycles before its last (no advance, no push) change nothing
            for _ in range(rng.integers(0, 3) if stalls and ins[0] != "loop" else 0):
                ctx.set(dut.advance, 0)
                ctx.set(dut.push, 0)
                held = ctx.get(dut.next_pc)
                await ctx.tick()
                assert (ctx.get(dut.next_pc), ctx.get(dut.loop_room)) == (held, loop_rooms[-1])
                assert tuple(ctx.get(o) for o in dut.offsets) == got[-1][1]
                assert tuple(ctx.get(r) for r in dut.room) == rooms[-1]
            ctx.set(dut.advance, 1)
            ctx.set(dut.push, ins[0] == "loop")
            if ins[0] == "loop":
                ctx.set(dut.push_start, pc + 1)
                ctx.set(dut.push_end, pc + 1 + ins[2])
                ctx.set(dut.push_room, ins[2] - 2)
                ctx.set(dut.push_count, ins[1])
                for k in range(3):
                    ctx.set(dut.push_strides[k], ins[3][k])
            pc = ctx.get(dut.next_pc)
            beyond.append((ctx.get(dut.next_beyond), pc >= len(program)))
            await ctx.tick()

    simulate(dut, bench)
    assert got == want
    # LOOP's nesting room (a register kept a cycle ahead) and next_pc >= prog_len
    assert loop_rooms == [end - pc - 2 for (pc, _), end in zip(want, enclosing)]
    assert all(a == b for a, b in beyond) and beyond[-1] == (1, True)
    # each space's room: depth - offset, or -1 once the offset exceeds the depth (strides up to 255)
    want_rooms = [tuple(-1 if off > depth else depth - off for off, depth in zip(offsets, space_depths(cfg)))
                  for _, offsets in want]
    assert rooms == want_rooms
    assert any(-1 in r for r in want_rooms) and any(0 < min(r) for r in want_rooms)
