"""One requantisation lane: (acc + bias) * mult, rounded shift right, zero point, clamp, ReLU."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import ARGS, REQ_LATENCY, RQ_RECORD, WRITE_BEHIND
from .params import TileConfig

__all__ = ["Requant", "LATENCY"]

#: Cycles from presenting an accumulator to the output byte being valid: the latency REQ's cycle
#: formula counts (:data:`cimtile.hw.isa.REQ_LATENCY`) plus the cycle its last chunk's write runs on
#: into the next instruction (:data:`cimtile.hw.isa.WRITE_BEHIND`); this unit's four register stages.
LATENCY = REQ_LATENCY + WRITE_BEHIND
if LATENCY != 4:  # pragma: no cover - the stages below are written out for this latency
    raise AssertionError(f"hw/requant.py has 4 register stages; REQ_LATENCY + WRITE_BEHIND is {LATENCY}")


def _select(value, onehot, step: int, n: int):
    """Bits ``k * step .. k * step + n - 1`` of ``value`` (sign-extended beyond it) for the set bit ``k``
    of ``onehot``: an arithmetic right shift by ``k * step`` as an AND-OR of one-hot terms."""
    def bit(i):
        return value[min(i, len(value) - 1)]
    return Cat(*[Cat(*[bit(i + k * step) & onehot[k] for k in range(len(onehot))]).any() for i in range(n)])


class Requant(wiring.Component):
    """Pipelined requantisation of one accumulator lane, exactly ``sim.kernels.requantise``.

    A first register stage holds the inputs as they are, so that the multipliers' inputs are registers
    of their own (beside the DSP blocks), not the accumulator memory's forwarded data through the chunk
    multiplexer (REQ_LATENCY 3 since the eighteenth session). A second holds three products whose sum is
    ``p = (acc + bias) * mult``: the accumulator's low and high parts times ``mult`` (one DSP block each)
    and the scaled bias ``bias * mult``, with the shift, the zero point, ``clamp_hi`` and the clamp's
    lower bound (``clamp_lo``, raised to the zero point under ReLU) beside them; a third their sum ``p``
    (one register, so the quotient's window and the saturation start at a register, not after the
    sum's carry chain), with the selects and bounds derived from the shift and the clamp's operands
    derived from the output parameters (one comparison per stage: the lower bound's, then its clamp to
    ``clamp_hi``); a fourth the saturated quotient of ``p`` (saturation by
    comparing ``p`` with ``+-2**(shift+10)``) and the rounding bit; the output is combinational from
    the fourth (three carry chains side by side, the rounding bit their carry-in, then one level of
    selection):
    ``r = (p + 2**(shift-1)) >> shift`` (no rounding term when shift is 0; computed as
    ``(p >> shift) + bit shift-1 of p``), then
    ``q = min(max(r + zero_point, lo), clamp_hi)`` with ``lo = max(clamp_lo, zero_point)`` under
    ReLU. ``q`` (its low 8 bits are the stored byte) is valid :data:`LATENCY` cycles after the
    inputs, all of which are presented together, with ``advance`` set (its default).

    The sum is exactly ``(acc + bias) * mult``: ``acc = high * 2**17 + low`` (``low`` the unsigned
    low 17 bits, ``high`` the signed rest, at least one bit), so ``high * mult * 2**17 + low * mult +
    bias * mult`` is the same integer, and no term or partial sum wraps: each product register has the
    full width of its factors' product, and ``|acc * mult + bias * mult| < 2**(acc_bits + 15) +
    2**47``, which fits the sum's ``max(acc_bits, 32) + 18`` bits (the width the biased product
    ``(acc + bias) * mult`` always had). The accumulator's register so reaches the multipliers without
    an adder in front of them.

    ``advance`` enables the first stage's registers, and one, two and three cycles later the second's,
    the third's and the fourth's: in other cycles the lane holds its stages (its output is meaningless
    then), so a simulator computes the lane's arithmetic only in the clocked branch of a cycle where a
    chunk enters or moves on (Verilator computes a value used once inside the branch that uses it, see
    docs/cosim.md).

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
            "advance": In(1, init=1),
            "q": Out(signed(10)),
        })

    def elaborate(self, platform):
        m = Module()
        vb = max(self.cfg.acc_bits, 32) + 1
        # Stage 0: the inputs, registered as they are (eighteenth session: the accumulator came from the
        # memory's read register through the forwarding and chunk multiplexers straight into the
        # multipliers, and the routing to the DSP blocks made that the tile's latest path).
        names = ("acc", "bias", "mult", "shift", "zero_point", "clamp_lo", "clamp_hi", "relu")
        inputs = SimpleNamespace(**{n: Signal.like(getattr(self, n), name=f"{n}0") for n in names})
        entered = Signal(name="entered")  # stage 1's enable: a chunk entered stage 0 a cycle before
        m.d.sync += entered.eq(self.advance)
        with m.If(self.advance):
            m.d.sync += [getattr(inputs, n).eq(getattr(self, n)) for n in names]
        # Stage 1: p = (acc + bias) * mult as acc * mult + bias * mult, which is the same integer (no
        # term wraps: see the class docstring), as three registered products: the accumulator's low 17
        # bits (unsigned) and its high bits (signed) times the 16-bit multiplier, one DSP block each, and
        # the scaled bias bias * mult. So the accumulator (stage 0's register) goes into the multipliers
        # with no adder in front of them; the scaled bias comes from the parameters alone. The shift and the
        # output parameters are registered beside the products as they are (what is derived from them is
        # stage 2's).
        # (The sign-extended accumulator is written out at each use, so Verilator computes it inside
        # the enabled branch.)
        acc_bits = max(self.cfg.acc_bits, 18)  # at least one high bit above the low 17

        def acc():
            return Cat(inputs.acc, inputs.acc[-1].replicate(acc_bits - self.cfg.acc_bits)).as_signed()
        product_lo = Signal(unsigned(17 + len(self.mult)), name="product_lo")
        product_hi = Signal(signed(acc_bits - 17 + len(self.mult)), name="product_hi")
        scaled_bias = Signal(signed(len(self.bias) + len(self.mult)), name="scaled_bias")
        shift = Signal.like(self.shift, name="shift1")
        zp, hi = (Signal.like(getattr(self, n), name=f"{n}1") for n in ("zero_point", "clamp_hi"))
        # the clamp's lower bound under ReLU, max(clamp_lo, zero_point), registered here: stage 2 then
        # compares it with hi (one comparison per stage, not two in series)
        lo_eff = Signal(signed(max(len(self.zero_point), len(self.clamp_lo))), name="lo_eff1")
        # stage 2's and stage 3's enables: a chunk entered stage 1 one and two cycles before
        moved, moved2 = Signal(name="moved"), Signal(name="moved2")
        m.d.sync += [moved.eq(entered), moved2.eq(moved)]
        with m.If(entered):
            m.d.sync += [product_lo.eq(acc()[:17] * inputs.mult),
                         product_hi.eq(acc()[17:].as_signed() * inputs.mult),
                         scaled_bias.eq(inputs.bias * inputs.mult), shift.eq(inputs.shift),
                         zp.eq(inputs.zero_point), hi.eq(inputs.clamp_hi),
                         lo_eff.eq(Mux(inputs.relu & (inputs.zero_point > inputs.clamp_lo), inputs.zero_point,
                                       inputs.clamp_lo))]
        width = vb + 17

        # Stage 2: p, the products' sum, one register (since the thirteenth session: before, the
        # window's selection and the saturation followed the sum's carry chain in the same cycle).
        p = Signal(signed(width), name="p")
        with m.If(moved):
            m.d.sync += p.eq(((product_hi << 17) + product_lo + scaled_bias)[:width].as_signed())
        # Beside it, what depends on the shift alone. The shift as two one-hot selects (shift // 8,
        # shift % 8): the quotient's window is taken from p by two AND-OR selections of 8 terms each (two
        # LUT levels apiece), not a six-level barrel shifter. (Three 4:1 multiplexers per bit on the
        # shift's bit pairs were measured in the twelfth session: within the placement noise, so not kept.)
        shift_bits = len(self.shift)
        coarse = Signal(1 << (shift_bits - 3), name="shift_coarse")
        fine = Signal(8, name="shift_fine")
        # The quotient p >> shift saturates to 11 bits when p >= 2**(shift+10) or p < -2**(shift+10): two
        # comparisons of p with bounds registered here from the shift alone (a bound of 2**(width-1) or more
        # is never reached: held there), carry chains from registers. Rounding adds bit shift - 1 of p (the
        # sign bit beyond p's width, none when shift is 0): a one-hot select.
        bound = Signal(width + 1)
        round_sel = Signal(width)
        round_sign = Signal()
        with m.If(moved):
            m.d.sync += [coarse.eq(Const(1, len(coarse)) << shift[3:]),
                         fine.eq(Const(1, 8) << shift[:3]),
                         bound.eq(Mux(shift + 10 >= width - 1, 1 << (width - 1),
                                      (Const(1, width + 1) << (shift + 10))[:width + 1])),
                         round_sel.eq(Mux(shift == 0, 0, (Const(1, width) << (shift - 1).as_unsigned())[:width])),
                         round_sign.eq((shift != 0) & (shift - 1 >= width))]
        # Clamp: q = min(max(t, lo), hi) with t = quotient + rbit + zp, as "t < lo" -> min(lo, hi),
        # "t > hi" -> hi, else t; the comparisons are made on the quotient against lo - zp and hi - zp,
        # as the signs of quotient + rbit + (zp - lo) and quotient + rbit + ~(hi - zp) (registered here,
        # lo being stage 1's lo_eff), so the output stage is three carry chains side by side (rbit their
        # carry-in), then one LUT level.
        zp2, hi2, lo_hi2 = (Signal(signed(10), name=n) for n in ("zp2", "hi2", "lo_hi2"))
        below2, above2 = Signal(signed(12), name="zp_lo"), Signal(signed(12), name="not_hi_zp")
        with m.If(moved):
            m.d.sync += [zp2.eq(zp), hi2.eq(hi), lo_hi2.eq(Mux(lo_eff > hi, hi, lo_eff)),
                         below2.eq(zp - lo_eff), above2.eq(~(hi - zp))]

        # Stage 3: the saturated quotient and the rounding bit, from p and the shift's registers.
        over, under = Signal(), Signal()
        m.d.comb += [over.eq(p >= bound.as_signed()), under.eq(p < -bound.as_signed())]
        rbit = Signal()
        m.d.comb += rbit.eq((p & round_sel).any() | (round_sign & p[-1]))
        window = Signal(signed(11))
        coarse_window = Signal(11 + 7)
        m.d.comb += [coarse_window.eq(_select(p, coarse, 8, len(coarse_window))),
                     window.eq(_select(coarse_window, fine, 1, 11))]
        # Round half up without a wide adder: floor((p + 2**(s-1)) / 2**s) = (p >> s) + bit s-1 of p.
        # The quotient is saturated to 11 bits first; that keeps every result, because the clamp
        # bounds and the zero point lie in -256..255, so any quotient beyond +-1023 clamps to the same byte.
        # The saturated quotient and the rounding bit are the third register stage (with the output
        # parameters carried beside them), so the wide shift and the narrow adds and compares of the
        # output stage are in different cycles.
        qs, rb = Signal(signed(11), name="qs"), Signal(name="rb")
        zp3, hi3, lo_hi3 = (Signal(signed(10), name=n) for n in ("zp3", "hi3", "lo_hi3"))
        below3, above3 = Signal(signed(12), name="zp_lo_out"), Signal(signed(12), name="not_hi_zp_out")
        with m.If(moved2):
            m.d.sync += [qs.eq(Mux(over, 1023, Mux(under, -1024, window))), rb.eq(rbit),
                         zp3.eq(zp2), hi3.eq(hi2), lo_hi3.eq(lo_hi2), below3.eq(below2), above3.eq(above2)]

        def plus_rb(a, b):
            """a + b + rb, one adder with rb as its carry-in: (2a + rb) + (2b + rb) = 2(a + b + rb)."""
            return (Cat(rb, a).as_signed() + Cat(rb, b).as_signed())[1:].as_signed()
        t = Signal(signed(13))
        m.d.comb += t.eq(plus_rb(qs, zp3))
        # t < lo: qs + rb - (lo - zp) < 0; t > hi: qs + rb - (hi - zp) - 1 >= 0 (~x is -x - 1)
        below = plus_rb(qs, below3) < 0
        above = plus_rb(qs, above3) >= 0
        m.d.comb += self.q.eq(Mux(below, lo_hi3, Mux(above, hi3, t)))
        return m
