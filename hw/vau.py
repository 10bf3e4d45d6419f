"""The VAU and the cell writes: read-modify-write of crossbar columns through lane 0's port."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import ARGS
from .layer import layer_layout
from .params import ADDR_BITS, TileConfig

__all__ = ["Vau"]


class Vau(wiring.Component):
    """VAUR / VAUC sweeps over the window's columns, and WSET / MSET cell writes.

    A sweep (``start`` in VAUR's or VAUC's first cycle, then ``run``) presents one window column
    per cycle on ``col`` while ``sweeping``; the column's levels and mask arrive from the crossbar
    a cycle later on ``levels`` / ``mask``, and the new column ``clip(level +- delta, 0, max_level)``
    (unmasked window rows of a column the instruction selects, ``docs/isa.md``; row delta
    ``deltas[r]`` with ``rows_mode``, else the column's delta) is registered and written one cycle
    after that: a column is written two cycles after it is presented (``isa.VAU_LATENCY``). The
    delta vector ``deltas`` must be held from the cycle after ``start``.

    A cell write presents ``cell.col`` itself (the caller drives the crossbar); with
    ``cell_levels`` (WSET) or ``cell_mask`` (MSET) in the cycle the column's data arrives, the new
    column word is registered and written in the next cycle.

    The write to the crossbar is ``wr_col`` with ``wr_levels`` / ``wr_levels_en`` and ``wr_mask`` /
    ``wr_mask_en``.

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        rows, cell = cfg.rows, cfg.cell_bits
        super().__init__({
            "layer": In(layer_layout(cfg)),
            "fields": In(ARGS["vau"]),
            "rows_mode": In(1),
            "start": In(1),
            "run": In(1),
            "sweeping": Out(1),
            "col": Out(ADDR_BITS + 2),
            "deltas": In(8 * cfg.delta_len),
            "levels": In(rows * cell),
            "mask": In(rows),
            "cell": In(ARGS["cell"]),
            "cell_levels": In(1),
            "cell_mask": In(1),
            "wr_col": Out(ADDR_BITS + 2),
            "wr_levels": Out(rows * cell),
            "wr_levels_en": Out(1),
            "wr_mask": Out(rows),
            "wr_mask_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ly, f = self.layer, self.fields
        offset = Signal(ADDR_BITS + 2)  # the next column to present, from the window's first
        place = Signal(5)  # its place in the weight group (polarity, no divider)
        arriving = Signal()  # a column's data is on levels/mask
        arriving_col = Signal(ADDR_BITS + 2)
        changes, negated = Signal(), Signal()  # ... and how it changes
        m.d.comb += [self.sweeping.eq(offset < ly.col_count), self.col.eq(ly.col_start + offset)]
        m.d.sync += [arriving.eq(0), self.wr_levels_en.eq(0), self.wr_mask_en.eq(0)]
        with m.If(self.start):
            m.d.sync += [offset.eq(0), place.eq(0)]
        with m.Elif(self.run & self.sweeping):
            # Sign of this column: isa.vau_column_sign with q = place.
            neg = ly.wsigned & place[0]
            weight_slice = Mux(ly.wsigned, place >> 1, place)
            selected = ~f.only | (weight_slice == f.slice)
            act = selected & ~((f.pair == 2) & neg) & ~((f.pair == 3) & ~neg)
            m.d.sync += [offset.eq(offset + 1), arriving_col.eq(self.col), arriving.eq(1),
                         changes.eq(act), negated.eq(neg & (f.pair != 0)),
                         place.eq(Mux(place + 1 == ly.group, 0, place + 1))]
        # Computed outside the branch: assigned inside it, each row's terms would read as zero when no column
        # arrives, which Verilator's model computes as a mask on every term in every cycle (docs/cosim.md).
        updated = self._updated(m, arriving_col, changes, negated)
        with m.If(arriving):
            m.d.sync += [self.wr_levels.eq(updated), self.wr_col.eq(arriving_col), self.wr_levels_en.eq(1)]
        self._cell_write(m)
        return m

    def _updated(self, m, col, changes, negated):
        """The swept column after the update."""
        cfg, ly = self.cfg, self.layer
        cell = cfg.cell_bits
        col_delta = Signal(signed(8))
        m.d.comb += col_delta.eq(self.deltas.word_select(col[:max(1, (cfg.delta_len - 1).bit_length())], 8))
        # The window's rows as one word (two shifts of all ones), not two comparisons per row.
        rows, ones = cfg.rows, Const((1 << cfg.rows) - 1, cfg.rows)
        start, end = ly.row_start, ly.row_start + ly.row_count
        window = Signal(rows)
        m.d.comb += window.eq(Mux(start >= rows, 0, ~(ones >> (rows - start).as_unsigned()))
                              & Mux(end >= rows, ones, ones >> (rows - end).as_unsigned()))
        new = []
        for r in range(cfg.rows):
            old = self.levels[r * cell:(r + 1) * cell]
            delta = Signal(signed(9), name=f"delta{r}")
            m.d.comb += delta.eq(Mux(self.rows_mode, self.deltas[8 * r:8 * r + 8].as_signed(), col_delta))
            total = Signal(signed(10), name=f"sum{r}")
            m.d.comb += total.eq(Mux(negated, old - delta, old + delta))
            clipped = Mux(total < 0, 0, Mux(total > cfg.max_level, cfg.max_level, total))
            in_window = window[r]
            keep = self.mask[r] | ~in_window | ~changes
            new.append(Mux(keep, old, clipped[:cell]))
        return Cat(*new)

    def _cell_write(self, m):
        """WSET / MSET: the column word with one cell replaced (a masked cell keeps its level)."""
        cfg, c = self.cfg, self.cell
        rows, cell = cfg.rows, cfg.cell_bits
        with m.If(self.cell_levels):
            new = Cat(*[Mux((c.row == r) & ~self.mask[r], c.value[:cell], self.levels[r * cell:(r + 1) * cell])
                        for r in range(rows)])
            m.d.sync += [self.wr_levels.eq(new), self.wr_col.eq(c.col), self.wr_levels_en.eq(1)]
        with m.If(self.cell_mask):
            new = Cat(*[Mux(c.row == r, c.value[0], self.mask[r]) for r in range(rows)])
            m.d.sync += [self.wr_mask.eq(new), self.wr_col.eq(c.col), self.wr_mask_en.eq(1)]
