"""The one walk of a program: program counter, loop stack and address offsets (docs/isa.md, LOOP).

Control flow in this ISA does not depend on data: loops have fixed counts and strides, there are no
branches. :class:`Walker` is that sequencing, written once; the golden model
(:class:`cimtile.sim.tile.Tile`, and its loop vectoriser's probe in :mod:`cimtile.sim.vectorise`), the
compiler's cycle report (:mod:`cimtile.compiler.report`) and the testbench's trace
(:func:`cimtile.tb.programs.executed`) subclass it and say only what an instruction
does to them (:meth:`Walker.step`) and, where they shortcut iterations, how a loop runs
(:meth:`Walker.loop`).

The rules: execution starts at word 0 with offsets ``(in, acc, out) = (0, 0, 0)`` and an empty loop
stack. An illegal word (undefined opcode, reserved bits) stops the walk with its cause. ``LOOP``
checks its nesting (``LOOP_DEPTH`` before ``LOOP_NEST``), costs its own cycle, then runs its body
``count`` times, iteration ``i`` with offsets ``offsets + i * strides``; afterwards the offsets are
those before the loop. ``HALT`` ends the walk after its step. Running past the last word is
``PC_RANGE``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .isa import Cause, Decoded, Opcode, decode

__all__ = ["Halted", "WalkStop", "Walker", "decode_program", "loop_strides"]

Offsets = tuple  # (in, acc, out): ints, or arrays of lane offsets in the golden model's vectorised loops


class WalkStop(Exception):
    """The walk stopped with an error ``cause`` at ``pc`` (``detail`` says why, in words)."""

    def __init__(self, cause: Cause, pc: int, detail: str = ""):
        super().__init__(f"pc {pc}: {cause.name}: {detail}")
        self.cause, self.pc, self.detail = cause, pc, detail


class Halted(Exception):
    """The walk reached HALT (raised after HALT's :meth:`Walker.step`)."""


_DECODED: dict[int, Decoded] = {}  # word -> its decoding (Decoded is only read, never changed)


def decode_program(words: Sequence[int]) -> list[Decoded]:
    """Decoded words; a program repeats few distinct words, so each is decoded once per process."""
    memo = _DECODED
    if len(memo) > 1 << 16:
        memo.clear()
    out = []
    for w in words:
        d = memo.get(w)
        if d is None:
            d = memo[w] = decode(int(w))
        out.append(d)
    return out


def loop_strides(d: Decoded) -> tuple[int, int, int]:
    """A LOOP's strides of the (in, acc, out) address offsets."""
    a = d.args
    return (a["stride_in"], a["stride_acc"], a["stride_out"])


class Walker:
    """Walks a decoded program by the sequencing rules above, calling :meth:`step` per instruction.

    Parameters
    ----------
    program : sequence of Decoded
        The words in program memory (see :func:`decode_program`).
    loop_depth : int
        ``TileConfig.loop_depth``.

    Subclasses override :meth:`step` (required) and may override :meth:`loop` (e.g. to run the body
    once and multiply its cost, or to run all iterations at once). :meth:`walk` runs the program.
    """

    def __init__(self, program: Sequence[Decoded], loop_depth: int):
        self.program = program
        self.loop_depth = loop_depth

    def step(self, pc: int, d: Decoded, offs: Offsets) -> None:  # pragma: no cover - abstract
        """One instruction (LOOP included, before its iterations); may raise :class:`WalkStop`."""
        raise NotImplementedError

    def walk(self) -> None:
        """Run from word 0: returns normally never; raises :class:`Halted` or :class:`WalkStop`."""
        self.block(0, len(self.program), (0, 0, 0), 0)
        raise WalkStop(Cause.PC_RANGE, len(self.program), "execution ran past the last loaded word")

    def block(self, start: int, end: int, offs: Offsets, depth: int) -> None:
        """Words ``start .. end - 1`` at loop nesting ``depth`` with address offsets ``offs``."""
        prog = self.program
        step = self.step
        pc = start
        while pc < end:
            d = prog[pc]
            if d.cause is not Cause.NONE:
                raise WalkStop(d.cause, pc, "illegal word" if d.op is None else "reserved bits set")
            op = d.op
            if op is Opcode.LOOP:
                b1 = pc + 1 + d.args["body"]
                if depth + 1 > self.loop_depth:
                    raise WalkStop(Cause.LOOP_DEPTH, pc, f"loop nesting exceeds loop_depth = {self.loop_depth}")
                if b1 > end:
                    raise WalkStop(Cause.LOOP_NEST, pc, f"body ends at {b1}, enclosing block ends at {end}")
                self.loop(pc, d, b1, offs, depth)
                pc = b1
                continue
            step(pc, d, offs)
            if op is Opcode.HALT:
                raise Halted
            pc += 1

    def loop(self, pc: int, d: Decoded, end: int, offs: Offsets, depth: int) -> None:
        """A LOOP at ``pc`` whose body is ``pc + 1 .. end - 1`` (already checked): its step, then every
        iteration in order."""
        self.step(pc, d, offs)
        st = loop_strides(d)
        for i in range(d.args["count"]):
            self.block(pc + 1, end, tuple(o + i * s for o, s in zip(offs, st)), depth + 1)
