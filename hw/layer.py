"""Layer registers: CFG and WIN state and the geometry derived from it (slices, groups, conversions)."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .encoding import group_size
from .isa import ARGS
from .params import ADDR_BITS, TileConfig

__all__ = ["DIGITS", "LayerRegisters", "const_div", "div_table", "lane_radix_layout", "lane_radix_value",
           "layer_layout", "narrow_bits", "step_digits"]

#: A conversion index of an MVM as mixed-radix digits: input slice ``k``, row group ``g``, output
#: ``o``, conversion within the output's weight group ``q`` (radices nis, nrg, n_out, gconv); and ``c``,
#: the conversion's column within the window, ``o * group + q * step``, carried beside the digits
#: (it wraps with ``o``) so that no multiplier precedes the crossbar's column address.
DIGITS = data.StructLayout({"k": 12, "g": ADDR_BITS + 2, "o": ADDR_BITS + 2, "q": 6, "c": ADDR_BITS + 2})


def layer_layout(cfg: TileConfig) -> data.StructLayout:
    """The layer state every data path reads: CFG and WIN registers and their derived geometry
    (:func:`cimtile.hw.isa.geometry`: ``nis``, ``nws``, ``group``, ``nrg``, ``n_out``, ``aligned``), plus
    ``gconv`` (conversions per output group), ``step`` (physical columns per conversion, 2 for a
    differential pair converted once) and ``analog`` (such pairs are in use)."""
    fc = ARGS["cfg"]
    return data.StructLayout({
        "wbits_m1": fc["wbits_m1"].shape, "abits_m1": fc["abits_m1"].shape,
        "wsigned": fc["wsigned"].shape, "asigned": fc["asigned"].shape, "adc_shift": fc["adc_shift"].shape,
        "row_start": ADDR_BITS, "row_count": ADDR_BITS + 1, "col_start": ADDR_BITS, "col_count": ADDR_BITS + 1,
        "nis": 4, "nws": 4, "group": 5, "nrg": ADDR_BITS + 1, "n_out": ADDR_BITS + 1, "gconv": 5, "step": 2,
        "aligned": 1, "analog": 1,
    })


def lane_radix_layout(cfg: TileConfig) -> data.StructLayout:
    """The MVM lanes' own copy of the layer's radices for their narrow adders (the digits of conversions
    0..2 x n_adcs: a lane's second round and the look-ahead two rounds on, :class:`~cimtile.hw.mvm_lanes.MvmLanes`):
    ``gconv``, ``n_out``, ``nrg`` and ``nis`` saturated at ``2 x n_adcs + 1`` (a digit of those conversions
    never exceeds ``2 x n_adcs``, so a radix above it never makes a digit carry), and ``neg_cols``, minus the
    window's ``col_count`` in the low bits a column of those conversions needs (the column wraps by it)."""
    top = _lane_top(cfg)
    return data.StructLayout({"gconv": range(top + 1), "n_out": range(top + 1), "nrg": range(top + 1),
                              "nis": range(top + 1), "neg_cols": narrow_bits(cfg)})


def lane_radix_value(cfg: TileConfig, layer: dict) -> dict:
    """The :func:`lane_radix_layout` value of a layer given as a dict of :func:`layer_layout`'s fields."""
    top = _lane_top(cfg)
    return {**{name: min(top, layer[name]) for name in ("gconv", "n_out", "nrg", "nis")},
            "neg_cols": -layer["col_count"] % (1 << narrow_bits(cfg))}


def _lane_top(cfg: TileConfig) -> int:
    """Where :func:`lane_radix_layout`'s radices saturate: ``2 x n_adcs + 1``."""
    return 2 * cfg.n_adcs + 1


def narrow_bits(cfg: TileConfig) -> int:
    """Width of the narrow digit and column sums of conversions 0..2 x n_adcs (a column moves by at most 2 per
    conversion: at most 4 x n_adcs, and a carry)."""
    return (4 * cfg.n_adcs + 2).bit_length()


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def div_table(value, divisor: int, limit: int, offset: int = 0):
    """``(n // divisor, n % divisor == 0)`` for ``n = value + offset``, 0 <= n <= limit: constant tables
    indexed by ``value`` (a few LUT levels, no adder for the offset) for arrays up to 256 wide, else
    a multiply by a reciprocal."""
    if limit <= 256:
        width = max(1, (limit // divisor).bit_length())
        indices = [n for n in range(-offset, limit + 1 - offset) if n >= 0]
        quotient = Array(Const((n + offset) // divisor, width) for n in indices)[value]
        exact = Array(Const(int((n + offset) % divisor == 0), 1) for n in indices)[value]
        return quotient, exact
    total = value + offset
    quotient = const_div(total, divisor, limit)
    return quotient, quotient * divisor == total


def const_div(value, divisor: int, limit: int):
    """``value // divisor`` for 0 <= value <= limit as a multiply by a reciprocal and a shift:
    a few adders deep instead of a divider (checked exhaustively here, at elaboration)."""
    if divisor & (divisor - 1) == 0:
        return value >> (divisor.bit_length() - 1)
    nbits = limit.bit_length()
    for s in range(nbits, 3 * nbits + 8):
        mult = -(-(1 << s) // divisor)
        if all((n * mult) >> s == n // divisor for n in range(limit + 1)):
            return (value * mult) >> s
    raise AssertionError(f"no reciprocal for {divisor} up to {limit}")  # pragma: no cover


def step_digits(digits, gconv, n_out, nrg, step, mux=Mux):
    """The digits ``(k, g, o, q, c)`` of the next conversion index (single carries); works on ints
    with ``mux`` a Python conditional, so the reset values come from the same code. The column
    ``c`` moves by ``step`` (a weight group is ``gconv`` conversions ``step`` columns apart) and
    wraps to 0 with ``o``."""
    k, g, o, q, c = digits
    q1 = q + 1
    carry_q = q1 >= gconv
    o1 = o + carry_q
    carry_o = carry_q & (o1 >= n_out)
    g1 = g + carry_o
    carry_g = carry_o & (g1 >= nrg)
    return (k + carry_g, mux(carry_g, 0, g1), mux(carry_o, 0, o1), mux(carry_q, 0, q1), mux(carry_o, 0, c + step))


def _py_mux(cond, a, b):
    return a if cond else b


class LayerRegisters(wiring.Component):
    """CFG and WIN registers, their derived geometry, and the MVM lanes' starting digits.

    Timing contract: in a cycle with ``cfg_write`` (``win_write``; never both) the CFG (WIN) fields on
    ``cfg_fields`` (``win_fields``) are the next layer (the tile decodes these from the opcode alone, so they may be
    high in cycles that do not commit); with ``commit`` high (a CFG or WIN executing with no error in
    this cycle; in other cycles committing is harmless: the layer is recomputed unchanged) every register takes
    its next value at the clock edge, so an instruction in the following cycle sees the new
    ``layer``, ``lane_start`` and ``lane_step`` with no divider on its own path. The geometry is
    computed from the fields before the instruction's checks: an error only lowers ``commit``.
    ``lane_start[i]`` holds the digits of conversion ``i`` and ``lane_step`` those of ``n_adcs``
    (the amount every lane advances per round); the values at reset are those of the reset layer
    (``hw.isa.RESET_CFG`` and the whole array as window).

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        super().__init__({
            "cfg_fields": In(ARGS["cfg"]),
            "cfg_write": In(1),
            "win_fields": In(ARGS["win"]),
            "win_write": In(1),
            "commit": In(1),
            "layer": Out(layer_layout(cfg), init=self._reset_layer(cfg)),
            "lane_start": Out(DIGITS).array(cfg.n_adcs),
            "lane_step": Out(DIGITS),
            "lane_radix": Out(lane_radix_layout(cfg), init=self._reset_lane_radix(cfg)),
        })

    @staticmethod
    def _reset_layer(cfg: TileConfig) -> dict:
        rc = isa.RESET_CFG
        r0, nr, c0, nc = isa.reset_window(cfg)
        g = isa.geometry(cfg, rc["wbits"], rc["abits"], bool(rc["wsigned"]), bool(rc["asigned"]), nr, nc)
        analog = cfg.analog_diff and bool(rc["wsigned"])
        return {"wbits_m1": rc["wbits"] - 1, "abits_m1": rc["abits"] - 1, "wsigned": rc["wsigned"],
                "asigned": rc["asigned"], "adc_shift": rc["adc_shift"], "row_start": r0, "row_count": nr,
                "col_start": c0, "col_count": nc, "nis": g.nis, "nws": g.nws, "group": g.group, "nrg": g.nrg,
                "n_out": g.n_out, "gconv": g.nws if analog else g.group, "step": 2 if analog else 1,
                "aligned": int(g.aligned), "analog": int(analog)}

    @classmethod
    def _reset_lane_radix(cls, cfg: TileConfig) -> dict:
        return lane_radix_value(cfg, cls._reset_layer(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg, now = self.cfg, self.layer
        # The next layer after a CFG (``after_cfg``) and after a WIN (``after_win``), each the current
        # one with the word's fields and its derived geometry, side by side; the decoded opcode selects
        # at the registers' inputs, after the geometry and the lane-start chains (it was in series before
        # them: the chain was on the tile's critical path). Separate signals, so that no signal feeds
        # itself (Verilator's UNOPTFLAT).
        after_cfg, after_win = Signal(layer_layout(cfg)), Signal(layer_layout(cfg))
        cfg_in, win_in = self.cfg_fields, self.win_fields
        m.d.comb += [after_cfg.eq(now), after_win.eq(now)]
        m.d.comb += [after_cfg.wbits_m1.eq(cfg_in.wbits_m1), after_cfg.abits_m1.eq(cfg_in.abits_m1),
                     after_cfg.wsigned.eq(cfg_in.wsigned), after_cfg.asigned.eq(cfg_in.asigned),
                     after_cfg.adc_shift.eq(cfg_in.adc_shift)]
        m.d.comb += [after_win.row_start.eq(win_in.row_start), after_win.row_count.eq(win_in.row_count_m1 + 1),
                     after_win.col_start.eq(win_in.col_start), after_win.col_count.eq(win_in.col_count_m1 + 1)]
        cfg_write = self.commit & self.cfg_write
        win_write = self.commit & self.win_write & ~self.cfg_write
        radices, lane = self._geometry(m, after_cfg, after_win, win_write)
        with m.If(cfg_write):
            m.d.sync += now.eq(after_cfg)
        with m.Elif(win_write):
            m.d.sync += now.eq(after_win)
        self._lane_chain(m, radices, cfg_write, win_write)
        self._lane_radix(m, lane, cfg_write, win_write)
        return m

    def _lane_radix(self, m, lane: dict, cfg_write, win_write):
        """``lane_radix``, registers loaded with the layer (same enable) from the next layer's radices. Why:
        they are the lanes' own, placed beside the lanes' narrow adders, and not the layer registers
        (saturated or negated, so synthesis does not merge them back into those): read from across the
        chip, the layer's ``gconv`` was most of the time of the tile's critical path
        (docs/microarchitecture.md). ``lane`` (from :meth:`_geometry`) has, for a CFG and for a WIN, the
        radices that operation changes, already saturated (tables and registers of saturated values, no
        comparator after the word's decode); the others hold."""
        for op, write in (("cfg", cfg_write), ("win", win_write)):
            with m.If(write):
                m.d.sync += [getattr(self.lane_radix, name).eq(value) for name, value in lane[op].items()]

    def _group_sizes(self) -> list[int]:
        """The weight-group sizes a CFG can select (a signed 1-bit weight does not exist)."""
        cfg = self.cfg
        return sorted({group_size(cfg, wbits, signed) for wbits in range(1, 9) for signed in (False, True)
                       if not (signed and wbits < 2)})

    def _cfg_cases(self):
        """``(case index of Cat(wbits_m1, wsigned), nws, group, analog)`` of every CFG weight format."""
        cfg = self.cfg
        for wbits_m1 in range(8):
            for wsigned in range(2):
                exists = wbits_m1 or not wsigned  # a signed 1-bit weight does not exist: no slices
                nws = isa.weight_slices(wbits_m1 + 1, bool(wsigned), cfg.cell_bits) if exists else 0
                yield wbits_m1 | (wsigned << 3), nws, 2 * nws if wsigned else nws, bool(wsigned and cfg.analog_diff)

    def _geometry(self, m, after_cfg, after_win, win_write):
        """The derived fields of the next layer after a CFG (``after_cfg``: the fields that depend on the
        CFG, and ``n_out``, ``aligned``: the current window's columns over its weight group) and after a
        WIN (``after_win``: those that depend on the window, from tables indexed by its ``count_m1``
        fields: no adder), each from the word's fields and the current registers.

        The window's outputs for every group size a CFG can select (``n_out``, ``aligned`` and the
        saturated ``n_out`` of :meth:`_lane_chain`) are registers of their own, loaded by a WIN from the
        same tables: a CFG selects one of them by its weight format (a multiplexer of registers, not
        a table of the group it decodes). Returns the saturated radices ``(gconv, n_out, nrg, step)``
        of the layer after a CFG and after a WIN, for the lane chain; and by operation the
        :func:`lane_radix_layout` fields it changes (saturated at ``2 x n_adcs + 1`` by the same tables and
        per-size registers: a CFG's ``gconv``, ``nis`` and ``n_out``, a WIN's ``n_out``, ``nrg`` and
        ``neg_cols``), for :meth:`_lane_radix`."""
        cfg, now = self.cfg, self.layer
        word_cfg, word_win = self.cfg_fields, self.win_fields
        top = cfg.n_adcs + 1
        sat = Shape.cast(range(top + 1))
        lane_top = _lane_top(cfg)
        lane_sat = Shape.cast(range(lane_top + 1))
        _, _, _, reset_cols = isa.reset_window(cfg)
        # CFG: its slices and weight group, from tables of its fields.
        nis, nws, group, sat_gconv_cfg = Signal(4), Signal(4), Signal(5), Signal(sat)
        lane_nis, lane_gconv = Signal(lane_sat), Signal(lane_sat)
        with m.Switch(Cat(word_cfg.abits_m1, word_cfg.asigned)):
            for abits_m1 in range(8):
                for asigned in range(2):
                    with m.Case(abits_m1 | (asigned << 3)):
                        slices = isa.input_slices(abits_m1 + 1, bool(asigned), cfg.dac_bits)
                        m.d.comb += [nis.eq(slices), lane_nis.eq(min(lane_top, slices))]
        with m.Switch(Cat(word_cfg.wbits_m1, word_cfg.wsigned)):
            for case, slices, size, analog in self._cfg_cases():
                with m.Case(case):
                    gconv = slices if analog else size
                    m.d.comb += [nws.eq(slices), sat_gconv_cfg.eq(min(top, gconv)),
                                 lane_gconv.eq(min(lane_top, gconv))]
        m.d.comb += group.eq(Mux(word_cfg.wsigned, nws << 1, nws))
        analog = word_cfg.wsigned if cfg.analog_diff else Const(0, 1)
        # WIN: its columns' outputs per group size (next values of the per-size registers), and the
        # row groups of its rows.
        count_m1_bits = max(1, (cfg.cols - 1).bit_length())
        columns_m1 = word_win.col_count_m1[:count_m1_bits]
        per_size = {}
        for size in self._group_sizes():
            n_out, exact = div_table(columns_m1, size, cfg.cols, 1)
            sat_n_out = Array(Const(min(top, (n + 1) // size), sat) for n in range(cfg.cols))[columns_m1]
            lane_n_out = Array(Const(min(lane_top, (n + 1) // size), lane_sat) for n in range(cfg.cols))[columns_m1]
            regs = (Signal(ADDR_BITS + 1, name=f"n_out_of{size}", init=reset_cols // size),
                    Signal(name=f"aligned_of{size}", init=int(reset_cols % size == 0)),
                    Signal(sat, name=f"sat_n_out_of{size}", init=min(top, reset_cols // size)),
                    Signal(lane_sat, name=f"lane_n_out_of{size}", init=min(lane_top, reset_cols // size)))
            with m.If(win_write):
                m.d.sync += [r.eq(v) for r, v in zip(regs, (n_out, exact, sat_n_out, lane_n_out))]
            per_size[size] = ((n_out, exact, sat_n_out, lane_n_out), regs)
        cfg_n_out, cfg_aligned, sat_n_out_cfg = Signal(ADDR_BITS + 1), Signal(), Signal(sat)
        lane_n_out_cfg = Signal(lane_sat)
        with m.Switch(Cat(word_cfg.wbits_m1, word_cfg.wsigned)):
            for case, _, size, _ in self._cfg_cases():
                if size in per_size:
                    with m.Case(case):
                        m.d.comb += [s.eq(r) for s, r in zip((cfg_n_out, cfg_aligned, sat_n_out_cfg, lane_n_out_cfg),
                                                             per_size[size][1])]
        win_n_out, win_aligned, sat_n_out_win = Signal(ADDR_BITS + 1), Signal(), Signal(sat)
        lane_n_out_win = Signal(lane_sat)
        with m.Switch(now.group):
            for size, (values, _) in per_size.items():
                with m.Case(size):
                    m.d.comb += [s.eq(v) for s, v in zip((win_n_out, win_aligned, sat_n_out_win, lane_n_out_win),
                                                         values)]
        per_conv = cfg.rows_per_conv
        sat_nrg_win, lane_nrg_win = Signal(sat), Signal(lane_sat)
        if cfg.rows <= 256:
            row_bits = max(1, (cfg.rows - 1).bit_length())
            table = Array(Const(_ceil_div(n + 1, per_conv), ADDR_BITS + 1) for n in range(cfg.rows))
            win_nrg = table[word_win.row_count_m1[:row_bits]]
            m.d.comb += [saturated.eq(Array(Const(min(limit, _ceil_div(n + 1, per_conv)), saturated.shape())
                                            for n in range(cfg.rows))[word_win.row_count_m1[:row_bits]])
                         for saturated, limit in ((sat_nrg_win, top), (lane_nrg_win, lane_top))]
        else:
            win_nrg = const_div(word_win.row_count_m1 + per_conv, per_conv, cfg.rows + per_conv - 1)
            m.d.comb += [sat_nrg_win.eq(Mux(win_nrg > top, top, win_nrg)),
                         lane_nrg_win.eq(Mux(win_nrg > lane_top, lane_top, win_nrg))]
        m.d.comb += [after_cfg.nis.eq(nis), after_cfg.nws.eq(nws), after_cfg.group.eq(group),
                     after_cfg.n_out.eq(cfg_n_out), after_cfg.aligned.eq(cfg_aligned), after_cfg.analog.eq(analog),
                     after_cfg.gconv.eq(Mux(analog, nws, group)), after_cfg.step.eq(Mux(analog, 2, 1))]
        m.d.comb += [after_win.nrg.eq(win_nrg), after_win.n_out.eq(win_n_out), after_win.aligned.eq(win_aligned)]
        # the current layer's saturated gconv and nrg (the other operation's inputs)
        reset = self._reset_layer(cfg)
        sat_gconv = Signal(sat, name="sat_gconv", init=min(top, reset["gconv"]))
        sat_nrg = Signal(sat, name="sat_nrg", init=min(top, reset["nrg"]))
        with m.If(self.commit & self.cfg_write):
            m.d.sync += sat_gconv.eq(sat_gconv_cfg)
        with m.If(win_write):
            m.d.sync += sat_nrg.eq(sat_nrg_win)
        # (a WIN's neg_cols, -(col_count_m1 + 1), is ~col_count_m1 in the low bits: no adder)
        lane = {"cfg": {"gconv": lane_gconv, "nis": lane_nis, "n_out": lane_n_out_cfg},
                "win": {"n_out": lane_n_out_win, "nrg": lane_nrg_win,
                        "neg_cols": ~Cat(word_win.col_count_m1, Const(0, narrow_bits(cfg)))[:narrow_bits(cfg)]}}
        return ({"cfg": (sat_gconv_cfg, sat_n_out_cfg, sat_nrg, after_cfg.step),
                 "win": (sat_gconv, sat_n_out_win, sat_nrg_win, now.step)}, lane)

    def _lane_chain(self, m, radices, cfg_write, win_write):
        """``lane_start`` / ``lane_step`` as registers loaded with the layer (same enable), so that no
        chain of incrementers precedes the MVM's per-round digit adders: the chain is computed for the
        layer after a CFG and after a WIN side by side, and the opcode selects at the registers.

        The chain runs on saturated radices, ``min(radix, n_adcs + 1)`` (``radices``, from tables of the
        word's fields and registers): the digits of conversions 0..n_adcs never exceed ``n_adcs``, so a
        radix above it never makes a digit carry, and every compare and adder of the chain is a few bits
        wide (checked against the full radices in tests/test_hw_layer.py). Why: the chain on the full radices,
        behind the geometry tables, was the tile's critical path (docs/microarchitecture.md)."""
        cfg = self.cfg
        reset = self._reset_layer(cfg)
        radices_reset = (reset["gconv"], reset["n_out"], reset["nrg"], reset["step"])
        small = Shape.cast(range(2 * cfg.n_adcs + 1)).width
        zero = tuple(Const(0, small) for _ in "kgoqc")
        chains = {"cfg": zero, "win": zero}
        values = (0, 0, 0, 0, 0)
        outs = [*self.lane_start[1:], self.lane_step]
        for i, out in enumerate(outs):
            values = step_digits(values, *radices_reset, mux=_py_mux)
            for op in ("cfg", "win"):
                step = step_digits(chains[op], *radices[op])
                chains[op] = tuple(Signal(small, name=f"chain{i + 1}_{op}_{n}") for n in "kgoqc")
                m.d.comb += [s.eq(v) for s, v in zip(chains[op], step)]
            reg = Signal(DIGITS, name=f"chain{i + 1}", init=dict(zip("kgoqc", (int(v) for v in values))))
            with m.If(cfg_write):
                m.d.sync += reg.eq(Cat(*self._widen(chains["cfg"])))
            with m.Elif(win_write):
                m.d.sync += reg.eq(Cat(*self._widen(chains["win"])))
            m.d.comb += out.eq(reg)
        m.d.comb += self.lane_start[0].eq(0)

    @staticmethod
    def _widen(chain):
        """The chain's narrow digits zero-extended to the :data:`DIGITS` fields."""
        widths = [Shape.cast(DIGITS.members[n]).width for n in "kgoqc"]
        return [Cat(d, Const(0, max(0, w - len(d))))[:w] for d, w in zip(chain, widths)]
