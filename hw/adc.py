"""The ADC lane: range shift, clipping to the converter's range, and the digital code's weight."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .encoding import adc_code_range
from .isa import ARGS
from .params import TileConfig

__all__ = ["Adc"]


class Adc(wiring.Component):
    """One shared ADC, combinational: ``code = clip(sum >> shift, lo, hi)``.

    The ranges are :func:`cimtile.hw.encoding.adc_code_range`'s: unsigned ``0 .. 2**adc_bits - 1``; with
    ``diff`` (a differential pair converted once, ``differential-analog``) signed,
    ``-2**(adc_bits-1) .. 2**(adc_bits-1) - 1``.
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
            "shift": In(ARGS["cfg"]["adc_shift"].shape),
            "diff": In(1),
            "code": Out(signed(cfg.adc_bits + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        b = self.cfg.adc_bits
        v = self.sum >> self.shift
        (plo, phi), (slo, shi) = adc_code_range(b, True), adc_code_range(b, False)
        hi = Mux(self.diff, phi, shi)
        lo = Mux(self.diff, plo, slo)
        m.d.comb += self.code.eq(Mux(v > hi, hi, Mux(v < lo, lo, v)))
        return m
