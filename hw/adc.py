"""The ADC lane: range shift, clipping to the converter's range, and the digital code's weight."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .crossbar import SUM_STAGES
from .encoding import adc_code_range
from .isa import ARGS, MVM_LATENCY, WRITE_BEHIND
from .params import TileConfig
from .shift_add import CONVERSION

__all__ = ["Adc", "LATENCY"]

#: Register stages between the crossbar's column sum and the code: the MVM's pipeline is column
#: address, crossbar sum (:data:`cimtile.hw.crossbar.SUM_STAGES` registered stages from the word
#: lines), these stages, then the shift-and-add, whose last accumulation falls in the cycle after the
#: MVM's last (:data:`cimtile.hw.isa.WRITE_BEHIND`); so ``MVM_LATENCY + WRITE_BEHIND`` = SUM_STAGES +
#: this. With ``MVM_LATENCY = 3`` and ``SUM_STAGES = 2`` the ADC has two stages: the code (range
#: shift and clip), then the signed, shifted term the shift-and-add accumulates.
LATENCY = MVM_LATENCY + WRITE_BEHIND - 1 - (SUM_STAGES - 1)


class Adc(wiring.Component):
    """One shared ADC: ``code = clip(sum >> shift, lo, hi)``, :data:`LATENCY` cycles after ``sum`` (a
    registered code: the ADC's range shift and clip are a pipeline stage of their own, between the
    crossbar's registered sum and the shift-and-add). ``shift`` and ``diff`` (the layer's, constant
    over an MVM) are registered too: they must be on their inputs from the cycle before the first
    ``sum`` they apply to.

    ``term`` is the code's contribution to its accumulator, ``(-code if term_neg else code) <<
    term_shift`` wrapped at ``acc_bits``, in the same cycle as ``code``, of the ``term_neg`` and
    ``term_shift`` presented one cycle before it (the conversion's descriptor in the cycle before
    its code: :attr:`cimtile.hw.mvm_lanes.MvmLanes.adc_conversion`). Why: negated and shifted in the
    ADC's last register stage, the term reaches the shift-and-add from a register, so the
    accumulation cycle holds only the selection and the adders (the code's negation and barrel shift
    were on the tile's critical path, into the accumulator memory's write data; docs/microarchitecture.md).

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
    term_neg : In(1)
    term_shift : In(6)
    code : Out(signed(adc_bits + 1))
    term : Out(signed(acc_bits))
    """

    def __init__(self, cfg: TileConfig, sum_bits: int):
        self.cfg = cfg
        super().__init__({
            "sum": In(signed(sum_bits)),
            "shift": In(ARGS["cfg"]["adc_shift"].shape),
            "diff": In(1),
            "term_neg": In(1),
            "term_shift": In(CONVERSION.members["shift"]),
            "code": Out(signed(cfg.adc_bits + 1)),
            "term": Out(signed(cfg.acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        adc_bits = self.cfg.adc_bits
        sum_bits = len(self.sum)
        (pair_lo, pair_hi) = adc_code_range(adc_bits, True)  # a differential pair converted once: signed
        (single_lo, single_hi) = adc_code_range(adc_bits, False)
        # The clip decisions compare the sum itself with the range's bounds shifted up (registered
        # from shift and diff), beside the shift of the sum: shifted > hi <=> sum >= (hi + 1) << shift
        # and shifted < lo <=> sum < lo << shift. Bounds beyond the sum's range are held at its ends.
        hi, lo = Signal(signed(adc_bits + 1)), Signal(signed(adc_bits + 1))
        top, bottom = 1 << (sum_bits - 1), -(1 << (sum_bits - 1))
        over_at, under_at = Signal(signed(sum_bits + 1)), Signal(signed(sum_bits + 1))
        next_hi, next_lo = Mux(self.diff, pair_hi, single_hi), Mux(self.diff, pair_lo, single_lo)
        full_over = (next_hi + 1) << self.shift
        full_under = next_lo << self.shift
        m.d.sync += [hi.eq(next_hi), lo.eq(next_lo),
                     over_at.eq(Mux(full_over > top, top, full_over)),
                     under_at.eq(Mux(full_under < bottom, bottom, full_under))]
        shifted = self.sum >> self.shift
        code = Signal.like(self.code, name="code_now")
        m.d.comb += code.eq(Mux(self.sum >= over_at, hi, Mux(self.sum < under_at, lo, shifted)))
        assert LATENCY >= 1, "the term is registered in the code's last stage"
        for stage in range(LATENCY):
            if stage == LATENCY - 1:
                m.d.sync += self.term.eq(Mux(self.term_neg, -code, code) << self.term_shift)
            registered = Signal.like(self.code, name=f"code_stage{stage}")
            m.d.sync += registered.eq(code)
            code = registered
        m.d.comb += self.code.eq(code)
        return m
