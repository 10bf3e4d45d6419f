"""The tile's top level: host interface, program memory, sequencer, and the MVM/REQ/VAU data paths."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .adc import Adc
from .crossbar import Crossbar, adder_tree
from .encoding import group_size
from .isa import ARGS, INSTR, RQ_RECORD, RQ_VALUE_RANGE, Cause, Opcode
from .params import ADDR_BITS, TileConfig
from .requant import LATENCY as RQ_LAT
from .requant import Requant

__all__ = ["MUTATIONS", "Tile"]

#: Deliberately wrong designs for testing the testbenches (never for real use).
MUTATIONS = (None, "shift_add")

#: Widths of the status outputs (docs/interface.md): ``error_cause`` holds a Cause, ``sync_tag`` SYNC's
#: ``tag`` field; ``error_pc`` and ``cycles`` are the status counters' widths.
CAUSE_BITS = Cause.as_shape().width
TAG_BITS = ARGS["sync"]["tag"].width
PC_BITS = 16
CYCLE_BITS = 32
OFF_BITS = 24  # loop address offsets: loop_depth x 255 x 4095 < 2**24
SUM_BITS = OFF_BITS + 2  # start + offset + count


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _div_table(value, divisor: int, limit: int):
    """``(value // divisor, value % divisor == 0)`` for 0 <= value <= limit: constant tables (a few
    LUT levels) for arrays up to 256 wide, else a multiply by a reciprocal."""
    if limit <= 256:
        w = max(1, (limit // divisor).bit_length())
        q = Array(Const(n // divisor, w) for n in range(limit + 1))[value]
        z = Array(Const(int(n % divisor == 0), 1) for n in range(limit + 1))[value]
        return q, z
    q = _const_div(value, divisor, limit)
    return q, q * divisor == value


def _const_div(value, divisor: int, limit: int):
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


class Tile(wiring.Component):
    """One crossbar tile: the ports of docs/interface.md around the microarchitecture of
    docs/microarchitecture.md.

    Parameters
    ----------
    cfg : TileConfig
    mutation : str or None
        Test-only: ``"shift_add"`` builds a deliberately wrong shift-and-add (input slice k>=1
        weighted one bit too high) so that testbenches can be shown to catch it. Never use it
        for anything else.

    Raises
    ------
    ValueError
        ``mutation`` is not one of :data:`MUTATIONS`.
    """

    def __init__(self, cfg: TileConfig, mutation: str | None = None):
        if mutation not in MUTATIONS or not isinstance(cfg, TileConfig):
            self._MustUse__silence = True  # never elaborated: no "created but never used" warning
        if mutation not in MUTATIONS:
            raise ValueError(f"Tile mutation {mutation!r}: expected one of {MUTATIONS}")
        if not isinstance(cfg, TileConfig):
            raise TypeError(f"Tile cfg: expected a TileConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.mutation = mutation
        super().__init__({
            "instr": In(stream.Signature(isa.WORD_BITS)),
            "start": In(1),
            "din": In(stream.Signature(cfg.bus_bits)),
            "dout": Out(stream.Signature(cfg.bus_bits)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_cause": Out(CAUSE_BITS),
            "error_pc": Out(PC_BITS),
            "cycles": Out(CYCLE_BITS),
            "sync_tag": Out(TAG_BITS),
        })

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C, L = cfg.rows, cfg.cols, cfg.n_adcs
        cb, d, P = cfg.cell_bits, cfg.dac_bits, cfg.rows_per_conv
        A = cfg.adc_cycles
        B = cfg.bus_bits
        RQ = cfg.rq_lanes
        AB = cfg.acc_bits
        D = cfg.loop_depth
        PCB = (cfg.prog_depth).bit_length()  # pc up to prog_depth inclusive
        analog = cfg.analog_diff

        # ---- memories ------------------------------------------------------------------------
        # Each program word is stored with its pre-decoded "static" error cause (the checks that
        # depend on the word alone), computed while the host loads it: 64 + 4 bits still fit the
        # two 36-bit-wide block RAMs, and the run-time error logic sees one stored field.
        pmem = Memory(shape=unsigned(isa.WORD_BITS + CAUSE_BITS),
                      depth=cfg.prog_depth, init=[])
        inbuf = Memory(shape=unsigned(8 * R), depth=cfg.in_depth, init=[])
        accm = Memory(shape=unsigned(AB * C), depth=cfg.acc_depth, init=[])
        outm = Memory(shape=unsigned(8 * C), depth=cfg.out_depth, init=[])
        dmem = Memory(shape=unsigned(8 * cfg.delta_len), depth=cfg.delta_depth, init=[])
        m.submodules.pmem, m.submodules.inbuf, m.submodules.accm = pmem, inbuf, accm
        m.submodules.outm, m.submodules.dmem = outm, dmem
        pm_w = pmem.write_port()
        pm_r = pmem.read_port(transparent_for=(pm_w,))
        in_w, in_r = inbuf.write_port(), inbuf.read_port()
        acc_w, acc_r = accm.write_port(), accm.read_port()
        out_w = outm.write_port(granularity=8)
        out_r = outm.read_port()
        dl_w, dl_r = dmem.write_port(), dmem.read_port()
        m.submodules.xbar = xbar = Crossbar(cfg)

        # ---- host-visible state --------------------------------------------------------------
        running = Signal()
        load_ptr = Signal(range(cfg.prog_depth + 1))
        prog_len = Signal(range(cfg.prog_depth + 1))
        pc = Signal(PCB)
        cyc = Signal(CYCLE_BITS)
        done, error = Signal(), Signal()
        cause_r = Signal(Cause)
        err_pc = Signal(PC_BITS)
        tag = Signal(TAG_BITS, init=isa.RESET_SYNC_TAG)
        m.d.comb += [
            self.busy.eq(running), self.done.eq(done), self.error.eq(error),
            self.error_cause.eq(cause_r), self.error_pc.eq(err_pc), self.cycles.eq(cyc),
            self.sync_tag.eq(tag),
        ]

        # Program loading while idle (start has priority over a word in the same cycle).
        m.d.comb += self.instr.ready.eq(~running & ~self.start & (load_ptr < cfg.prog_depth))
        m.d.comb += [pm_w.addr.eq(load_ptr),
                     pm_w.data.eq(Cat(self.instr.payload, self._static_cause(m, self.instr.payload))),
                     pm_w.en.eq(self.instr.valid & self.instr.ready)]
        with m.If(self.instr.valid & self.instr.ready):
            m.d.sync += load_ptr.eq(load_ptr + 1)

        # ---- layer configuration registers (reset values of docs/isa.md: hw.isa.RESET_*) -------
        rc, rq0 = isa.RESET_CFG, isa.RESET_CFGRQ
        fc, fq = ARGS["cfg"], ARGS["cfgrq"]
        wbits_m1 = Signal(fc["wbits_m1"].shape, init=rc["wbits"] - 1)
        abits_m1 = Signal(fc["abits_m1"].shape, init=rc["abits"] - 1)
        wsigned = Signal(fc["wsigned"].shape, init=rc["wsigned"])
        asigned = Signal(fc["asigned"].shape, init=rc["asigned"])
        adc_shift = Signal(fc["adc_shift"].shape, init=rc["adc_shift"])
        win0 = isa.reset_window(cfg)
        r0 = Signal(ADDR_BITS, init=win0[0])
        nr = Signal(ADDR_BITS + 1, init=win0[1])
        c0 = Signal(ADDR_BITS, init=win0[2])
        nc = Signal(ADDR_BITS + 1, init=win0[3])
        zp = Signal(fq["zero_point"].shape, init=rq0["zero_point"])
        clamp_lo = Signal(fq["clamp_lo"].shape, init=rq0["clamp_lo"])
        clamp_hi = Signal(fq["clamp_hi"].shape, init=rq0["clamp_hi"])
        relu = Signal(fq["relu"].shape, init=rq0["relu"])

        # Geometry registers: derived from CFG and WIN when either executes (so a following MVM
        # sees them without a combinational divider on its own path).
        g0 = isa.geometry(cfg, rc["wbits"], rc["abits"], bool(rc["wsigned"]), bool(rc["asigned"]), win0[1], win0[3])
        g_nis = Signal(4, init=g0.nis)
        g_nws = Signal(4, init=g0.nws)
        g_group = Signal(5, init=g0.group)
        g_nrg = Signal(ADDR_BITS + 1, init=g0.nrg)
        g_nout = Signal(ADDR_BITS + 1, init=g0.n_out)
        g_gconv = Signal(5, init=g0.nws if analog else g0.group)
        # Physical columns per conversion: 2 for a differential pair converted once.
        g_step = Signal(2, init=2 if analog else 1)
        g_aligned = Signal(init=int(g0.aligned))

        # Next values (updated by CFG/WIN in this cycle) -> geometry.
        n_wb, n_ab, n_ws, n_as = Signal(3), Signal(3), Signal(), Signal()
        n_nr, n_nc = Signal(ADDR_BITS + 1), Signal(ADDR_BITS + 1)
        m.d.comb += [n_wb.eq(wbits_m1), n_ab.eq(abits_m1), n_ws.eq(wsigned), n_as.eq(asigned),
                     n_nr.eq(nr), n_nc.eq(nc)]
        x_nis, x_nws = Signal(4), Signal(4)
        with m.Switch(Cat(n_ab, n_as)):
            for a in range(8):
                for s in range(2):
                    with m.Case(a | (s << 3)):
                        m.d.comb += x_nis.eq(isa.input_slices(a + 1, bool(s), d))
        with m.Switch(Cat(n_wb, n_ws)):
            for w in range(8):
                for s in range(2):
                    with m.Case(w | (s << 3)):
                        m.d.comb += x_nws.eq(isa.weight_slices(w + 1, bool(s), cb) if (w or not s) else 0)
        x_group = Signal(5)
        m.d.comb += x_group.eq(Mux(n_ws, x_nws << 1, x_nws))
        x_nout, x_aligned = Signal(ADDR_BITS + 1), Signal()
        groups = sorted({group_size(cfg, w, s)
                         for w in range(1, 9) for s in (False, True) if not (s and w < 2)})
        MAX_COLS = C
        with m.Switch(x_group):
            for gv in groups:
                with m.Case(gv):
                    q_, z_ = _div_table(n_nc[:MAX_COLS.bit_length()], gv, MAX_COLS)
                    m.d.comb += [x_nout.eq(q_), x_aligned.eq(z_)]
        x_nrg = Signal(ADDR_BITS + 1)
        if R <= 256:
            nrg_table = Array(Const(_ceil_div(n, P), ADDR_BITS + 1) for n in range(R + 1))
            m.d.comb += x_nrg.eq(nrg_table[n_nr[:R.bit_length()]])
        else:
            m.d.comb += x_nrg.eq(_const_div(n_nr + (P - 1), P, R + P - 1))
        x_an = Signal()
        m.d.comb += x_an.eq(n_ws if analog else 0)
        # The next values come from the instruction fields before its checks; an error only blocks
        # the update (a register enable), keeping the checks off the dividers' path.
        geo_en = Signal()
        m.d.comb += geo_en.eq(1)
        with m.If(geo_en):
            m.d.sync += [g_nis.eq(x_nis), g_nws.eq(x_nws), g_group.eq(x_group), g_nout.eq(x_nout),
                         g_aligned.eq(x_aligned), g_nrg.eq(x_nrg),
                         g_gconv.eq(Mux(x_an, x_nws, x_group)), g_step.eq(Mux(x_an, 2, 1))]
        g_analog = Signal()
        m.d.comb += g_analog.eq((g_step == 2) if analog else 0)

        # ---- requantisation lane parameters (registers; LDRQ writes, REQ reads a chunk) ------
        NCH = _ceil_div(C, RQ)
        lane0 = isa.RESET_LANE
        rq_bias = [Signal(RQ_RECORD["bias"].shape, init=lane0["bias"], name=f"rq_bias{i}") for i in range(C)]
        rq_mult = [Signal(RQ_RECORD["mult"].shape, init=lane0["mult"], name=f"rq_mult{i}") for i in range(C)]
        rq_shift = [Signal(RQ_RECORD["shift"].shape, init=lane0["shift"], name=f"rq_shift{i}") for i in range(C)]

        # ---- loop stack ----------------------------------------------------------------------
        lp_start = [Signal(PCB, name=f"lp_start{i}") for i in range(D)]
        lp_end = [Signal(PCB + 1, name=f"lp_end{i}") for i in range(D)]
        lp_left = [Signal(13, name=f"lp_left{i}") for i in range(D)]
        lp_stride = [[Signal(8, name=f"lp_stride{i}_{k}") for k in range(3)] for i in range(D)]
        lp_off = [[Signal(OFF_BITS, name=f"lp_off{i}_{k}") for k in range(3)] for i in range(D)]
        sp = Signal(range(D + 1))
        off = [Signal(OFF_BITS, name=f"off_{n}") for n in ("in", "acc", "out")]
        encl_end = Signal(PCB + 1)
        m.d.comb += [o.eq(0) for o in off]
        m.d.comb += encl_end.eq(prog_len)
        for i in range(D):
            with m.If(sp == i + 1):
                m.d.comb += [off[k].eq(lp_off[i][k]) for k in range(3)]
                m.d.comb += encl_end.eq(lp_end[i])

        # ---- instruction word, step counter ----------------------------------------------------
        word = Signal(isa.WORD_BITS)
        static_cause = Signal(Cause)
        m.d.comb += [word.eq(pm_r.data[:isa.WORD_BITS]), static_cause.eq(pm_r.data[isa.WORD_BITS:])]
        view = data.View(INSTR, word[:INSTR.size])
        args = view.args
        step = Signal(2)  # cycles into the instruction, saturating at 3
        first = Signal()
        m.d.comb += first.eq(step == 0)
        fin = Signal()  # the instruction's last cycle (no stall)
        stall = Signal()
        err = Signal()
        err_cause = Signal(Cause)
        halt = Signal()
        is_loop = Signal()
        npc = Signal(PCB)

        # Next pc: LOOP falls into its body; otherwise pc+1, then the loop-end chain (innermost
        # first): a level whose body ends here wraps to its start if iterations remain, else pops
        # and lets the enclosing level look at the same address.
        seq = Signal(PCB + 1)
        m.d.comb += seq.eq(pc + 1)
        m.d.comb += npc.eq(seq)
        cont = Const(1, 1)
        wraps, pops = [None] * D, [None] * D
        for i in reversed(range(D)):
            active = sp > i
            at_end = active & (lp_end[i] == seq)
            w_i, p_i, c_i = Signal(name=f"lp_wrap{i}"), Signal(name=f"lp_pop{i}"), Signal(name=f"lp_cont{i}")
            m.d.comb += [
                w_i.eq(cont & at_end & (lp_left[i] > 1)),
                p_i.eq(cont & at_end & (lp_left[i] <= 1)),
                c_i.eq(cont & (~active | p_i)),
            ]
            wraps[i], pops[i] = w_i, p_i
            cont = c_i
        for i in range(D):
            with m.If(wraps[i] & ~is_loop):
                m.d.comb += npc.eq(lp_start[i])

        # ---- MVM lane sequencer state -----------------------------------------------------------
        # Each lane walks the conversions j = lane, lane+L, ... as mixed-radix digits
        # (input slice k, row group g, output o, conversion within the output's group q).
        KB, GB, OB, QB = 12, ADDR_BITS + 2, ADDR_BITS + 2, 6
        lk = [Signal(KB, name=f"lane{i}_k") for i in range(L)]
        lg = [Signal(GB, name=f"lane{i}_g") for i in range(L)]
        lo_ = [Signal(OB, name=f"lane{i}_o") for i in range(L)]
        lq = [Signal(QB, name=f"lane{i}_q") for i in range(L)]

        def inc1(k, g, o, q, gconv, nout, nrg, mux=Mux):
            q1 = q + 1
            cq = q1 >= gconv
            o1 = o + cq
            co = cq & (o1 >= nout)
            g1 = g + co
            cg = co & (g1 >= nrg)
            return (k + cg, mux(cg, 0, g1), mux(co, 0, o1), mux(cq, 0, q1))

        # The lanes' starting digits (chain[i] = digits of conversion i) and the step (chain[L])
        # depend on the geometry only: registers loaded with the geometry registers, from the
        # same next values and enable, so that no chain of incrementers precedes the MVM's
        # per-round digit adders. Their reset values are the chain of the reset geometry.
        def py_mux(c, a, b):
            return a if c else b

        gv0 = (g0.nws if analog else g0.group, g0.n_out, _ceil_div(R, P))
        x_gconv = Signal(5)
        m.d.comb += x_gconv.eq(Mux(x_an, x_nws, x_group))
        chain = [(Const(0, KB), Const(0, GB), Const(0, OB), Const(0, QB))]
        ch_next = chain[0]
        ch_init = (0, 0, 0, 0)
        for i in range(L):
            ch_init = tuple(int(v) for v in inc1(*ch_init, *gv0, mux=py_mux))
            nxt = inc1(*ch_next, x_gconv, x_nout, x_nrg)
            nsigs = tuple(Signal(w, name=f"chain{i + 1}_next_{n}") for w, n in zip((KB, GB, OB, QB), "kgoq"))
            m.d.comb += [s_.eq(v) for s_, v in zip(nsigs, nxt)]
            ch_next = nsigs
            sigs = tuple(Signal(w, name=f"chain{i + 1}_{n}", init=v)
                         for w, n, v in zip((KB, GB, OB, QB), "kgoq", ch_init))
            with m.If(geo_en):
                m.d.sync += [s_.eq(v) for s_, v in zip(sigs, nsigs)]
            chain.append(sigs)
        dk, dg, do, dq = chain[L]

        def add_step(k, g, o, q):
            q1 = q + dq
            cq = q1 >= g_gconv
            o1 = o + do + cq
            co = o1 >= g_nout
            g1 = g + dg + co
            cg = g1 >= g_nrg
            return (k + dk + cg, Mux(cg, g1 - g_nrg, g1), Mux(co, o1 - g_nout, o1), Mux(cq, q1 - g_gconv, q1))

        # ---- data path signals driven by the sequencer ----------------------------------------
        m.d.comb += [xbar.wr_levels_en.eq(0), xbar.wr_mask_en.eq(0)]
        m.d.comb += [self.din.ready.eq(0), self.dout.valid.eq(0)]
        m.d.comb += [acc_w.en.eq(0), out_w.en.eq(0), in_w.en.eq(0), dl_w.en.eq(0)]
        # Read ports hold their data unless enabled: a multi-cycle instruction reads its operand
        # vectors once in its first cycle.
        m.d.comb += [in_r.en.eq(0), acc_r.en.eq(0), out_r.en.eq(0), dl_r.en.eq(0)]

        # Staging of multi-word items of the load instructions.
        MAXW = max(cfg.in_words, cfg.col_words, cfg.mask_words, cfg.delta_words, 1)
        stage = [Signal(B, name=f"stage{i}") for i in range(MAXW - 1)]
        it = Signal(ADDR_BITS + 1)  # item index within a load/read
        wd = Signal(range(max(MAXW, cfg.acc_words, cfg.out_words, 1) + 1))  # word index within the item
        left = Signal(ADDR_BITS + 12)  # words left in a load/read
        xfer = Signal()

        def item_of(nwords):
            return Cat(*stage[:nwords - 1], self.din.payload)

        # Per-instruction latched operands.
        addr_a = Signal(SUM_BITS)  # base address of the instruction's item range
        addr_b = Signal(SUM_BITS)
        accum = Signal()
        cur = Signal(ADDR_BITS + 2)  # VAU/cell column, REQ chunk
        drain = Signal(3)

        # MVM pipeline (meta registers follow the crossbar's two-cycle column-sum latency).
        res = [Signal(signed(AB), name=f"res{j}") for j in range(C)]
        fresh = Signal(C)
        acyc = Signal(range(max(A, 2)))
        meta_lay = data.StructLayout({"valid": 1, "o": OB, "shift": 6, "neg": 1, "diff": 1, "k": 4,
                                      "lo": ADDR_BITS + 1, "hi": ADDR_BITS + 1, "sign": 1})
        meta1 = [Signal(meta_lay, name=f"meta1_{i}") for i in range(L)]
        meta2 = [Signal(meta_lay, name=f"meta2_{i}") for i in range(L)]
        for i in range(L):
            m.d.sync += meta2[i].eq(meta1[i])
            m.d.sync += meta1[i].valid.eq(0)

        # ---- MVM: lane request generation ----------------------------------------------------
        # Round 0 issues in the MVM's first cycle straight from the chain (the lane registers take
        # round 1's digits); later rounds issue from the lane registers. The word-line drive of a
        # round is built one cycle later from the registered request and the input vector, which
        # the input buffer delivers in that cycle.
        xin = in_r.data
        mag_bits = Signal(4)
        m.d.comb += mag_bits.eq(Mux(asigned, abits_m1, abits_m1 + 1))
        # Bit planes of the input vector, shared by all lanes: plane b holds bit b of every row's
        # byte; magnitude planes at or above mag_bits are zero (signed inputs keep the sign bit
        # apart). Slice k of row r is bits [k*d, k*d+d) of the magnitude.
        planes = [Cat(*[xin[8 * r + b] for r in range(R)]) for b in range(8)]
        mplanes = [Signal(R, name=f"mag_plane{b}") for b in range(8)]
        m.d.comb += [mp.eq(Mux(b < mag_bits, pl, 0)) for b, (mp, pl) in enumerate(zip(mplanes, planes))]
        NSL = _ceil_div(8, d)
        slice_planes = Cat(*[
            Cat(*[Cat(*[(mplanes[k * d + j][r] if k * d + j < 8 else Const(0, 1)) for j in range(d)])
                  for r in range(R)])
            for k in range(NSL)])
        sign_plane = Signal(R)
        m.d.comb += sign_plane.eq(Cat(*planes).word_select(abits_m1, R))
        sign_slice_vec = Cat(*[Cat(sign_plane[r], Const(0, d - 1)) if d > 1 else sign_plane[r] for r in range(R)])
        lane_req = []
        lane_cur = []
        for i in range(L):
            lcur = [Signal(w, name=f"lane{i}_cur_{n}") for w, n in zip((KB, GB, OB, QB), "kgoq")]
            m.d.comb += [c_.eq(Mux(first, ch, rg))
                         for c_, ch, rg in zip(lcur, chain[i], (lk[i], lg[i], lo_[i], lq[i]))]
            lane_cur.append(lcur)
            k, g, o, q = lcur
            valid = Signal(name=f"lane{i}_valid")
            m.d.comb += valid.eq(k < g_nis)
            lo_row = Signal(ADDR_BITS + 1, name=f"lane{i}_lo")
            hi_row = Signal(ADDR_BITS + 1, name=f"lane{i}_hi")
            m.d.comb += lo_row.eq(r0 + g * P)
            m.d.comb += hi_row.eq(Mux(lo_row + P < r0 + nr, lo_row + P, r0 + nr))
            col = Signal(ADDR_BITS + 2, name=f"lane{i}_col")
            m.d.comb += col.eq(c0 + o * g_group + q * g_step)
            sign_slice = Signal(name=f"lane{i}_sign")
            m.d.comb += sign_slice.eq(asigned & (k == g_nis - 1))
            in_shift = Mux(sign_slice, abits_m1, k * d)
            if self.mutation == "shift_add":
                in_shift = Mux(k >= 1, in_shift + 1, in_shift)
            # Column q of a weight group (hw/encoding.py): with signed weights converted per column the
            # order is s0+ s0- s1+ s1- ..., so q's low bit is the sign and q >> 1 the slice; otherwise
            # (unsigned, or a pair converted once) q is the slice.
            wneg = wsigned & ~g_analog & q[0]
            wsl = Mux(wsigned & ~g_analog, q >> 1, q)
            shift = Signal(6, name=f"lane{i}_shift")
            m.d.comb += shift.eq(adc_shift + in_shift + wsl * cb)
            lane_req.append(dict(valid=valid, col=col, shift=shift, neg=sign_slice ^ wneg, o=o, k=k[:4],
                                 lo=lo_row, hi=hi_row, sign=sign_slice))
            m.d.comb += [xbar.col[i].eq(col), xbar.pair[i].eq(g_analog)]
            # Word-line drive of the request issued last cycle: the lane's slice plane, masked to
            # the rows of its row group (a thermometer from the registered row bounds).
            mt = meta1[i]
            rows_on = Signal(R, name=f"lane{i}_rows")
            # rows lo..hi-1: ones shifted up by lo, minus ones shifted up by hi (no wide subtraction)
            RB = R.bit_length()
            ones = Const((1 << R) - 1, R)
            m.d.comb += rows_on.eq(Mux(mt.valid, (ones << mt.lo[:RB])[:R] & ~(ones << mt.hi[:RB])[:R], 0))
            sel = Mux(mt.sign, sign_slice_vec, slice_planes.word_select(mt.k, R * d))
            m.d.comb += xbar.wl[i].eq(sel & Cat(*[rows_on[r].replicate(d) for r in range(R)]))

        # ---- MVM: ADC and shift-and-add into the result registers -------------------------------
        contrib = []
        for i in range(L):
            adc = Adc(cfg, xbar.sbits)
            m.submodules[f"adc{i}"] = adc
            mt = meta2[i]
            m.d.comb += [adc.sum.eq(xbar.sum[i]), adc.shift.eq(adc_shift), adc.diff.eq(mt.diff)]
            v = Signal(signed(AB), name=f"contrib{i}")
            # Negate the narrow code before the shift (-(c << s) == (-c) << s modulo 2**acc_bits):
            # no acc_bits-wide negation between the ADC and the accumulator adders.
            code = adc.code.as_signed()
            m.d.comb += v.eq(Mux(mt.neg, -code, code) << mt.shift)
            contrib.append((mt, v))
        # Each lane's output index as a one-hot row over the C result registers.
        onehots = []
        for i, (mt, _v) in enumerate(contrib):
            oh = Signal(C, name=f"lane{i}_onehot")
            m.d.comb += oh.eq(Mux(mt.valid, (Const(1, C) << mt.o[:(C - 1).bit_length() or 1])[:C], 0))
            onehots.append(oh)
        res_next = []
        for j in range(C):
            hits = []
            anyhit = []
            for (_mt, v), oh in zip(contrib, onehots):
                h = oh[j]
                hits.append(Mux(h, v, 0))
                anyhit.append(h)
            nxt = Signal(signed(AB), name=f"res_next{j}")
            base = Mux(fresh[j], 0, res[j])
            m.d.comb += nxt.eq(base + adder_tree(hits))
            res_next.append((nxt, Cat(*anyhit).any()))

        # ---- REQ lanes --------------------------------------------------------------------------
        rq_units = []
        for li in range(RQ):
            u = Requant(cfg)
            m.submodules[f"requant{li}"] = u
            rq_units.append(u)
        rq_chunk = Signal(range(NCH + 1))
        rq_valid = Signal(RQ_LAT + 1)  # shift register of "chunk in flight"
        rq_base = [Signal(range(NCH + 1), name=f"rq_base{i}") for i in range(RQ_LAT + 1)]
        acc_pad = Cat(acc_r.data, Const(0, AB * (NCH * RQ - C))) if NCH * RQ > C else acc_r.data
        padl = NCH * RQ - C
        all_bias = Cat(*rq_bias, Const(0, 32 * padl))
        all_mult = Cat(*rq_mult, Const(0, 16 * padl))
        all_shift = Cat(*rq_shift, Const(0, 6 * padl))
        for li, u in enumerate(rq_units):
            lane_sel = Signal(range(NCH * RQ + 1), name=f"rq_lane{li}")
            m.d.comb += lane_sel.eq(rq_chunk * RQ + li)
            m.d.comb += u.acc.eq(acc_pad.word_select(rq_chunk, RQ * AB)[li * AB:(li + 1) * AB])
            m.d.comb += [u.bias.eq(all_bias.word_select(lane_sel, 32)),
                         u.mult.eq(all_mult.word_select(lane_sel, 16)),
                         u.shift.eq(all_shift.word_select(lane_sel, 6))]
            m.d.comb += [u.zero_point.eq(zp), u.clamp_lo.eq(clamp_lo), u.clamp_hi.eq(clamp_hi), u.relu.eq(relu)]
        m.d.sync += [rq_valid.eq(rq_valid << 1)]
        m.d.sync += [rq_base[i + 1].eq(rq_base[i]) for i in range(RQ_LAT)]
        m.d.sync += rq_base[0].eq(rq_chunk)
        qbytes = Cat(*[u.q[:8] for u in rq_units])
        reps = _ceil_div(C, RQ)
        m.d.comb += out_w.data.eq(Cat(*([qbytes] * reps))[:8 * C])
        # Requant output of the chunk presented RQ_LAT cycles ago (rq_base[i] lags by i+1 cycles).
        wchunk = rq_base[RQ_LAT - 1]
        with m.If(rq_valid[RQ_LAT - 1]):
            m.d.comb += out_w.en.eq(Cat(*[(wchunk == (lane // RQ)) & (lane < g_nout) for lane in range(C)]))

        # ---- VAU / cell update column computation (from lane 0's raw column) -------------------
        vau_col_q = Signal(ADDR_BITS + 2)  # column whose data is on rd_levels (issued last cycle)
        vau_v1 = Signal()
        vau_new = Signal(R * cb)
        vau_wcol = Signal(ADDR_BITS + 2)
        vau_wen = Signal()
        is_vaur = Signal()
        # VAU polarity (docs/isa.md): the column's place in its weight group, counted as the sweep
        # issues columns (no divider), decides whether it changes and whether the delta is negated.
        vau_q = Signal(5)  # place in the weight group of the column issued next
        vau_act_q = Signal()  # the column on rd_levels changes
        vau_neg_q = Signal()  # ... by the negated delta
        dvec = dl_r.data
        vnew = []
        cdelta = Signal(signed(8))
        m.d.comb += cdelta.eq(dvec.word_select(vau_col_q[:max(1, (cfg.delta_len - 1).bit_length())], 8))
        for r in range(R):
            old = xbar.rd_levels[r * cb:(r + 1) * cb]
            dr = Signal(signed(9), name=f"vau_delta{r}")
            m.d.comb += dr.eq(Mux(is_vaur, dvec[8 * r:8 * r + 8].as_signed(), cdelta))
            s_ = Signal(signed(10), name=f"vau_sum{r}")
            m.d.comb += s_.eq(Mux(vau_neg_q, old - dr, old + dr))
            sat = Mux(s_ < 0, 0, Mux(s_ > cfg.max_level, cfg.max_level, s_))
            inwin = (r0 <= r) & (r0 + nr > r)
            keep = xbar.rd_mask[r] | ~inwin | ~vau_act_q
            vnew.append(Mux(keep, old, sat[:cb]))
        m.d.sync += vau_wen.eq(0)
        m.d.sync += vau_v1.eq(0)
        with m.If(vau_v1):
            m.d.sync += [vau_new.eq(Cat(*vnew)), vau_wcol.eq(vau_col_q), vau_wen.eq(1)]

        # Crossbar write port: defaults to the VAU / cell-update write-back.
        cell_mask = Signal(R)
        cell_mask_en = Signal()
        rd_col = Signal(ADDR_BITS)
        m.d.sync += cell_mask_en.eq(0)
        m.d.comb += [xbar.wr_col.eq(vau_wcol), xbar.wr_levels.eq(vau_new), xbar.wr_mask.eq(cell_mask)]
        with m.If(vau_wen):
            m.d.comb += xbar.wr_levels_en.eq(1)
        with m.If(cell_mask_en):
            m.d.comb += xbar.wr_mask_en.eq(1)
        m.d.comb += out_w.addr.eq(addr_b)

        # ---- the sequencer ------------------------------------------------------------------------
        m.d.comb += [pm_r.addr.eq(Mux(running, Mux(fin, npc, pc), 0))]

        def error_if(cond, cause):
            with m.If(cond):
                m.d.comb += [err.eq(1), err_cause.eq(cause)]

        # Address checks against the loop offset of a space (in, acc, out): "field + off + extra >
        # depth" is "field + extra > room" with room = depth - off computed from registers only
        # (-1 when off alone exceeds the depth), so the instruction word meets a narrow adder
        # and comparator instead of two wide adders in series.
        space_depth = (cfg.in_depth, cfg.acc_depth, cfg.out_depth)
        room = []
        for k, dep in enumerate(space_depth):
            rm = Signal(signed(max(space_depth).bit_length() + 2), name=f"room_{k}")
            m.d.comb += rm.eq(Mux(off[k] > dep, -1, dep - off[k]))
            room.append(rm)

        def addr_check(base, count, depth, space=None):
            """``base (+ off[space]) + count > depth``."""
            if space is None:
                return (base + count) > depth
            assert depth == space_depth[space]
            return (base + count) > room[space]

        loop_room = Signal(signed(PCB + 3))
        m.d.comb += loop_room.eq(encl_end - pc - 2)

        def addr_ge(field, depth, space):
            """``field + off[space] >= depth``."""
            assert depth == space_depth[space]
            return field >= room[space]

        # progcost (issue 10): LDW waits write_cycles after each column's data while the array programs it
        # (write-and-verify); the wait counts as cycles (it is not a stall: the tile, not the host, is busy).
        prog_wait = Signal(range(cfg.write_cycles + 1)) if cfg.write_cycles else None

        def range_load(nwords, depth, space, write, wait=0):
            """LDW/LDM/LDIN/LDD: cycle 0 checks and latches; then count*nwords words from din (and ``wait``
            cycles after each item: LDW's programming time)."""
            cnt = args.range.count_m1 + 1
            base = args.range.start + (off[space] if space is not None else 0)
            with m.If(first):
                if space is not None:  # else a static check (Tile._static_cause)
                    error_if(addr_check(args.range.start, cnt, depth, space), Cause.ADDR)
                m.d.sync += [addr_a.eq(base), it.eq(0), wd.eq(0), left.eq(cnt * nwords)]

            def item_done():
                if wait:
                    m.d.sync += prog_wait.eq(wait)

            def transfer():
                m.d.comb += [self.din.ready.eq(1), stall.eq(~self.din.valid), xfer.eq(self.din.valid)]
                with m.If(xfer):
                    m.d.sync += left.eq(left - 1)
                    if not wait:
                        with m.If(left == 1):
                            m.d.comb += fin.eq(1)
                    if nwords > 1:
                        with m.If(wd == nwords - 1):
                            m.d.sync += [wd.eq(0), it.eq(it + 1)]
                            write(addr_a + it, item_of(nwords))
                            item_done()
                        with m.Else():
                            m.d.sync += wd.eq(wd + 1)
                            with m.Switch(wd):
                                for w in range(nwords - 1):
                                    with m.Case(w):
                                        m.d.sync += stage[w].eq(self.din.payload)
                    else:
                        m.d.sync += it.eq(it + 1)
                        write(addr_a + it, self.din.payload)
                        item_done()

            with m.Elif(prog_wait != 0 if wait else Const(0, 1)):
                m.d.sync += prog_wait.eq(prog_wait - 1)
                with m.If((prog_wait == 1) & (left == 0)):
                    m.d.comb += fin.eq(1)
            with m.Else():
                transfer()

        def range_read(nwords, depth, space, set_addr, item):
            """RDOUT/RDACC/RDW/RDM: cycle 0 checks and reads item 0; then count*nwords words out."""
            cnt = args.range.count_m1 + 1
            base = args.range.start + (off[space] if space is not None else 0)
            with m.If(first):
                if space is not None:  # else a static check (Tile._static_cause)
                    error_if(addr_check(args.range.start, cnt, depth, space), Cause.ADDR)
                m.d.sync += [addr_a.eq(base + 1), it.eq(0), wd.eq(0), left.eq(cnt * nwords)]
                set_addr(base, 1)
            with m.Else():
                m.d.comb += [self.dout.valid.eq(1), stall.eq(~self.dout.ready), xfer.eq(self.dout.ready)]
                pad = nwords * B - len(item)
                full = Cat(item, Const(0, pad)) if pad else item
                m.d.comb += self.dout.payload.eq(full.word_select(wd, B) if nwords > 1 else full)
                set_addr(addr_a, 0)
                with m.If(xfer):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.d.comb += fin.eq(1)
                    with m.If(wd == nwords - 1):
                        m.d.sync += [wd.eq(0), addr_a.eq(addr_a + 1)]
                        set_addr(addr_a, 1)
                    with m.Else():
                        m.d.sync += wd.eq(wd + 1)

        with m.If(running & ~stall):
            m.d.sync += cyc.eq(cyc + 1)
            with m.If(fin | err | halt):
                m.d.sync += step.eq(0)
            with m.Else():
                m.d.sync += step.eq(Mux(step == 3, 3, step + 1))

        with m.If(~running):
            with m.If(self.start):
                m.d.sync += [running.eq(1), pc.eq(0), sp.eq(0), cyc.eq(0), done.eq(0), error.eq(0),
                             cause_r.eq(Cause.NONE), err_pc.eq(0), step.eq(0), load_ptr.eq(0)]
                with m.If(load_ptr != 0):
                    m.d.sync += prog_len.eq(load_ptr)
        with m.Else():
            with m.If(pc >= prog_len):
                error_if(1, Cause.PC_RANGE)
            with m.Else():
                with m.Switch(view.opcode):
                    for op in Opcode:
                        with m.Case(op):
                            self._execute(m, op, SimpleNamespace(**locals()))
                # The checks on the word alone were made when it was loaded (static_cause). They
                # come first in every instruction's order (reserved bits, undefined opcode, or
                # all of the instruction's checks), so the stored cause overrides the run-time
                # ones; the statements above do not wait for it: the run stops in this first
                # cycle and every visible first-cycle update is gated by ~err.
                error_if(first & (static_cause != Cause.NONE), static_cause)

            m.d.comb += geo_en.eq(~err)

            # Operand reads, decoded from the opcode alone (not from the checks, whose failure
            # stops the run anyway; a read has no side effect): the read addresses are the
            # field plus the loop offset on the memory's address bits only, so the word's
            # path to the (LUT-RAM) read ports is a narrow adder and a 2:1 mux.
            op_ = view.opcode
            last_word = Signal()
            m.d.comb += last_word.eq(xfer & (wd == Mux(op_ == Opcode.RDACC, cfg.acc_words - 1,
                                                       cfg.out_words - 1)))

            def bits_for(depth):
                return max(1, (depth - 1).bit_length())

            def low_add(field, offv, depth):
                w = bits_for(depth)
                return (field[:w] + offv[:w])[:w]

            aw = bits_for(cfg.acc_depth)
            acc_field = Mux(op_ == Opcode.MVM, args.mvm.acc_addr,
                            Mux(op_ == Opcode.REQ, args.req.acc_addr, args.range.start))
            with m.If(first):
                m.d.comb += [
                    acc_r.addr.eq(low_add(acc_field, off[1], cfg.acc_depth)),
                    acc_r.en.eq((op_ == Opcode.MVM) | (op_ == Opcode.REQ) | (op_ == Opcode.RDACC)),
                    in_r.addr.eq(low_add(args.mvm.in_addr, off[0], cfg.in_depth)),
                    in_r.en.eq(op_ == Opcode.MVM),
                    out_r.addr.eq(low_add(args.range.start, off[2], cfg.out_depth)),
                    out_r.en.eq(op_ == Opcode.RDOUT),
                    dl_r.addr.eq(args.vau.delta_addr[:bits_for(cfg.delta_depth)]),
                    dl_r.en.eq((op_ == Opcode.VAUR) | (op_ == Opcode.VAUC)),
                ]
            with m.Else():
                # RDACC/RDOUT: the next item at addr_a once the current one's last word left.
                m.d.comb += [
                    acc_r.addr.eq(addr_a[:aw]), acc_r.en.eq((op_ == Opcode.RDACC) & last_word),
                    out_r.addr.eq(addr_a[:bits_for(cfg.out_depth)]),
                    out_r.en.eq((op_ == Opcode.RDOUT) & last_word),
                ]
            with m.If(err):
                m.d.sync += [running.eq(0), done.eq(1), error.eq(1), cause_r.eq(err_cause), err_pc.eq(pc),
                             acyc.eq(0)]
            with m.Elif(halt):
                m.d.sync += [running.eq(0), done.eq(1)]
            # pc and loop stack advance whether or not the instruction's checks failed (an error
            # ends the run, and a run starts from pc 0 with an empty stack): this keeps the
            # address and range checks out of these registers' enables.
            with m.If(fin):
                m.d.sync += pc.eq(npc)
                with m.If(~is_loop):
                    for i in reversed(range(D)):
                        with m.If(pops[i]):
                            m.d.sync += sp.eq(i)
                    for i in range(D):
                        with m.If(wraps[i]):
                            m.d.sync += [sp.eq(i + 1), lp_left[i].eq(lp_left[i] - 1)]
                            m.d.sync += [lp_off[i][k].eq(lp_off[i][k] + lp_stride[i][k]) for k in range(3)]
        return m

    # ------------------------------------------------------------------------------------------
    def _static_cause(self, m, w):
        """The cause of the first failing check that depends on the word ``w`` alone (reserved
        bits, undefined opcode, and every check of CFG, WIN, CFGRQ, LDW, LDM, LDD, LDRQ, VAUR,
        VAUC, WSET, MSET, RDW, RDM), in each instruction's order; ``Cause.NONE`` if none fails.
        The remaining checks (loop offsets, window alignment, loop stack) are made at run time."""
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        view = data.View(INSTR, w[:INSTR.size])
        args = view.args
        rng = args.range
        cnt = rng.count_m1 + 1
        cause = Signal(Cause, name="load_cause")
        static = {
            Opcode.CFG: [(args.cfg.wsigned & (args.cfg.wbits_m1 == 0), Cause.CONFIG)],
            Opcode.WIN: [((args.win.row_start + args.win.row_count_m1 + 1 > R) |
                          (args.win.col_start + args.win.col_count_m1 + 1 > C), Cause.WINDOW)],
            Opcode.LDW: [(rng.start + cnt > C, Cause.ADDR)],
            Opcode.LDM: [(rng.start + cnt > C, Cause.ADDR)],
            Opcode.LDD: [(rng.start + cnt > cfg.delta_depth, Cause.ADDR)],
            Opcode.LDRQ: [(rng.start + cnt > C, Cause.ADDR)],
            Opcode.RDW: [(rng.start + cnt > C, Cause.ADDR)],
            Opcode.RDM: [(rng.start + cnt > C, Cause.ADDR)],
            Opcode.VAUR: [(args.vau.delta_addr >= cfg.delta_depth, Cause.ADDR)],
            Opcode.VAUC: [(args.vau.delta_addr >= cfg.delta_depth, Cause.ADDR)],
        }
        q = args.cfgrq
        vlo, vhi = RQ_VALUE_RANGE
        static[Opcode.CFGRQ] = [(~((vlo <= q.clamp_lo) & (q.clamp_lo <= q.clamp_hi) & (q.clamp_hi <= vhi) &
                                   (vlo <= q.zero_point) & (q.zero_point <= vhi)), Cause.CONFIG)]
        for op, top in ((Opcode.WSET, cfg.max_level), (Opcode.MSET, 1)):
            c = args.cell
            static[op] = [((c.row >= R) | (c.col >= C), Cause.ADDR), (c.value > top, Cause.VALUE)]
        m.d.comb += cause.eq(Cause.NONE)
        with m.Switch(view.opcode):
            for op in Opcode:
                with m.Case(op):
                    checks = [((w & ~Const(isa.USED_MASK[op], isa.WORD_BITS)).any(), Cause.RESERVED)]
                    checks += static.get(op, [])
                    # the first failing check in order wins: assign in reverse order
                    for cond, cz in reversed(checks):
                        with m.If(cond):
                            m.d.comb += cause.eq(cz)
            with m.Default():
                m.d.comb += cause.eq(Cause.OPCODE)
        return cause

    def _execute(self, m, op, env):
        """Statements for one opcode inside the sequencer's Switch (``env``: elaborate's locals)."""
        e = env
        cfg = self.cfg
        args, first, fin, halt = e.args, e.first, e.fin, e.halt
        error_if = e.error_if
        R, C, cb = cfg.rows, cfg.cols, cfg.cell_bits
        xbar = e.xbar
        if op is Opcode.NOP:
            m.d.comb += fin.eq(1)
        elif op is Opcode.HALT:
            m.d.comb += halt.eq(1)
        elif op is Opcode.SYNC:
            m.d.comb += fin.eq(1)
            with m.If(~e.err):
                m.d.sync += e.tag.eq(args.sync.tag)
        elif op is Opcode.CFG:
            a = args.cfg
            m.d.comb += [e.n_wb.eq(a.wbits_m1), e.n_ab.eq(a.abits_m1), e.n_ws.eq(a.wsigned),
                         e.n_as.eq(a.asigned), fin.eq(1)]
            with m.If(~e.err):
                m.d.sync += [e.wbits_m1.eq(a.wbits_m1), e.abits_m1.eq(a.abits_m1), e.wsigned.eq(a.wsigned),
                             e.asigned.eq(a.asigned), e.adc_shift.eq(a.adc_shift)]
        elif op is Opcode.WIN:
            a = args.win
            rows_n = a.row_count_m1 + 1
            cols_n = a.col_count_m1 + 1
            m.d.comb += [e.n_nr.eq(rows_n), e.n_nc.eq(cols_n), fin.eq(1)]
            with m.If(~e.err):
                m.d.sync += [e.r0.eq(a.row_start), e.nr.eq(rows_n), e.c0.eq(a.col_start), e.nc.eq(cols_n)]
        elif op is Opcode.CFGRQ:
            a = args.cfgrq
            m.d.comb += fin.eq(1)
            with m.If(~e.err):
                m.d.sync += [e.zp.eq(a.zero_point), e.clamp_lo.eq(a.clamp_lo), e.clamp_hi.eq(a.clamp_hi),
                             e.relu.eq(a.relu)]
        elif op is Opcode.LOOP:
            a = args.loop
            D = cfg.loop_depth
            b1 = e.pc + 1 + a.body_m1 + 1
            error_if(e.sp >= D, Cause.LOOP_DEPTH)
            with m.If(e.sp < D):
                # b1 > encl_end, as body_m1 > encl_end - pc - 2 (the right side from registers)
                error_if(a.body_m1 > e.loop_room, Cause.LOOP_NEST)
            # The push happens even when the checks fail: the run stops then, and every run
            # starts with an empty loop stack.
            m.d.comb += [fin.eq(1), e.is_loop.eq(1)]
            m.d.sync += e.sp.eq(e.sp + 1)
            for i in range(D):
                with m.If(e.sp == i):
                    m.d.sync += [e.lp_start[i].eq(e.pc + 1), e.lp_end[i].eq(b1), e.lp_left[i].eq(a.count_m1 + 1)]
                    m.d.sync += [e.lp_stride[i][0].eq(a.stride_in), e.lp_stride[i][1].eq(a.stride_acc),
                                 e.lp_stride[i][2].eq(a.stride_out)]
                    m.d.sync += [e.lp_off[i][k].eq(e.off[k]) for k in range(3)]
        elif op in (Opcode.LDW, Opcode.LDM):
            is_w = op is Opcode.LDW
            nwords = cfg.col_words if is_w else cfg.mask_words

            def write(addr, item):
                m.d.comb += xbar.wr_col.eq(addr)
                if is_w:
                    m.d.comb += [xbar.wr_levels.eq(item), xbar.wr_levels_en.eq(1)]
                else:
                    m.d.comb += [xbar.wr_mask.eq(item), xbar.wr_mask_en.eq(1)]
            e.range_load(nwords, C, None, write, cfg.write_cycles if is_w else 0)
        elif op is Opcode.LDIN:
            def write(addr, item):
                m.d.comb += [e.in_w.addr.eq(addr), e.in_w.data.eq(item), e.in_w.en.eq(1)]
            e.range_load(cfg.in_words, cfg.in_depth, 0, write)
        elif op is Opcode.LDD:
            def write(addr, item):
                m.d.comb += [e.dl_w.addr.eq(addr), e.dl_w.data.eq(item), e.dl_w.en.eq(1)]
            e.range_load(cfg.delta_words, cfg.delta_depth, None, write)
        elif op is Opcode.LDRQ:
            per = cfg.rq_per_word
            cnt = args.range.count_m1 + 1
            base = args.range.start
            with m.If(first):
                m.d.sync += [e.addr_a.eq(base), e.left.eq(cnt)]
            with m.Else():
                din = self.din
                m.d.comb += [din.ready.eq(1), e.stall.eq(~din.valid), e.xfer.eq(din.valid)]
                with m.If(e.xfer):
                    m.d.sync += [e.left.eq(Mux(e.left > per, e.left - per, 0)), e.addr_a.eq(e.addr_a + per)]
                    with m.If(e.left <= per):
                        m.d.comb += fin.eq(1)
                    more = [e.left > qq for qq in range(per)]
                    for lane in range(C):
                        rel = Signal(signed(SUM_BITS + 2), name=f"ldrq_rel{lane}")
                        m.d.comb += rel.eq(lane - e.addr_a)
                        for qq in range(per):
                            with m.If((rel == qq) & more[qq]):
                                rb = isa.RQ_RECORD_BITS
                                rec = din.payload[rb * qq:rb * qq + rb]
                                fb, fm, fs = RQ_RECORD["bias"], RQ_RECORD["mult"], RQ_RECORD["shift"]
                                m.d.sync += [e.rq_bias[lane].eq(rec[fb.offset:fb.offset + fb.width]),
                                             e.rq_mult[lane].eq(rec[fm.offset:fm.offset + fm.width]),
                                             e.rq_shift[lane].eq(rec[fs.offset:fs.offset + fs.width])]
        elif op is Opcode.MVM:
            self._mvm(m, e)
        elif op is Opcode.REQ:
            a = args.req
            oa = a.out_addr + e.off[2]
            with m.If(first):
                error_if(~e.g_aligned, Cause.WINDOW)
                with m.If(e.g_aligned):
                    aa_bad = e.addr_ge(a.acc_addr, cfg.acc_depth, 1)
                    error_if(aa_bad, Cause.ADDR)
                    with m.If(~aa_bad):
                        error_if(e.addr_ge(a.out_addr, cfg.out_depth, 2), Cause.ADDR)
                # (the accumulator vector read at aa is issued by the operand-read decode)
                m.d.sync += [e.addr_b.eq(oa), e.rq_chunk.eq(0), e.cur.eq(0), e.drain.eq(0)]
            with m.Else():
                # Chunk rq_chunk enters the requantisation lanes while its first lane < n_out.
                with m.If(e.cur < e.g_nout):
                    m.d.sync += [e.rq_chunk.eq(e.rq_chunk + 1), e.cur.eq(e.cur + cfg.rq_lanes)]
                    m.d.sync += e.rq_valid[0].eq(1)
                with m.Else():
                    m.d.sync += e.drain.eq(e.drain + 1)
                    with m.If(e.drain == RQ_LAT - 1):
                        m.d.comb += fin.eq(1)
        elif op in (Opcode.VAUR, Opcode.VAUC):
            a = args.vau
            with m.If(first):
                m.d.sync += [e.cur.eq(0), e.drain.eq(0), e.vau_q.eq(0)]
            with m.Else():
                m.d.comb += e.is_vaur.eq(op is Opcode.VAUR)
                with m.If(e.cur < e.nc):
                    m.d.comb += xbar.col[0].eq(e.c0 + e.cur)
                    m.d.sync += [e.cur.eq(e.cur + 1), e.vau_col_q.eq(e.c0 + e.cur), e.vau_v1.eq(1)]
                    # Sign of this column: isa.vau_column_sign with q = vau_q.
                    neg = e.wsigned & e.vau_q[0]
                    wsl = Mux(e.wsigned, e.vau_q >> 1, e.vau_q)
                    sel = ~a.only | (wsl == a.slice)
                    act = sel & ~((a.pair == 2) & neg) & ~((a.pair == 3) & ~neg)
                    m.d.sync += [e.vau_act_q.eq(act), e.vau_neg_q.eq(neg & (a.pair != 0)),
                                 e.vau_q.eq(Mux(e.vau_q + 1 == e.g_group, 0, e.vau_q + 1))]
                with m.Else():
                    m.d.sync += e.drain.eq(e.drain + 1)
                    with m.If(e.drain == isa.VAU_LATENCY - 1):
                        m.d.comb += fin.eq(1)
        elif op in (Opcode.WSET, Opcode.MSET):
            a = args.cell
            with m.If(first):
                m.d.comb += xbar.col[0].eq(a.col)
            with m.Elif(e.step == 1):
                # Column data on lane 0's port: build the new word, write it next cycle.
                if op is Opcode.WSET:
                    lv = xbar.rd_levels
                    new = Cat(*[Mux((a.row == r) & ~xbar.rd_mask[r], a.value[:cb], lv[r * cb:(r + 1) * cb])
                                for r in range(R)])
                    m.d.sync += [e.vau_new.eq(new), e.vau_wcol.eq(a.col), e.vau_wen.eq(1)]
                else:
                    mk = xbar.rd_mask
                    new = Cat(*[Mux(a.row == r, a.value[0], mk[r]) for r in range(R)])
                    m.d.sync += [e.cell_mask.eq(new), e.vau_wcol.eq(a.col), e.cell_mask_en.eq(1)]
            with m.Else():
                m.d.comb += fin.eq(1)
        elif op in (Opcode.RDOUT, Opcode.RDACC, Opcode.RDW, Opcode.RDM):
            # RDOUT/RDACC: the port's address and enable come from the operand-read decode.
            if op is Opcode.RDOUT:
                e.range_read(cfg.out_words, cfg.out_depth, 2, lambda addr, en: None, e.out_r.data)
            elif op is Opcode.RDACC:
                e.range_read(cfg.acc_words, cfg.acc_depth, 1, lambda addr, en: None, e.acc_r.data)
            else:
                # Lane 0's crossbar port always reads: hold the column address between words.
                col_q = e.rd_col

                def set_addr(addr, en):
                    with m.If(en):
                        m.d.comb += xbar.col[0].eq(addr)
                        m.d.sync += col_q.eq(addr)
                    with m.Else():
                        m.d.comb += xbar.col[0].eq(col_q)
                item = xbar.rd_levels if op is Opcode.RDW else xbar.rd_mask
                nwords = cfg.col_words if op is Opcode.RDW else cfg.mask_words
                e.range_read(nwords, C, None, set_addr, item)
        else:  # pragma: no cover - every opcode has a branch (tests check the Switch covers Opcode)
            raise AssertionError(op)

    def _mvm(self, m, e):
        """MVM: checks, operand reads and round 0 in cycle 0; a round of n_adcs conversions every
        adc_cycles cycles; shift-and-add two cycles after a round issues; the accumulator vector is
        written in the last cycle."""
        cfg = self.cfg
        L, A = cfg.n_adcs, cfg.adc_cycles
        a = e.args.mvm
        aa = a.acc_addr + e.off[1]
        first, fin = e.first, e.fin
        with m.If(first):
            e.error_if(~e.g_aligned, Cause.WINDOW)
            with m.If(e.g_aligned):
                ia_bad = e.addr_ge(a.in_addr, cfg.in_depth, 0)
                e.error_if(ia_bad, Cause.ADDR)
                with m.If(~ia_bad):
                    e.error_if(e.addr_ge(a.acc_addr, cfg.acc_depth, 1), Cause.ADDR)
            m.d.sync += [e.addr_b.eq(aa), e.accum.eq(a.accumulate), e.drain.eq(0)]
        with m.Elif(e.step == 1):
            # Operands arrived: results start from the old accumulator (lanes >= n_out keep it).
            for j in range(cfg.cols):
                m.d.sync += e.res[j].eq(e.acc_r.data[j * cfg.acc_bits:(j + 1) * cfg.acc_bits])
            # Without accumulate only lanes 0..n_out-1 start from zero (docs/isa.md, MVM).
            m.d.sync += e.fresh.eq(Mux(e.accum, 0, Cat(*[j < e.g_nout for j in range(cfg.cols)])))
        lane0_valid = e.lane_req[0]["valid"]
        with m.If(e.acyc == 0):
            with m.If(lane0_valid):
                for i in range(L):
                    rq = e.lane_req[i]
                    mt = e.meta1[i]
                    m.d.sync += [mt.valid.eq(rq["valid"]), mt.o.eq(rq["o"]), mt.shift.eq(rq["shift"]),
                                 mt.neg.eq(rq["neg"]), mt.diff.eq(e.g_analog), mt.k.eq(rq["k"]),
                                 mt.lo.eq(rq["lo"]), mt.hi.eq(rq["hi"]), mt.sign.eq(rq["sign"])]
                    nk, ng, no, nq = e.add_step(*e.lane_cur[i])
                    m.d.sync += [e.lk[i].eq(nk), e.lg[i].eq(ng), e.lo_[i].eq(no), e.lq[i].eq(nq)]
                if A > 1:
                    m.d.sync += e.acyc.eq(1)
            with m.Else():
                # All conversions issued: the pipeline drains in MVM_LATENCY cycles.
                m.d.sync += e.drain.eq(e.drain + 1)
                with m.If(e.drain == isa.MVM_LATENCY):
                    m.d.comb += fin.eq(1)
        if A > 1:
            with m.If(e.acyc != 0):
                m.d.sync += e.acyc.eq(Mux(e.acyc == A - 1, 0, e.acyc + 1))
        # Shift-and-add: every cycle after the old accumulator was loaded.
        with m.If(e.step >= 2):
            anyhits = []
            for j, (nxt, hit) in enumerate(e.res_next):
                m.d.sync += e.res[j].eq(nxt)
                anyhits.append(hit)
            m.d.sync += e.fresh.eq(e.fresh & ~Cat(*anyhits))
            m.d.comb += [e.acc_w.addr.eq(e.addr_b), e.acc_w.data.eq(Cat(*[n for n, _ in e.res_next]))]
            m.d.comb += e.acc_w.en.eq(fin)
