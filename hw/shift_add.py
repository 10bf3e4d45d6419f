"""Shift-and-add: ADC codes, weighted by their slices, summed into the MVM's output registers."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .mvm_lanes import CONVERSION
from .params import ADDR_BITS, TileConfig

__all__ = ["ShiftAdd"]


def _sum_mod(terms: list, width: int):
    """Balanced sum of unsigned ``width``-bit ``terms`` modulo ``2**width``.

    Every partial sum is cut back to ``width`` bits, which leaves the sum modulo ``2**width`` unchanged.
    A tree that widens by a bit per level (``crossbar.adder_tree``) makes Verilator sign-extend an
    odd-width 64-bit value at every add; at ``cols`` x ``n_adcs`` terms per cycle (isaac: 1,024)
    that was the largest part of the co-simulation's time (docs/cosim.md).
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

    A lane's contribution is ``(-code if neg else code) << shift`` (the narrow code is negated
    before the shift: ``-(c << s) == (-c) << s`` modulo ``2**acc_bits``); lane i hits output
    ``conversion[i].o`` when ``conversion[i].valid``. Arithmetic wraps at ``acc_bits``.

    Timing contract: in a cycle with ``load`` the registers take the old accumulator vector
    ``old`` (lanes >= ``n_out`` keep it), and a "fresh" bit per output is set for outputs below
    ``n_out`` unless ``accumulate``: the first contribution to a fresh output replaces rather than
    adds. In each cycle with ``run`` the registers take ``result``, which is combinational:
    the registers (zero where fresh) plus this cycle's contributions (``conversion`` and ``code``
    of the same cycle). So ``result`` in the MVM's last cycle is the accumulator vector to write.

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        super().__init__({
            "conversion": In(CONVERSION).array(cfg.n_adcs),
            "code": In(signed(cfg.adc_bits + 1)).array(cfg.n_adcs),
            "load": In(1),
            "old": In(cfg.acc_bits * cfg.cols),
            "accumulate": In(1),
            "n_out": In(ADDR_BITS + 1),
            "run": In(1),
            "result": Out(cfg.acc_bits * cfg.cols),
        })

    def elaborate(self, platform):
        m = Module()
        cols, width = self.cfg.cols, self.cfg.acc_bits
        registers = [Signal(signed(width), name=f"result{j}") for j in range(cols)]
        fresh = Signal(cols)
        contributions, one_hots = [], []
        for i, (conv, code) in enumerate(zip(self.conversion, self.code)):
            value = Signal(signed(width), name=f"lane{i}_contribution")
            m.d.comb += value.eq(Mux(conv.neg, -code, code) << conv.shift)
            hit = Signal(cols, name=f"lane{i}_one_hot")
            m.d.comb += hit.eq(Mux(conv.valid, (Const(1, cols) << conv.o[:(cols - 1).bit_length() or 1])[:cols], 0))
            contributions.append(value)
            one_hots.append(hit)
        nexts, any_hit = [], []
        for j in range(cols):
            nxt = Signal(signed(width), name=f"result_next{j}")
            # Arithmetic wraps at acc_bits: summed as unsigned words modulo 2**acc_bits (same bits).
            terms = [Mux(hit[j], value.as_unsigned(), 0) for value, hit in zip(contributions, one_hots)]
            m.d.comb += nxt.eq(_sum_mod([Mux(fresh[j], 0, registers[j].as_unsigned()), *terms], width))
            nexts.append(nxt)
            any_hit.append(Cat(*[hit[j] for hit in one_hots]).any())
        m.d.comb += self.result.eq(Cat(*nexts))
        with m.If(self.load):
            m.d.sync += [r.eq(self.old[j * width:(j + 1) * width]) for j, r in enumerate(registers)]
            m.d.sync += fresh.eq(Mux(self.accumulate, 0, Cat(*[j < self.n_out for j in range(cols)])))
        with m.Elif(self.run):
            m.d.sync += [r.eq(n) for r, n in zip(registers, nexts)]
            m.d.sync += fresh.eq(fresh & ~Cat(*any_hit))
        return m
