"""Instruction fetch: the program memory and a registered instruction word, pre-fetched from registers."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .isa import Cause
from .loop_stack import pc_bits
from .params import TileConfig

__all__ = ["AHEAD", "STORED_BITS", "Fetch"]

#: A program word as stored: the 64-bit instruction and its pre-decoded static error cause above it.
STORED_BITS = isa.WORD_BITS + Cause.as_shape().width
#: How far ahead of ``pc`` the program memory reads: the words at ``pc + 1`` and ``pc + 2`` are in
#: registers, and the memory's read data (in an instruction's first cycle) is the word at ``pc + 3``.
AHEAD = 3


class Fetch(wiring.Component):
    """The program memory and the instruction register ``word``, loaded from registers.

    The block RAM's clock-to-out (5.6 ns on ECP5, no output register) is kept out of the
    instruction register's path and the memory's address out of the instruction's decode: the
    words at ``pc + 1`` and ``pc + 2`` (in program memory order) wait in registers (``next1``,
    ``next2``), and the memory reads ``AHEAD`` = 3 words ahead of the executing one.

    Timing contract. Loading (``load_en`` while the tile is idle) writes ``load_data`` at
    ``load_addr``; words 0, 1 and 2 are also kept in registers, since a run starts with them in
    ``word``, ``next1`` and ``next2``. In the cycle with ``start`` (idle), ``word`` takes word 0 at
    the clock edge and the memory reads word 3. While ``running``, the memory reads the word at
    ``next_pc + 3`` in every cycle (the loop stack's ``next_pc_plus3``: the address does not depend
    on ``fin``), so in an instruction's first cycle (after ``start``, or after a cycle with ``fin``)
    its read data is the word at ``pc + 3``, which a register (``next3``) keeps for the
    instruction's later cycles. In a cycle with ``fin`` (the instruction's last), ``word`` takes the
    word at ``next_pc``: after a sequential step (``next_pc`` is ``pc + 1``, levels popping or not)
    ``next1``, while ``next1`` and ``next2`` move up a word (``next2`` takes the word at ``pc + 3``:
    the read data in a first cycle, ``next3`` in a later one); after a taken loop branch
    (``wrap[i]``: level ``i`` wraps to its body start) the body's first three words, which this
    component registered when level ``i`` was pushed (``push``, LOOP's one cycle, when ``next1``,
    ``next2`` and the read data are the words at LOOP's ``pc + 1`` .. ``pc + 3``). ``fin`` and
    ``push`` never fall in a cycle where the run is stalled or not running, and a ``push`` together
    with a wrap stops the run (LOOP's nesting check fails). Words at or past the program's length
    are fetched like any other: the sequencer stops the run there (``PC_RANGE``) without looking at
    them.

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        pcb = pc_bits(cfg)
        super().__init__({
            "load_en": In(1),
            "load_addr": In(range(cfg.prog_depth)),
            "load_data": In(STORED_BITS),
            "start": In(1),
            "running": In(1),
            "fin": In(1),
            "next_pc_plus3": In(pcb + 2),
            "push": In(1),
            "levels": In(range(cfg.loop_depth + 1)),
            "wrap": In(1).array(cfg.loop_depth),
            "word": Out(STORED_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        mem = Memory(shape=unsigned(STORED_BITS), depth=cfg.prog_depth, init=[])
        m.submodules.prog_buffer = mem
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.addr.eq(self.load_addr), wr.data.eq(self.load_data), wr.en.eq(self.load_en)]
        # the program's first AHEAD words, kept while loading for a run's start
        head = [Signal(STORED_BITS, name=f"word{k}") for k in range(AHEAD)]
        for k in range(min(AHEAD, cfg.prog_depth)):
            with m.If(self.load_en & (self.load_addr == k)):
                m.d.sync += head[k].eq(self.load_data)

        # The memory reads next_pc + 3 in every running cycle (3 when a run starts): after an
        # instruction's last cycle that is the word after the next instruction's next2, read in time
        # for its first cycle, and next3 keeps it for the instruction's later cycles.
        m.d.comb += rd.addr.eq(Mux(self.running, self.next_pc_plus3, AHEAD))
        first = Signal(name="fetch_first")  # the instruction's first cycle: the read data is pc + 3's word
        m.d.sync += first.eq(Mux(self.running, self.fin, 1))
        next1, next2, next3 = (Signal(STORED_BITS, name=f"next{k}") for k in (1, 2, 3))
        with m.If(first):
            m.d.sync += next3.eq(rd.data)
        third = Mux(first, rd.data, next3)  # the word at pc + 3

        # Loop bodies: level i's first three words, captured in the LOOP cycle that pushes it (a
        # first cycle: the read data is the word at LOOP's pc + 3).
        body = [[Signal(STORED_BITS, name=f"body{i}_{k}") for k in range(AHEAD)] for i in range(cfg.loop_depth)]
        with m.If(self.push):
            for i in range(cfg.loop_depth):
                with m.If(self.levels == i):
                    m.d.sync += [body[i][0].eq(next1), body[i][1].eq(next2), body[i][2].eq(rd.data)]

        taken = Signal()
        branch = [Signal(STORED_BITS, name=f"branch{k}") for k in range(AHEAD)]
        m.d.comb += taken.eq(~self.push & Cat(*self.wrap).any())
        for i in range(cfg.loop_depth):
            with m.If(self.wrap[i]):
                m.d.comb += [branch[k].eq(body[i][k]) for k in range(AHEAD)]
        with m.If(~self.running):
            with m.If(self.start):
                m.d.sync += [self.word.eq(head[0]), next1.eq(head[1]), next2.eq(head[2])]
        with m.Elif(self.fin):
            with m.If(taken):
                m.d.sync += [self.word.eq(branch[0]), next1.eq(branch[1]), next2.eq(branch[2])]
            with m.Else():
                m.d.sync += [self.word.eq(next1), next1.eq(next2), next2.eq(third)]
        return m
