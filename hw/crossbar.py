"""The crossbar: a digital behavioural model of the analog array (cell levels, masks, column sums)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .params import ADDR_BITS, TileConfig

__all__ = ["Crossbar", "adder_tree", "sum_bits"]


def adder_tree(terms: list):
    """Balanced sum of ``terms`` (Amaranth values); depth log2(n) instead of a chain of n adders."""
    terms = list(terms)
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        nxt = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def sum_bits(cfg: TileConfig) -> int:
    """Width of an unsigned column sum: rows x max slice value x max level."""
    return (cfg.rows * ((1 << cfg.dac_bits) - 1) * cfg.max_level).bit_length()


class Crossbar(wiring.Component):
    """Cell levels and masks of the array, with one column-sum port per ADC lane.

    Storage is column-major: one memory word holds the ``rows`` levels of a column (row r at bits
    ``r*cell_bits``), a second memory the ``rows`` mask bits of a column. Every ADC lane owns a copy
    of both memories (written together, read independently), so any lane can read any column in any
    cycle: the MVM sequencer packs conversions of different input slices and row groups into one
    round without bank conflicts. The price is ``n_adcs`` copies of the array storage; a write (a
    column from LDW/LDM, VAU or a cell update) goes to every copy in one cycle.

    Column sum port of lane i: present ``col[i]`` (and ``pair[i]`` for a differential pair
    ``col, col+1`` converted once) in cycle t and the word-line drive ``wl[i]`` (``rows`` x
    ``dac_bits``, zero for rows not in the conversion) in cycle t+1 (the controller computes it
    from the input vector that arrives meanwhile); ``sum[i]`` holds in cycle t+2
    ``sum(wl[r] * level[r][col])`` over unmasked cells (minus the same sum of ``col+1`` when
    ``pair``). Lane 0's raw column (``rd_levels``, ``rd_mask``) appears in cycle t+1, for reads,
    VAU sweeps and cell updates.

    Parameters
    ----------
    cfg : TileConfig

    Attributes
    ----------
    wr_col : In(ADDR_BITS)
        Column written when ``wr_levels_en`` / ``wr_mask_en``.
    wr_levels, wr_mask : In
        The new column word (levels) and mask word.
    col, pair, wl : In, arrays of ``n_adcs``
        Column-sum requests (``wl`` one cycle after ``col``).
    sum : Out(signed), array of ``n_adcs``
        Column sums, two cycles after the request.
    rd_levels, rd_mask : Out
        Lane 0's column, one cycle after the request.
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        R, L = cfg.rows, cfg.n_adcs
        self.sbits = sum_bits(cfg) + 1
        super().__init__({
            "wr_col": In(ADDR_BITS),
            "wr_levels": In(R * cfg.cell_bits),
            "wr_levels_en": In(1),
            "wr_mask": In(R),
            "wr_mask_en": In(1),
            "col": In(ADDR_BITS).array(L),
            "pair": In(1).array(L),
            "wl": In(R * cfg.dac_bits).array(L),
            "sum": Out(signed(self.sbits)).array(L),
            "rd_levels": Out(R * cfg.cell_bits),
            "rd_mask": Out(R),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C, L, cb, d = cfg.rows, cfg.cols, cfg.n_adcs, cfg.cell_bits, cfg.dac_bits
        for i in range(L):
            lev = Memory(shape=unsigned(R * cb), depth=C, init=[])
            msk = Memory(shape=unsigned(R), depth=C, init=[])
            m.submodules[f"levels{i}"] = lev
            m.submodules[f"mask{i}"] = msk
            for mem, data, en in ((lev, self.wr_levels, self.wr_levels_en), (msk, self.wr_mask, self.wr_mask_en)):
                wp = mem.write_port()
                m.d.comb += [wp.addr.eq(self.wr_col), wp.data.eq(data), wp.en.eq(en)]
            ports = [(lev.read_port(), msk.read_port())]
            if cfg.analog_diff:
                ports.append((lev.read_port(), msk.read_port()))
            wl_q = self.wl[i]  # presented with the read data, one cycle after the column
            pair_q = Signal(name=f"pair_q{i}")
            m.d.sync += pair_q.eq(self.pair[i])
            sums = []
            for k, (lp, mp) in enumerate(ports):
                m.d.comb += [lp.addr.eq(self.col[i] + k), mp.addr.eq(self.col[i] + k)]
                # Masked cells read as level 0; a DAC bit j adds the level shifted by j (no
                # multipliers: a d-bit x cb-bit product is d gated, shifted copies).
                lv = Signal(R * cb, name=f"lv{i}_{k}")
                m.d.comb += lv.eq(lp.data & ~Cat(*[mp.data[r].replicate(cb) for r in range(R)]))
                terms = []
                for r in range(R):
                    lvl = lv[r * cb:(r + 1) * cb]
                    for j in range(d):
                        t = Mux(wl_q[r * d + j], lvl, 0)
                        terms.append(t if j == 0 else Cat(Const(0, j), t))
                sums.append(adder_tree(terms))
                if i == 0 and k == 0:
                    m.d.comb += [self.rd_levels.eq(lp.data), self.rd_mask.eq(mp.data)]
            s = sums[0] if len(sums) == 1 else Mux(pair_q, sums[0] - sums[1], sums[0])
            m.d.sync += self.sum[i].eq(s)
        return m
