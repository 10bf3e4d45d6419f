"""Random programs of NOPs and nested LOOPs and their executed pc trace by docs/isa.md's rules
(shared by the loop-stack and fetch tests)."""

from __future__ import annotations

from cimtile.hw.isa import Opcode, encode
from helpers import HALT


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


def reference_trace(program: list, *, ends: list | None = None, prog_len: int | None = None) -> list[tuple[int, tuple]]:
    """(pc, offsets in effect) of every executed instruction, by docs/isa.md's rules; with ``ends``, the
    end of the innermost loop body enclosing each (``prog_len`` outside every loop) is appended to it."""
    pc, stack, trace = 0, [], []
    while pc < len(program):
        offsets = tuple(stack[-1]["offsets"]) if stack else (0, 0, 0)
        trace.append((pc, offsets))
        if ends is not None:
            ends.append(stack[-1]["end"] if stack else prog_len)
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
