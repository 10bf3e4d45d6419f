"""The VAU and the cell writes: read-modify-write of crossbar columns through the crossbar's read port."""

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
    per cycle on ``col`` while ``sweeping`` (both registers, valid from the cycle after ``start``); the
    column's levels and mask arrive from the crossbar a cycle later on ``levels`` / ``mask``, and the new
    column ``clip(level +- delta, 0, max_level)`` (unmasked window rows of a column the instruction
    selects, ``docs/isa.md``; row delta ``deltas[r]`` with ``rows_mode``, else the column's delta) is
    registered and written one cycle after that: a column is written two cycles after it is presented
    (``isa.VAU_LATENCY``). The delta vector ``deltas`` must be held from the cycle after ``start``.

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
        cfg, ly, f = self.cfg, self.layer, self.fields
        offset = Signal(ADDR_BITS + 2)  # the next column to present, from the window's first
        place = Signal(5)  # its place in the weight group (polarity, no divider)
        arriving = Signal()  # a column's data is on levels/mask
        arriving_col = Signal(ADDR_BITS + 2)
        negated = Signal()  # ... whether its deltas are subtracted (a negative column)
        # ... and, per row, whether it changes (a window row of a column the instruction selects), the rows'
        # deltas and the column's, saturated (_saturated), registered with the column, so that the update after
        # the crossbar's read is a narrow add or subtract and clip.
        changes = Signal(cfg.rows)
        bound = _saturation_bound(cfg.max_level)
        taken = [Signal(signed(bound.bit_length() + 1), name=f"delta{r}") for r in range(cfg.rows)]
        col_delta = Signal.like(taken[0])
        # The column presented and whether the sweep goes on are registers stepped with offset
        # (col_start + offset and offset < col_count: the window is held during the sweep), so that the
        # crossbar's address and the delta's selection start at registers.
        col, sweeping = Signal.like(self.col), Signal()
        m.d.comb += [self.sweeping.eq(sweeping), self.col.eq(col)]
        m.d.sync += [arriving.eq(0), self.wr_levels_en.eq(0), self.wr_mask_en.eq(0)]
        with m.If(self.start):
            m.d.sync += [offset.eq(0), place.eq(0), col.eq(ly.col_start), sweeping.eq(ly.col_count != 0)]
        with m.Elif(self.run & self.sweeping):
            m.d.sync += [offset.eq(offset + 1), col.eq(col + 1), sweeping.eq(offset + 1 < ly.col_count),
                         arriving_col.eq(self.col), arriving.eq(1), place.eq(Mux(place + 1 == ly.group, 0, place + 1))]
        # The presented column's sign, rows that change and deltas are taken in every cycle of a sweep, whether it
        # steps or not (they are read only with an arriving column, which a step makes): their enable is a
        # register, not the sequencer's decode. The column's delta is picked into a signal assigned here, so that
        # Verilator computes it (a 1,024-bit shift in its model) in this branch only: the deltas are held.
        with m.If(self.sweeping):
            # Sign of this column: isa.vau_column_sign with q = place.
            neg = ly.wsigned & place[0]
            weight_slice = Mux(ly.wsigned, place >> 1, place)
            selected = ~f.only | (weight_slice == f.slice)
            act = selected & ~((f.pair == 2) & neg) & ~((f.pair == 3) & ~neg)
            end = Signal(max(len(ly.row_start), len(ly.row_count)) + 1)
            picked = Signal(signed(8))
            m.d.comb += [end.eq(ly.row_start + ly.row_count),
                         picked.eq(self.deltas.word_select(self.col[:max(1, (cfg.delta_len - 1).bit_length())], 8))]
            m.d.sync += [negated.eq(neg & (f.pair != 0)), col_delta.eq(_saturated(picked, bound))]
            m.d.sync += [changes[r].eq(act & (ly.row_start <= r) & (end > r)) for r in range(cfg.rows)]
            with m.If(self.rows_mode):
                m.d.sync += [taken[r].eq(_saturated(self.deltas[8 * r:8 * r + 8].as_signed(), bound))
                             for r in range(cfg.rows)]
        # Every per-row value of the update is used once, so Verilator computes it inside this branch only: a
        # sweep's cost is nothing in the cycles no column arrives (docs/cosim.md, issue 15's fifth session).
        with m.If(arriving):
            m.d.sync += [self.wr_levels.eq(self._updated(negated, changes, taken, col_delta)),
                         self.wr_col.eq(arriving_col), self.wr_levels_en.eq(1)]
        self._cell_write(m)
        return m

    def _updated(self, negated, changes, taken, col_delta):
        """The swept column after the update: ``clip(level +- delta, 0, max_level)`` of each unmasked row that
        changes, with the registered (saturated) row's delta (``rows_mode``) or column's delta, subtracted in a
        negative column.

        Written so that no value computed per row has more than one use: Verilator computes a value of several
        uses (a row's sum read by the two clip comparisons and the result, say) in every cycle, ahead of the
        branch that uses it, but a value of one use inside the branch (docs/cosim.md). So a row's sum is never a
        value: the clip compares the delta with bounds made from the old level (:func:`_clipped`), and the four
        ways of updating a row (row or column delta, added or subtracted) are four such expressions under one
        selection.
        """
        cfg = self.cfg
        cell = cfg.cell_bits
        new = []
        for r in range(cfg.rows):
            old = self.levels[r * cell:(r + 1) * cell]
            clipped = [Mux(negated, _clipped(old, delta, cfg.max_level, subtract=True),
                           _clipped(old, delta, cfg.max_level, subtract=False)) for delta in (taken[r], col_delta)]
            new.append(Mux(self.mask[r] | ~changes[r], old, Mux(self.rows_mode, *clipped)))
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


def _saturation_bound(max_level: int) -> int:
    """The bound the deltas are saturated to (:func:`_saturated`): ``2**k - 1`` for the smallest ``k`` with
    ``2**k - 1 > max_level``, so that ``clip(level + delta, 0, max_level)`` of any level is the same with the
    saturated delta (``delta > max_level`` takes any level to ``max_level``, ``delta < -max_level`` to 0),
    and the saturation compares a delta's high bits with its sign alone."""
    return (1 << (max_level + 1).bit_length()) - 1


def _saturated(delta, bound: int):
    """``clip(delta, -bound, bound)`` (``bound`` from :func:`_saturation_bound`) in ``bound.bit_length() + 1``
    signed bits; ``delta`` a signal (its several uses here are no computed values). The range is symmetric, so
    that a saturated delta's negation is the negated delta's saturation."""
    width = bound.bit_length() + 1
    return Mux(delta > bound, Const(bound, signed(width)),
               Mux(delta < -bound, Const(-bound, signed(width)), delta[:width].as_signed()))


def _clipped(old, delta, max_level: int, subtract: bool):
    """``clip(old - delta if subtract else old + delta, 0, max_level)`` as one expression in which no computed
    value is used twice (see :meth:`Vau._updated`): the bounds are compared on ``delta``, a signal."""
    cell = len(old)
    if subtract:
        below, above, total = delta > old, delta < old - max_level, old - delta
    else:
        below, above, total = delta < -old, delta > max_level - old, old + delta
    return Mux(below, 0, Mux(above, max_level, total[:cell]))
