"""The crossbar: a digital behavioural model of the analog array (cell levels, masks, column sums)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .params import ADDR_BITS, TileConfig

__all__ = ["CHUNK_BITS", "SUM_STAGES", "Crossbar", "adder_tree", "chunk_rows", "sum_bits"]

#: Width of the machine words the column sums are computed in (see :class:`Crossbar`): the rows of a
#: column are summed in chunks whose cells fill at most this many bits.
CHUNK_BITS = 64

#: Register stages of a column sum, from the word lines (cycle t+1 of a request) to ``sum``: 1 (the sum
#: registered at the end of the word-line cycle) or 2 (each chunk's word also registered inside the sum,
#: after its halving's masked field steps; the unmasked steps, the chunks' and DAC bits' adder trees and
#: a pair's subtraction in the next cycle). The ADC's stages are what the MVM's pipeline has left
#: (:data:`cimtile.hw.adc.LATENCY`). Why 2: the whole sum in the word-line cycle was the tile's critical
#: path on ECP5 (docs/microarchitecture.md, thirteenth session).
SUM_STAGES = 2
assert SUM_STAGES in (1, 2), "the column sum has at most one register inside it"


def adder_tree(terms: list):
    """Balanced sum of ``terms`` (Amaranth values); depth log2(n) instead of a chain of n adders."""
    terms = list(terms)
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        nxt = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def sum_bits(cfg: TileConfig) -> int:
    """Width of an unsigned column sum: rows x max slice value x max level."""
    return (cfg.rows * ((1 << cfg.dac_bits) - 1) * cfg.max_level).bit_length()


def chunk_rows(cfg: TileConfig) -> int:
    """Rows per chunk of a column sum: the largest power of two whose cells fit in ``CHUNK_BITS`` bits (and no
    more than the rows, rounded up to a power of two)."""
    rows = 1
    while rows * 2 * cfg.cell_bits <= CHUNK_BITS and rows < cfg.rows:
        rows *= 2
    return rows


def _spread_steps(rows: int, cell_bits: int) -> list[tuple[int, int]]:
    """(shift, mask) steps that move bit ``r`` of a ``rows``-bit word to bit ``r * cell_bits``.

    Step ``s`` (a power of two, highest first) moves the bits whose index has ``s`` set by
    ``s * (cell_bits - 1)``: ``x = (x | x << shift) & mask``, the mask keeping each bit's position after
    the step. Bits are moved high ones first, so a copy never lands on another bit's place.
    """
    steps = []
    pos = list(range(rows))  # where bit r is now
    s = 1
    while s * 2 < rows:
        s *= 2
    while s >= 1 and cell_bits > 1:
        shift = s * (cell_bits - 1)
        pos = [p + shift if r & s else p for r, p in enumerate(pos)]
        steps.append((shift, sum(1 << p for p in pos)))
        s //= 2
    return steps


def _hidden_constant(m: Module, value: int, width: int, name: str) -> Signal:
    """``value`` as a register that keeps its reset value.

    An AND with a constant is split by Amaranth's netlist into one slice per run of equal bits (``x &
    0x3333...`` becomes 16 two-bit pieces of a 64-bit word, which Verilator assembles one by one); against
    a register it stays one word operation. Synthesis folds the register back into the constant.
    """
    c = Signal(width, init=value, name=name)
    m.d.sync += c.eq(c)
    return c


class Crossbar(wiring.Component):
    """Cell levels and masks of the array, with one column-sum port per ADC lane.

    Storage is column-major: one memory word holds the ``rows`` levels of a column (row r at bits
    ``r*cell_bits``), a second memory the ``rows`` mask bits of a column. Every ADC lane owns a copy
    of both memories (written together, read independently), so any lane can read any column in any
    cycle: the MVM sequencer packs conversions of different input slices and row groups into one
    round without bank conflicts. The price is ``n_adcs`` copies of the array storage; a write (a
    column from LDW/LDM, VAU or a cell update) goes to every copy in one cycle.

    Column sum port of lane i: present ``col[i]`` (and ``pair[i]`` for a differential pair
    ``col, col+1`` converted once) in cycle t and the word-line drive ``wl[i]`` (``rows`` x
    ``dac_bits``, zero for rows not in the conversion) in cycle t+1 (the controller computes it
    from the input vector that arrives meanwhile); ``sum[i]`` holds in cycle t+1+:data:`SUM_STAGES`
    (t+3) ``sum(wl[r] * level[r][col])`` over unmasked cells (minus the same sum of ``col+1`` when
    ``pair``).

    Read port: present ``rd_col`` in cycle t, the raw column (``rd_levels``, ``rd_mask``) appears in
    cycle t+1, for reads, VAU sweeps and cell updates. It is a port of lane 0's copy of its own (in
    the FPGA model another copy of the LUT-RAM words), so that its address, chosen among the
    instructions' own columns, is not on the lanes' column path, and the lanes' addresses are theirs
    alone.

    A column sum is computed word-parallel, as a processor would (docs/cosim.md): per DAC bit, the rows
    it drives that are not masked are one ``rows``-bit word; in chunks of :func:`chunk_rows` rows, that
    word is spread to one ``cell_bits``-wide field per row (a few shifts and masks), ANDed with the
    column's levels, and the fields are summed by halving (add the odd fields to the even ones, twice
    as wide, and again). Each chunk is one machine word in the Verilator model: a few dozen word
    operations per lane and cycle instead of a gated term and an adder per row. With
    :data:`SUM_STAGES` = 2 each chunk's word is registered after the halving's masked field steps (the
    fields then hold the sums of a few rows; ``partialK_...``), and the rest of the halving, the
    adder trees and a pair's subtraction (by ``pair`` registered twice) run in the next cycle.

    Parameters
    ----------
    cfg : TileConfig

    Attributes
    ----------
    wr_col : In(ADDR_BITS)
        Column written when ``wr_levels_en`` / ``wr_mask_en``.
    wr_levels, wr_mask : In
        The new column word (levels) and mask word.
    rd_col : In(ADDR_BITS)
        Column of the read port (``rd_levels``, ``rd_mask`` one cycle later).
    col, pair, wl : In, arrays of ``n_adcs``
        Column-sum requests (``wl`` one cycle after ``col``).
    sum : Out(signed), array of ``n_adcs``
        Column sums, ``1 + SUM_STAGES`` cycles after the request.
    rd_levels, rd_mask : Out
        The read port's column, one cycle after ``rd_col``.
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        rows, lanes = cfg.rows, cfg.n_adcs
        self.sbits = sum_bits(cfg) + 1
        super().__init__({
            "wr_col": In(ADDR_BITS),
            "wr_levels": In(rows * cfg.cell_bits),
            "wr_levels_en": In(1),
            "wr_mask": In(rows),
            "wr_mask_en": In(1),
            "col": In(ADDR_BITS).array(lanes),
            "pair": In(1).array(lanes),
            "wl": In(rows * cfg.dac_bits).array(lanes),
            "sum": Out(signed(self.sbits)).array(lanes),
            "rd_col": In(ADDR_BITS),
            "rd_levels": Out(rows * cfg.cell_bits),
            "rd_mask": Out(rows),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rows, cols, cell_bits, dac_bits = cfg.rows, cfg.cols, cfg.cell_bits, cfg.dac_bits
        constants = self._constants(m)
        for lane in range(cfg.n_adcs):
            levels = Memory(shape=unsigned(rows * cell_bits), depth=cols, init=[])
            masks = Memory(shape=unsigned(rows), depth=cols, init=[])
            m.submodules[f"levels{lane}"] = levels
            m.submodules[f"mask{lane}"] = masks
            for mem, data, en in ((levels, self.wr_levels, self.wr_levels_en), (masks, self.wr_mask, self.wr_mask_en)):
                write = mem.write_port()
                m.d.comb += [write.addr.eq(self.wr_col), write.data.eq(data), write.en.eq(en)]
            if lane == 0:  # the read port
                for mem, data in ((levels, self.rd_levels), (masks, self.rd_mask)):
                    read = mem.read_port()
                    m.d.comb += [read.addr.eq(self.rd_col), data.eq(read.data)]
            ports = [(levels.read_port(), masks.read_port())]
            if cfg.analog_diff:
                ports.append((levels.read_port(), masks.read_port()))
            drive = self.wl[lane]  # presented with the read data, one cycle after the column
            pair_q = self.pair[lane]  # registered once per register stage of the sum
            for stage in range(SUM_STAGES):
                delayed = Signal(name=f"pair_q{lane}" if stage == 0 else f"pair_q{lane}_{stage}")
                m.d.sync += delayed.eq(pair_q)
                pair_q = delayed
            # The rows each DAC bit drives: the word lines themselves with a 1-bit DAC.
            planes = [drive] if dac_bits == 1 else \
                [Cat(*[drive[row * dac_bits + bit] for row in range(rows)]) for bit in range(dac_bits)]
            sums = []
            for offset, (levels_read, mask_read) in enumerate(ports):
                m.d.comb += [levels_read.addr.eq(self.col[lane] + offset), mask_read.addr.eq(self.col[lane] + offset)]
                live = Signal(rows, name=f"live{lane}_{offset}")  # masked cells read as level 0
                m.d.comb += live.eq(~mask_read.data)
                sums.append(adder_tree([
                    self._column_sum(m, levels_read.data, plane & live, constants, f"{lane}_{offset}_{bit}") << bit
                    for bit, plane in enumerate(planes)]))
            total = sums[0] if len(sums) == 1 else Mux(pair_q, sums[0] - sums[1], sums[0])
            m.d.sync += self.sum[lane].eq(total)
        return m

    def _constants(self, m: Module) -> dict:
        """The spreading steps' and the field sums' masks, as registers (:func:`_hidden_constant`)."""
        cell_bits, rows = self.cfg.cell_bits, chunk_rows(self.cfg)
        width = rows * cell_bits
        spread = [(shift, _hidden_constant(m, mask, width, f"spread_mask{n}"))
                  for n, (shift, mask) in enumerate(_spread_steps(rows, cell_bits))]
        fields, field = [], cell_bits
        total_bits = (rows * self.cfg.max_level).bit_length()
        while field < width:
            if field >= total_bits:  # the lowest field holds any sum from here on: no masking needed
                fields.append((field, None))
            else:
                even = sum(((1 << field) - 1) << p for p in range(0, width, 2 * field))
                fields.append((field, _hidden_constant(m, even, width, f"field_mask{field}")))
            field *= 2
        return {"width": width, "rows": rows, "spread": spread, "fields": fields, "total_bits": total_bits}

    def _column_sum(self, m: Module, levels, rows_on, constants: dict, name: str):
        """``sum(level[r] for r where rows_on[r])`` of one column word, chunk by chunk, word-parallel; with
        :data:`SUM_STAGES` = 2 each chunk's word registered after the masked field steps (one cycle later)."""
        cell_bits = self.cfg.cell_bits
        width, chunk, total_bits = constants["width"], constants["rows"], constants["total_bits"]
        partial = []
        for c, first in enumerate(range(0, self.cfg.rows, chunk)):
            n = min(chunk, self.cfg.rows - first)
            x = rows_on[first:first + n]
            for shift, mask in constants["spread"]:  # row r's bit to bit r * cell_bits
                x = (x | (x << shift)[:width]) & mask
            fill = x
            for t in range(1, cell_bits):  # ... and to the whole field of row r
                fill = fill | (x << t)[:width]
            x = Signal(width, name=f"cells{name}_{c}")
            m.d.comb += x.eq(levels[first * cell_bits:(first + n) * cell_bits] & fill)
            registered = SUM_STAGES == 1
            for field, mask in constants["fields"]:  # halving: odd fields added to the even ones
                if mask is None and not registered:  # the register inside the sum: after the masked steps
                    x, registered = self._sum_register(m, x, f"partial{name}_{c}"), True
                # Each add's operands are one bit narrower than the word, so that the sum is a word, not a
                # word and a carry (65 bits, which Verilator computes in a multi-word temporary, a loop per
                # add). Masked: the top bit is in an odd field, zero after the mask. Unmasked: the top bit
                # moves at most (width - 2 * field) further down, never into the low ``total_bits`` read.
                x = ((x & mask)[:width - 1] + (x[field:] & mask)[:width - 1]) if mask is not None else \
                    (x[:width - 1] + x[field:])
            if not registered:  # (no unmasked step: after the last)
                x = self._sum_register(m, x, f"partial{name}_{c}")
            partial.append(x[:total_bits])
        return adder_tree(partial)

    @staticmethod
    def _sum_register(m: Module, x, name: str) -> Signal:
        """``x`` registered: the column sum's first stage ends here (:data:`SUM_STAGES`)."""
        held = Signal(len(x), name=name)
        m.d.sync += held.eq(x)
        return held
