"""hw.loop_stack.LoopStack against the loop semantics of docs/isa.md (LOOP), the golden model counting
the same instructions."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw.isa import Opcode, encode
from cimtile.hw.loop_stack import LoopStack
from cimtile.sim.tile import Tile
from helpers import HALT, TINY
from hw_sim import simulate


def nested(rng, depth: int, budget: int) -> list:
    """A random body: NOPs and loops nested up to ``depth`` (loops may end together)."""
    out = []
    while budget > 0:
        if depth and rng.random() < 0.4:
            inner = nested(rng, depth - 1, int(rng.integers(1, 4)))
            strides = [int(v) for v in rng.integers(0, 256, 3)]
            out.append(("loop", int(rng.integers(1, 4)), len(inner), strides))
            out += inner
            budget -= len(inner) + 1
        else:
            out.append(("nop",))
            budget -= 1
    return out


def reference_trace(program: list) -> list[tuple[int, tuple]]:
    """(pc, offsets in effect) of every executed instruction, by docs/isa.md's rules."""
    pc, stack, trace = 0, [], []
    while pc < len(program):
        offsets = tuple(stack[-1]["offsets"]) if stack else (0, 0, 0)
        trace.append((pc, offsets))
        ins = program[pc]
        if ins[0] == "loop":
            stack.append({"start": pc + 1, "end": pc + 1 + ins[2], "left": ins[1], "strides": ins[3],
                          "offsets": list(offsets)})
            pc += 1
            continue
        pc += 1
        while stack and stack[-1]["end"] == pc:
            top = stack[-1]
            if top["left"] > 1:
                top["left"] -= 1
                top["offsets"] = [o + s for o, s in zip(top["offsets"], top["strides"])]
                pc = top["start"]
                break
            stack.pop()
    return trace


def words(program: list) -> list[int]:
    return [encode(Opcode.NOP) if ins[0] == "nop" else
            encode(Opcode.LOOP, count=ins[1], body=ins[2], stride_in=ins[3][0], stride_acc=ins[3][1],
                   stride_out=ins[3][2]) for ins in program] + [HALT]


@pytest.mark.parametrize("seed", range(3))
def test_loop_stack_walks_nested_loops(seed):
    cfg = TINY
    rng = np.random.default_rng(seed)
    program = nested(rng, cfg.loop_depth, 12)
    want = reference_trace(program)
    # the golden model executes as many instructions (each NOP and LOOP costs one cycle; + HALT)
    assert Tile(cfg).run(words(program), []).cycles == len(want) + 1
    dut = LoopStack(cfg)
    got = []

    async def bench(ctx):
        ctx.set(dut.prog_len, len(program) + 1)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        pc = 0
        while pc < len(program) and len(got) <= len(want):
            ins = program[pc]
            got.append((pc, tuple(ctx.get(o) for o in dut.offsets)))
            ctx.set(dut.pc, pc)
            ctx.set(dut.advance, 1)
            ctx.set(dut.push, ins[0] == "loop")
            if ins[0] == "loop":
                ctx.set(dut.push_start, pc + 1)
                ctx.set(dut.push_end, pc + 1 + ins[2])
                ctx.set(dut.push_count, ins[1])
                for k in range(3):
                    ctx.set(dut.push_strides[k], ins[3][k])
            pc = ctx.get(dut.next_pc)
            await ctx.tick()

    simulate(dut, bench)
    assert got == want
