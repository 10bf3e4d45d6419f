"""The requantisation bank: lane parameters in block memories, CFGRQ registers, rq_lanes Requant lanes."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .isa import ARGS, RQ_RECORD, RQ_RECORD_BITS
from .layer import const_div
from .params import ADDR_BITS, TileConfig
from .requant import LATENCY, Requant

__all__ = ["RequantBank", "bank_count"]


def bank_count(cfg: TileConfig) -> int:
    """Parameter memories: a multiple of ``rq_lanes`` that is at least ``rq_per_word``, so that the
    records of one LDRQ bus word land in distinct memories (column c in memory ``c % banks``, at
    address ``c // banks``) and a REQ chunk of ``rq_lanes`` columns is one address of
    ``rq_lanes`` of them."""
    return cfg.rq_lanes * -(-cfg.rq_per_word // cfg.rq_lanes)


class RequantBank(wiring.Component):
    """Per-column requantisation parameters (bias, multiplier, shift) and the REQ data path.

    The parameters live in :func:`bank_count` memories of ``RQ_RECORD`` words (memories, not
    flip-flops; read asynchronously at addresses held in registers, so LUT RAM on an FPGA), initialised
    to ``hw.isa.RESET_LANE``; the lanes take the current chunk's records from registers, loaded with
    chunk 0's records in the cycle of ``req_start`` or ``next_vector`` and with the next chunk's in a
    cycle with ``req_advance`` (so the lanes' first stage starts at a register, not at a memory read);
    the output parameters of CFGRQ (zero point, clamp bounds, ReLU) are registers.

    Timing contract:

    - LDRQ: ``ldrq_start`` (its first cycle) latches ``ldrq_column`` and ``ldrq_count``; each
      later cycle with ``ldrq_word`` writes the ``rq_per_word`` records of ``ldrq_data`` (fewer
      on the last word) to consecutive columns.
    - CFGRQ: with ``cfgrq_write`` and ``commit`` the fields on ``cfgrq`` are taken at the clock edge.
    - REQ: ``req_start`` (its first cycle, while the first accumulator vector is read) selects
      chunk 0; from the next cycle ``chunks_left`` says whether the current chunk's first column is below
      ``n_out`` (a register: ``n_out`` must be held from ``req_start`` to the REQ's last chunk), and
      ``last_chunk`` whether the current chunk is its vector's last (a register, valid likewise). In
      a cycle with ``req_advance`` the current chunk of ``rq_lanes`` accumulators enters the lanes,
      and the next chunk becomes current; ``acc`` must hold the accumulator vector from the first such
      cycle after ``req_start`` until its last chunk has entered (as a memory's read port holds its data:
      chunk k is selected from it in chunk k-1's cycle). LDRQ must not write while a REQ runs (its
      records are read in the cycle of ``req_start``, ``next_vector`` and each ``req_advance``).
      :data:`cimtile.hw.requant.LATENCY` cycles later ``out_en`` enables the chunk's bytes (columns
      below ``n_out``) of ``out_data`` (the lanes' bytes repeated over the vector), and ``out_chunk``
      has the chunk's bit set (one bit per chunk of ``rq_lanes`` columns, the chunk written whole).
    - Multi-vector REQ (``count`` > 1): ``req_more`` says that another vector follows the current
      one. ``next_vector`` rises in the cycle the current vector's last chunk enters the lanes
      (``req_advance``) while ``req_more`` is set: chunk 0 of the next vector becomes current, so
      the tile reads the next accumulator vector in that cycle and its chunk 0 enters from ``acc``
      in the next cycle, with no bubble. ``out_next`` rises with the ``out_en`` of such a last
      chunk (:data:`~cimtile.hw.requant.LATENCY` cycles later): the output address steps after it.

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        super().__init__({
            "ldrq_start": In(1),
            "ldrq_column": In(ADDR_BITS),
            "ldrq_count": In(ADDR_BITS + 1),
            "ldrq_word": In(1),
            "ldrq_data": In(cfg.bus_bits),
            "cfgrq": In(ARGS["cfgrq"]),
            "cfgrq_write": In(1),
            "commit": In(1),
            "req_start": In(1),
            "req_advance": In(1),
            "req_more": In(1),
            "chunks_left": Out(1),
            "last_chunk": Out(1),
            "next_vector": Out(1),
            "out_next": Out(1),
            "acc": In(cfg.acc_bits * cfg.cols),
            "n_out": In(ADDR_BITS + 1),
            "out_data": Out(8 * cfg.cols),
            "out_en": Out(cfg.cols),
            "out_chunk": Out(-(-cfg.cols // cfg.rq_lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        banks = bank_count(cfg)
        depth = -(-cfg.cols // banks)
        reset = RQ_RECORD.const(dict(isa.RESET_LANE)).as_bits()
        memories = []
        for b in range(banks):
            mem = Memory(shape=unsigned(RQ_RECORD.size), depth=depth, init=[reset] * depth)
            m.submodules[f"lane_params{b}"] = mem
            memories.append(mem)
        self._ldrq(m, memories)
        chunk, params = self._chunk_params(m, memories)
        self._lanes(m, chunk, params, self._cfgrq(m))
        return m

    def _ldrq(self, m, memories):
        """LDRQ's writes: record q of a bus word goes to column ``column + q``."""
        cfg = self.cfg
        banks, per = len(memories), cfg.rq_per_word
        row = Signal(range(-(-cfg.cols // banks) + 2))
        bank = Signal(range(banks))
        left = Signal(ADDR_BITS + 1)
        with m.If(self.ldrq_start):
            m.d.sync += [row.eq(const_div(self.ldrq_column, banks, cfg.cols)),
                         bank.eq(self.ldrq_column - const_div(self.ldrq_column, banks, cfg.cols) * banks),
                         left.eq(self.ldrq_count)]
        with m.Elif(self.ldrq_word):
            wrapped = bank + per >= banks
            m.d.sync += [bank.eq(Mux(wrapped, bank + per - banks, bank + per)), row.eq(row + wrapped),
                         left.eq(Mux(left > per, left - per, 0))]
        for b, mem in enumerate(memories):
            port = mem.write_port()
            # this memory's column is in the current row, else in the next one (the last memory: always)
            ahead = (b >= bank) if b < len(memories) - 1 else Const(1, 1)
            record = Signal(range(banks), name=f"record_for{b}")
            m.d.comb += record.eq(Mux(ahead, b - bank, b + banks - bank))
            m.d.comb += [port.addr.eq(Mux(ahead, row, row + 1)),
                         port.data.eq(self.ldrq_data.word_select(record, RQ_RECORD_BITS)[:RQ_RECORD.size]),
                         port.en.eq(self.ldrq_word & (record < per) & (record < left))]

    def _chunk_params(self, m, memories):
        """The current chunk's number and its lanes' parameter records (row and part are the current
        chunk's, registers set a cycle ahead)."""
        cfg = self.cfg
        lanes = cfg.rq_lanes
        parts = len(memories) // lanes  # chunks per memory address
        chunk = Signal(range(-(-cfg.cols // lanes) + 1))
        first_col = Signal(ADDR_BITS + 2)
        # The current chunk is its vector's last (its successor's first column is not below n_out):
        # a register computed beside first_col, so next_vector is an AND of registers and strobes.
        last_chunk = Signal()
        row, part = Signal(range(-(-cfg.cols // len(memories)) + 1)), Signal(max(1, (parts - 1).bit_length()))
        row_next, part_next = Signal.like(row), Signal.like(part)
        # Whether the current chunk's first column is below n_out: a register updated with first_col
        # (n_out is held during a REQ), so req_advance, which enables the lanes, the chunk registers
        # and the tile's accumulator read, does not wait for a comparison.
        chunks_left = Signal()
        m.d.comb += [row_next.eq(row), part_next.eq(part), self.chunks_left.eq(chunks_left),
                     self.last_chunk.eq(last_chunk),
                     self.next_vector.eq(self.req_advance & self.req_more & last_chunk)]
        # A REQ's first cycle and the last chunk of a vector another follows both make chunk 0 current:
        # the parameter memories are addressed at chunk 0 again, a cycle ahead of the chunk entering.
        with m.If(self.req_start | self.next_vector):
            m.d.comb += [row_next.eq(0), part_next.eq(0)]
            m.d.sync += [chunk.eq(0), first_col.eq(0), last_chunk.eq(self.n_out <= lanes),
                         chunks_left.eq(self.n_out > 0)]
        with m.Elif(self.req_advance):
            last_part = part == parts - 1
            m.d.comb += [row_next.eq(row + last_part), part_next.eq(Mux(last_part, 0, part + 1))]
            m.d.sync += [chunk.eq(chunk + 1), first_col.eq(first_col + lanes),
                         last_chunk.eq(first_col + 2 * lanes >= self.n_out),
                         chunks_left.eq(first_col + lanes < self.n_out)]
        m.d.sync += [row.eq(row_next), part.eq(part_next)]
        # The records of the current chunk are registers (``lane{li}_params``), loaded at the clock edges
        # that set (row, part): with the records of chunk 0 (address 0, part 0) on req_start and next_vector,
        # with those of the next chunk on req_advance, read asynchronously (LUT RAM) at addresses from
        # registers: 0, row + 1 and (with several chunks per address) row. So the lanes' first stage (the
        # scaled bias's multiplier, the shift's registers) starts at a register, not at a LUT RAM read;
        # the strobes end at the records' enables and a 2:1 choice. LDRQ never writes while a REQ runs
        # (its last write precedes the REQ's first cycle, whose read is the first one a REQ uses).
        row_plus1 = Signal(len(row) + 1, init=1)  # row + 1, kept beside row (no adder after the strobes)
        with m.If(self.req_start | self.next_vector):
            m.d.sync += row_plus1.eq(1)
        with m.Elif(self.req_advance):
            m.d.sync += row_plus1.eq(row_plus1 + (part == parts - 1))
        at0, at_next, at_row = [], [], []
        for mem in memories:
            for addr, lst in ((0, at0), (row_plus1, at_next)) + (((row, at_row),) if parts > 1 else ()):
                port = mem.read_port(domain="comb")
                m.d.comb += port.addr.eq(addr)
                lst.append(port.data)
        chosen = [Signal(RQ_RECORD, name=f"lane{li}_params") for li in range(lanes)]
        for li, sig in enumerate(chosen):
            first = at0[li]  # chunk 0: part 0, memory li
            if parts > 1:
                # the next chunk: part + 1 at row, or part 0 at row + 1 after the last part
                nxt = Mux(part == parts - 1, at_next[li],
                          Cat(*at_row[li::lanes]).word_select(part + 1, RQ_RECORD.size))
            else:
                nxt = at_next[li]
            with m.If(self.req_start | self.next_vector):
                m.d.sync += sig.eq(first)
            with m.Elif(self.req_advance):
                m.d.sync += sig.eq(nxt)
        return chunk, chosen

    def _cfgrq(self, m):
        """CFGRQ's output parameters as registers (reset values ``hw.isa.RESET_CFGRQ``)."""
        reg = Signal(ARGS["cfgrq"], init=dict(isa.RESET_CFGRQ))
        with m.If(self.cfgrq_write & self.commit):
            m.d.sync += reg.eq(self.cfgrq)
        return reg

    def _lanes(self, m, chunk, params, output):
        """The Requant lanes on the current chunk, and the byte enables of their outputs."""
        cfg = self.cfg
        lanes, width, cols = cfg.rq_lanes, cfg.acc_bits, cfg.cols
        n_chunks = -(-cols // lanes)
        pad = n_chunks * lanes - cols
        acc = Cat(self.acc, Const(0, width * pad)) if pad else self.acc
        # The chunk entering the lanes: chunk 0 is a constant slice of the accumulator vector (the read
        # port's data, in the cycle after req_start or next_vector); later chunks come from ``upcoming``,
        # a register loaded with the next chunk as each enters. So the lanes' inputs see a 2:1
        # multiplexer selected by a register, not a chunk-wide multiplexer over the whole vector (that
        # one ends at ``upcoming``); a multi-vector REQ only sets that register (at_chunk0) again in the
        # cycle of a vector's last chunk.
        chunk_bits = lanes * width
        entering = Signal(chunk_bits)
        at_chunk0 = Signal()
        if n_chunks > 1:
            # ``upcoming``: the next chunk, selected from ``acc`` (held by the tile's read port for the
            # whole vector) as a chunk enters; one chunk wide, so a simulator copies little in a cycle
            # without REQ (a register with an enable is copied in every cycle), and the selection is
            # computed only in a cycle where a chunk enters (its one use, inside the enabled branch).
            upcoming = Signal(chunk_bits)
            m.d.comb += entering.eq(Mux(at_chunk0, acc[:chunk_bits], upcoming))
            with m.If(self.req_advance):
                m.d.sync += upcoming.eq(acc.word_select(chunk + 1, chunk_bits))
        else:
            m.d.comb += entering.eq(acc[:chunk_bits])
        with m.If(self.req_start | self.next_vector):
            m.d.sync += at_chunk0.eq(1)
        with m.Elif(self.req_advance):
            m.d.sync += at_chunk0.eq(0)
        units = []
        for li in range(lanes):
            unit = Requant(cfg)
            m.submodules[f"requant{li}"] = unit
            units.append(unit)
            p = params[li]
            m.d.comb += [unit.acc.eq(entering[li * width:(li + 1) * width]),
                         unit.bias.eq(p.bias), unit.mult.eq(p.mult), unit.shift.eq(p.shift),
                         unit.zero_point.eq(output.zero_point), unit.clamp_lo.eq(output.clamp_lo),
                         unit.clamp_hi.eq(output.clamp_hi), unit.relu.eq(output.relu),
                         unit.advance.eq(self.req_advance)]
        # Which chunk the lanes' outputs belong to: chunk, "in flight" and "a vector follows" delayed
        # by LATENCY.
        in_flight, vector_ends = Signal(LATENCY), Signal(LATENCY)
        delayed = [Signal.like(chunk, name=f"chunk_delayed{i}") for i in range(LATENCY)]
        m.d.sync += [in_flight.eq(Cat(self.req_advance, in_flight)), vector_ends.eq(Cat(self.next_vector, vector_ends)),
                     delayed[0].eq(chunk)]
        m.d.comb += self.out_next.eq(vector_ends[LATENCY - 1])
        m.d.sync += [delayed[i + 1].eq(delayed[i]) for i in range(LATENCY - 1)]
        data_bytes = Cat(*[u.q[:8] for u in units])
        m.d.comb += self.out_data.eq(Cat(*([data_bytes] * n_chunks))[:8 * cols])
        written = delayed[LATENCY - 1]
        with m.If(in_flight[LATENCY - 1]):
            m.d.comb += self.out_chunk.eq(Const(1, n_chunks) << written)
            m.d.comb += self.out_en.eq(Cat(*[(written == col // lanes) & (col < self.n_out) for col in range(cols)]))
