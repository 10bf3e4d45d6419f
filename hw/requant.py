"""One requantisation lane: (acc + bias) * mult, rounded shift right, zero point, clamp, ReLU."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import ARGS, REQ_LATENCY, RQ_RECORD
from .params import TileConfig

__all__ = ["Requant", "LATENCY"]

#: Cycles from presenting an accumulator to the output byte being valid: the latency REQ's cycle
#: formula counts (:data:`cimtile.hw.isa.REQ_LATENCY`), which this unit's one register stage must equal.
LATENCY = REQ_LATENCY


class Requant(wiring.Component):
    """Pipelined requantisation of one accumulator lane, exactly ``sim.kernels.requantise``.

    One register stage holds ``p = (acc + bias) * mult``; the output is combinational from it:
    ``r = (p + 2**(shift-1)) >> shift`` (no rounding term when shift is 0; computed as
    ``(p >> shift) + bit shift-1 of p``), then
    ``q = min(max(r + zero_point, lo), clamp_hi)`` with ``lo = max(clamp_lo, zero_point)`` under
    ReLU. ``q`` (its low 8 bits are the stored byte) is valid :data:`LATENCY` cycles after the
    inputs, all of which are presented together.

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        rq = ARGS["cfgrq"]
        super().__init__({
            "acc": In(signed(cfg.acc_bits)),
            # the lane record (LDRQ) and the output parameters (CFGRQ), as their layouts define them
            "bias": In(RQ_RECORD["bias"].shape),
            "mult": In(RQ_RECORD["mult"].shape),
            "shift": In(RQ_RECORD["shift"].shape),
            "zero_point": In(rq["zero_point"].shape),
            "clamp_lo": In(rq["clamp_lo"].shape),
            "clamp_hi": In(rq["clamp_hi"].shape),
            "relu": In(rq["relu"].shape),
            "q": Out(signed(10)),
        })

    def elaborate(self, platform):
        m = Module()
        vb = max(self.cfg.acc_bits, 32) + 1
        # One register stage: p = (acc + bias) * mult (the multiplier maps to DSP blocks).
        p = Signal(signed(vb + 17))
        sh2 = Signal(RQ_RECORD["shift"].shape)
        outp2 = [Signal(ARGS["cfgrq"][n].shape) for n in ("zero_point", "clamp_lo", "clamp_hi")]
        relu2 = Signal()
        ins = [self.zero_point, self.clamp_lo, self.clamp_hi]
        m.d.sync += [p.eq((self.acc + self.bias) * self.mult), sh2.eq(self.shift), relu2.eq(self.relu)]
        m.d.sync += [a.eq(b) for a, b in zip(outp2, ins)]
        zp, clo, chi = outp2
        # Round half up without a wide adder: floor((p + 2**(s-1)) / 2**s) = (p >> s) + bit s-1 of p.
        # The quotient is saturated to 11 bits first (a reduction over its high bits, no carry
        # chain); that keeps every result, because the clamp bounds and the zero point lie in
        # -256..255, so any quotient beyond +-1023 clamps to the same byte.
        quo = Signal(signed(len(p)))
        m.d.comb += quo.eq(p >> sh2)
        rbit = Signal()
        m.d.comb += rbit.eq(Mux(sh2 == 0, 0, (p >> (sh2 - 1).as_unsigned()[:len(sh2)])[0]))
        top = quo[10:]
        in_range = (top == 0) | (top == (1 << len(top)) - 1)
        qs = Signal(signed(11))
        m.d.comb += qs.eq(Mux(in_range, quo[:11].as_signed(), Mux(quo[-1], -1024, 1023)))
        t = Signal(signed(13))
        m.d.comb += t.eq(qs + rbit + zp)
        lo = Mux(relu2 & (zp > clo), zp, clo)
        # min(max(t, lo), hi), in this order: with ReLU lo can exceed hi, and hi wins (as np.clip).
        y = Mux(t < lo, lo, t)
        m.d.comb += self.q.eq(Mux(y > chi, chi, y))
        return m
