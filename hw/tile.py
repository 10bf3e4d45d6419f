"""The tile's top level: host interface, program memory, fetch and decode, and the wiring of the units."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .adc import Adc
from .crossbar import Crossbar
from .fetch import Fetch
from .isa import ARGS, INSTR, RQ_VALUE_RANGE, Cause, Opcode
from .layer import LayerRegisters
from .load_formatter import LoadFormatter
from .loop_stack import OFFSET_BITS, LoopStack, pc_bits
from .mvm_lanes import MvmLanes
from .params import ADDR_BITS, TileConfig
from .read_formatter import ReadFormatter
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
SUM_BITS = OFFSET_BITS + 2  # start + offset + count


@dataclass
class _Parts:
    """What the per-opcode control statements drive: the units, the memory ports of the tile's
    buffers, and the sequencer's control signals. Filled once in :meth:`Tile.elaborate`."""

    view: data.View
    first: Signal  # the instruction's first cycle
    step: Signal  # cycles into the instruction, saturating at 3
    fin: Signal  # the instruction's last cycle (set by its statements)
    stall: Signal  # waiting for din valid / dout ready (cycle not counted)
    err: Signal  # the run stops in this cycle
    err_cause: Signal
    check_fail: Signal  # a run-time check of this first cycle fails (its error is raised in the next cycle)
    check_cause: Signal
    late_err: Signal  # check_fail and check_cause registered: the error of the cycle before
    late_cause: Signal
    halt: Signal
    xfer: Signal  # a bus word moves this cycle
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
    addr_b: Signal  # the MVM's accumulator / REQ's output address
    accumulate: Signal
    drain: Signal
    word_ok: Signal  # no PC_RANGE and no static cause: CFG, WIN, CFGRQ, SYNC commit on this alone
    acc_write: Signal  # the MVM's accumulator vector is written this cycle (the next instruction's first)
    left: Signal  # records left in an LDRQ
    program_wait: Signal  # cycles left of the array's programming: LDW, WSET (write_cycles), VAUR/VAUC (pulses)


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
        cfg = self.cfg
        ports = self._buffers(m)
        p = self._units(m, ports)
        running = Signal()
        load_ptr = Signal(range(cfg.prog_depth + 1))
        prog_len = Signal(range(cfg.prog_depth + 1))
        cycles = Signal(CYCLE_BITS)
        done, error = Signal(), Signal()
        cause = Signal(Cause)
        err_pc = Signal(PC_BITS)
        m.d.comb += [self.busy.eq(running), self.done.eq(done), self.error.eq(error), self.error_cause.eq(cause),
                     self.error_pc.eq(err_pc), self.cycles.eq(cycles), self.sync_tag.eq(p.tag)]

        # Program loading while idle (start has priority over a word in the same cycle). Each
        # word is stored with its pre-decoded "static" error cause (the checks on the word alone).
        fetch = p.fetch
        loading = self.instr.valid & self.instr.ready
        m.d.comb += self.instr.ready.eq(~running & ~self.start & (load_ptr < cfg.prog_depth))
        stored = Cat(self.instr.payload, self._static_cause(m, self.instr.payload))
        m.d.comb += [fetch.load_addr.eq(load_ptr), fetch.load_data.eq(stored), fetch.load_en.eq(loading)]
        with m.If(loading):
            m.d.sync += load_ptr.eq(load_ptr + 1)
        m.d.comb += ports["out_w"].addr.eq(p.addr_b)  # REQ's output vector
        # The MVM's result, written in the cycle after its last (isa.WRITE_BEHIND): the shift-and-add's
        # last contributions arrive then, no instruction's first cycle moves its registers, and addr_b
        # (set by MVM and REQ in their first cycle) still holds the MVM's accumulator address.
        m.d.sync += p.acc_write.eq(0)
        m.d.comb += [ports["acc_w"].addr.eq(p.addr_b), ports["acc_w"].data.eq(p.shift_add.result),
                     ports["acc_w"].en.eq(p.acc_write)]
        static_cause = Signal(Cause)
        m.d.comb += static_cause.eq(fetch.word[isa.WORD_BITS:])
        # The next word is registered when an instruction ends: single-cycle ones run back to back.
        m.d.comb += [fetch.start.eq(self.start), fetch.running.eq(running), fetch.fin.eq(p.fin),
                     fetch.pc.eq(p.pc), fetch.next_pc.eq(p.loops.next_pc), fetch.push.eq(p.loops.push),
                     fetch.levels.eq(p.loops.levels),
                     *[fetch.wrap[i].eq(p.loops.wrap[i]) for i in range(cfg.loop_depth)]]
        m.d.comb += [p.loops.pc.eq(p.pc), p.loops.prog_len.eq(prog_len), p.loops.clear.eq(~running & self.start)]

        # check_fail is only raised while running: late_err is low in a run's first cycle.
        m.d.sync += [p.late_err.eq(p.check_fail), p.late_cause.eq(p.check_cause)]
        # The MVM lanes rewind to the layer's start digits outside an MVM and in its last cycle.
        m.d.comb += p.lanes.rewind.eq(~p.lanes.run | p.fin)
        with m.If(running & ~p.stall):
            # a run-time check's error is raised a cycle late (``late_err``): that cycle is not counted,
            # so the run's cycles end with the failing instruction's first, as the ISA defines
            with m.If(~p.late_err):
                m.d.sync += cycles.eq(cycles + 1)
            with m.If(p.fin | p.err | p.halt):
                m.d.sync += p.step.eq(0)
            with m.Else():
                m.d.sync += p.step.eq(Mux(p.step == 3, 3, p.step + 1))

        # The layer registers' next values are computed whenever the word is a CFG or WIN (decoded
        # from the opcode alone, not behind the sequencer's checks); ``commit`` decides.
        opcode = p.view.opcode
        layer_op = (opcode == Opcode.CFG) | (opcode == Opcode.WIN)
        m.d.comb += [p.layer_regs.cfg_write.eq(opcode == Opcode.CFG), p.layer_regs.win_write.eq(opcode == Opcode.WIN)]
        # ``beyond``: pc >= the program's length (PC_RANGE), a register updated with pc.
        beyond = Signal()
        with m.If(~running):
            with m.If(self.start):
                m.d.sync += [running.eq(1), p.pc.eq(0), cycles.eq(0), done.eq(0), error.eq(0),
                             cause.eq(Cause.NONE), err_pc.eq(0), p.step.eq(0), load_ptr.eq(0),
                             beyond.eq((load_ptr == 0) & (prog_len == 0))]
                with m.If(load_ptr != 0):
                    m.d.sync += prog_len.eq(load_ptr)
        with m.Else():
            # the word's own checks passed (for instructions with no run-time checks: no error)
            m.d.comb += p.word_ok.eq(~beyond & (static_cause == Cause.NONE))
            with m.If(beyond):
                self._error_if(m, p, 1, Cause.PC_RANGE)
            with m.Else():
                with m.Switch(p.view.opcode):
                    for op in Opcode:
                        with m.Case(op):
                            self._execute(m, op, p)
                # The checks on the word alone were made when it was loaded. They come first in
                # every instruction's order, so the stored cause overrides the run-time ones; the
                # statements above do not wait for it: the run stops in this first cycle and every
                # visible first-cycle update is gated by ~err.
                self._error_if(m, p, p.first & (static_cause != Cause.NONE), static_cause)
                # The run-time checks of MVM, REQ, LDIN, RDOUT and RDACC (loop offsets, window alignment)
                # are made in their first cycle and registered: their error stops the run in the second
                # cycle, which has no visible effect (those statements hold the streams and REQ's lanes
                # on late_err) and is not counted. So the address adders and comparators end at a
                # register, not at every register the error stops.
                self._error_if(m, p, p.late_err, p.late_cause)
            # CFG, WIN and CFGRQ have no run-time checks: their only errors are PC_RANGE and the
            # stored static cause. Committing on those alone (not on ``err``, the OR of every
            # instruction's checks) keeps the loop offsets, address checks and error logic out of
            # the layer and requantisation registers' enables. (A single-cycle instruction is always
            # in its first cycle, where the static cause applies.)
            m.d.comb += [p.layer_regs.commit.eq(p.word_ok & layer_op),
                         p.requant.commit.eq(p.word_ok)]
            self._operand_reads(m, p)
            with m.If(p.err):
                m.d.sync += [running.eq(0), done.eq(1), error.eq(1), cause.eq(p.err_cause), err_pc.eq(p.pc)]
                m.d.comb += p.lanes.abort.eq(1)
            with m.Elif(p.halt):
                m.d.sync += [running.eq(0), done.eq(1)]
            # pc and loop stack advance whether or not the instruction's checks failed (an error
            # ends the run, and a run starts from pc 0 with an empty stack): this keeps the
            # address and range checks out of these registers' enables.
            m.d.comb += p.loops.advance.eq(p.fin)
            with m.If(p.fin):
                m.d.sync += [p.pc.eq(p.loops.next_pc), beyond.eq(p.loops.next_pc >= prog_len)]
        return m

    # ------------------------------------------------------------------------------------------
    def _buffers(self, m) -> dict:
        """The tile's buffers (input, accumulator, output, delta memories) and their ports (the program
        memory is in :class:`~cimtile.hw.fetch.Fetch`)."""
        cfg = self.cfg
        mems = {
            "in": Memory(shape=unsigned(8 * cfg.rows), depth=cfg.in_depth, init=[]),
            "acc": Memory(shape=unsigned(cfg.acc_bits * cfg.cols), depth=cfg.acc_depth, init=[]),
            "out": Memory(shape=unsigned(8 * cfg.cols), depth=cfg.out_depth, init=[]),
            "delta": Memory(shape=unsigned(8 * cfg.delta_len), depth=cfg.delta_depth, init=[]),
        }
        ports = {}
        for name, mem in mems.items():
            m.submodules[f"{name}_buffer"] = mem
            ports[f"{name}_w"] = mem.write_port(granularity=8 if name == "out" else None)
            # The MVM's accumulator write and REQ's last output write land in the next instruction's
            # first cycle (isa.WRITE_BEHIND), when that instruction may read the same vector: a read
            # port transparent to the write returns the written data.
            behind = (ports[f"{name}_w"],) if name in ("acc", "out") else ()
            ports[f"{name}_r"] = mem.read_port(transparent_for=behind)
        for name in ("in", "acc", "out", "delta"):
            # Read ports hold their data unless enabled: a multi-cycle instruction reads its
            # operand vectors once in its first cycle.
            m.d.comb += [ports[f"{name}_w"].en.eq(0), ports[f"{name}_r"].en.eq(0)]
        return ports

    def _units(self, m, ports) -> _Parts:
        """Instantiate the units and connect what does not depend on the instruction."""
        cfg = self.cfg
        units = {
            "layer_regs": LayerRegisters(cfg), "loops": LoopStack(cfg), "lanes": MvmLanes(cfg, self.mutation),
            "shift_add": ShiftAdd(cfg), "requant": RequantBank(cfg), "vau": Vau(cfg), "xbar": Crossbar(cfg),
            "fetch": Fetch(cfg), "loader": LoadFormatter(cfg), "reader": ReadFormatter(cfg),
        }
        for name, unit in units.items():
            m.submodules[name] = unit
        layer = units["layer_regs"].layer
        lanes, xbar, shift_add = units["lanes"], units["xbar"], units["shift_add"]
        vau, rq = units["vau"], units["requant"]
        m.d.comb += [lanes.layer.eq(layer), vau.layer.eq(layer), lanes.x.eq(ports["in_r"].data),
                     lanes.lane_step.eq(units["layer_regs"].lane_step),
                     *[lanes.lane_start[i].eq(units["layer_regs"].lane_start[i]) for i in range(cfg.n_adcs)]]
        for i in range(cfg.n_adcs):
            adc = Adc(cfg, xbar.sbits)
            m.submodules[f"adc{i}"] = adc
            m.d.comb += [xbar.col[i].eq(lanes.col[i]), xbar.pair[i].eq(lanes.pair[i]), xbar.wl[i].eq(lanes.wl[i]),
                         adc.sum.eq(xbar.sum[i]), adc.shift.eq(layer.adc_shift), adc.diff.eq(layer.analog),
                         shift_add.conversion[i].eq(lanes.conversion[i]), shift_add.code[i].eq(adc.code)]
        m.d.comb += [shift_add.old.eq(ports["acc_r"].data), shift_add.n_out.eq(layer.n_out)]
        m.d.comb += [vau.deltas.eq(ports["delta_r"].data), vau.levels.eq(xbar.rd_levels), vau.mask.eq(xbar.rd_mask)]
        m.d.comb += [rq.acc.eq(ports["acc_r"].data), rq.n_out.eq(layer.n_out), rq.ldrq_data.eq(self.din.payload)]
        # The crossbar's write port: the VAU / cell-update write-back unless a load drives it.
        m.d.comb += [xbar.wr_col.eq(vau.wr_col), xbar.wr_levels.eq(vau.wr_levels),
                     xbar.wr_levels_en.eq(vau.wr_levels_en), xbar.wr_mask.eq(vau.wr_mask),
                     xbar.wr_mask_en.eq(vau.wr_mask_en)]
        out_w = ports["out_w"]
        m.d.comb += [out_w.data.eq(rq.out_data), out_w.en.eq(rq.out_en)]

        m.d.comb += [self.din.ready.eq(0), self.dout.valid.eq(0)]
        offsets = units["loops"].offsets
        # Address checks "field + off + extra > depth" are "field + extra > room" with room =
        # depth - off, a register of the loop stack's innermost level, so the word meets a narrow
        # adder and comparator.
        room = list(units["loops"].room)
        word = Signal(isa.WORD_BITS)
        m.d.comb += word.eq(units["fetch"].word[:isa.WORD_BITS])
        step = Signal(2)
        first = Signal()
        m.d.comb += first.eq(step == 0)
        p = _Parts(
            view=data.View(INSTR, word[:INSTR.size]), first=first, step=step, fin=Signal(name="fin"),
            stall=Signal(name="stall"), err=Signal(name="err"), err_cause=Signal(Cause, name="err_cause"),
            check_fail=Signal(name="check_fail"), check_cause=Signal(Cause, name="check_cause"),
            late_err=Signal(name="late_err"), late_cause=Signal(Cause, name="late_cause"),
            halt=Signal(name="halt"), xfer=Signal(name="xfer"), pc=Signal(pc_bits(cfg), name="pc"),
            tag=Signal(TAG_BITS, init=isa.RESET_SYNC_TAG, name="tag"), offsets=offsets, room=room, ports=ports,
            addr_b=Signal(SUM_BITS, name="addr_b"),
            accumulate=Signal(name="accumulate"), drain=Signal(3, name="drain"),
            acc_write=Signal(name="acc_write"), word_ok=Signal(name="word_ok"),
            left=Signal(ADDR_BITS + 1, name="left"),
            program_wait=Signal(range(max(cfg.write_cycles, isa.VAUR_PHASES * cfg.pulse_cycles,
                                          isa.VAUC_PHASES * cfg.pulse_cycles) + 1), name="program_wait"),
            **units)
        args = p.view.args
        # The stream formatters see every instruction and their sources; they act on their strobes only.
        reader = p.reader
        m.d.comb += [p.loader.opcode.eq(p.view.opcode), p.loader.word.eq(self.din.payload),
                     reader.opcode.eq(p.view.opcode), reader.items.rdout.eq(ports["out_r"].data),
                     reader.items.rdacc.eq(ports["acc_r"].data), reader.items.rdw.eq(xbar.rd_levels),
                     reader.items.rdm.eq(xbar.rd_mask)]
        m.d.comb += [shift_add.accumulate.eq(p.accumulate), vau.fields.eq(args.vau), vau.cell.eq(args.cell),
                     p.layer_regs.cfg_fields.eq(args.cfg), p.layer_regs.win_fields.eq(args.win),
                     rq.cfgrq.eq(args.cfgrq)]
        return p

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _error_if(m, p: _Parts, cond, cause):
        with m.If(cond):
            m.d.comb += [p.err.eq(1), p.err_cause.eq(cause)]

    @staticmethod
    def _check_late(m, p: _Parts, cond, cause):
        """A run-time check of a multi-cycle instruction's first cycle: its error stops the run in the
        instruction's second cycle (``late_err``), uncounted."""
        with m.If(cond):
            m.d.comb += [p.check_fail.eq(1), p.check_cause.eq(cause)]

    def _operand_reads(self, m, p: _Parts):
        """Operand reads, decoded from the opcode alone (not from the checks, whose failure stops
        the run anyway; a read has no side effect): the field plus the loop offset on the memory's
        address bits only, so the word's path to the read ports is a narrow adder and a 2:1 mux."""
        cfg, args, op, ports, reader = self.cfg, p.view.args, p.view.opcode, p.ports, p.reader

        def bits_for(depth):
            return max(1, (depth - 1).bit_length())

        def low_add(field, offset, depth):
            w = bits_for(depth)
            return (field[:w] + offset[:w])[:w]

        acc_field = Mux(op == Opcode.MVM, args.mvm.acc_addr, Mux(op == Opcode.REQ, args.req.acc_addr, args.range.start))
        acc_r, in_r, out_r, dl_r = ports["acc_r"], ports["in_r"], ports["out_r"], ports["delta_r"]
        with m.If(p.first):
            m.d.comb += [
                acc_r.addr.eq(low_add(acc_field, p.offsets[1], cfg.acc_depth)),
                acc_r.en.eq((op == Opcode.MVM) | (op == Opcode.REQ) | (op == Opcode.RDACC)),
                in_r.addr.eq(low_add(args.mvm.in_addr, p.offsets[0], cfg.in_depth)),
                in_r.en.eq(op == Opcode.MVM),
                out_r.addr.eq(low_add(args.range.start, p.offsets[2], cfg.out_depth)),
                out_r.en.eq(op == Opcode.RDOUT),
                dl_r.addr.eq(args.vau.delta_addr[:bits_for(cfg.delta_depth)]),
                dl_r.en.eq((op == Opcode.VAUR) | (op == Opcode.VAUC)),
            ]
        with m.Else():
            # RDACC/RDOUT: the next item, once the current one's last word left (the read formatter).
            m.d.comb += [acc_r.addr.eq(reader.read_addr[:bits_for(cfg.acc_depth)]),
                         acc_r.en.eq((op == Opcode.RDACC) & reader.read_en),
                         out_r.addr.eq(reader.read_addr[:bits_for(cfg.out_depth)]),
                         out_r.en.eq((op == Opcode.RDOUT) & reader.read_en)]

    def _static_cause(self, m, w):
        """The cause of the first failing check that depends on the word ``w`` alone (reserved
        bits, undefined opcode, and every check of CFG, WIN, CFGRQ, LDW, LDM, LDD, LDRQ, VAUR,
        VAUC, WSET, MSET, RDW, RDM), in each instruction's order; ``Cause.NONE`` if none fails.
        The remaining checks (loop offsets, window alignment, loop stack) are made at run time."""
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        view = data.View(INSTR, w[:INSTR.size])
        args = view.args
        rng = args.range
        cnt = rng.count_m1 + 1
        cause = Signal(Cause, name="load_cause")
        static = {
            Opcode.CFG: [(args.cfg.wsigned & (args.cfg.wbits_m1 == 0), Cause.CONFIG)],
            Opcode.WIN: [((args.win.row_start + args.win.row_count_m1 + 1 > rows) |
                          (args.win.col_start + args.win.col_count_m1 + 1 > cols), Cause.WINDOW)],
            Opcode.LDW: [(rng.start + cnt > cols, Cause.ADDR)],
            Opcode.LDM: [(rng.start + cnt > cols, Cause.ADDR)],
            Opcode.LDD: [(rng.start + cnt > cfg.delta_depth, Cause.ADDR)],
            Opcode.LDRQ: [(rng.start + cnt > cols, Cause.ADDR)],
            Opcode.RDW: [(rng.start + cnt > cols, Cause.ADDR)],
            Opcode.RDM: [(rng.start + cnt > cols, Cause.ADDR)],
            Opcode.VAUR: [(args.vau.delta_addr >= cfg.delta_depth, Cause.ADDR)],
            Opcode.VAUC: [(args.vau.delta_addr >= cfg.delta_depth, Cause.ADDR)],
        }
        q = args.cfgrq
        vlo, vhi = RQ_VALUE_RANGE
        static[Opcode.CFGRQ] = [(~((vlo <= q.clamp_lo) & (q.clamp_lo <= q.clamp_hi) & (q.clamp_hi <= vhi) &
                                   (vlo <= q.zero_point) & (q.zero_point <= vhi)), Cause.CONFIG)]
        for op, top in ((Opcode.WSET, cfg.max_level), (Opcode.MSET, 1)):
            c = args.cell
            static[op] = [((c.row >= rows) | (c.col >= cols), Cause.ADDR), (c.value > top, Cause.VALUE)]
        m.d.comb += cause.eq(Cause.NONE)
        with m.Switch(view.opcode):
            for op in Opcode:
                with m.Case(op):
                    checks = [((w & ~Const(isa.USED_MASK[op], isa.WORD_BITS)).any(), Cause.RESERVED)]
                    checks += static.get(op, [])
                    # the first failing check in order wins: assign in reverse order
                    for cond, cz in reversed(checks):
                        with m.If(cond):
                            m.d.comb += cause.eq(cz)
            with m.Default():
                m.d.comb += cause.eq(Cause.OPCODE)
        return cause

    # -- per-opcode control ------------------------------------------------------------------------
    def _execute(self, m, op, p: _Parts):
        """Statements for one opcode inside the sequencer's Switch."""
        args = p.view.args
        if op in (Opcode.NOP, Opcode.SYNC):
            m.d.comb += p.fin.eq(1)
            if op is Opcode.SYNC:
                # SYNC has no run-time checks: only PC_RANGE and the stored static cause (word_ok)
                with m.If(p.word_ok):
                    m.d.sync += p.tag.eq(args.sync.tag)
        elif op is Opcode.HALT:
            m.d.comb += p.halt.eq(1)
        elif op in (Opcode.CFG, Opcode.WIN):  # the layer registers' writes: see elaborate()
            m.d.comb += p.fin.eq(1)
        elif op is Opcode.CFGRQ:
            m.d.comb += [p.requant.cfgrq_write.eq(1), p.fin.eq(1)]
        elif op is Opcode.LOOP:
            self._loop(m, p)
        elif op in (Opcode.LDW, Opcode.LDM, Opcode.LDIN, Opcode.LDD):
            self._load(m, op, p)
        elif op is Opcode.LDRQ:
            self._ldrq(m, p)
        elif op is Opcode.MVM:
            self._mvm(m, p)
        elif op is Opcode.REQ:
            self._req(m, p)
        elif op in (Opcode.VAUR, Opcode.VAUC):
            self._vau(m, op, p)
        elif op in (Opcode.WSET, Opcode.MSET):
            self._cell(m, op, p)
        elif op in (Opcode.RDOUT, Opcode.RDACC, Opcode.RDW, Opcode.RDM):
            self._read(m, op, p)
        else:  # pragma: no cover - every opcode has a branch (tests check the Switch covers Opcode)
            raise AssertionError(op)

    def _loop(self, m, p: _Parts):
        cfg, a, loops = self.cfg, p.view.args.loop, p.loops
        self._error_if(m, p, loops.levels >= cfg.loop_depth, Cause.LOOP_DEPTH)
        with m.If(loops.levels < cfg.loop_depth):
            # the body's end > the enclosing end, as body_m1 > enclosing end - pc - 2 (from registers)
            self._error_if(m, p, a.body_m1 > loops.loop_room, Cause.LOOP_NEST)
        m.d.comb += [p.fin.eq(1), loops.push.eq(1), loops.push_start.eq(p.pc + 1),
                     loops.push_end.eq(p.pc + 1 + a.body_m1 + 1), loops.push_count.eq(a.count_m1 + 1),
                     loops.push_strides[0].eq(a.stride_in), loops.push_strides[1].eq(a.stride_acc),
                     loops.push_strides[2].eq(a.stride_out)]

    def _range_check(self, m, p: _Parts, space: int | None):
        """The run-time range check of a load or read in a strided space (others are static)."""
        item_range = p.view.args.range
        if space is not None:
            self._check_late(m, p, (item_range.start + item_range.count_m1 + 1) > p.room[space], Cause.ADDR)

    def _load(self, m, op, p: _Parts):
        """LDW/LDM/LDIN/LDD: cycle 0 checks and starts the load formatter; then count x words bus words
        from din, each item written when its last word arrives (and, for LDW, ``write_cycles`` after
        each column: the array's programming time)."""
        cfg, item_range, xbar, ports, loader = self.cfg, p.view.args.range, p.xbar, p.ports, p.loader
        space = 0 if op is Opcode.LDIN else None  # the input space's loop offset applies (others: static checks)
        # progcost (issue 10): LDW waits write_cycles after each column's data while the array programs it
        # (write-and-verify); the wait counts as cycles (it is not a stall: the tile, not the host, is busy).
        wait = cfg.write_cycles if op is Opcode.LDW else 0

        with m.If(p.first):
            self._range_check(m, p, space)
            base = item_range.start + (p.offsets[space] if space is not None else 0)
            m.d.comb += [loader.start.eq(1), loader.base.eq(base), loader.count.eq(item_range.count_m1 + 1)]
        with m.Elif(p.program_wait != 0 if wait else Const(0, 1)):
            m.d.sync += p.program_wait.eq(p.program_wait - 1)
            with m.If((p.program_wait == 1) & loader.empty):
                m.d.comb += p.fin.eq(1)
        with m.Elif(p.late_err if space is not None else Const(0, 1)):
            pass  # the range check failed: the run stops in this cycle and takes no word
        with m.Else():
            m.d.comb += [self.din.ready.eq(1), p.stall.eq(~self.din.valid), p.xfer.eq(self.din.valid),
                         loader.take.eq(self.din.valid)]
            if not wait:
                with m.If(p.xfer & loader.last):
                    m.d.comb += p.fin.eq(1)
            item = getattr(loader.items, op.name.lower())
            with m.If(loader.item_valid):
                if op in (Opcode.LDW, Opcode.LDM):
                    levels = op is Opcode.LDW
                    m.d.comb += [xbar.wr_col.eq(loader.item_addr),
                                 (xbar.wr_levels if levels else xbar.wr_mask).eq(item),
                                 (xbar.wr_levels_en if levels else xbar.wr_mask_en).eq(1)]
                else:
                    write_port = ports["in_w" if op is Opcode.LDIN else "delta_w"]
                    m.d.comb += [write_port.addr.eq(loader.item_addr), write_port.data.eq(item),
                                 write_port.en.eq(1)]
                if wait:
                    m.d.sync += p.program_wait.eq(wait)

    def _ldrq(self, m, p: _Parts):
        """LDRQ: rq_per_word records per bus word into the requantisation bank."""
        per, rng, rq = self.cfg.rq_per_word, p.view.args.range, p.requant
        m.d.comb += [rq.ldrq_column.eq(rng.start), rq.ldrq_count.eq(rng.count_m1 + 1)]
        with m.If(p.first):
            m.d.comb += rq.ldrq_start.eq(1)
            m.d.sync += p.left.eq(rng.count_m1 + 1)
        with m.Else():
            m.d.comb += [self.din.ready.eq(1), p.stall.eq(~self.din.valid), p.xfer.eq(self.din.valid),
                         rq.ldrq_word.eq(self.din.valid)]
            with m.If(p.xfer):
                m.d.sync += p.left.eq(Mux(p.left > per, p.left - per, 0))
                with m.If(p.left <= per):
                    m.d.comb += p.fin.eq(1)

    def _alignment_and_addresses(self, m, p: _Parts, checks):
        """WINDOW when the window is not a whole number of weight groups, then each ``(field,
        space, depth)`` of ``checks`` in order: ADDR when ``field + offset >= depth``."""
        aligned = p.layer_regs.layer.aligned
        self._check_late(m, p, ~aligned, Cause.WINDOW)
        with m.If(aligned):
            (f0, s0, _), (f1, s1, _) = checks
            bad0 = f0 >= p.room[s0]
            self._check_late(m, p, bad0, Cause.ADDR)
            with m.If(~bad0):
                self._check_late(m, p, f1 >= p.room[s1], Cause.ADDR)

    def _mvm(self, m, p: _Parts):
        """MVM: checks, operand reads and round 0 in cycle 0; a round of n_adcs conversions every
        adc_cycles cycles; shift-and-add two cycles after a round issues; the accumulator vector is
        written in the last cycle."""
        cfg, a, lanes = self.cfg, p.view.args.mvm, p.lanes
        m.d.comb += lanes.run.eq(1)
        with m.If(p.first):
            self._alignment_and_addresses(m, p, [(a.in_addr, 0, cfg.in_depth), (a.acc_addr, 1, cfg.acc_depth)])
            m.d.sync += [p.addr_b.eq(a.acc_addr + p.offsets[1]), p.accumulate.eq(a.accumulate), p.drain.eq(0)]
        # Operands arrive in cycle 1: results start from the old accumulator (lanes >= n_out keep it).
        m.d.comb += [p.shift_add.load.eq(p.step == 1), p.shift_add.run.eq(p.step >= 2)]
        with m.If(lanes.finished):
            # All conversions issued: the pipeline drains in MVM_LATENCY cycles, and WRITE_BEHIND more
            # into the next instruction, where the accumulator vector is written (acc_write).
            m.d.sync += p.drain.eq(p.drain + 1)
            with m.If(p.drain == isa.MVM_LATENCY):
                m.d.comb += p.fin.eq(1)
                m.d.sync += p.acc_write.eq(p.step >= 2)

    def _req(self, m, p: _Parts):
        """REQ: checks and the accumulator read in cycle 0, then a chunk of rq_lanes per cycle."""
        cfg, a, rq = self.cfg, p.view.args.req, p.requant
        with m.If(p.first):
            self._alignment_and_addresses(m, p, [(a.acc_addr, 1, cfg.acc_depth), (a.out_addr, 2, cfg.out_depth)])
            m.d.comb += rq.req_start.eq(1)
            m.d.sync += [p.addr_b.eq(a.out_addr + p.offsets[2]), p.drain.eq(0)]
        with m.Else():
            with m.If(rq.chunks_left):
                m.d.comb += rq.req_advance.eq(~p.late_err)
            with m.Else():
                m.d.sync += p.drain.eq(p.drain + 1)
                # the last chunk's output is written WRITE_BEHIND cycles later, in the next instruction
                with m.If(p.drain == isa.REQ_LATENCY - 1):
                    m.d.comb += p.fin.eq(1)

    @staticmethod
    def _program_wait(m, p: _Parts, wait: int):
        """The array's programming time after an instruction's work (``wait`` cycles, isa's formulas): load
        the wait (or finish now when it is 0); :meth:`_waiting` counts it down and finishes."""
        if wait:
            m.d.sync += p.program_wait.eq(wait)
        else:
            m.d.comb += p.fin.eq(1)

    @staticmethod
    def _waiting(m, p: _Parts):
        m.d.sync += p.program_wait.eq(p.program_wait - 1)
        with m.If(p.program_wait == 1):
            m.d.comb += p.fin.eq(1)

    def _vau(self, m, op, p: _Parts):
        """VAUR/VAUC: the column sweep, its write-back latency, then the pulse phases (vau-timing, issue 12:
        ``VAUR_PHASES`` / ``VAUC_PHASES`` x ``pulse_cycles`` while the array applies the update)."""
        vau = p.vau
        phases = isa.VAUR_PHASES if op is Opcode.VAUR else isa.VAUC_PHASES
        m.d.comb += [vau.start.eq(p.first), vau.run.eq(~p.first), vau.rows_mode.eq(op is Opcode.VAUR)]
        with m.If(p.first):
            m.d.sync += p.drain.eq(0)
        with m.Elif(p.program_wait != 0):
            self._waiting(m, p)
        with m.Elif(vau.sweeping):
            m.d.comb += p.xbar.col[0].eq(vau.col)
        with m.Else():
            m.d.sync += p.drain.eq(p.drain + 1)
            with m.If(p.drain == isa.VAU_LATENCY - 1):
                self._program_wait(m, p, phases * self.cfg.pulse_cycles)

    def _cell(self, m, op, p: _Parts):
        """WSET/MSET: read the column (cycle 0), build the new word (cycle 1), write (cycle 2); WSET then waits
        ``write_cycles`` for the cell's write-and-verify (vau-timing, issue 12)."""
        with m.If(p.first):
            m.d.comb += p.xbar.col[0].eq(p.view.args.cell.col)
        with m.Elif(p.step == 1):
            m.d.comb += (p.vau.cell_levels if op is Opcode.WSET else p.vau.cell_mask).eq(1)
        with m.Elif(p.program_wait != 0):
            self._waiting(m, p)
        with m.Else():
            self._program_wait(m, p, self.cfg.write_cycles if op is Opcode.WSET else 0)

    def _read(self, m, op, p: _Parts):
        """RDOUT/RDACC/RDW/RDM: cycle 0 checks and starts the read formatter, which reads item 0; then
        count x words bus words out. RDOUT/RDACC's port address and enable come from
        :meth:`_operand_reads`; RDW/RDM read through lane 0's crossbar port, which always reads: the
        formatter holds the column between words."""
        item_range, xbar, reader = p.view.args.range, p.xbar, p.reader
        space = {Opcode.RDOUT: 2, Opcode.RDACC: 1}.get(op)  # the output / accumulator space's loop offset
        if op in (Opcode.RDW, Opcode.RDM):
            m.d.comb += xbar.col[0].eq(reader.read_addr)
        with m.If(p.first):
            self._range_check(m, p, space)
            base = item_range.start + (p.offsets[space] if space is not None else 0)
            m.d.comb += [reader.start.eq(1), reader.base.eq(base), reader.count.eq(item_range.count_m1 + 1)]
        with m.Elif(p.late_err if space is not None else Const(0, 1)):
            pass  # the range check failed: the run stops in this cycle and sends no word
        with m.Else():
            m.d.comb += [self.dout.valid.eq(1), p.stall.eq(~self.dout.ready), p.xfer.eq(self.dout.ready),
                         reader.sent.eq(self.dout.ready), self.dout.payload.eq(reader.word)]
            with m.If(p.xfer & reader.last):
                m.d.comb += p.fin.eq(1)
