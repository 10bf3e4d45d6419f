"""hw.vau.Vau: VAUR/VAUC sweeps and WSET/MSET cell writes against the golden model's definitions
(sim.tile's VAU: hw.isa.vau_column_sign per window column, masked cells kept, saturation)."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.vau import Vau
from helpers import TINY
from hw_sim import simulate


def pack(values, bits):
    return sum(int(v) << (i * bits) for i, v in enumerate(values))


def unpack(word, bits, n):
    return [(word >> (i * bits)) & ((1 << bits) - 1) for i in range(n)]


@pytest.mark.parametrize("spread", [4, 128], ids=["small", "large"])
@pytest.mark.parametrize("rows_mode", [1, 0], ids=["VAUR", "VAUC"])
@pytest.mark.parametrize("pair, only, wsigned", [(0, 0, 1), (1, 0, 1), (2, 1, 1), (3, 0, 1), (1, 1, 0)])
def test_vau_sweep_and_cell_writes(rows_mode, pair, only, wsigned, spread):
    """``spread`` bounds the deltas: small ones move levels inside the range, large ones (down to -128, whose
    negation on a negative column is +128) saturate at both ends."""
    cfg = TINY
    rng = np.random.default_rng(9 + pair)
    rows, cols, cell = cfg.rows, cfg.cols, cfg.cell_bits
    levels = rng.integers(0, cfg.max_level + 1, (rows, cols))
    masks = rng.random((rows, cols)) < 0.25
    deltas = rng.integers(-spread, min(spread + 1, 128), cfg.delta_len)
    if spread == 128:
        deltas[::7] = -128
    r0, nr, c0, nc = 2, 11, 3, 12
    wbits, slice_ = 4, 1
    g = isa.geometry(cfg, wbits, 8, bool(wsigned), False, nr, nc)
    # the golden model's update
    want = levels.copy()
    for c in range(nc):
        sign = isa.vau_column_sign(pair, only, slice_, bool(wsigned), g.group, c)
        for r in range(r0, r0 + nr):
            d = deltas[r] if rows_mode else deltas[c0 + c]
            if sign and not masks[r, c0 + c]:
                want[r, c0 + c] = min(max(levels[r, c0 + c] + sign * d, 0), cfg.max_level)
    # then WSET (row 4, column 5, level 2) and MSET (row 6, column 5, 1)
    want[4, 5] = want[4, 5] if masks[4, 5] else 2
    want_masks = masks.copy()
    want_masks[6, 5] = True
    dut = Vau(cfg)
    state = {"levels": levels.copy(), "masks": masks.copy()}

    async def present(ctx, col):
        """The crossbar's read port: the column presented last cycle, then this cycle's write."""
        ctx.set(dut.levels, pack(state["levels"][:, col], cell))
        ctx.set(dut.mask, pack(state["masks"][:, col], 1))

    def write_back(ctx):
        if ctx.get(dut.wr_levels_en):
            state["levels"][:, ctx.get(dut.wr_col)] = unpack(ctx.get(dut.wr_levels), cell, rows)
        if ctx.get(dut.wr_mask_en):
            state["masks"][:, ctx.get(dut.wr_col)] = unpack(ctx.get(dut.wr_mask), 1, rows)

    async def bench(ctx):
        ctx.set(dut.layer, {"wbits_m1": wbits - 1, "abits_m1": 7, "wsigned": wsigned, "row_start": r0,
                            "row_count": nr, "col_start": c0, "col_count": nc, "group": g.group})
        ctx.set(dut.fields, {"delta_addr": 0, "pair": pair, "only": only, "slice": slice_})
        ctx.set(dut.rows_mode, rows_mode)
        ctx.set(dut.deltas, pack([d & 0xFF for d in deltas], 8))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.run, 1)
        presented = None
        for _ in range(nc + isa.VAU_LATENCY):
            if presented is not None:
                await present(ctx, presented)
            presented = ctx.get(dut.col) if ctx.get(dut.sweeping) else None
            write_back(ctx)
            await ctx.tick()
        write_back(ctx)
        ctx.set(dut.run, 0)
        for flag, row, value in ((dut.cell_levels, 4, 2), (dut.cell_mask, 6, 1)):
            ctx.set(dut.cell, {"row": row, "col": 5, "value": value})
            await present(ctx, 5)
            ctx.set(flag, 1)
            await ctx.tick()
            ctx.set(flag, 0)
            write_back(ctx)
            await ctx.tick()

    simulate(dut, bench)
    assert (state["levels"] == want).all()
    assert (state["masks"] == want_masks).all()


@pytest.mark.parametrize("cell_bits", [1, 2, 3, 4])
def test_saturated_clipped_update_is_exact_for_every_level_and_delta(cell_bits):
    """hw.vau._saturated then hw.vau._clipped (the per-row update: the delta saturated with the column, then
    added or subtracted and clipped, each written with no computed value used twice for Verilator's sake):
    ``clip(old +- delta, 0, max_level)`` for every level and every 8-bit delta, added and subtracted."""
    from amaranth.hdl import Module, Signal, signed
    from cimtile.hw.vau import _clipped, _saturated, _saturation_bound

    top = (1 << cell_bits) - 1
    bound = _saturation_bound(top)
    m = Module()
    delta, sat = Signal(signed(8)), Signal(signed(bound.bit_length() + 1))
    m.d.comb += sat.eq(_saturated(delta, bound))
    olds = [Signal(cell_bits, init=v, name=f"old{v}") for v in range(top + 1)]
    news = [[Signal(cell_bits, name=f"new{v}_{n}") for n in range(2)] for v in range(top + 1)]
    for old, new in zip(olds, news):
        m.d.comb += [new[n].eq(_clipped(old, sat, top, subtract=bool(n))) for n in range(2)]
    bad = []

    async def bench(ctx):
        for d in range(-128, 128):
            ctx.set(delta, d)
            if ctx.get(sat) != max(-bound, min(bound, d)):
                bad.append(("saturated", d))
            for n, sign in enumerate((1, -1)):
                for v in range(top + 1):
                    if ctx.get(news[v][n]) != min(max(v + sign * d, 0), top):
                        bad.append(("clipped", sign, v, d))

    simulate(m, bench, clock=False)
    assert not bad, bad[:5]
