"""The tile's top level: host interface, program memory, fetch and decode, and the wiring of the units."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .adc import Adc
from .crossbar import Crossbar
from .cut import AnyOf, LateMux
from .dataformat import formats
from .fetch import SINGLE_CYCLE, STORED, Fetch, predecode
from .isa import ARGS, INSTR, RQ_VALUE_RANGE, Cause, Opcode
from .layer import LayerRegisters
from .load_formatter import LOAD_OPCODES, LoadFormatter
from .loop_stack import OFFSET_BITS, LoopStack, pc_bits
from .mvm_lanes import MvmLanes
from .params import ADDR_BITS, TileConfig
from .read_formatter import READ_OPCODES, ReadFormatter
from .requant_bank import RequantBank
from .shift_add import ShiftAdd
from .vau import Vau

__all__ = ["MUTATIONS", "Tile"]

#: Deliberately wrong designs for testing the testbenches (never for real use).
MUTATIONS = (None, "shift_add")

#: Widths of the status outputs (docs/interface.md): ``error_cause`` holds a Cause, ``sync_tag`` SYNC's
#: ``tag`` field; ``error_pc`` and ``cycles`` are the status counters' widths.
CAUSE_BITS = Cause.as_shape().width
TAG_BITS = ARGS["sync"]["tag"].width
PC_BITS = 16
CYCLE_BITS = 32
#: The accumulator buffer's memories (whole columns each, fewer when the tile has fewer columns), each with a copy
#: of the read address (Tile._acc_buffer).
ACC_CHUNKS = 4
SUM_BITS = OFFSET_BITS + 2  # start + offset + count
if isa.ACC_READ_WAIT != 1:  # pragma: no cover - the sequencer reads the first accumulator vector in ``second``
    raise AssertionError(f"hw/tile.py reads the accumulator memory in an instruction's second cycle; "
                         f"isa.ACC_READ_WAIT is {isa.ACC_READ_WAIT}")


def _separating_bit(zeros: tuple, ones: tuple) -> int:
    """An opcode bit that is 0 in every opcode of ``zeros`` and 1 in every one of ``ones``, so that one bit of
    the word, no decode, tells the two sets apart where only they matter."""
    for bit in range(isa.OPCODE_BITS):
        if all(not op.value >> bit & 1 for op in zeros) and all(op.value >> bit & 1 for op in ones):
            return bit
    raise AssertionError(f"no opcode bit tells {zeros} from {ones}")


@dataclass
class _Parts:
    """What the per-opcode control statements drive: the units, the memory ports of the tile's
    buffers, and the sequencer's control signals. Filled once in :meth:`Tile.elaborate`."""

    view: data.View
    first: Signal  # the instruction's first cycle
    second: Signal  # the instruction's second cycle (a register beside first): the accumulator memory's first read
    step: Signal  # cycles into the instruction, saturating at 3
    fin: Signal  # the instruction's last cycle (set by its statements)
    ends_next: Signal  # fin of the counter-ended opcodes, a register set a cycle ahead (Tile._ends_next)
    # the stream opcodes' last word is on the bus, registers set a cycle ahead (Tile._stream_end): their fin is
    # armed_din & din's valid, or armed_dout & dout's ready
    armed_din: Signal
    armed_dout: Signal
    fin_copies: dict  # copies of fin for the fetch unit and the loop stack (Tile._fin_copies)
    stall: Signal  # waiting for din valid / dout ready (cycle not counted)
    err: Signal  # the run stops in this cycle
    err_cause: Signal
    check_fail: Signal  # a run-time check of this first cycle fails (its error is raised in the next cycle)
    check_cause: Signal
    late_err: Signal  # check_fail and check_cause registered: the error of the cycle before
    late_cause: Signal
    halt: Signal
    pc: Signal
    tag: Signal
    offsets: list  # loop offsets of the in, acc, out spaces
    room: list  # depth - offset per space (-1 when the offset alone exceeds it)
    layer_regs: LayerRegisters
    loops: LoopStack
    lanes: MvmLanes
    shift_add: ShiftAdd
    requant: RequantBank
    vau: Vau
    xbar: Crossbar
    fetch: Fetch
    loader: LoadFormatter
    reader: ReadFormatter
    ports: dict  # memory ports by name
    # per-instruction registers
    addr_b: Signal  # the MVM's accumulator address
    accumulate: Signal
    drain: Signal
    word_ok: Signal  # no PC_RANGE and no static cause: CFG, WIN, CFGRQ, SYNC commit on this alone
    acc_write: Signal  # the MVM's accumulator vector is written this cycle (the next instruction's first)
    vector_in: Signal  # a multi-vector MVM's next input vector is read this cycle (vector boundary, stage 1)
    vector_acc: Signal  # its old accumulator vector is read this cycle (the stage before vector_write)
    vector_write: Signal  # the previous vector's accumulator vector is written and the next loaded (last stage)
    mvm_load: Signal  # an MVM's third cycle: the shift-and-add loads the old accumulator vector
    in_next: Signal  # the next vector's input address (memory address bits)
    acc_next: Signal  # the next vector's accumulator address (memory address bits)
    left: Signal  # records left in an LDRQ
    left_last: Signal  # left <= rq_per_word (registered with left): the LDRQ's next word is its last
    left_last_next: Signal  # what left_last takes at the clock edge (combinational, in an LDRQ)
    # REQ (multi-vector; its next accumulator vector's address is acc_next): the output vector being
    # written, the vectors after the current one, and whether there are any (a register, so that the
    # bank's next_vector is an AND of registers and strobes)
    req_out_addr: Signal
    req_left: Signal
    req_more: Signal
    program_wait: Signal  # cycles left of the array's programming: LDW, WSET (write_cycles), VAUR/VAUC (pulses)
    # RDACC's and RDOUT's reads of their next item after the first cycle, from registers and dout's ready (set by
    # Tile._read_enables; high in a cycle where the run stops on a failed range check, which moves nothing visible)
    item_reads: dict = field(default_factory=dict)
    # the executing word's opcode, pre-decoded as it was loaded (hw.fetch.STORED): is_op[op], a flip-flop of
    # the instruction register, is high while the word's opcode is op
    is_op: dict = field(default_factory=dict)
    acc_addr: object = None  # the accumulator memory's first-cycle address field, pre-decoded (hw.fetch.STORED)
    last: object = None  # the last addresses of the word's run-time range checks, pre-decoded (hw.fetch.STORED)
    single: object = None  # the word's opcode ends in its first cycle (hw.fetch.SINGLE_CYCLE), pre-decoded
    acc_reads: object = None  # the accumulator memory reads acc_next (not its held address) in this cycle
    out_req_reads: object = None  # REQ's second cycle: the output memory reads its first output vector


@dataclass
class _SharedPort:
    """The address, enable and data shared by the output buffer's chunk memories (:meth:`Tile._out_buffer`), or
    of the accumulator memory's read (:meth:`Tile._acc_forward`, whose ``held`` is the address it read in the
    cycle before, and whose ``match`` is whether ``addr`` is the write's address: :meth:`Tile._operand_reads`). The
    output memory's read has an enable per chunk, and ``current``: the address of the chunks that carry an RDOUT
    item's last bus word (``addr`` that of the others: :meth:`Tile._read_enables`)."""

    addr: Signal
    en: Signal
    data: Signal | None = None
    held: Signal | None = None
    current: Signal | None = None
    match: Signal | None = None
    copies: list | None = None  # the accumulator read's address per chunk memory: ``addr`` again, a net each


@dataclass
class _RunState:
    """The run's state and status registers (docs/interface.md), created in :meth:`Tile.elaborate`."""

    running: Signal
    load_ptr: Signal  # the next program word's address while loading
    prog_len: Signal  # the length of the run that start begins (or that runs): kept while loading
    cycles: Signal  # the cycles counted up to the cycle before last; ``counted``: the last one counted
    counted: Signal
    done: Signal
    error: Signal
    cause: Signal  # err_cause and pc of every running cycle: the last one's are the error's (shown with error)
    err_pc: Signal
    beyond: Signal  # pc >= prog_len (PC_RANGE), a register updated with pc
    go: Signal  # running and not beyond: the executing word's statements apply (a register of its own)
    static_cause: Signal  # the executing word's pre-decoded static cause (stored with it)


class Tile(wiring.Component):
    """One crossbar tile: the ports of docs/interface.md around the microarchitecture of
    docs/microarchitecture.md (each block a component of its own file, wired here).

    Parameters
    ----------
    cfg : TileConfig
    mutation : str or None
        Test-only: ``"shift_add"`` builds a deliberately wrong shift-and-add (input slice k>=1
        weighted one bit too high) so that testbenches can be shown to catch it. Never use it
        for anything else.

    Raises
    ------
    ValueError
        ``mutation`` is not one of :data:`MUTATIONS`.
    """

    def __new__(cls, cfg: TileConfig, mutation: str | None = None, **kwargs):
        # The arguments are checked before the object exists: a refused Tile leaves no half-made
        # Elaboratable behind (Amaranth would warn that it was "created but never used").
        if mutation not in MUTATIONS:
            raise ValueError(f"Tile mutation {mutation!r}: expected one of {MUTATIONS}")
        if not isinstance(cfg, TileConfig):
            raise TypeError(f"Tile cfg: expected a TileConfig, got {type(cfg).__name__}")
        return super().__new__(cls, src_loc_at=kwargs.get("src_loc_at", 0) + 1)

    def __init__(self, cfg: TileConfig, mutation: str | None = None):
        self.cfg = cfg
        self.mutation = mutation
        super().__init__({
            "instr": In(stream.Signature(isa.WORD_BITS)),
            "start": In(1),
            "din": In(stream.Signature(cfg.bus_bits)),
            "dout": Out(stream.Signature(cfg.bus_bits)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_cause": Out(CAUSE_BITS),
            "error_pc": Out(PC_BITS),
            "cycles": Out(CYCLE_BITS),
            "sync_tag": Out(TAG_BITS),
        })

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        ports = self._buffers(m)
        parts = self._units(m, ports)
        run = self._run_state()
        m.d.comb += [self.busy.eq(run.running), self.done.eq(run.done), self.error.eq(run.error),
                     self.error_cause.eq(Mux(run.error, run.cause, Cause.NONE)),
                     self.error_pc.eq(Mux(run.error, run.err_pc, 0)), self.cycles.eq(run.cycles + run.counted),
                     self.sync_tag.eq(parts.tag)]
        self._program_loading(m, run, parts)
        self._write_behind(m, parts)
        self._load_ports(m, parts)
        self._read_enables(m, parts)
        self._read_column(m, parts)
        self._fetch_wiring(m, run, parts)
        self._counters(m, run, parts)
        with m.If(~run.running):
            self._start(m, run, parts)
        with m.Else():
            self._sequence(m, run, parts)
        # The executing word's statements, under ``go`` (running and pc within the program), a register:
        # one input of every statement's condition rather than two (running, beyond).
        with m.If(run.go):
            ends_next, armed, fin_terms = self._execute_word(m, run, parts)
        self._fin_copies(m, parts, fin_terms)  # (outside go's condition: each term carries it)
        # (each a cycle ahead, for an instruction that goes on into the next cycle: go and no fin in this one; an
        # error or HALT stops the run, and go with it, which gates fin's terms: the error, the deepest signal of
        # the sequencer, stays out of these registers)
        staying = run.go & ~parts.fin
        m.d.sync += [parts.ends_next.eq(staying & ends_next), parts.armed_din.eq(staying & armed["din"]),
                     parts.armed_dout.eq(staying & armed["dout"])]
        # The memories' read addresses in every cycle, running or not: a read while idle is not used (every
        # instruction reads its operands from its first cycle on, and the first cycle sets the registers the
        # reads step), so the addresses do not wait for ``running``.
        self._operand_reads(m, parts)
        return m

    def _run_state(self) -> _RunState:
        cfg = self.cfg
        return _RunState(
            running=Signal(name="running"), load_ptr=Signal(range(cfg.prog_depth + 1), name="load_ptr"),
            prog_len=Signal(range(cfg.prog_depth + 1), name="prog_len"), cycles=Signal(CYCLE_BITS, name="cycles"),
            counted=Signal(name="cycle_counted"),
            done=Signal(name="done_reg"), error=Signal(name="error_reg"), cause=Signal(Cause, name="cause"),
            err_pc=Signal(PC_BITS, name="err_pc"), beyond=Signal(name="beyond"), go=Signal(name="go"),
            static_cause=Signal(Cause, name="static_cause"))

    def _program_loading(self, m, run: _RunState, parts: _Parts):
        """Program loading while idle (start has priority over a word in the same cycle). Each word is
        stored with its pre-decoded "static" error cause (the checks on the word alone)."""
        fetch = parts.fetch
        loading = self.instr.valid & self.instr.ready
        m.d.comb += self.instr.ready.eq(~run.running & ~self.start & (run.load_ptr < self.cfg.prog_depth))
        payload = self.instr.payload
        stored = predecode(payload, self._static_cause(m, payload))
        m.d.comb += [fetch.load_addr.eq(run.load_ptr), fetch.load_data.eq(stored), fetch.load_en.eq(loading)]
        # prog_len is the length of the run that start would begin, kept while loading (the words loaded
        # since the last run, or the last run's program again when none were), so that the start cycle
        # only copies registers: the loop stack's look-aheads (loop_room, next_beyond) and beyond start
        # from it, not from a multiplexer of the load pointer.
        with m.If(loading):
            m.d.sync += [run.load_ptr.eq(run.load_ptr + 1), run.prog_len.eq(run.load_ptr + 1)]
        m.d.comb += run.static_cause.eq(data.View(STORED, fetch.word).cause)

    @staticmethod
    def _write_behind(m, parts: _Parts):
        """The output and accumulator memories' write addresses, and the MVM's accumulator write."""
        ports = parts.ports
        # REQ's output vector: a register set in REQ's first cycle that steps right after the write of
        # each vector's last chunk but the last (the bank's out_next, which falls inside the REQ), so
        # the last vector's write-behind in the next instruction's first cycle still finds it.
        m.d.comb += ports["out_w"].addr.eq(parts.req_out_addr)
        with m.If(parts.requant.out_next):
            m.d.sync += parts.req_out_addr.eq(parts.req_out_addr + 1)
        # The MVM's result, written in the cycle after its last (isa.WRITE_BEHIND): the shift-and-add's
        # last contributions arrive then, no instruction's first cycle moves its registers, and addr_b
        # (set by MVM in its first cycle) still holds the MVM's accumulator address.
        m.d.sync += parts.acc_write.eq(0)
        # A multi-vector MVM writes each vector but the last at its vector boundary (vector_write), the
        # cycle its last round's codes arrive, inside the MVM (addr_b then moves on to the next vector).
        m.d.comb += [ports["acc_w"].addr.eq(parts.addr_b), ports["acc_w"].data.eq(parts.shift_add.result),
                     ports["acc_w"].en.eq(parts.acc_write | parts.vector_write)]

    def _load_ports(self, m, parts: _Parts):
        """The load formatter's ``take`` and the write enables of a load's items (LDW, LDM, LDIN, LDD), from
        registers: which load is executing (``load_op``, one bit per load, set in every instruction's first
        cycle), ``step``, ``late_err``, LDW's ``program_wait``, and the loader's word index, with ``din``'s
        valid. The sequencer's decode of the same instruction (``_load``: pc in range, opcode, first cycle,
        waits, the range check) gives the same bits: after a first cycle a run goes on only if the word was
        in range and passed its static checks, ``step`` is 0 in every cycle of a stopped run, and
        ``late_err`` is only raised after LDIN's first cycle among the loads."""
        loader, xbar, ports = parts.loader, parts.xbar, parts.ports
        load_op = {op: Signal(name=f"load_op_{op.name.lower()}") for op in LOAD_OPCODES}
        with m.If(parts.first):
            m.d.sync += [bit.eq(parts.is_op[op]) for op, bit in load_op.items()]
        moving = (load_op[Opcode.LDW] & (parts.program_wait == 0)) | load_op[Opcode.LDM] | load_op[Opcode.LDIN] | \
            load_op[Opcode.LDD]
        m.d.comb += loader.take.eq(~parts.first & ~parts.late_err & self.din.valid & moving)
        # (the write ports' address and data are the loader's item: _array_and_requant; the VAU's writes
        # never fall in a load)
        # (an item's write: take and the loader's item_last, with take's moving reduced to the load's own bit)
        taking = ~parts.first & ~parts.late_err & self.din.valid & loader.item_last
        m.d.comb += [xbar.wr_levels_en.eq(parts.vau.wr_levels_en | (loader.item_valid & load_op[Opcode.LDW])),
                     xbar.wr_mask_en.eq(parts.vau.wr_mask_en | (taking & load_op[Opcode.LDM])),
                     ports["in_w"].en.eq(taking & load_op[Opcode.LDIN]),
                     ports["delta_w"].en.eq(taking & load_op[Opcode.LDD])]

    def _fetch_wiring(self, m, run: _RunState, parts: _Parts):
        """The fetch unit, the loop stack and the MVM lanes' rewind, from the sequencer's state."""
        fetch, loops = parts.fetch, parts.loops
        # The next word is registered when an instruction ends: single-cycle ones run back to back.
        m.d.comb += [fetch.start.eq(self.start), fetch.running.eq(run.running), fetch.fin.eq(parts.fin_copies["fetch"]),
                     fetch.fin_copy.eq(parts.fin_copies["fetch_copy"]),
                     fetch.next_pc_plus1.eq(loops.next_pc_plus1), fetch.push.eq(loops.push),
                     fetch.levels.eq(loops.levels),
                     *[fetch.wrap[i].eq(loops.wrap[i]) for i in range(self.cfg.loop_depth)]]
        # (the loop stack takes the new run's length in the start cycle, when prog_len already holds it:
        # its registers look a cycle ahead)
        m.d.comb += [loops.pc.eq(parts.pc), loops.prog_len.eq(run.prog_len),
                     loops.clear.eq(~run.running & self.start)]
        # A multi-vector MVM's vector boundary, from the cycle its vector's last round issues
        # (lanes.next_vector), as registers: the next input vector is read (stage 1: on the lanes' x
        # from the cycle after the next round issues), then, after MVM_LATENCY + WRITE_BEHIND - 2 stages
        # that only wait (the finished vector's last codes are still in the pipeline), its old accumulator
        # vector read (vector_acc), the shift-and-add loaded with it as the finished vector is written
        # (vector_write, in the cycle its last round's codes arrive: MVM_LATENCY + WRITE_BEHIND + 1 stages
        # after next_vector). A failing check (the MVM's, registered, in its second cycle; or its word's,
        # in its first) stops the run and empties the stages: no write after the run.
        m.d.sync += parts.vector_in.eq(parts.lanes.next_vector & ~parts.err)
        stage = parts.vector_in
        for n in range(isa.MVM_LATENCY + isa.WRITE_BEHIND - 2):
            waiting = Signal(name=f"vector_wait{n}")
            m.d.sync += waiting.eq(stage & ~parts.err)
            stage = waiting
        m.d.sync += [parts.vector_acc.eq(stage & ~parts.err),
                     parts.vector_write.eq(parts.vector_acc & ~parts.err)]

    @staticmethod
    def _counters(m, run: _RunState, parts: _Parts):
        """The cycle counter, the cycles into the instruction (``step``) and the late error's register."""
        # A run-time check's error is raised a cycle late (``late_err``): that cycle is not counted, so the
        # run's cycles end with the failing instruction's first, as the ISA defines. Whether a cycle counts
        # is registered (``run.counted``) and added to the counter in the next cycle; the ``cycles`` output
        # adds it too (elaborate), so the count shown is the same in every cycle, and the stall, which
        # comes from the streams' handshakes, ends at one flip-flop instead of the counter's 32.
        m.d.sync += [run.counted.eq(run.running & ~parts.stall & ~parts.late_err),
                     run.cycles.eq(run.cycles + run.counted)]
        with m.If(run.running & ~parts.stall):
            # first (step == 0) is a register of its own beside step: it gates most first-cycle decodes
            with m.If(parts.fin | parts.err | parts.halt):
                m.d.sync += [parts.step.eq(0), parts.first.eq(1)]
            with m.Else():
                m.d.sync += [parts.step.eq(Mux(parts.step == 3, 3, parts.step + 1)), parts.first.eq(0)]
            # (second ignores the error: a run that stops leaves first high, which every use of second while
            # idle is behind, and start clears it; the error, the sequencer's deepest signal, has one reader less)
            m.d.sync += parts.second.eq(Mux(parts.fin | parts.halt, 0, parts.first))
        # check_fail is only raised while running: late_err is low in a run's first cycle.
        m.d.sync += [parts.late_err.eq(parts.check_fail), parts.late_cause.eq(parts.check_cause)]

    def _start(self, m, run: _RunState, parts: _Parts):
        """Idle: ``start`` begins a run at pc 0 (``beyond`` is PC_RANGE for an empty program) of
        ``prog_len`` words (kept while loading: :meth:`_program_loading`); the next words loaded
        start a new program."""
        with m.If(self.start):
            m.d.sync += [run.running.eq(1), parts.pc.eq(0), run.cycles.eq(0), run.done.eq(0), run.error.eq(0),
                         parts.step.eq(0), parts.first.eq(1), parts.second.eq(0), run.load_ptr.eq(0),
                         run.beyond.eq(run.prog_len == 0), run.go.eq(run.prog_len != 0)]

    def _sequence(self, m, run: _RunState, parts: _Parts):
        """Running: PC_RANGE, the layer commits, the end of the run, and the advance of pc and loop stack (the
        executing word's statements and checks: :meth:`_execute_word`; the operand reads: :meth:`_operand_reads`)."""
        # the word's own checks passed (for instructions with no run-time checks: no error)
        m.d.comb += parts.word_ok.eq(~run.beyond & (run.static_cause == Cause.NONE))
        with m.If(run.beyond):  # pc >= the program's length, a register updated with pc
            self._error_if(m, parts, 1, Cause.PC_RANGE)
        self._commits(m, parts)
        # The error's cause and pc are taken in every running cycle, not only on err: the run's last
        # cycle is the error's, after which they hold, and the status outputs show them only with
        # error. So err (the OR of every instruction's checks) enables three flip-flops, not the
        # cause's and the pc's.
        m.d.sync += [run.cause.eq(parts.err_cause), run.err_pc.eq(parts.pc)]
        with m.If(parts.err):
            m.d.sync += [run.running.eq(0), run.done.eq(1), run.error.eq(1)]
            m.d.comb += parts.lanes.abort.eq(1)
        with m.Elif(parts.halt):
            m.d.sync += [run.running.eq(0), run.done.eq(1)]
        # pc and loop stack advance whether or not the instruction's checks failed (an error
        # ends the run, and a run starts from pc 0 with an empty stack): this keeps the
        # address and range checks out of these registers' enables.
        m.d.comb += parts.loops.advance.eq(parts.fin_copies["loops"])
        with m.If(parts.fin):
            m.d.sync += [parts.pc.eq(parts.loops.next_pc), run.beyond.eq(parts.loops.next_beyond),
                         run.go.eq(~parts.loops.next_beyond)]
        with m.If(parts.err | parts.halt):  # (after the fin statement: the run stops)
            m.d.sync += run.go.eq(0)

    def _execute_word(self, m, run: _RunState, parts: _Parts):
        """Running within the program (``go``): the executing word's statements and its errors, and ``fin``.
        Returns what ``ends_next`` takes at the clock edge (for an instruction that goes on): :meth:`_ends_next`'s
        terms, each under its opcode's bit; by bus (``"din"``, ``"dout"``), what ``armed_din`` and ``armed_dout``
        take: :meth:`_stream_end`'s terms likewise; and the terms of ``fin`` (:meth:`_fin_copies`)."""
        static_cause = run.static_cause
        # Each opcode's statements are conditioned on its pre-decoded bit (is_op, one-hot: at most one
        # is high, none for an undefined opcode, whose stored cause stops the run), a flip-flop, not a
        # compare of the opcode's bits fanned out to every statement. Each ends its instruction on a
        # signal of its own (fin_<op>, high only under that bit), and fin is their OR: a flat sum of
        # small terms, rather than one signal assigned in every branch, which synthesises to a chain
        # of multiplexers as long as the opcodes. The single-cycle opcodes' terms (each its bit alone) are
        # one pre-decoded bit (hw.fetch.SINGLE_CYCLE), and the opcodes whose end is a count of cycles
        # (_ends_next) one register, ends_next, set a cycle ahead; the streams' (_stream_end) a register per bus
        # set a cycle ahead when the word on the bus will be the last, ANDed with the bus's handshake: fin is
        # go and an OR of four products of flip-flops and handshakes, whatever the opcodes.
        # (Their fin_<op> statements stay as the definition those registers follow: nothing reads them, so
        # synthesis drops them; tests/test_hw_tile.py checks that they agree.)
        fin_terms = [run.go & parts.single, run.go & parts.ends_next, run.go & parts.armed_din & self.din.valid,
                     run.go & parts.armed_dout & self.dout.ready]
        ahead, armed = [], {"din": [], "dout": []}
        # (for tests, after elaboration: go, ends_next, the armed registers, and per opcode its bit, its own fin
        # and what replaces it: "ahead" (ends_next), "din" or "dout" (the armed register of that bus), or None)
        self.fin_probe = {"go": run.go, "ends_next": parts.ends_next, "ops": {},
                          "armed": {"din": parts.armed_din, "dout": parts.armed_dout}}
        for op in Opcode:
            with m.If(parts.is_op[op]):
                fin_op = Signal(name=f"fin_{op.name.lower()}")
                self._execute(m, op, replace(parts, fin=fin_op))
                term, stream = self._ends_next(op, parts), self._stream_end(op, parts)
                kind = "ahead" if term is not None else stream[0] if stream is not None else None
                self.fin_probe["ops"][op] = (parts.is_op[op], fin_op, kind)
                if term is not None:
                    ahead.append(parts.is_op[op] & term)
                elif stream is not None:
                    armed[stream[0]].append(parts.is_op[op] & stream[1])
                elif op not in SINGLE_CYCLE:
                    fin_terms.append(fin_op)  # (high only under go: assigned in its statements)
        # The checks on the word alone were made when it was loaded. They come first in
        # every instruction's order, so the stored cause overrides the run-time ones; the
        # statements above do not wait for it: the run stops in this first cycle and every
        # visible first-cycle update is gated by ~err.
        self._error_if(m, parts, parts.first & (static_cause != Cause.NONE), static_cause)
        # The run-time checks of MVM, REQ, LDIN, RDOUT and RDACC (loop offsets, window alignment)
        # are made in their first cycle and registered: their error stops the run in the second
        # cycle, which has no visible effect (those statements hold the streams and REQ's lanes
        # on late_err) and is not counted. So the address adders and comparators end at a
        # register, not at every register the error stops.
        self._error_if(m, parts, parts.late_err, parts.late_cause)
        return Cat(*ahead).any(), {bus: Cat(*terms).any() for bus, terms in armed.items()}, Cat(*fin_terms)

    @staticmethod
    def _fin_copies(m, parts: _Parts, terms):
        """``fin``, the OR of ``terms`` (each high only under ``go``), and copies of it in modules synthesis keeps
        (hw.cut.AnyOf): the fetch unit's two (the enables of the instruction register and of its copy, each a
        register of the stored word) and the loop stack's (its registers' enable), so that each group of readers
        has a net of its own, placed near it, rather than one net across the die."""
        m.d.comb += parts.fin.eq(terms.any())
        for name, copy in parts.fin_copies.items():
            m.submodules[f"cut_fin_{name}"] = gate = AnyOf(len(terms))
            m.d.comb += [gate.ins.eq(terms), copy.eq(gate.out)]

    def _stream_end(self, op, parts: _Parts):
        """When ``op``'s end is the handshake of its last bus word (the loads with no programming wait, LDRQ, the
        reads), ``(bus, condition)``: in one of its cycles, the condition that the next cycle's word on ``bus``
        (``"din"`` or ``"dout"``) is its last, from what the registers it reads take at the clock edge (the
        formatter's ``last_next``, LDRQ's ``left_last_next``), so that ``fin_<op>`` is then that bus's armed
        register and its handshake. None for the other opcodes. Each is the opcode's own condition read one cycle
        early: after the first cycle (RDACC: the second), the last word with the bus's handshake."""
        if op in LOAD_OPCODES and (op is not Opcode.LDW or self.cfg.write_cycles == 0):
            return "din", parts.loader.last_next
        if op is Opcode.LDRQ:
            return "din", parts.left_last_next
        if op in READ_OPCODES:
            # (RDACC's second cycle sends no word: its next cycle is a word cycle only after the first)
            return "dout", parts.reader.last_next & ~parts.first if op is Opcode.RDACC else parts.reader.last_next
        return None

    def _ends_next(self, op, parts: _Parts):
        """When ``op``'s end is a count of cycles (MVM's and REQ's drain; the array's programming wait of LDW,
        VAUR, VAUC and WSET; MSET's third cycle), the condition, in one of its cycles, that the next is its last
        (``fin_<op>`` there), from this cycle's registers; None when the end waits for a stream's handshake (the
        other loads and reads), is in the first cycle (the single-cycle opcodes) or, for this configuration, is
        not a wait of two cycles or more (LDW, WSET, VAUR, VAUC with a wait of 0 or 1: a VAU's end then follows
        the column sweep's, an LDW's the bus), which keep their own term in ``fin``. Each term is the opcode's own
        statements read one cycle early: the counter one step before the value that ends it, in the branch that
        steps it, with the statements' other conditions, which hold from one cycle to the next in those branches
        (none of these opcodes stalls in them; ``first`` is low from the second cycle; an error or HALT stops the
        run, and ``go`` with it)."""
        cfg, first, wait, drain, step = self.cfg, parts.first, parts.program_wait, parts.drain, parts.step
        if op is Opcode.MVM:
            # drain steps while the lanes are finished, and fin is drain == MVM_LATENCY after the first cycle
            return ~first & parts.lanes.finished & (drain == isa.MVM_LATENCY - 1)
        if op is Opcode.REQ:
            # after the second cycle, once no chunk is left (which stays so), drain steps to REQ_LATENCY - 1
            if isa.REQ_LATENCY < 2:  # (the first drain cycle would be the last)
                return None
            return ~first & ~parts.second & ~parts.requant.chunks_left & (drain == isa.REQ_LATENCY - 2)
        waits = {Opcode.LDW: cfg.write_cycles, Opcode.WSET: cfg.write_cycles, Opcode.MSET: 0,
                 Opcode.VAUR: isa.VAUR_PHASES * cfg.pulse_cycles, Opcode.VAUC: isa.VAUC_PHASES * cfg.pulse_cycles}
        if op not in waits:
            return None
        total = waits[op]
        if op in (Opcode.WSET, Opcode.MSET) and total == 0:
            return ~first & (step == 1)  # ends in the cycle after the new word is built (step 1)
        if total < 2:  # (no wait, or one cycle loaded in the cycle before the last: the opcode's own term)
            return None
        # the wait counts down to 1, the last cycle: 2 now (LDW's, after its last item: the loader is empty)
        # (WSET's wait is 0 in its step 1, so wait == 2 is past it)
        term = ~first & (wait == 2)
        if op is Opcode.LDW:
            term = term & parts.loader.empty
        return term

    @staticmethod
    def _commits(m, parts: _Parts):
        """The layer and requantisation registers' writes. The layer registers' next values are computed
        whenever the word is a CFG or WIN (decoded from the opcode alone, not behind the sequencer's
        checks). CFG, WIN and CFGRQ have no run-time checks: their only errors are PC_RANGE and the
        stored static cause. Committing on those alone (``word_ok``, not ``err``, the OR of every
        instruction's checks) keeps the loop offsets, address checks and error logic out of the layer
        and requantisation registers' enables. (A single-cycle instruction is always in its first
        cycle, where the static cause applies.)"""
        is_cfg, is_win = parts.is_op[Opcode.CFG], parts.is_op[Opcode.WIN]
        m.d.comb += [parts.layer_regs.cfg_write.eq(is_cfg), parts.layer_regs.win_write.eq(is_win),
                     parts.layer_regs.commit.eq(parts.word_ok & (is_cfg | is_win)),
                     parts.requant.commit.eq(parts.word_ok)]

    # ------------------------------------------------------------------------------------------
    def _buffers(self, m) -> dict:
        """The tile's buffers (input, accumulator, output, delta memories) and their ports (the program
        memory is in :class:`~cimtile.hw.fetch.Fetch`)."""
        cfg = self.cfg
        mems = {
            "in": Memory(shape=unsigned(8 * cfg.rows), depth=cfg.in_depth, init=[]),
            "delta": Memory(shape=unsigned(8 * cfg.delta_len), depth=cfg.delta_depth, init=[]),
        }
        ports = self._acc_buffer(m)
        for name, mem in mems.items():
            m.submodules[f"{name}_buffer"] = mem
            ports[f"{name}_w"] = mem.write_port()
            ports[f"{name}_r"] = mem.read_port()
        self._acc_forward(m, ports)
        self._out_buffer(m, ports)
        for name in ("in", "acc", "out", "delta"):
            # Read ports hold their data unless enabled: a multi-cycle instruction reads its
            # operand vectors once in its first cycle.
            m.d.comb += [ports[f"{name}_w"].en.eq(0), ports[f"{name}_r"].en.eq(0)]
        return ports

    def _acc_buffer(self, m) -> dict:
        """The accumulator buffer: :data:`ACC_CHUNKS` memories of whole columns (column ``c``'s ``acc_bits`` in
        chunk ``c * chunks // cols``), one write and one read address for all, and ``ports["acc_w"]`` and
        ``ports["acc_r"]`` the shared address, enable and data of the write and the read (the data: the chunks'
        data in column order). The read address has a copy per chunk (``copies``, each driven by the caller from a
        multiplexer of its own: :meth:`_operand_reads`), so that no address net fans out to the whole vector's LUT
        RAM (``acc_bits x cols`` bits; the read's data registers were the latest endpoints of tiny's twenty-second
        session's first run, 12.33 ns)."""
        cfg = self.cfg
        n = min(ACC_CHUNKS, cfg.cols)
        bounds = [cfg.acc_bits * (k * cfg.cols // n) for k in range(n + 1)]
        width = cfg.acc_bits * cfg.cols
        write = _SharedPort(addr=Signal(range(cfg.acc_depth), name="acc_w_addr"), en=Signal(name="acc_w_en"),
                            data=Signal(width, name="acc_w_data"))
        read = _SharedPort(addr=Signal(range(cfg.acc_depth), name="acc_r_mem_addr"), en=Signal(name="acc_r_mem_en"),
                           data=Signal(width, name="acc_r_mem_data"),
                           copies=[Signal(range(cfg.acc_depth), name=f"acc_r_addr{k}") for k in range(n)])
        for k in range(n):
            mem = Memory(shape=unsigned(bounds[k + 1] - bounds[k]), depth=cfg.acc_depth, init=[])
            m.submodules[f"acc_buffer{k}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [wr.addr.eq(write.addr), wr.en.eq(write.en), wr.data.eq(write.data[bounds[k]:bounds[k + 1]]),
                         rd.addr.eq(read.copies[k]), rd.en.eq(1), read.data[bounds[k]:bounds[k + 1]].eq(rd.data)]
        return {"acc_w": write, "acc_r": read}

    def _acc_forward(self, m, ports: dict):
        """The accumulator buffer's read, transparent to its write: the MVM's accumulator write lands in
        the next instruction's first cycle (isa.WRITE_BEHIND), when that instruction may read the same
        vector, and the read returns the written data. ``ports["acc_r"]`` becomes the shared address,
        enable and data of the read: the memory's data, or (a read at the address written in its cycle)
        the written vector, kept in a one-word memory and selected by a flag registered with the read.
        Same behaviour as a transparent read port (``transparent_for``), whose Verilog merges the two
        vectors through a vector-wide mask in every cycle; a memory keeps the forwarded word without
        a copy in Verilator's model in cycles that do not write it.

        The one-word memory takes every write (its enable is the write's, from registers), not only the
        colliding ones: the read's address compare then ends at the one-bit flag instead of at the
        enable of ``acc_bits x cols`` flip-flops. This is exact because no accumulator write falls between
        a read and the last use of its data: a write-behind (``acc_write``) only in an instruction's first
        cycle, whose read is used in its second (MVM) or until the next read (REQ, RDACC, which write
        nothing); a multi-vector MVM's vector writes (``vector_write``) at its vector boundaries, each in
        the cycle its previous cycle's read is loaded into the shift-and-add, and never at the address read
        beside it (the next vector's).

        The memory itself reads in every cycle (its read register has no enable, which would fan out to
        ``acc_bits x cols`` flip-flops; the shared ``en`` is not used): to hold its data the caller presents
        the address it read in the cycle before (the shared port's ``held``, a register), which
        :meth:`_operand_reads` does after the first cycle where :meth:`_read_enables` holds. Exact for the
        same reason: no write lands at a held address between its read and the last use of the data (a
        write in the read's own cycle is in the memory by the next cycle's read, which returns it with the
        flag low)."""
        cfg = self.cfg
        read, write = ports["acc_r"], ports["acc_w"]
        width = cfg.acc_bits * cfg.cols
        shared = _SharedPort(addr=Signal.like(read.addr, name="acc_r_addr"), en=Signal(name="acc_r_en"),
                             data=Signal(width, name="acc_r_data"))
        shared.held = Signal.like(read.addr, name="acc_r_held")
        shared.match = Signal(name="acc_r_match")
        shared.copies = read.copies
        m.d.sync += shared.held.eq(read.addr)
        m.d.comb += [read.addr.eq(shared.addr), read.en.eq(1)]
        self._forward_writes(m, "acc_forward", "acc_forwarded", read, write, shared.data, shared.match)
        ports["acc_r"] = shared

    @staticmethod
    def _forward_writes(m, name: str, flag_name: str, read, write, data: Signal, match=None) -> None:
        """Drive ``data`` with the synchronous ``read`` port's data, or, after a read that met a write of
        ``write`` at its address in its cycle, with the written word: a one-word memory (submodule
        ``name``) takes every write (its enable is the write's), and a flag (``flag_name``) registered with
        the read selects it. The behaviour of a port transparent to the write, for data used before the
        next write (the callers say why theirs are); the read register's input is the memory alone and
        the address compare ends at the one-bit flag. ``match``, if given, is ``read.addr == write.addr``
        computed by the caller (from the candidates of a read address that is chosen late)."""
        forward = Memory(shape=unsigned(len(data)), depth=1, init=[])
        m.submodules[name] = forward
        keep, keep_read = forward.write_port(), forward.read_port(domain="comb")
        forwarded = Signal(name=flag_name)  # the read's data is the forwarded word
        m.d.comb += [keep.en.eq(write.en), keep.data.eq(write.data),
                     data.eq(Mux(forwarded, keep_read.data, read.data))]
        with m.If(read.en):
            m.d.sync += forwarded.eq(write.en & ((read.addr == write.addr) if match is None else match))

    def _out_buffer(self, m, ports: dict):
        """The output buffer: one memory per REQ chunk (``rq_lanes`` bytes of each output vector), one
        write address for all, and one read address for all but in RDOUT, whose chunks follow the bus words
        their bytes fall in (:meth:`_read_enables`).

        REQ writes a chunk as a whole: the columns at and above ``n_out`` (``ports["out_keep"]``) are
        rewritten with the vector's old bytes, read into the read ports in REQ's second cycle (and at each
        vector boundary of a multi-vector REQ), so the memories need no byte enables. (A byte-enabled
        write of the whole vector is one conditional write per column in Verilator's model, in every
        cycle.) REQ's last chunk is written in the next instruction's first cycle (isa.WRITE_BEHIND),
        when that instruction may read the same vector: each chunk's read returns its write's data, as
        the accumulator read does (:meth:`_acc_forward`: a one-word memory takes each of the chunk's
        writes, and a flag registered with the read selects it when the read met a write at its address),
        so the read register's input is the memory alone, not the requantisation lanes' bytes through a
        transparent port's bypass. (No chunk write falls between a read and the last use of its data: a
        REQ's old bytes of chunk k are used by chunk k's one write of the vector, RDOUT writes nothing.)
        ``ports["out_w"]`` and ``ports["out_r"]`` are the shared address, enable and data (the read data is
        the chunks' data side by side; the read's enable has a bit per chunk, and the chunks that carry an
        RDOUT item's last bus word read at ``ports["out_r"].current``: :meth:`_read_enables`),
        ``ports["out_chunks"]`` the (write port, read) pairs, each read with the chunk's forwarded ``data``, and
        ``ports["out_chunk_words"]`` the index of the last bus word of an RDOUT item that each chunk's bytes
        fall in."""
        cfg = self.cfg
        lanes, depth = cfg.rq_lanes, cfg.out_depth
        addr_bits = max(1, (depth - 1).bit_length())
        n_chunks = -(-cfg.cols // lanes)
        ports["out_w"] = _SharedPort(addr=Signal(addr_bits, name="out_w_addr"), en=Signal(n_chunks, name="out_w_en"))
        ports["out_r"] = _SharedPort(addr=Signal(addr_bits, name="out_r_addr"), en=Signal(n_chunks, name="out_r_en"),
                                     data=Signal(8 * cfg.cols, name="out_r_data"),
                                     current=Signal(addr_bits, name="out_r_current"))
        words = formats(cfg)[Opcode.RDOUT].words
        # an RDOUT item's bytes are the chunks' side by side: chunk k's last byte is byte min((k+1) lanes, cols) - 1
        ports["out_chunk_words"] = [(8 * min((k + 1) * lanes, cfg.cols) - 1) // cfg.bus_bits for k in range(n_chunks)]
        chunks = []
        for k in range(n_chunks):
            width = 8 * min(lanes, cfg.cols - k * lanes)
            mem = Memory(shape=unsigned(width), depth=depth, init=[])
            m.submodules[f"out_buffer{k}"] = mem
            write, read = mem.write_port(), mem.read_port()
            shared = _SharedPort(addr=read.addr, en=read.en, data=Signal(width, name=f"out_r_data{k}"))
            at_current = words > 1 and ports["out_chunk_words"][k] == words - 1
            m.d.comb += [write.addr.eq(ports["out_w"].addr), write.en.eq(ports["out_w"].en[k]),
                         read.addr.eq(ports["out_r"].current if at_current else ports["out_r"].addr),
                         read.en.eq(ports["out_r"].en[k])]
            self._forward_writes(m, f"out_forward{k}", f"out_forwarded{k}", read, write, shared.data)
            chunks.append((write, shared))
        ports["out_chunks"] = chunks
        # the bytes of columns at and above n_out, which REQ's chunk writes keep (set in REQ's first cycle)
        ports["out_keep"] = Signal(8 * cfg.cols, name="out_keep")
        m.d.comb += ports["out_r"].data.eq(Cat(*[read.data for _, read in chunks]))

    def _units(self, m, ports) -> _Parts:
        """Instantiate the units, connect what does not depend on the instruction, and gather the
        parts the per-opcode statements drive."""
        cfg = self.cfg
        units = {
            "layer_regs": LayerRegisters(cfg), "loops": LoopStack(cfg), "lanes": MvmLanes(cfg, self.mutation),
            "shift_add": ShiftAdd(cfg), "requant": RequantBank(cfg), "vau": Vau(cfg), "xbar": Crossbar(cfg),
            "fetch": Fetch(cfg), "loader": LoadFormatter(cfg), "reader": ReadFormatter(cfg),
        }
        for name, unit in units.items():
            m.submodules[name] = unit
        self._mvm_path(m, units, ports)
        self._array_and_requant(m, units, ports)
        parts = self._parts(m, units, ports)
        self._shift_add_control(m, parts)
        self._instruction_fields(m, parts)
        return parts

    def _mvm_path(self, m, units: dict, ports: dict):
        """The MVM's data path: layer registers -> lanes -> crossbar -> ADCs -> shift-and-add."""
        cfg = self.cfg
        layer_regs, lanes, xbar, shift_add = units["layer_regs"], units["lanes"], units["xbar"], units["shift_add"]
        layer = layer_regs.layer
        m.d.comb += [lanes.layer.eq(layer), lanes.x.eq(ports["in_r"].data), lanes.lane_step.eq(layer_regs.lane_step),
                     lanes.lane_radix.eq(layer_regs.lane_radix),
                     *[lanes.lane_start[i].eq(layer_regs.lane_start[i]) for i in range(cfg.n_adcs)]]
        for i in range(cfg.n_adcs):
            adc = Adc(cfg, xbar.sbits)
            m.submodules[f"adc{i}"] = adc
            m.d.comb += [xbar.col[i].eq(lanes.col[i]), xbar.pair[i].eq(lanes.pair[i]), xbar.wl[i].eq(lanes.wl[i]),
                         adc.sum.eq(xbar.sum[i]), adc.shift.eq(layer.adc_shift), adc.diff.eq(layer.analog),
                         adc.term_neg.eq(lanes.adc_conversion[i].neg),
                         adc.term_shift.eq(lanes.adc_conversion[i].shift),
                         shift_add.conversion[i].eq(lanes.conversion[i]), shift_add.hit[i].eq(lanes.hit[i]),
                         shift_add.term[i].eq(adc.term)]
        m.d.comb += [shift_add.old.eq(ports["acc_r"].data), shift_add.n_out.eq(layer.n_out)]
        # The lanes rewind to the layer's start digits outside an MVM and in its last cycle (lanes.last:
        # the cycle _mvm ends the MVM in, drain == MVM_LATENCY, told from the lanes' registers).
        m.d.comb += lanes.rewind.eq(~lanes.run | lanes.last)

    @staticmethod
    def _shift_add_control(m, parts: _Parts):
        """The shift-and-add's ``load`` and ``run``, from registers, outside the opcode's decode.

        ``load`` is ``mvm_load`` (set by an MVM's second cycle: its old accumulator vector arrives in the
        third) or ``vector_write`` (a multi-vector MVM's boundary); ``run`` is always high. Why: decoded
        from the executing word (``step`` in an MVM), the two were the enable of every result register
        (``cols x acc_bits`` flip-flops) and late (docs/microarchitecture.md). It is exact: the registers
        are only read through ``result`` by the accumulator writes of an MVM (``vector_write`` and the
        write-behind ``acc_write``), which follow that MVM's ``load`` in its third cycle, which sets
        every register and every ``fresh`` bit; what they take in any other cycle (the contributions of
        the last round in the next instruction's first cycle, none elsewhere, or a load after an MVM
        whose first cycle stopped the run) is overwritten before it is read.
        """
        m.d.comb += [parts.shift_add.run.eq(1), parts.shift_add.load.eq(parts.mvm_load | parts.vector_write)]
        m.d.sync += parts.mvm_load.eq(0)  # _mvm sets it in an MVM's second cycle (a later statement wins)

    def _array_and_requant(self, m, units: dict, ports: dict):
        """The VAU and the crossbar's write port, the requantisation bank, the streams' idle values."""
        layer = units["layer_regs"].layer
        vau, xbar, requant = units["vau"], units["xbar"], units["requant"]
        m.d.comb += [vau.layer.eq(layer), vau.deltas.eq(ports["delta_r"].data), vau.levels.eq(xbar.rd_levels),
                     vau.mask.eq(xbar.rd_mask)]
        # The crossbar's write port: the VAU / cell-update write-back, or a load's item (LDW, LDM: _load
        # sets only the enables). The address and data are chosen by the VAU's enables (registers: the
        # VAU writes only inside its own instructions, never beside a load), not by the sequencer's
        # decode, which stays in the enables alone.
        loader = units["loader"]
        m.d.comb += [xbar.wr_col.eq(Mux(vau.wr_levels_en | vau.wr_mask_en, vau.wr_col, loader.item_addr)),
                     xbar.wr_levels.eq(Mux(vau.wr_levels_en, vau.wr_levels, loader.items.ldw)),
                     xbar.wr_mask.eq(Mux(vau.wr_mask_en, vau.wr_mask, loader.items.ldm))]
        # The input and delta buffers' write address and data: the load's item in every cycle (LDIN, LDD:
        # _load sets only the enable).
        for name, item in (("in_w", loader.items.ldin), ("delta_w", loader.items.ldd)):
            m.d.comb += [ports[name].addr.eq(loader.item_addr), ports[name].data.eq(item)]
        m.d.comb += [requant.acc.eq(ports["acc_r"].data), requant.n_out.eq(layer.n_out),
                     requant.ldrq_data.eq(self.din.payload), ports["out_w"].en.eq(requant.out_chunk)]
        # A chunk's write: the lanes' bytes below n_out, the vector's old bytes (its read port) at and
        # above, as a mask (out_keep, set in REQ's first cycle): a few word operations per chunk in
        # Verilator's model, which computes the data in every cycle (the write and the read port's
        # transparency both use it).
        lanes, keep = self.cfg.rq_lanes, ports["out_keep"]
        for k, (write, read) in enumerate(ports["out_chunks"]):
            bits = slice(8 * k * lanes, 8 * k * lanes + len(read.data))
            m.d.comb += write.data.eq((requant.out_data[bits] & ~keep[bits]) | (read.data & keep[bits]))
        m.d.comb += [self.din.ready.eq(0), self.dout.valid.eq(0)]

    def _parts(self, m, units: dict, ports: dict) -> _Parts:
        """The executing word, the sequencer's control signals and per-instruction registers."""
        cfg = self.cfg
        stored = data.View(STORED, units["fetch"].word)
        word = stored.word
        step, first = Signal(2, name="step"), Signal(name="first", init=1)  # first == (step == 0)
        return _Parts(
            is_op={op: stored.opcodes[op.value] for op in Opcode}, acc_addr=stored.acc_addr, last=stored.last,
            single=stored.single,
            view=data.View(INSTR, word[:INSTR.size]), first=first, second=Signal(name="second"), step=step,
            fin=Signal(name="fin"), ends_next=Signal(name="ends_next"),
            armed_din=Signal(name="armed_din"), armed_dout=Signal(name="armed_dout"),
            fin_copies={name: Signal(name=f"fin_{name}") for name in ("fetch", "fetch_copy", "loops")},
            stall=Signal(name="stall"), err=Signal(name="err"), err_cause=Signal(Cause, name="err_cause"),
            check_fail=Signal(name="check_fail"), check_cause=Signal(Cause, name="check_cause"),
            late_err=Signal(name="late_err"), late_cause=Signal(Cause, name="late_cause"),
            halt=Signal(name="halt"), pc=Signal(pc_bits(cfg), name="pc"),
            tag=Signal(TAG_BITS, init=isa.RESET_SYNC_TAG, name="tag"),
            # Address checks "field + off + extra > depth" are "field + extra > room" with room =
            # depth - off, a register of the loop stack's innermost level, so the word meets a narrow
            # adder and comparator.
            offsets=units["loops"].offsets, room=list(units["loops"].room), ports=ports,
            addr_b=Signal(SUM_BITS, name="addr_b"),
            accumulate=Signal(name="accumulate"), drain=Signal(3, name="drain"),
            acc_write=Signal(name="acc_write"), word_ok=Signal(name="word_ok"),
            vector_in=Signal(name="vector_in"), vector_acc=Signal(name="vector_acc"),
            vector_write=Signal(name="vector_write"), mvm_load=Signal(name="mvm_load"),
            in_next=Signal(max(1, (cfg.in_depth - 1).bit_length()), name="in_next"),
            acc_next=Signal(max(1, (cfg.acc_depth - 1).bit_length()), name="acc_next"),
            left=Signal(ADDR_BITS + 1, name="left"), left_last=Signal(name="left_last"),
            left_last_next=Signal(name="left_last_next"),
            req_out_addr=Signal(range(cfg.out_depth), name="req_out_addr"),
            req_left=Signal(ADDR_BITS, name="req_left"), req_more=Signal(name="req_more"),
            program_wait=Signal(range(max(cfg.write_cycles, isa.VAUR_PHASES * cfg.pulse_cycles,
                                          isa.VAUC_PHASES * cfg.pulse_cycles) + 1), name="program_wait"),
            **units)

    def _instruction_fields(self, m, parts: _Parts):
        """The executing word's fields to the units that decode them; the stream formatters see every
        instruction and their sources, and act on their strobes only."""
        args, ports, reader = parts.view.args, parts.ports, parts.reader
        m.d.comb += [parts.loader.opcode.eq(parts.view.opcode), parts.loader.word.eq(self.din.payload),
                     reader.opcode.eq(parts.view.opcode), reader.ready.eq(self.dout.ready),
                     reader.items.rdout.eq(ports["out_r"].data),
                     reader.items.rdacc.eq(ports["acc_r"].data), reader.items.rdw.eq(parts.xbar.rd_levels),
                     reader.items.rdm.eq(parts.xbar.rd_mask)]
        m.d.comb += [parts.lanes.count_m1.eq(args.mvm.count_m1)]
        # (the parameters of CFG, WIN, CFGRQ and the VAU come from the fetch unit's copy of the word register,
        # equal to it, which synthesis places near these units: hw.fetch.Fetch.word_copy)
        fields = data.View(INSTR, data.View(STORED, parts.fetch.word_copy).word[:INSTR.size]).args
        m.d.comb += [parts.shift_add.accumulate.eq(parts.accumulate), parts.vau.fields.eq(fields.vau),
                     parts.vau.cell.eq(fields.cell), parts.layer_regs.cfg_fields.eq(fields.cfg),
                     parts.layer_regs.win_fields.eq(fields.win), parts.requant.cfgrq.eq(fields.cfgrq)]

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _error_if(m, parts: _Parts, cond, cause):
        with m.If(cond):
            m.d.comb += [parts.err.eq(1), parts.err_cause.eq(cause)]

    @staticmethod
    def _check_late(m, parts: _Parts, cond, cause):
        """A run-time check of a multi-cycle instruction's first cycle: its error stops the run in the
        instruction's second cycle (``late_err``), uncounted."""
        with m.If(cond):
            m.d.comb += [parts.check_fail.eq(1), parts.check_cause.eq(cause)]

    def _operand_reads(self, m, parts: _Parts):
        """Operand reads. Addresses: the field plus the loop offset on the memory's address bits only (the
        accumulator memory's field picked by opcode when the word was loaded, ``parts.acc_addr``; the output
        memory's fields each added before the opcode picks one), so the word's path to the input and output
        memories' read ports is a narrow adder and a 2:1 mux; after the first cycle, registers. The
        accumulator memory reads registers only: its first address is registered in the first cycle
        (``acc_next``) and read in the second (isa.ACC_READ_WAIT). Enables: see :meth:`_read_enables`."""
        cfg, args, is_op, ports = self.cfg, parts.view.args, parts.is_op, parts.ports

        def bits_for(depth):
            return max(1, (depth - 1).bit_length())

        def low_add(field, offset, depth):
            width = bits_for(depth)
            return (field[:width] + offset[:width])[:width]

        acc_r, in_r, out_r, dl_r = ports["acc_r"], ports["in_r"], ports["out_r"], ports["delta_r"]
        # (the pre-decoded field is MVM's acc_addr, else the range's start: REQ's acc_addr and RDACC's start;
        # other opcodes' first-cycle reads of the accumulator memory are not used: _read_enables)
        acc_first = low_add(parts.acc_addr, parts.offsets[1], cfg.acc_depth)
        in_first = low_add(args.mvm.in_addr, parts.offsets[0], cfg.in_depth)
        # (the output memory's first-cycle read is RDOUT's first item; REQ reads its first output vector in its
        # second cycle, from registers: _read_enables)
        out_first = low_add(args.range.start, parts.offsets[2], cfg.out_depth)
        req_first = low_add(args.req.out_addr, parts.offsets[2], cfg.out_depth)
        # the output memory's next read: RDOUT's next item, or REQ's first output vector then (a multi-vector
        # REQ's) next one; and out_current, the address of the chunks of an RDOUT item's last word
        # (_read_enables): the item being sent in RDOUT, out_next_addr in REQ (a REQ's chunks all read a vector)
        out_next = Signal(bits_for(cfg.out_depth), name="out_next_addr")
        out_current = Signal(bits_for(cfg.out_depth), name="out_current_addr")
        # The accumulator memory reads acc_next, a register, or (holding its data) the address it read in the
        # cycle before (_acc_forward), in every cycle: its address is a 2:1 multiplexer of registers, and the
        # first cycle's adder (the field plus the loop offset) ends at acc_next. What it reads in a first cycle
        # nothing uses: an instruction reads its first accumulator vector in its second cycle (isa.ACC_READ_WAIT)
        # at acc_next, which then steps to the next vector (a multi-vector MVM's or REQ's) or item (RDACC).
        # (the multiplexer is a module synthesis keeps whole, hw.cut: its select, from the read enables' logic
        # and dout's ready, meets one LUT before the address nets that fan out to the memory's LUT RAM)
        # (the forwarding's address compare, _forward_writes, is made on both candidates, each from registers,
        # and chosen by the same select in a kept 1-bit multiplexer: the select meets one LUT before the flag)
        # (and a copy of it per chunk memory: _acc_buffer)
        for k, addr in enumerate([acc_r.addr, *acc_r.copies]):
            m.submodules[f"cut_acc_addr{k - 1}" if k else "cut_acc_addr"] = pick = LateMux(len(acc_r.addr))
            m.d.comb += [pick.sel.eq(parts.acc_reads), pick.late.eq(parts.acc_next), pick.other.eq(acc_r.held),
                         addr.eq(pick.out)]
        acc_w_addr = ports["acc_w"].addr
        m.submodules.cut_acc_match = match = LateMux(1)
        m.d.comb += [match.sel.eq(parts.acc_reads), match.late.eq(parts.acc_next[:len(acc_w_addr)] == acc_w_addr),
                     match.other.eq(acc_r.held == acc_w_addr), acc_r.match.eq(match.out)]
        with m.If(parts.first):
            # a multi-vector MVM's next vectors' addresses follow (read at its vector boundaries)
            m.d.sync += [parts.acc_next.eq(acc_first), parts.in_next.eq(in_first + 1),
                         out_next.eq(Mux(is_op[Opcode.REQ], req_first, out_first + 1)),
                         out_current.eq(Mux(is_op[Opcode.REQ], req_first, out_first))]
            m.d.comb += [
                in_r.addr.eq(in_first),
                in_r.en.eq(is_op[Opcode.MVM]),
                # RDOUT's first item
                out_r.addr.eq(out_first),
                out_r.current.eq(out_first),
                dl_r.addr.eq(args.vau.delta_addr[:bits_for(cfg.delta_depth)]),
                dl_r.en.eq(is_op[Opcode.VAUR] | is_op[Opcode.VAUC]),
            ]
        with m.Else():
            # After the first cycle the accumulator memory reads acc_next, whoever reads: every instruction
            # its first vector in its second cycle; RDACC the next item, once the current one's last word left
            # (the read formatter; acc_next steps with it, as the formatter's own next address does); REQ the
            # next vector's accumulators, in the cycle of the current vector's last chunk (acc_next steps in
            # _req); a multi-vector MVM its next vector's old accumulators (vector_acc).
            with m.If(parts.second | parts.item_reads[Opcode.RDACC]):
                m.d.sync += parts.acc_next.eq(parts.acc_next + 1)
            # The output memory likewise reads out_next, which steps with each read: RDOUT's next item; REQ's
            # first output vector's old bytes, whose bytes at and above n_out the chunks' writes keep (see
            # _out_buffer), in its second cycle (out_req_reads); a multi-vector REQ's next output vector's, as
            # the current one's last chunk is written (the bank's out_next, inside the REQ; that vector's first
            # chunk is written next cycle), which is req_out_addr + 1 then.
            with m.If(parts.item_reads[Opcode.RDOUT] | parts.out_req_reads | parts.requant.out_next):
                m.d.sync += [out_next.eq(out_next + 1), out_current.eq(out_current + 1)]
            m.d.comb += [out_r.addr.eq(out_next), out_r.current.eq(out_current)]
            # a multi-vector MVM's vector boundary (vector_in and vector_acc: see _fetch_wiring)
            m.d.comb += [in_r.addr.eq(parts.in_next), in_r.en.eq(parts.vector_in)]
            with m.If(parts.vector_in):
                m.d.sync += parts.in_next.eq(parts.in_next + 1)
            with m.If(parts.vector_acc):
                m.d.sync += parts.acc_next.eq(parts.acc_next + 1)

    @staticmethod
    def _read_column(m, parts: _Parts):
        """The column that the crossbar's read port (which reads in every cycle; a port of its own, beside the
        lanes' column-sum ports) presents: in the first cycle a WSET/MSET's cell column or an RDW/RDM's base
        (the range's start), told apart by one opcode bit (:func:`_separating_bit`: the other instructions'
        first-cycle column reads data nothing uses); after the first cycle, in a VAUR/VAUC the VAU's swept
        column, else the read formatter's ``next_read_addr`` (from registers and ``dout``'s ready). After the
        first cycle the choice is made by a register set in every first cycle (whether the instruction is a
        VAU sweep), not by the executing word's decode. The port's data is used only in the cycle after a
        column of the instruction's own: WSET/MSET's second cycle, the VAU's arriving column, each word of an
        RDW/RDM; so the column in the other cycles (a VAU's drain and pulses, WSET/MSET after their first
        cycle, the other instructions, and every cycle of a stopped run) reads data nothing uses."""
        op, args, xbar = parts.view.opcode, parts.view.args, parts.xbar
        sweeps = Signal(name="rd_col_vau")
        reads_bit = _separating_bit((Opcode.WSET, Opcode.MSET), (Opcode.RDW, Opcode.RDM))
        with m.If(parts.first):
            m.d.sync += sweeps.eq(parts.is_op[Opcode.VAUR] | parts.is_op[Opcode.VAUC])
            m.d.comb += xbar.rd_col.eq(Mux(op.as_value()[reads_bit], args.range.start, args.cell.col))
        with m.Elif(sweeps):
            m.d.comb += xbar.rd_col.eq(parts.vau.col)
        with m.Else():
            m.d.comb += xbar.rd_col.eq(parts.reader.next_read_addr)

    def _read_enables(self, m, parts: _Parts):
        """The accumulator and output memories' read enables, from registers (and ``dout``'s ready): each
        port reads in every cycle but those in which a read's data must be held for a later use, so its
        enable (the output chunks' read registers' enable; the accumulator memory's choice of a held address,
        :meth:`_acc_forward`) is not the decode of the executing word.

        The data's uses: MVM loads the accumulator vector into the shift-and-add in the cycle after its read
        (its third cycle, or a vector boundary: vector_acc then vector_write); REQ takes an accumulator
        vector's chunks from the port over the vector's chunk cycles, and rewrites each output chunk's bytes at
        and above ``n_out`` from the output port's data of the vector's read (up to the write-behind of its last
        chunk, in the next instruction's first cycle, which uses the data before that cycle's read replaces it);
        RDACC and RDOUT send an item's words from the port until its last word leaves. Nothing else reads them,
        and apart from that write-behind no instruction uses data read before its first cycle. So a port may
        read in every first cycle (the output memory at the executing word's address, whatever the opcode;
        the accumulator memory reads its first vector in the second cycle, isa.ACC_READ_WAIT, at acc_next,
        whatever the opcode), and in every later cycle except inside REQ (accumulators: but at a vector's last
        chunk, when the next vector is read;
        outputs: but in REQ's second cycle, when its first output vector is read, and at the bank's
        ``out_next``), RDACC (but when an item's last word may leave: ``dout``'s
        ready and the formatter's ``item_last``) and RDOUT (each output chunk holds an item's bytes only while
        the words they fall in are still to be sent: for items of several words, from the formatter's
        ``word_index`` and ``item_last``, registers, below). Reads beyond those of the instruction's own (an
        item's last word while the run stops on a failed range check; a REQ's last vector's last chunk; MVM's
        cycles) replace data nothing uses again; the forwarding's flag (:meth:`_forward_writes`) is registered
        with each read, so a read always returns the memory's data as of its cycle's writes. Which instruction
        holds (``holds_*``) is a register set in every first cycle, as the loads' ``load_op``."""
        ports, reader, requant = parts.ports, parts.reader, parts.requant
        holds = {op: Signal(name=f"holds_{op.name.lower()}") for op in (Opcode.REQ, Opcode.RDACC, Opcode.RDOUT)}
        with m.If(parts.first):
            m.d.sync += [bit.eq(parts.is_op[op]) for op, bit in holds.items()]
        item_sent = self.dout.ready & reader.item_last  # an item's last word may leave: the next item is read
        req, rdacc, rdout = holds[Opcode.REQ], holds[Opcode.RDACC], holds[Opcode.RDOUT]
        # (RDACC's second cycle only reads its first item: its words leave from the third, isa.ACC_READ_WAIT)
        parts.item_reads = {Opcode.RDACC: ~parts.first & ~parts.second & rdacc & item_sent,
                            Opcode.RDOUT: ~parts.first & rdout & item_sent}
        # The output memory reads REQ's first output vector in REQ's second cycle, from registers (its data is
        # first used by chunk 0's write, REQ_LATENCY + WRITE_BEHIND cycles after the second), so that its
        # first-cycle address is RDOUT's alone. out_free: the chunks read in this cycle after a first cycle
        # (not in REQ or RDOUT, or in REQ's second), a register; out_req_reads: REQ's second cycle.
        out_free = Signal(name="out_reads_free")
        m.d.sync += out_free.eq(Mux(parts.first, ~parts.is_op[Opcode.RDOUT], ~(req | rdout)))
        parts.out_req_reads = ~parts.first & req & out_free
        # (the accumulator memory reads acc_next in every second cycle, its first vector's read; dout's ready, which
        # arrives late, picks between the choices with and without an RDACC item sent in a kept 1-bit
        # multiplexer, hw.cut, so it meets one LUT before the read address's multiplexer)
        acc_reads_base = parts.second | ~(req | rdacc) | (req & requant.last_chunk & requant.chunks_left)
        m.submodules.cut_acc_reads = acc_reads = LateMux(1)
        m.d.comb += [acc_reads.sel.eq(self.dout.ready), acc_reads.late.eq(acc_reads_base | (rdacc & reader.item_last)),
                     acc_reads.other.eq(acc_reads_base)]
        parts.acc_reads = acc_reads.out
        # The output memory's chunks, in RDOUT after the first cycle. An item of one bus word: every chunk reads
        # the next item (out_next_addr) when the word may leave. An item of several words (a chunk's bytes fall
        # in words up to ``w``, ports["out_chunk_words"]): a chunk with bytes in the item's last word reads the
        # item being sent (out_current) while an earlier word is on the bus, which returns the data it holds
        # (RDOUT writes nothing; the first cycle's write-behind is in the memory by then, and the forwarding's
        # flag is registered with each read), and holds it while the last word is on the bus; after that word
        # leaves, out_current is the next item, read while that item's first word is on the bus, before the
        # chunk's bytes are sent. Any other chunk's bytes have all been sent once the word index (a register)
        # is past ``w``: from then on it reads the next item (out_next_addr, unchanged until the item's last
        # word leaves, so a stall repeats the same read), whose words up to ``w`` follow that last word on the
        # bus. So no chunk's enable waits for dout's ready. out_next_addr and out_current step when an item's
        # last word leaves (_operand_reads), after that cycle's reads; in REQ out_current is out_next_addr.
        words = formats(self.cfg)[Opcode.RDOUT].words
        for k, w in enumerate(ports["out_chunk_words"]):
            if words == 1:
                rdout_reads = item_sent
            elif w == words - 1:
                rdout_reads = ~reader.item_last
            else:
                rdout_reads = reader.word_index > w
            m.d.comb += ports["out_r"].en[k].eq(parts.first | out_free | requant.out_next | (rdout & rdout_reads))

    def _static_cause(self, m, word):
        """The cause of the first failing check that depends on ``word`` alone (reserved
        bits, undefined opcode, and every check of CFG, WIN, CFGRQ, LDW, LDM, LDD, LDRQ, VAUR,
        VAUC, WSET, MSET, RDW, RDM), in each instruction's order; ``Cause.NONE`` if none fails.
        The remaining checks (loop offsets, window alignment, loop stack) are made at run time."""
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        view = data.View(INSTR, word[:INSTR.size])
        args = view.args
        item_range = args.range
        count = item_range.count_m1 + 1
        cause = Signal(Cause, name="load_cause")
        static = {
            Opcode.CFG: [(args.cfg.wsigned & (args.cfg.wbits_m1 == 0), Cause.CONFIG)],
            Opcode.WIN: [((args.win.row_start + args.win.row_count_m1 + 1 > rows) |
                          (args.win.col_start + args.win.col_count_m1 + 1 > cols), Cause.WINDOW)],
            Opcode.LDW: [(item_range.start + count > cols, Cause.ADDR)],
            Opcode.LDM: [(item_range.start + count > cols, Cause.ADDR)],
            Opcode.LDD: [(item_range.start + count > cfg.delta_depth, Cause.ADDR)],
            Opcode.LDRQ: [(item_range.start + count > cols, Cause.ADDR)],
            Opcode.RDW: [(item_range.start + count > cols, Cause.ADDR)],
            Opcode.RDM: [(item_range.start + count > cols, Cause.ADDR)],
            Opcode.VAUR: [(args.vau.delta_addr >= cfg.delta_depth, Cause.ADDR)],
            Opcode.VAUC: [(args.vau.delta_addr >= cfg.delta_depth, Cause.ADDR)],
        }
        cfgrq = args.cfgrq
        value_lo, value_hi = RQ_VALUE_RANGE
        in_range = ((value_lo <= cfgrq.clamp_lo) & (cfgrq.clamp_lo <= cfgrq.clamp_hi) & (cfgrq.clamp_hi <= value_hi) &
                    (value_lo <= cfgrq.zero_point) & (cfgrq.zero_point <= value_hi))
        static[Opcode.CFGRQ] = [(~in_range, Cause.CONFIG)]
        for op, top in ((Opcode.WSET, cfg.max_level), (Opcode.MSET, 1)):
            cell = args.cell
            static[op] = [((cell.row >= rows) | (cell.col >= cols), Cause.ADDR), (cell.value > top, Cause.VALUE)]
        m.d.comb += cause.eq(Cause.NONE)
        with m.Switch(view.opcode):
            for op in Opcode:
                with m.Case(op):
                    checks = [((word & ~Const(isa.USED_MASK[op], isa.WORD_BITS)).any(), Cause.RESERVED)]
                    checks += static.get(op, [])
                    # the first failing check in order wins: assign in reverse order
                    for cond, failing in reversed(checks):
                        with m.If(cond):
                            m.d.comb += cause.eq(failing)
            with m.Default():
                m.d.comb += cause.eq(Cause.OPCODE)
        return cause

    # -- per-opcode control ------------------------------------------------------------------------
    def _execute(self, m, op, parts: _Parts):
        """Statements for one opcode, under its pre-decoded bit (``is_op``) in :meth:`_sequence`."""
        args = parts.view.args
        if op in (Opcode.NOP, Opcode.SYNC):
            m.d.comb += parts.fin.eq(1)
            if op is Opcode.SYNC:
                # SYNC has no run-time checks: only PC_RANGE and the stored static cause (word_ok)
                with m.If(parts.word_ok):
                    m.d.sync += parts.tag.eq(args.sync.tag)
        elif op is Opcode.HALT:
            m.d.comb += parts.halt.eq(1)
        elif op in (Opcode.CFG, Opcode.WIN):  # the layer registers' writes: see elaborate()
            m.d.comb += parts.fin.eq(1)
        elif op is Opcode.CFGRQ:
            m.d.comb += [parts.requant.cfgrq_write.eq(1), parts.fin.eq(1)]
        elif op is Opcode.LOOP:
            self._loop(m, parts)
        elif op in (Opcode.LDW, Opcode.LDM, Opcode.LDIN, Opcode.LDD):
            self._load(m, op, parts)
        elif op is Opcode.LDRQ:
            self._ldrq(m, parts)
        elif op is Opcode.MVM:
            self._mvm(m, parts)
        elif op is Opcode.REQ:
            self._req(m, parts)
        elif op in (Opcode.VAUR, Opcode.VAUC):
            self._vau(m, op, parts)
        elif op in (Opcode.WSET, Opcode.MSET):
            self._cell(m, op, parts)
        elif op in (Opcode.RDOUT, Opcode.RDACC, Opcode.RDW, Opcode.RDM):
            self._read(m, op, parts)
        else:  # pragma: no cover - every opcode has a branch
            raise AssertionError(op)

    def _loop(self, m, parts: _Parts):
        cfg, loop_args, loops = self.cfg, parts.view.args.loop, parts.loops
        self._error_if(m, parts, loops.levels >= cfg.loop_depth, Cause.LOOP_DEPTH)
        with m.If(loops.levels < cfg.loop_depth):
            # the body's end > the enclosing end, as body_m1 > enclosing end - pc - 2 (from registers)
            self._error_if(m, parts, loop_args.body_m1 > loops.loop_room, Cause.LOOP_NEST)
        m.d.comb += [parts.fin.eq(1), loops.push.eq(1), loops.push_start.eq(parts.pc + 1),
                     loops.push_end.eq(parts.pc + 1 + loop_args.body_m1 + 1),
                     loops.push_room.eq(loop_args.body_m1 - 1),
                     loops.push_count.eq(loop_args.count_m1 + 1), loops.push_strides[0].eq(loop_args.stride_in),
                     loops.push_strides[1].eq(loop_args.stride_acc),
                     loops.push_strides[2].eq(loop_args.stride_out)]

    def _range_check(self, m, parts: _Parts, space: int | None):
        """The run-time range check of a load or read in a strided space (others are static)."""
        if space is not None:
            # start + count > room, as start + count_m1 (pre-decoded: hw.fetch.STORED's last[0]) >= room
            self._check_late(m, parts, parts.last[0] >= parts.room[space], Cause.ADDR)

    def _load(self, m, op, parts: _Parts):
        """LDW/LDM/LDIN/LDD: cycle 0 checks and starts the load formatter; then count x words bus words
        from din, each item written when its last word arrives (and, for LDW, ``write_cycles`` after
        each column: the array's programming time)."""
        cfg, item_range, loader = self.cfg, parts.view.args.range, parts.loader
        space = 0 if op is Opcode.LDIN else None  # the input space's loop offset applies (others: static checks)
        # progcost (issue 10): LDW waits write_cycles after each column's data while the array programs it
        # (write-and-verify); the wait counts as cycles (it is not a stall: the tile, not the host, is busy).
        wait = cfg.write_cycles if op is Opcode.LDW else 0

        with m.If(parts.first):
            self._range_check(m, parts, space)
            base = item_range.start + (parts.offsets[space] if space is not None else 0)
            m.d.comb += [loader.start.eq(1), loader.base.eq(base), loader.count.eq(item_range.count_m1 + 1)]
        with m.Elif(parts.program_wait != 0 if wait else Const(0, 1)):
            m.d.sync += parts.program_wait.eq(parts.program_wait - 1)
            with m.If((parts.program_wait == 1) & loader.empty):
                m.d.comb += parts.fin.eq(1)
        with m.Else():
            with self._unless_late_err(m, parts, space):
                # (after a failed range check the run stops in this cycle and takes no word)
                # (the loader's take and the items' writes are decoded from registers: _load_ports)
                m.d.comb += [self.din.ready.eq(1), parts.stall.eq(~self.din.valid)]
            if not wait:
                # fin is not gated by the range check (_unless_late_err): on a failed one the run stops
                # in this cycle, where pc and the loop stack advancing is invisible (_sequence)
                with m.If(self.din.valid & loader.last):
                    m.d.comb += parts.fin.eq(1)
            if wait:
                with m.If(loader.item_valid):
                    m.d.sync += parts.program_wait.eq(wait)

    @staticmethod
    def _unless_late_err(m, parts: _Parts, space: int | None):
        """The words of a load or read in a strided space move only if its range check passed (a
        failed one stops the run in this cycle: ``late_err``); in other spaces the check is static."""
        return m.If(~parts.late_err) if space is not None else nullcontext()

    def _ldrq(self, m, parts: _Parts):
        """LDRQ: rq_per_word records per bus word into the requantisation bank."""
        per_word, item_range, requant = self.cfg.rq_per_word, parts.view.args.range, parts.requant
        m.d.comb += [requant.ldrq_column.eq(item_range.start), requant.ldrq_count.eq(item_range.count_m1 + 1)]
        # left_last (left <= per_word: the next word is the last) is a register beside left
        # (left_last_next: what left_last takes, which _stream_end looks ahead from)
        m.d.comb += parts.left_last_next.eq(parts.left_last)
        m.d.sync += parts.left_last.eq(parts.left_last_next)
        with m.If(parts.first):
            m.d.comb += [requant.ldrq_start.eq(1), parts.left_last_next.eq(item_range.count_m1 < per_word)]
            m.d.sync += parts.left.eq(item_range.count_m1 + 1)
        with m.Else():
            m.d.comb += [self.din.ready.eq(1), parts.stall.eq(~self.din.valid), requant.ldrq_word.eq(self.din.valid)]
            # (din's valid itself, not a signal every stream instruction drives: fin's LDRQ term is three inputs)
            with m.If(self.din.valid):
                m.d.sync += parts.left.eq(Mux(parts.left > per_word, parts.left - per_word, 0))
                m.d.comb += parts.left_last_next.eq(parts.left <= 2 * per_word)
                with m.If(parts.left_last):
                    m.d.comb += parts.fin.eq(1)

    def _alignment_and_addresses(self, m, parts: _Parts, spaces):
        """WINDOW when the window is not a whole number of weight groups, then the word's two last
        addresses (``field + count_m1``, pre-decoded: hw.fetch.STORED's ``last``) in order, in the spaces
        ``spaces``: ADDR when ``last + offset >= depth``, as ``last >= room``."""
        aligned = parts.layer_regs.layer.aligned
        self._check_late(m, parts, ~aligned, Cause.WINDOW)
        with m.If(aligned):
            bad0 = parts.last[0] >= parts.room[spaces[0]]
            self._check_late(m, parts, bad0, Cause.ADDR)
            with m.If(~bad0):
                self._check_late(m, parts, parts.last[1] >= parts.room[spaces[1]], Cause.ADDR)

    def _mvm(self, m, parts: _Parts):
        """MVM: checks, operand reads and round 0 in cycle 0; a round of n_adcs conversions every
        adc_cycles cycles; shift-and-add MVM_LATENCY + WRITE_BEHIND + 1 cycles after a round issues; the
        accumulator vector is written in the cycle after the last (isa.WRITE_BEHIND)."""
        mvm_args, lanes = parts.view.args.mvm, parts.lanes
        m.d.comb += lanes.run.eq(1)
        with m.If(parts.first):
            # the whole range of vectors: in_addr + count - 1 and acc_addr + count - 1
            self._alignment_and_addresses(m, parts, (0, 1))
            m.d.sync += [parts.addr_b.eq(mvm_args.acc_addr + parts.offsets[1]),
                         parts.accumulate.eq(mvm_args.accumulate), parts.drain.eq(0)]
        with m.If(parts.second):
            # the old accumulator vector, read in this cycle (isa.ACC_READ_WAIT), is loaded in the next
            m.d.sync += parts.mvm_load.eq(1)
        with m.If(parts.vector_write):
            m.d.sync += parts.addr_b.eq(parts.addr_b + 1)
        # The input vector arrives in cycle 1, the old accumulator vector in cycle 2: results start from it
        # (lanes >= n_out keep it; mvm_load, set above), loaded before the first round's codes arrive;
        # a later vector's at its boundary, as the finished vector is written (the
        # load is a multiplexer at the registers' inputs, not in series with the accumulation).
        # _shift_add_control drives the shift-and-add from these registers.
        with m.If(lanes.finished):
            # All conversions issued: the pipeline drains in MVM_LATENCY cycles, and WRITE_BEHIND more
            # into the next instruction, where the accumulator vector is written (acc_write).
            m.d.sync += parts.drain.eq(parts.drain + 1)
        # drain counts the cycles since the lanes finished (set to 0 in the first cycle, and finished
        # stays high until the lanes rewind in the MVM's last cycle): the count alone ends the MVM, so
        # the lanes' status is not in front of fin and everything fin enables
        with m.If(~parts.first):
            with m.If(parts.drain == isa.MVM_LATENCY):
                m.d.comb += parts.fin.eq(1)
                m.d.sync += parts.acc_write.eq(parts.step >= 2)

    def _req(self, m, parts: _Parts):
        """REQ: checks (each address range whole) and chunk 0's parameters in cycle 0, the first accumulator
        read in cycle 1 (isa.ACC_READ_WAIT), then a chunk of rq_lanes per cycle from cycle 2; the next
        vector's accumulators are read in the cycle of a vector's last chunk (the bank's next_vector), so its
        chunk 0 follows with no bubble. A failed check stops the run in cycle 1 (``late_err``), before any
        chunk enters, so the chunks' advance (the lanes' enables) is registers alone."""
        cfg, req_args, requant = self.cfg, parts.view.args.req, parts.requant
        m.d.comb += requant.req_more.eq(parts.req_more)
        with m.If(parts.first):
            # the whole range of vectors: acc_addr + count - 1 and out_addr + count - 1
            self._alignment_and_addresses(m, parts, (1, 2))
            m.d.comb += requant.req_start.eq(1)
            m.d.sync += parts.ports["out_keep"].eq(Cat(*[(c >= parts.layer_regs.layer.n_out).replicate(8)
                                                         for c in range(cfg.cols)]))
            # (acc_next, the accumulator vector after the first, is set in every first cycle: _operand_reads)
            m.d.sync += [parts.req_out_addr.eq(req_args.out_addr + parts.offsets[2]),
                         parts.req_left.eq(req_args.count_m1), parts.req_more.eq(req_args.count_m1 != 0),
                         parts.drain.eq(0)]
        with m.Elif(~parts.second):  # (in the second cycle the first accumulator vector is read: the bank waits)
            with m.If(requant.next_vector):
                m.d.sync += [parts.acc_next.eq(parts.acc_next + 1), parts.req_left.eq(parts.req_left - 1),
                             parts.req_more.eq(parts.req_left != 1)]
            with m.If(requant.chunks_left):
                m.d.comb += requant.req_advance.eq(1)
            with m.Else():
                m.d.sync += parts.drain.eq(parts.drain + 1)
                # the last chunk's output is written WRITE_BEHIND cycles later, in the next instruction
                with m.If(parts.drain == isa.REQ_LATENCY - 1):
                    m.d.comb += parts.fin.eq(1)

    @staticmethod
    def _program_wait(m, parts: _Parts, wait: int):
        """The array's programming time after an instruction's work (``wait`` cycles, isa's formulas): load
        the wait (or finish now when it is 0); :meth:`_waiting` counts it down and finishes."""
        if wait:
            m.d.sync += parts.program_wait.eq(wait)
        else:
            m.d.comb += parts.fin.eq(1)

    @staticmethod
    def _waiting(m, parts: _Parts):
        m.d.sync += parts.program_wait.eq(parts.program_wait - 1)
        with m.If(parts.program_wait == 1):
            m.d.comb += parts.fin.eq(1)

    def _vau(self, m, op, parts: _Parts):
        """VAUR/VAUC: the column sweep, its write-back latency, then the pulse phases (vau-timing, issue 12:
        ``VAUR_PHASES`` / ``VAUC_PHASES`` x ``pulse_cycles`` while the array applies the update)."""
        vau = parts.vau
        phases = isa.VAUR_PHASES if op is Opcode.VAUR else isa.VAUC_PHASES
        m.d.comb += [vau.start.eq(parts.first), vau.run.eq(~parts.first), vau.rows_mode.eq(op is Opcode.VAUR)]
        with m.If(parts.first):
            m.d.sync += parts.drain.eq(0)
        with m.Elif(parts.program_wait != 0):
            self._waiting(m, parts)
        with m.Elif(vau.sweeping):
            pass  # (the column swept: _read_column)
        with m.Else():
            m.d.sync += parts.drain.eq(parts.drain + 1)
            with m.If(parts.drain == isa.VAU_LATENCY - 1):
                self._program_wait(m, parts, phases * self.cfg.pulse_cycles)

    def _cell(self, m, op, parts: _Parts):
        """WSET/MSET: read the column (cycle 0), build the new word (cycle 1), write (cycle 2); WSET then waits
        ``write_cycles`` for the cell's write-and-verify (vau-timing, issue 12)."""
        with m.If(parts.first):
            pass  # the column is read (_read_column)
        with m.Elif(parts.step == 1):
            m.d.comb += (parts.vau.cell_levels if op is Opcode.WSET else parts.vau.cell_mask).eq(1)
        with m.Elif(parts.program_wait != 0):
            self._waiting(m, parts)
        with m.Else():
            self._program_wait(m, parts, self.cfg.write_cycles if op is Opcode.WSET else 0)

    def _read(self, m, op, parts: _Parts):
        """RDOUT/RDACC/RDW/RDM: cycle 0 checks and starts the read formatter, which reads item 0 (RDACC: in
        cycle 1, isa.ACC_READ_WAIT, a cycle with no word on the bus); then count x words bus words out.
        RDOUT/RDACC's port address and enable come from :meth:`_operand_reads` and :meth:`_read_enables`;
        RDW/RDM read through the crossbar's read port, which always reads: the formatter holds the column
        between words (:meth:`_read_column`)."""
        item_range, reader = parts.view.args.range, parts.reader
        space = {Opcode.RDOUT: 2, Opcode.RDACC: 1}.get(op)  # the output / accumulator space's loop offset
        with m.If(parts.first):
            self._range_check(m, parts, space)
            base = item_range.start + (parts.offsets[space] if space is not None else 0)
            m.d.comb += [reader.start.eq(1), reader.base.eq(base), reader.count.eq(item_range.count_m1 + 1)]
        if op is Opcode.RDACC:
            # the accumulator memory reads item 0 (_operand_reads); a failed range check stops the run in this
            # cycle, so the words that follow need no late_err
            with m.Elif(parts.second):
                pass
        with m.Else():
            with self._unless_late_err(m, parts, None if op is Opcode.RDACC else space):
                m.d.comb += [self.dout.valid.eq(1), parts.stall.eq(~self.dout.ready),
                             reader.sent.eq(self.dout.ready), self.dout.payload.eq(reader.word)]
            with m.If(self.dout.ready & reader.last):  # (not gated by the range check: as _load's)
                m.d.comb += parts.fin.eq(1)
