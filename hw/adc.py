"""The ADC lane: range shift, clipping to the converter's range, and the digital code's weight."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import TileConfig

__all__ = ["Adc"]


class Adc(wiring.Component):
    """One shared ADC, combinational: ``code = clip(sum >> shift, lo, hi)``.

    The unsigned range is ``0 .. 2**adc_bits - 1``; with ``diff`` (a differential pair converted
    once, ``differential-analog``) the range is signed, ``-2**(adc_bits-1) .. 2**(adc_bits-1) - 1``.
    ``>>`` is arithmetic. The code's contribution to the accumulator is ``code << shift`` (the range
    shift undone digitally), which the shift-and-add unit applies.

    Parameters
    ----------
    cfg : TileConfig
    sum_bits : int
        Width of the signed column sum presented on ``sum``.

    Attributes
    ----------
    sum : In(signed(sum_bits))
    shift : In(4)
    diff : In(1)
    code : Out(signed(adc_bits + 1))
    """

    def __init__(self, cfg: TileConfig, sum_bits: int):
        self.cfg = cfg
        super().__init__({
            "sum": In(signed(sum_bits)),
            "shift": In(4),
            "diff": In(1),
            "code": Out(signed(cfg.adc_bits + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        b = self.cfg.adc_bits
        v = self.sum >> self.shift
        hi = Mux(self.diff, (1 << (b - 1)) - 1, (1 << b) - 1)
        lo = Mux(self.diff, -(1 << (b - 1)), 0)
        m.d.comb += self.code.eq(Mux(v > hi, hi, Mux(v < lo, lo, v)))
        return m
