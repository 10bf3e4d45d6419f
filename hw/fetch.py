"""Instruction fetch: the program memory and a registered instruction word, fetched a cycle ahead."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .cut import LateRegister
from .isa import Cause, Opcode
from .loop_stack import pc_bits
from .params import ADDR_BITS, TileConfig

__all__ = ["SINGLE_CYCLE", "STORED", "STORED_BITS", "Fetch", "predecode"]

#: A program word as stored: the 64-bit instruction (``word``), then what is pre-decoded from it as it is
#: loaded (:func:`predecode`): its static error cause (``cause``, the checks on the word alone; computed by
#: the tile), its opcode one-hot (``opcodes``, bit ``op.value`` for :class:`~cimtile.hw.isa.Opcode` ``op``,
#: none for an undefined opcode) and the accumulator memory's first-cycle address field (``acc_addr``: MVM's
#: ``acc_addr``, else the range's ``start``, which are REQ's ``acc_addr`` and RDACC's ``start``). So the
#: executing word's decode is a flip-flop per opcode, not a compare of its five opcode bits, at the head of
#: the sequencer's paths, and the accumulator memory's first address is that field plus the loop offset,
#: with no opcode multiplexer between the adder and the memory. Last, the last addresses of the word's
#: run-time range checks (``last``: ``last[0]`` MVM's ``in_addr + count_m1``, REQ's ``acc_addr + count_m1``,
#: else the range's ``start + count_m1``; ``last[1]`` MVM's ``acc_addr + count_m1``, REQ's ``out_addr +
#: count_m1``, else 0), so that a check is one comparison with the space's room, not an adder in front of it.
#: And whether the opcode is one of :data:`SINGLE_CYCLE` (``single``): the sequencer's ``fin`` takes that bit
#: for all of them, one input of its OR rather than one per opcode.
STORED = data.StructLayout({"word": isa.WORD_BITS, "cause": Cause, "opcodes": len(Opcode),
                            "acc_addr": isa.ARGS["mvm"]["acc_addr"].shape,
                            "last": data.ArrayLayout(ADDR_BITS + 1, 2), "single": 1})
#: The opcodes that end in their first cycle (their cycle formula in hw.isa is ``1``; HALT, also one cycle,
#: ends the run instead).
SINGLE_CYCLE = tuple(op for op, spec in isa.SPECS.items() if spec.cycles == "1" and op is not Opcode.HALT)
STORED_BITS = STORED.size
assert [op.value for op in Opcode] == list(range(len(Opcode))), "predecode indexes the opcodes by value"
assert (isa.ARGS["range"]["start"].offset, isa.ARGS["range"]["start"].shape) == \
    (isa.ARGS["req"]["acc_addr"].offset, isa.ARGS["req"]["acc_addr"].shape), "REQ's acc_addr is the range's start"


def predecode(word, cause):
    """The :data:`STORED` value of instruction word ``word`` with its static cause ``cause``."""
    view = data.View(isa.INSTR, word[:isa.INSTR.size])
    opcode = word[:isa.OPCODE_BITS]
    is_mvm, is_req = opcode == Opcode.MVM.value, opcode == Opcode.REQ.value
    mvm, req, rng = view.args.mvm, view.args.req, view.args.range
    acc_addr = Mux(is_mvm, mvm.acc_addr, rng.start)
    last0 = Mux(is_mvm, mvm.in_addr + mvm.count_m1, Mux(is_req, req.acc_addr + req.count_m1, rng.start + rng.count_m1))
    last1 = Mux(is_mvm, mvm.acc_addr + mvm.count_m1, Mux(is_req, req.out_addr + req.count_m1, 0))
    last = [v[:ADDR_BITS + 1] for v in (last0, last1)]
    single = Cat(*(opcode == op.value for op in SINGLE_CYCLE)).any()
    return Cat(word, cause, *(opcode == op.value for op in Opcode), acc_addr, *last, single)


class Fetch(wiring.Component):
    """The program memory and the instruction register ``word``.

    The block RAM's clock-to-out (5.6 ns on ECP5, no output register) is kept out of the decode:
    ``word`` is a register, and the memory is always reading the word *after* the executing one,
    so that the next instruction is ready to be registered when the current one ends.

    Timing contract. Loading (``load_en`` while the tile is idle) writes ``load_data`` at
    ``load_addr``; word 0 is also kept in a register, since a run's first word must be in
    ``word`` in the run's first cycle. In the cycle with ``start`` (idle), ``word`` takes word 0
    at the clock edge and the memory reads word 1. While ``running``, the memory reads the word at
    ``next_pc + 1`` in every cycle (the loop stack's ``next_pc_plus1``: the address does not
    depend on ``fin``, so the instruction's decode is not in front of the block RAM's address).
    So in an instruction's first cycle (after ``start``, or after a cycle with ``fin``) the read
    data is the word at ``pc + 1``, the sequential successor, and a register (``successor``)
    keeps it for the instruction's later cycles. In a cycle with ``fin`` (the instruction's last)
    ``word`` takes the word at ``next_pc``: the successor (the read data in a first cycle, the
    register in a later one), or after a taken loop branch (``wrap[i]``: level ``i`` wraps to its
    body start) the body's first word, which this component registered when level ``i`` was
    pushed (``push``, LOOP's single cycle, when the read data is the word at LOOP's ``pc + 1``, the
    body's start). ``fin`` and ``push`` never fall in a cycle where the run is stalled or not
    running. Words at or past the program's length are fetched like any other: the sequencer
    stops the run there (``PC_RANGE``) without looking at them. ``word_copy`` is always equal to
    ``word``: a second register on the same inputs (:class:`~cimtile.hw.cut.LateRegister`), read by
    the units far from the sequencer (the layer, requantisation and VAU parameters), so that neither
    register's outputs cross the die. ``fin_copy`` is ``fin`` again, on a net of its own (``word_copy``'s
    enable: the caller's copy), so that neither register's enable crosses the die either.

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
            "fin_copy": In(1),
            "next_pc_plus1": In(pcb + 1),
            "push": In(1),
            "levels": In(range(cfg.loop_depth + 1)),
            "wrap": In(1).array(cfg.loop_depth),
            "word": Out(STORED_BITS),
            "word_copy": Out(STORED_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        mem = Memory(shape=unsigned(STORED_BITS), depth=cfg.prog_depth, init=[])
        m.submodules.prog_buffer = mem
        wr, rd = mem.write_port(), mem.read_port()
        word0 = Signal(STORED_BITS)
        m.d.comb += [wr.addr.eq(self.load_addr), wr.data.eq(self.load_data), wr.en.eq(self.load_en)]
        with m.If(self.load_en & (self.load_addr == 0)):
            m.d.sync += word0.eq(self.load_data)

        # The memory reads next_pc + 1 in every running cycle (1 when a run starts): after an
        # instruction's last cycle that is the next instruction's successor, read in time for its
        # first cycle; in the cycles before an instruction's last, the successor is kept in
        # ``successor`` (taken in the first cycle), so the address needs no fin.
        m.d.comb += rd.addr.eq(Mux(self.running, self.next_pc_plus1, 1))
        first = Signal(name="fetch_first")  # the instruction's first cycle: the read data is its successor
        m.d.sync += first.eq(Mux(self.running, self.fin, 1))
        successor = Signal(STORED_BITS, name="successor")
        with m.If(first):
            m.d.sync += successor.eq(rd.data)

        # Loop body starts: level i's first word, captured in the LOOP cycle that pushes it.
        body_start = [Signal(STORED_BITS, name=f"body_start{i}") for i in range(cfg.loop_depth)]
        with m.If(self.push):
            for i in range(cfg.loop_depth):
                with m.If(self.levels == i):
                    m.d.sync += body_start[i].eq(rd.data)

        taken = Signal()
        branch_word = Signal(STORED_BITS)
        m.d.comb += taken.eq(Cat(*self.wrap).any())  # (with push too: the loop stack's next_pc)
        for i in range(cfg.loop_depth):
            with m.If(self.wrap[i]):
                m.d.comb += branch_word.eq(body_start[i])
        # The next word: the body's start after a taken branch, else the read data in a first cycle (the
        # successor), else a register (the kept successor; word 0 at a start).
        # The read data is the input of the last multiplexer, in a module synthesis keeps whole with the
        # register (hw.cut), so the block RAM's late data meets one LUT before the register; the taken branch
        # (from the loop stack's registers, a shallow chain) is in front of the multiplexer's select and other
        # input. Two such registers on the same inputs: ``word`` and ``word_copy``.
        other = Mux(self.running & taken, branch_word, Mux(self.running, successor, word0))
        for name, out, fin in (("cut_word", self.word, self.fin), ("cut_word_copy", self.word_copy, self.fin_copy)):
            m.submodules[name] = reg = LateRegister(STORED_BITS)
            m.d.comb += [reg.en.eq(Mux(self.running, fin, self.start)), reg.sel.eq(self.running & first & ~taken),
                         reg.late.eq(rd.data), reg.other.eq(other), out.eq(reg.q)]
        return m
