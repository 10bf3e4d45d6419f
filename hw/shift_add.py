"""Shift-and-add: ADC codes, weighted by their slices, summed into the MVM's output registers."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import ADDR_BITS, TileConfig

__all__ = ["CARRY_SAVE_LANES", "CONVERSION", "ShiftAdd", "carry_save"]

#: What the shift-and-add needs of a conversion (from the MVM lanes, :mod:`cimtile.hw.mvm_lanes`) when its
#: ADC code arrives: whether the lane converts, the output it belongs to, the code's shift (adc_shift +
#: input-slice + weight-slice weight), whether it is subtracted (negative column or sign slice) and whether
#: it was a differential pair converted once (a signed ADC range).
CONVERSION = data.StructLayout({"valid": 1, "o": ADDR_BITS + 2, "shift": 6, "neg": 1, "diff": 1})

#: Up to this many ADC lanes, each result register adds every lane's term directly, as one carry-save
#: level (the register and the two halves of the lanes' sum reduced to two operands by full adders)
#: and one carry chain: the shortest accumulation cycle, for small tiles (tiny). Wider tiles (isaac:
#: 8 lanes, 128 outputs) sum lanes per output in lane space first (one adder per register), since
#: ``cols x n_adcs`` adders were the bulk of their logic.
CARRY_SAVE_LANES = 4


def carry_save(cfg: TileConfig) -> bool:
    """Whether :class:`ShiftAdd` takes the carry-save form (2 to :data:`CARRY_SAVE_LANES` lanes), which reads the
    lanes' one-hot ``hit``; else the leaders' form, which decodes the conversions' outputs itself."""
    return 2 <= cfg.n_adcs <= CARRY_SAVE_LANES


def _sum_mod(terms: list, width: int):
    """Balanced sum of unsigned ``width``-bit ``terms`` modulo ``2**width``.

    Every partial sum is cut back to ``width`` bits, which leaves the sum modulo ``2**width`` unchanged.
    A tree that widens by a bit per level (``crossbar.adder_tree``) makes Verilator sign-extend an
    odd-width 64-bit value at every add (docs/cosim.md).
    """
    terms = list(terms)
    while len(terms) > 1:
        nxt = [(terms[i] + terms[i + 1])[:width] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


class ShiftAdd(wiring.Component):
    """``cols`` result registers of ``acc_bits``; each adds the codes of the lanes that hit it.

    A lane's contribution is ``term[i]``, the ADC's ``(-code if neg else code) << shift``
    (:attr:`cimtile.hw.adc.Adc.term`: negated and shifted in the ADC's register stage, so that the
    accumulation starts from a register); lane i hits output ``conversion[i].o`` when
    ``conversion[i].valid``, and ``hit[i]`` is that as a one-hot (:func:`cimtile.hw.mvm_lanes.one_hot`,
    registered by the lanes beside the conversion: the carry-save form's selects start at a register,
    not at a decoder). Arithmetic wraps at ``acc_bits``.

    With more than ``CARRY_SAVE_LANES`` lanes, the lanes are summed per output in lane space first:
    the lowest lane hitting an output (its leader) carries the sum of all lanes hitting that output,
    and each leader reads its register by index, adds its sum and writes it back by index: leaders
    hit distinct outputs, so ``n_adcs`` adders in all, not an ``n_adcs``-input adder per register
    (``cols x n_adcs`` adders, formerly the bulk of isaac's logic and of its co-simulation time).
    With 2 to ``CARRY_SAVE_LANES`` lanes every register adds every lane's term through one
    carry-save level and one carry chain (the shorter cycle; tiny). Sums wrap modulo
    ``2**acc_bits`` in any order, so both give the same results.

    Timing contract: in a cycle with ``load`` the registers take the old accumulator vector
    ``old`` (lanes >= ``n_out`` keep it); unless ``accumulate``, outputs below ``n_out`` start
    fresh: their first contribution replaces rather than adds (with carry-save, a "fresh" bit per
    output; with leaders, the register is loaded as zero, which gives the same sums). In each cycle
    with ``run`` the registers take ``result``, which is combinational: the registers (zero where
    fresh) plus this cycle's contributions (``conversion`` and ``term`` of the same cycle). So
    ``result`` in the cycle of a vector's last codes is the accumulator vector to write. ``load``
    has priority over ``run`` and does not change ``result``: at a multi-vector MVM's vector boundary
    the tile loads the next vector's old accumulator vector in the cycle in which the finished
    vector's last codes arrive and ``result`` is written (the load is a multiplexer at the
    registers' inputs, after the accumulation, not in series with it).

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        super().__init__({
            "conversion": In(CONVERSION).array(cfg.n_adcs),
            "hit": In(cfg.cols).array(cfg.n_adcs),
            "term": In(signed(cfg.acc_bits)).array(cfg.n_adcs),
            "load": In(1),
            "old": In(cfg.acc_bits * cfg.cols),
            "accumulate": In(1),
            "n_out": In(ADDR_BITS + 1),
            "run": In(1),
            "result": Out(cfg.acc_bits * cfg.cols),
        })

    def elaborate(self, platform):
        m = Module()
        if carry_save(self.cfg):
            self._carry_save(m)
        else:
            self._leaders(m)
        return m

    def _carry_save(self, m):
        """Every register adds every lane's term (one carry-save level, one carry chain); a "fresh"
        bit per output makes its first contribution replace rather than add."""
        cols, width = self.cfg.cols, self.cfg.acc_bits
        registers = [Signal(signed(width), name=f"result{j}") for j in range(cols)]
        fresh = Signal(cols)
        terms_of, one_hots = self._lane_terms(m), list(self.hit)
        nexts, any_hit = [], []
        for j in range(cols):
            nxt = Signal(signed(width), name=f"result_next{j}")
            # Arithmetic wraps at acc_bits: summed as unsigned words modulo 2**acc_bits (same bits).
            terms = [Mux(hit[j], value.as_unsigned(), 0) for value, hit in zip(terms_of, one_hots)]
            base = Mux(fresh[j], 0, registers[j].as_unsigned())
            # base + left + right as one carry-save level and one carry chain (not two chains).
            half = len(terms) // 2
            ops = [Signal(width, name=f"result{j}_{n}") for n in ("base", "left", "right")]
            m.d.comb += [o.eq(v) for o, v in zip(ops, (base, _sum_mod(terms[:half], width),
                                                       _sum_mod(terms[half:], width)))]
            a, b, c = ops
            carry = Cat(Const(0, 1), ((a & b) | (a & c) | (b & c))[:width - 1])
            m.d.comb += nxt.eq(((a ^ b ^ c) + carry)[:width])
            nexts.append(nxt)
            any_hit.append(Cat(*[hit[j] for hit in one_hots]).any())
        m.d.comb += self.result.eq(Cat(*nexts))
        with m.If(self.load):
            m.d.sync += [r.eq(self.old[j * width:(j + 1) * width]) for j, r in enumerate(registers)]
            m.d.sync += fresh.eq(Mux(self.accumulate, 0, Cat(*[j < self.n_out for j in range(cols)])))
        with m.Elif(self.run):
            m.d.sync += [r.eq(n) for r, n in zip(registers, nexts)]
            m.d.sync += fresh.eq(fresh & ~Cat(*any_hit))

    def _leaders(self, m):
        """The registers as one vector; each cycle at most ``n_adcs`` group leaders add their group's sum
        to the one register they hit (an indexed read and an indexed write, not a sum per register).

        A fresh output (below ``n_out`` without ``accumulate``) is loaded as zero, which is what its
        first contribution replacing the old value amounts to. Why this shape: Verilator evaluates
        every combinational term in every cycle, so a sum per register (``cols`` x ``n_adcs`` masked
        terms) cost a third of isaac's co-simulation time; the indexed read is a part-select at a variable
        offset (shifts), the indexed write a ``case`` on the index, and the load's masking a wide shift
        used once, in the load's branch (docs/cosim.md).
        """
        cols, width = self.cfg.cols, self.cfg.acc_bits
        registers = Signal(cols * width)
        group_sums, targets, leads = self._lane_groups(m)
        m.d.comb += self.result.eq(registers)
        for total, target, leader in zip(group_sums, targets, leads):
            # leaders hit distinct outputs: the writes never overlap. The read is a part-select at a
            # variable offset (shifts, no branches; an Array read was a tree of 7 data-dependent branches
            # per lane in Verilator's model).
            with m.If(leader):
                m.d.comb += self.result.word_select(target, width).eq(
                    _sum_mod([registers.word_select(target, width), total], width))
        with m.If(self.load):
            # Words from n_out up are kept: all ones shifted right by the words below n_out (a wide shift,
            # not a mask assembled word by word in every cycle).
            above = Signal(range(cols + 1))  # words from n_out up, kept (all of them with accumulate)
            m.d.comb += above.eq(Mux(self.accumulate, cols, Mux(self.n_out > cols, 0, cols - self.n_out)))
            fresh = Const((1 << (cols * width)) - 1, cols * width) >> (above * width)
            m.d.sync += registers.eq(self.old & ~fresh)
        with m.Elif(self.run):
            m.d.sync += registers.eq(self.result)

    def _lane_terms(self, m):
        """Per lane: its own contribution (added where ``hit`` says it lands)."""
        width = self.cfg.acc_bits
        contributions = []
        for i, term in enumerate(self.term):
            value = Signal(signed(width), name=f"lane{i}_contribution")
            m.d.comb += value.eq(term)
            contributions.append(value)
        return contributions

    def _lane_groups(self, m):
        """Per lane: the sum of the contributions of every lane hitting the same output (meaningful for
        the group's leader, the lowest such lane), its output index, and whether it leads a group."""
        cols, width = self.cfg.cols, self.cfg.acc_bits
        index_bits = (cols - 1).bit_length() or 1
        values, targets, lands = [], [], []
        for i, (conv, term) in enumerate(zip(self.conversion, self.term)):
            value = Signal(signed(width), name=f"lane{i}_contribution")
            m.d.comb += value.eq(term)
            target = Signal(index_bits, name=f"lane{i}_output")
            m.d.comb += target.eq(conv.o[:index_bits])
            land = Signal(name=f"lane{i}_lands")  # an output index below cols
            m.d.comb += land.eq(conv.valid & (target < cols))
            values.append(value)
            targets.append(target)
            lands.append(land)
        lanes = len(values)
        group_sums, leads = [], []
        for i in range(lanes):
            same = [lands[k] & (targets[k] == targets[i]) for k in range(lanes)]
            leader = Signal(name=f"lane{i}_leads")
            m.d.comb += leader.eq(lands[i] & ~Cat(*same[:i]).any() if i else lands[i])
            total = Signal(width, name=f"lane{i}_group_sum")
            m.d.comb += total.eq(_sum_mod([Mux(same[k], values[k].as_unsigned(), 0) for k in range(i, lanes)], width))
            group_sums.append(total)
            leads.append(leader)
        return group_sums, targets, leads
