"""The MVM lane sequencer: n_adcs lanes walking an MVM's conversions, requests to the crossbar."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .isa import MVM_LATENCY, WRITE_BEHIND
from .layer import DIGITS, lane_radix_layout, layer_layout, narrow_bits
from .params import ADDR_BITS, TileConfig
from .shift_add import CONVERSION, carry_save

__all__ = ["MvmLanes", "one_hot"]


def one_hot(conversion, cols: int):
    """The outputs a conversion hits, ``cols`` bits: bit ``o`` when ``valid`` (a valid conversion's ``o`` is below
    ``n_out <= cols``; only the index's low bits are decoded)."""
    return Mux(conversion.valid, (Const(1, cols) << conversion.o[:(cols - 1).bit_length() or 1])[:cols], 0)


#: A request in flight between issue and word-line drive (adds the slice and the row group). Its
#: ``conv.shift`` is not set: the shift's two slice terms (``in_shift``, ``w_shift``) are added to the
#: layer's ``adc_shift`` as the descriptor enters the ADC's first register stage (:meth:`MvmLanes.elaborate`).
_REQUEST = data.StructLayout({"conv": CONVERSION, "k": 4, "g": ADDR_BITS + 2, "sign": 1,
                              "in_shift": CONVERSION.members["shift"], "w_shift": CONVERSION.members["shift"]})


class MvmLanes(wiring.Component):
    """Conversion j of an MVM goes to lane ``j mod n_adcs`` in round ``j div n_adcs``.

    Each lane keeps its conversion index as mixed-radix digits (:data:`cimtile.hw.layer.DIGITS`);
    a round adds ``lane_step`` to every lane (single carries).

    An MVM multiplies ``count_m1 + 1`` input vectors back to back (the MVM's ``count``; the
    instruction word's field, held through the MVM): each vector's conversions are issued in
    rounds as above, and vector v+1's round 0 issues in the ``adc_cycles`` after vector v's last
    round (a partial last round never mixes vectors). ``next_vector`` is high in the cycle a
    vector's last round issues when another vector follows: the lanes then rewind by themselves
    (their next round issues from ``lane_start``), and the tile reads the next input vector so that
    ``x`` holds it from the cycle after the next round issues. The vector counter restarts in a
    cycle without ``run`` or with ``finished`` (the last vector's rounds all issued), so that each MVM
    (one ``run`` from its first cycle to its last) starts at vector 0; neither ``rewind`` nor ``abort``
    moves it (both come from the sequencer's decisions late in the cycle: the tile's ``fin`` and
    ``err``, which were in the counter's enable; docs/microarchitecture.md).

    Timing contract (cycle t a round issues): after a cycle with ``rewind`` and no round issuing,
    or a round issuing with ``next_vector``, the lanes issue from ``lane_start`` (the layer's
    registers, read when the round issues), else from their digit registers; the tile rewinds them
    in every cycle outside an MVM and in an MVM's last cycle, so each vector's round 0 issues from
    registers selected by a register. In a cycle with ``run`` and no
    conversion cycle in progress, a round issues if lane 0 has a conversion left (``issuing``):
    ``col[i]`` / ``pair[i]`` go to the crossbar in cycle t (combinational), the input vector ``x``
    must be on its input in cycle t+1 (the input buffer's read data), when ``wl[i]`` drives the
    word lines (the lane's slice bit plane masked to its row group: ``x``'s plane chosen by a register
    ANDed with a register, both set when the round issues and the enable cleared in a cycle no round
    issues, so that nothing of the request is decoded in cycle t+1); the crossbar presents the
    column sum in cycle t+1+``SUM_STAGES`` (t+3, :data:`cimtile.hw.crossbar.SUM_STAGES`) and the ADC
    its code in cycle t+1+``SUM_STAGES``+ADC latency (:data:`cimtile.hw.adc.LATENCY` = ``MVM_LATENCY +
    WRITE_BEHIND - SUM_STAGES``, :mod:`cimtile.hw.isa`; t+4), when ``conversion[i]`` describes it
    (``adc_conversion[i]`` is that descriptor a cycle earlier, in the ADC's last stage, which registers
    the code's term; ``hit[i]`` is its :func:`one_hot`, registered with it, for the carry-save shift-and-add
    (:func:`cimtile.hw.shift_add.carry_save`; 0 otherwise)): the descriptor is ``issued``
    (t+1) and ``MVM_LATENCY + WRITE_BEHIND - 1`` stages after it, whatever the split between the
    crossbar's and the ADC's stages. With ``adc_cycles`` = A > 1 a round occupies A cycles of ``run``.
    ``finished`` is high when ``run`` would issue but nothing is left. ``last`` is high in the
    ``MVM_LATENCY``-th cycle after the first with ``finished`` (the lanes finished that long without a
    break): the MVM's last cycle, in which the tile rewinds the lanes, from registers (the sequencer's
    ``fin``, which ends every instruction, was in the rewind and so in the enable of the lanes'
    registers; docs/microarchitecture.md). ``abort`` (an error) resets the round counter.

    Parameters
    ----------
    cfg : TileConfig
    mutation : str or None
        ``"shift_add"`` (test-only) weights input slices k >= 1 one bit too high.
    """

    def __init__(self, cfg: TileConfig, mutation: str | None = None):
        self.cfg = cfg
        self.mutation = mutation
        self._hits = carry_save(cfg)
        rows, lanes = cfg.rows, cfg.n_adcs
        super().__init__({
            "layer": In(layer_layout(cfg)),
            "lane_start": In(DIGITS).array(lanes),
            "lane_step": In(DIGITS),
            "lane_radix": In(lane_radix_layout(cfg)),
            "x": In(8 * rows),
            "count_m1": In(ADDR_BITS),
            "rewind": In(1),
            "run": In(1),
            "abort": In(1),
            "issuing": Out(1),
            "next_vector": Out(1),
            "finished": Out(1),
            "last": Out(1),
            "col": Out(ADDR_BITS + 2).array(lanes),
            "pair": Out(1).array(lanes),
            "wl": Out(rows * cfg.dac_bits).array(lanes),
            "conversion": Out(CONVERSION).array(lanes),
            "hit": Out(cfg.cols).array(lanes),
            "adc_conversion": Out(CONVERSION).array(lanes),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lanes, adc_cycles = cfg.n_adcs, cfg.adc_cycles
        requests = [Signal(_REQUEST, name=f"lane{i}_request") for i in range(lanes)]
        issued = [Signal(_REQUEST, name=f"lane{i}_issued") for i in range(lanes)]
        lane_digits = [Signal(DIGITS, name=f"lane{i}_digits") for i in range(lanes)]
        current = [Signal(DIGITS, name=f"lane{i}_current") for i in range(lanes)]
        conv_cycle = Signal(range(max(adc_cycles, 2)))
        planes, mag_bits = self._planes(m)
        group_rows = self._group_rows(m)
        # Which of x's bit planes a lane's request drives (its first, ``plane_index``), registered with the
        # request (:meth:`_plane_choice`), and which of its word lines are enabled (``wl_on``: rows of its
        # row group times the slice's driven DAC bits, zero without a valid request), registered too
        # (:meth:`_word_line_enable`): the word lines are then x's chosen planes ANDed with a register.
        plane_index = [Signal(3, name=f"lane{i}_plane") for i in range(lanes)]
        wl_on = [Signal(cfg.rows * cfg.dac_bits, name=f"lane{i}_wl_on") for i in range(lanes)]
        # ``fresh``: the lanes are at the layer's start digits (``lane_start``, registers), set by
        # ``rewind`` and cleared by the first round; a register selects, so no decode of the
        # instruction precedes the round's column, request and digit adders.
        fresh = Signal(init=1)
        vector = Signal(ADDR_BITS)  # the vector being issued, of count_m1 + 1
        more = Signal()  # another vector follows this one
        m.d.comb += more.eq(vector != self.count_m1)
        # The next round's digits: a fresh round's from the start digits, a later round's from the digit
        # registers, by two adders side by side (each from registers), the multiplexer after them.
        # The later rounds' adders compare with the layer's radices through ``lane_step - radix``
        # registers (:meth:`_step_less_radix`), loaded in every cycle: the layer only changes in a
        # CFG or WIN, outside an MVM, and the round after is a fresh one, which does not read them.
        less_radix = self._step_less_radix(m)
        next_steps = []
        for i in range(lanes):
            m.d.comb += current[i].eq(Mux(fresh, self.lane_start[i], lane_digits[i]))
            from_start, _ = self._add_step(m, self.lane_start[i], f"{i}_start", narrow=True)
            from_digits, _ = self._add_step(m, lane_digits[i], i, less_radix=less_radix)
            next_steps.append((Mux(fresh, from_start, from_digits), None))
            col = self._request(m, current[i], requests[i], i)
            m.d.comb += [self.col[i].eq(col), self.pair[i].eq(self.layer.analog)]
            # The descriptor follows the sum through the ADC's register stages; its shift is summed as it
            # enters the first (the request's adder was on the issue path, into ``issued``).
            conv = issued[i].conv
            assert MVM_LATENCY + WRITE_BEHIND - 1 >= 1, "the shift is summed into the first ADC stage"
            for stage in range(MVM_LATENCY + WRITE_BEHIND - 1):
                held = Signal(CONVERSION, name=f"lane{i}_adc_stage{stage}")
                m.d.sync += held.eq(conv)
                if stage == 0:
                    m.d.sync += held.shift.eq(self.layer.adc_shift + issued[i].in_shift + issued[i].w_shift)
                conv = held
            # no round issuing: no conversion, no word line (both set below when one issues)
            m.d.sync += [self.conversion[i].eq(conv), issued[i].conv.valid.eq(0), wl_on[i].eq(0)]
            # the outputs it hits, decoded as it is registered: the carry-save shift-and-add's selects start at
            # a register (the leaders' form, on more lanes, does not read them: none then, hit stays 0)
            if self._hits:
                m.d.sync += self.hit[i].eq(one_hot(conv, cfg.cols))
            m.d.comb += self.adc_conversion[i].eq(conv)  # a cycle ahead: the ADC registers its term
            m.d.comb += self.wl[i].eq(self._word_lines(planes, plane_index[i], wl_on[i]))

        idle = conv_cycle == 0
        lane0_last = self._last_round(m, fresh, lane_digits[0])
        # Whether lane 0 has a conversion left (its request's ``valid``), from registers: a fresh lane 0
        # is at conversion 0 (every layer has an input slice), a later one is beyond its vector when
        # the previous round was the vector's last (``lane0_last`` registered as ``lane0_beyond``).
        # Why: decided from lane 0's digits (a multiplexer and a compare), it was in series with
        # every register ``issuing`` enables and with the sequencer's ``finished``.
        lane0_beyond = Signal()
        lane0_left = Signal()
        m.d.comb += lane0_left.eq(fresh | ~lane0_beyond)
        m.d.comb += [self.issuing.eq(self.run & idle & lane0_left),
                     self.next_vector.eq(self.issuing & lane0_last & more),
                     self.finished.eq(idle & ~lane0_left)]
        with m.If(self.issuing):
            m.d.sync += lane0_beyond.eq(lane0_last)
            for i in range(lanes):
                m.d.sync += [issued[i].eq(requests[i]), lane_digits[i].eq(next_steps[i][0])]
                index, on = self._plane_choice(current[i], requests[i].sign, mag_bits)
                m.d.sync += [plane_index[i].eq(index),
                             wl_on[i].eq(self._word_line_enable(m, requests[i], on, group_rows, i))]
            if adc_cycles > 1:
                m.d.sync += conv_cycle.eq(1)
            # a vector's last round with another vector to follow rewinds the lanes for it
            m.d.sync += fresh.eq(self.next_vector)
            with m.If(self.next_vector):
                m.d.sync += vector.eq(vector + 1)
        with m.Elif(self.rewind):
            m.d.sync += fresh.eq(1)
        with m.If(~self.run | self.finished):  # never with issuing, which needs run and lane 0's next conversion
            m.d.sync += vector.eq(0)
        if adc_cycles > 1:
            with m.If(self.run & ~idle):
                m.d.sync += conv_cycle.eq(Mux(conv_cycle == adc_cycles - 1, 0, conv_cycle + 1))
        with m.If(self.abort):
            m.d.sync += conv_cycle.eq(0)
        # cycles the lanes have been finished, up to MVM_LATENCY: the MVM's pipeline drains meanwhile
        finished_for = Signal(range(MVM_LATENCY + 1))
        m.d.sync += finished_for.eq(Mux(self.finished, Mux(finished_for == MVM_LATENCY, MVM_LATENCY, finished_for + 1),
                                        0))
        m.d.comb += self.last.eq(self.finished & (finished_for == MVM_LATENCY))
        return m

    def _last_round(self, m, fresh, lane0_digits):
        """Whether the round issuing is its vector's last (lane 0's next conversion is beyond the vector:
        its ``k`` >= ``nis``), from registers: a register looked ahead when the previous round issued.

        Lane 0 starts each vector at conversion 0 (conversion j goes to lane j mod n_adcs), so a
        vector's first round is its last when ``lane_step.k >= nis``; when a round issues, the next
        round's answer is whether lane 0's conversion two rounds on (``digits + 2 x lane_step``) is
        beyond the vector, registered (``last_ahead``). ``2 x lane_step`` is a register too: the lanes
        rewind outside an MVM, so the first round of an MVM (the cycle after a CFG or WIN) issues
        fresh and does not read it. Why: decided from the digit adders' sums, the decision was on
        the tile's critical path (into the vector counter's enable; docs/microarchitecture.md).
        """
        step, nis = self.lane_step, self.lane_radix.nis  # (step.k <= n_adcs: the saturated nis compares the same)
        # 2 x lane_step: the digits of conversion 2 x n_adcs (narrow adders), and that less the radices,
        # both registered, so the look-ahead is one adder per digit from registers
        double, double_beyond = self._add_step(m, step, "step2", step, narrow=True)
        step2 = Signal(DIGITS, name="lane_step2")
        m.d.sync += step2.eq(double)
        double_view = data.View(DIGITS, double)
        _, ahead = self._add_step(m, lane0_digits, "ahead", step2,
                                  less_radix=self._step_less_radix(m, double_view, "step2"))
        last_ahead = Signal()
        with m.If(self.issuing):
            m.d.sync += last_ahead.eq(Mux(fresh, double_beyond, ahead))
        return Mux(fresh, step.k >= nis, last_ahead)

    def _step_less_radix(self, m, step=None, prefix="step"):
        """``lane_step - radix`` per digit (``q``, ``o``, ``g``; ``c`` less the window's ``col_count``; ``k``
        less ``nis``), signed, registered in every cycle: a digit and the step then carry exactly when
        ``digit + (step - radix) + carry in >= 0``, one adder from registers instead of a sum and a
        compare (or subtraction) in series."""
        step, layer = self.lane_step if step is None else step, self.layer
        out = {}
        for name, radix in (("q", layer.gconv), ("o", layer.n_out), ("g", layer.nrg), ("c", layer.col_count),
                            ("k", layer.nis)):
            width = max(len(getattr(step, name)), len(radix)) + 1
            reg = Signal(signed(width), name=f"{prefix}_less_{name}")
            m.d.sync += reg.eq(getattr(step, name) - radix)
            out[name] = reg
        return out

    def _add_step(self, m, digits, lane, step=None, less_radix=None, narrow=False):
        """``digits + lane_step`` (or ``+ step``) in the mixed radix of the layer (each digit carries at
        most once), and whether that is beyond the vector's conversions (its ``k`` >= ``nis``).

        Carry-select: every digit is added for both carries in, in parallel from registers; the
        carries then only ripple through one multiplexer per digit. The column ``c`` is added beside
        them, for both outcomes of ``o``'s carry (which wraps it by the window's ``n_out x group``
        columns, its ``col_count`` in an aligned window: an MVM refuses any other).

        With ``less_radix`` (:meth:`_step_less_radix`) a digit's carry and wrapped value are one adder,
        ``digit + (step - radix)``. With ``narrow`` (the start digits plus the step: digits of
        conversions 0..2 x n_adcs, which the layer registers give) the adders are as wide as those
        digits, and the radices are the lanes' own saturated copy (``lane_radix``,
        :func:`cimtile.hw.layer.lane_radix_layout`), not the layer's registers."""
        step, layer = self.lane_step if step is None else step, self.layer
        bits = narrow_bits(self.cfg) if narrow else None
        radices = self.lane_radix if narrow else layer

        def cut(value):
            return value[:bits] if narrow else value

        out = []
        carry = Const(0, 1)
        column_sum = Signal(ADDR_BITS + 3, name=f"lane{lane}_c_sum")
        column_wrap = Signal(ADDR_BITS + 3, name=f"lane{lane}_c_wrap")
        m.d.comb += column_sum.eq(cut(digits.c) + cut(step.c))
        if less_radix is None:
            m.d.comb += column_wrap.eq(cut(cut(digits.c) + cut(step.c) + self.lane_radix.neg_cols))
        else:
            m.d.comb += column_wrap.eq(digits.c + less_radix["c"])
        for name, radix in (("q", radices.gconv), ("o", radices.n_out), ("g", radices.nrg)):
            digit, digit_step = cut(getattr(digits, name)), cut(getattr(step, name))
            width = len(getattr(digits, name))
            sums, carries = [], []
            for c in (0, 1):
                total = Signal(len(digit) + 2, name=f"lane{lane}_{name}_sum{c}")
                m.d.comb += total.eq(digit + digit_step + c)
                if less_radix is None:
                    wrapped = Signal(len(digit) + 2, name=f"lane{lane}_{name}_wrap{c}")
                    m.d.comb += wrapped.eq(total - radix)
                    over = total >= radix
                else:
                    wrapped = Signal(signed(len(less_radix[name]) + 1), name=f"lane{lane}_{name}_wrap{c}")
                    m.d.comb += wrapped.eq(digit + less_radix[name] + c)
                    over = ~wrapped[-1]
                sums.append(Mux(over, wrapped[:width], total[:width]))
                carries.append(over)
            result = Signal(width, name=f"lane{lane}_{name}_next")
            m.d.comb += result.eq(Mux(carry, sums[1], sums[0]))
            out.append(result)
            carry = Mux(carry, carries[1], carries[0]) if name != "q" else carries[0]
            if name == "o":
                column = Mux(carry, column_wrap, column_sum)[:len(digits.c)]
        # k last: both sums from registers too, the carry out of g selects
        k_sums = [Signal(len(digits.k), name=f"lane{lane}_k_sum{c}") for c in (0, 1)]
        m.d.comb += [k_sums[c].eq(cut(digits.k) + cut(step.k) + c) for c in (0, 1)]
        k = Mux(carry, k_sums[1], k_sums[0])
        # beyond the vector: both k sums compared with nis in parallel, the carry selects
        if less_radix is None:
            beyond = Mux(carry, k_sums[1] >= radices.nis, k_sums[0] >= radices.nis)
        else:
            k_less = [digits.k + less_radix["k"] + c for c in (0, 1)]
            beyond = Mux(carry, ~k_less[1][-1], ~k_less[0][-1])
        q, o, g = out
        return Cat(k, g, o, q, column), beyond

    def _request(self, m, digits, req, lane: int):
        """Drive ``req`` (the shift-and-add descriptor and row range of conversion ``digits``) and
        return its crossbar column."""
        cfg, layer = self.cfg, self.layer
        sign_slice = layer.asigned & (digits.k == layer.nis - 1)
        in_shift = Mux(sign_slice, layer.abits_m1, digits.k * cfg.dac_bits)
        if self.mutation == "shift_add":
            in_shift = Mux(digits.k >= 1, in_shift + 1, in_shift)
        # Column q of a weight group (hw/encoding.py): signed weights converted per column are in the
        # order s0+ s0- s1+ s1- ..., so q's low bit is the sign and q >> 1 the slice; otherwise
        # (unsigned, or a pair converted once) q is the slice.
        per_column_sign = layer.wsigned & ~layer.analog
        weight_slice = Mux(per_column_sign, digits.q >> 1, digits.q)
        m.d.comb += [
            req.conv.valid.eq(digits.k < layer.nis),
            req.conv.o.eq(digits.o),
            req.in_shift.eq(in_shift),
            req.w_shift.eq(weight_slice * cfg.cell_bits),
            req.conv.neg.eq(sign_slice ^ (per_column_sign & digits.q[0])),
            req.conv.diff.eq(layer.analog),
            req.k.eq(digits.k[:4]),
            req.g.eq(digits.g),
            req.sign.eq(sign_slice),
        ]
        col = Signal(ADDR_BITS + 2, name=f"lane{lane}_col")
        m.d.comb += col.eq(layer.col_start + digits.c)  # c = o * group + q * step (see DIGITS)
        return col

    def _group_rows(self, m):
        """The rows of each row group of the window (group v: rows ``row_start + v x rows_per_conv`` up
        to the next group's or the window's end), one ``rows``-bit mask per group, combinational from the
        layer's registers: read when a round issues, into the word-line enables (:meth:`_word_line_enable`),
        so they are right in any cycle, the first after a CFG or WIN included (the round of an MVM that
        follows one issues in its first cycle). Each mask is a constant table's word indexed by
        ``row_start`` (the group's rows) ANDed with one indexed by the window's end (the rows before it):
        no shifter (the window lies in the array: ``row_start < rows``, end ``<= rows``)."""
        cfg, layer = self.cfg, self.layer
        rows, per = cfg.rows, cfg.rows_per_conv
        groups = -(-rows // per)
        start_bits, end_bits = max(1, (rows - 1).bit_length()), rows.bit_length()
        window_end = Signal(end_bits, name="window_end")
        m.d.comb += window_end.eq(layer.row_start + layer.row_count)
        before_end = Array(Const((1 << end) - 1, rows) for end in range(rows + 1))[window_end]
        masks = []
        for v in range(1 << self._group_bits()):
            mask = Signal(rows, name=f"group{v}_rows")
            if v < groups:
                in_group = Array(Const(sum(1 << r for r in range(s + v * per, min(s + (v + 1) * per, rows))), rows)
                                 for s in range(rows))[layer.row_start[:start_bits]]
                m.d.comb += mask.eq(in_group & before_end)
            masks.append(mask)
        return Cat(*masks)

    def _group_bits(self) -> int:
        """Bits of a row group's index that a valid conversion can have (``g < nrg <= ceil(rows / rows_per_conv)``)."""
        return max(1, (-(-self.cfg.rows // self.cfg.rows_per_conv) - 1).bit_length())

    def _plane_choice(self, digits, sign_slice, mag_bits):
        """The input bit plane that slice ``digits.k`` starts at (the sign slice's: ``abits_m1``) and which
        of its ``dac_bits`` are driven: magnitude bits below the magnitude width (``mag_bits``), the sign
        slice's first bit alone. Registered with the request when it issues (the index as ``plane_index``,
        ``on`` into the word-line enables), so that the word lines are one multiplexer of ``x`` by a
        register and an AND with a register (a plane select of masked planes and the sign plane's
        select, by ``k`` and ``abits_m1``, were two multiplexers in series on the tile's critical path,
        into the crossbar's column sums; docs/microarchitecture.md). A plane at or beyond 8 is never
        driven (``mag_bits`` <= 8), so the index's low 3 bits suffice."""
        dac, layer = self.cfg.dac_bits, self.layer
        first = digits.k * dac
        index = Mux(sign_slice, layer.abits_m1, first[:3])
        on = Cat(*[Mux(sign_slice, Const(int(j == 0), 1), first + j < mag_bits) for j in range(dac)])
        return index, on

    def _word_line_enable(self, m, request, on, group_rows, lane: int):
        """The word lines a request enables, registered when its round issues (``wl_on``): row ``r``'s DAC
        bit ``j`` (bit ``r x dac_bits + j``) is on when the request is valid, ``r`` is in its row group
        (``group_rows`` by its ``g``) and the slice drives bit ``j`` (``on``, :meth:`_plane_choice`). The
        register is cleared in every cycle no round issues, as ``issued``'s ``valid`` is. Why: decoded in
        the word-line cycle from ``issued`` (its ``valid`` and ``g``, fanned out to every row), the enable
        was the start of the tile's critical path, into the crossbar's column sums
        (docs/microarchitecture.md)."""
        rows, dac = self.cfg.rows, self.cfg.dac_bits
        rows_on = Signal(rows, name=f"lane{lane}_rows_next")
        m.d.comb += rows_on.eq(Mux(request.conv.valid, group_rows.word_select(request.g[:self._group_bits()], rows), 0))
        return Cat(*[rows_on[r] & on[j] for r in range(rows) for j in range(dac)])

    def _word_lines(self, planes, index, enable):
        """The word-line drive of the request issued last cycle: its slice of ``x`` (planes ``index`` up
        to ``index + dac_bits - 1``, row r's DAC bit j at bit ``r x dac_bits + j``) ANDed with its
        registered enable (:meth:`_word_line_enable`): one part-select per plane and an AND."""
        rows, dac = self.cfg.rows, self.cfg.dac_bits
        chosen = [planes.word_select(index + j, rows) for j in range(dac)]
        sel = chosen[0] if dac == 1 else Cat(*[Cat(*[chosen[j][r] for j in range(dac)]) for r in range(rows)])
        return sel & enable

    def _planes(self, m):
        """The input vector's bit planes (plane b: bit b of every row's byte), shared by all lanes, with
        ``dac_bits - 1`` zero planes above them, and the magnitude width (signed inputs keep the sign
        bit apart): planes at or above it are not driven as magnitude bits (:meth:`_plane_choice`)."""
        cfg, layer = self.cfg, self.layer
        rows, dac = cfg.rows, cfg.dac_bits
        mag_bits = Signal(4)
        m.d.comb += mag_bits.eq(Mux(layer.asigned, layer.abits_m1, layer.abits_m1 + 1))
        planes = [Cat(*[self.x[8 * r + b] for r in range(rows)]) for b in range(8)]
        return Cat(*planes, Const(0, rows * (dac - 1))), mag_bits
