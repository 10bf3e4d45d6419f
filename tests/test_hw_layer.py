"""hw.layer.LayerRegisters against hw.isa.geometry (the golden model's geometry) and the mixed-radix
digits of conversion indices (docs/microarchitecture.md, MVM)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.layer import LayerRegisters, lane_radix_value, step_digits
from helpers import TINY, VARIANT
from hw_sim import digits, simulate

CONFIGS = {"tiny": TINY, "variant": VARIANT}


@pytest.mark.parametrize("name", CONFIGS)
def test_geometry_and_lane_digits_follow_cfg_and_win(name):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(40):
        wsigned = int(rng.integers(0, 2))
        wbits = int(rng.integers(2 if wsigned else 1, 9))
        abits, asigned = int(rng.integers(1, 9)), int(rng.integers(0, 2))
        r0 = int(rng.integers(0, cfg.rows))
        nr = int(rng.integers(1, cfg.rows - r0 + 1))
        group = isa.geometry(cfg, wbits, abits, bool(wsigned), bool(asigned), 1, 1).group
        n_out = int(rng.integers(1, cfg.cols // group + 1))
        nc = n_out * group if rng.random() < 0.8 else int(rng.integers(1, cfg.cols + 1))
        c0 = int(rng.integers(0, cfg.cols - nc + 1))
        cases.append((wbits, abits, wsigned, asigned, int(rng.integers(0, 16)), r0, nr, c0, nc))
    dut = LayerRegisters(cfg)

    async def bench(ctx):
        # the reset layer first
        rc = isa.RESET_CFG
        checks = [(rc["wbits"], rc["abits"], rc["wsigned"], rc["asigned"], rc["adc_shift"], *isa.reset_window(cfg))]
        got = [await read(ctx)]
        for wbits, abits, wsigned, asigned, shift, r0, nr, c0, nc in cases:
            ctx.set(dut.cfg_fields, {"wbits_m1": wbits - 1, "abits_m1": abits - 1, "wsigned": wsigned,
                                     "asigned": asigned, "adc_shift": shift})
            ctx.set(dut.win_fields, {"row_start": r0, "row_count_m1": nr - 1, "col_start": c0, "col_count_m1": nc - 1})
            # a CFG, then a WIN (the tile decodes one opcode: never both in one cycle)
            ctx.set(dut.commit, 1)
            for write in (dut.cfg_write, dut.win_write):
                ctx.set(write, 1)
                await ctx.tick()
                ctx.set(write, 0)
            # an uncommitted write (an error in that cycle) changes nothing
            ctx.set(dut.commit, 0)
            ctx.set(dut.win_fields.col_count_m1, 0)
            ctx.set(dut.win_write, 1)
            await ctx.tick()
            ctx.set(dut.win_write, 0)
            checks.append((wbits, abits, wsigned, asigned, shift, r0, nr, c0, nc))
            got.append(await read(ctx))
        for want, have in zip(checks, got):
            wbits, abits, wsigned, asigned, shift, r0, nr, c0, nc = want
            g = isa.geometry(cfg, wbits, abits, bool(wsigned), bool(asigned), nr, nc)
            layer, start, step, lane_radix = have
            analog = bool(wsigned) and cfg.analog_diff
            gconv = g.nws if analog else g.group
            assert gconv * g.n_out == g.nconv or not g.aligned
            expect = {"wbits_m1": wbits - 1, "abits_m1": abits - 1, "wsigned": wsigned, "asigned": asigned,
                      "adc_shift": shift, "row_start": r0, "row_count": nr, "col_start": c0, "col_count": nc,
                      "nis": g.nis, "nws": g.nws, "group": g.group, "nrg": g.nrg, "n_out": g.n_out,
                      "aligned": int(g.aligned), "gconv": gconv, "step": 2 if analog else 1, "analog": int(analog)}
            if not g.aligned:  # MVM and REQ refuse the window: n_out is the golden model's 0, the RTL's floor
                expect["n_out"] = layer["n_out"] = nc // g.group
            assert layer == expect, want
            assert lane_radix == lane_radix_value(cfg, expect), want
            if g.aligned:
                # each lane's digits and the conversion's column in the window (hw.layer.DIGITS's c)
                want_digits = [digits(i, g.n_out, g.nrg, gconv) for i in range(cfg.n_adcs + 1)]
                want_digits = [(k, rg, o, q, o * g.group + q * expect["step"]) for k, rg, o, q in want_digits]
                assert start == want_digits[:-1], want
                assert step == want_digits[-1], want

    async def read(ctx):
        layer = {f: ctx.get(getattr(dut.layer, f)) for f in dut.layer.shape().members}
        lanes = [tuple(ctx.get(getattr(s, f)) for f in "kgoqc") for s in dut.lane_start]
        radix = {f: ctx.get(getattr(dut.lane_radix, f)) for f in dut.lane_radix.shape().members}
        return layer, lanes, tuple(ctx.get(getattr(dut.lane_step, f)) for f in "kgoqc"), radix

    simulate(dut, bench)


@pytest.mark.parametrize("n_adcs", [1, 2, 3, 8])
def test_lane_chain_on_saturated_radices_equals_the_full_chain(n_adcs):
    """LayerRegisters runs the lane-start chain on ``min(radix, n_adcs + 1)``: the digits of conversions
    0..n_adcs are those of the full radices (including the radix 0 of a layer no MVM accepts)."""
    top = n_adcs + 1
    for gconv, n_out, nrg in itertools.product(range(0, 12), range(0, 12), range(0, 6)):
        for step in (1, 2):
            full = sat = (0, 0, 0, 0, 0)
            for j in range(1, n_adcs + 1):
                full = step_digits(full, gconv, n_out, nrg, step, mux=lambda c, a, b: a if c else b)
                sat = step_digits(sat, min(gconv, top), min(n_out, top), min(nrg, top), step,
                                  mux=lambda c, a, b: a if c else b)
                assert sat == full, (gconv, n_out, nrg, step, j)
                if gconv and n_out and nrg:  # and both are conversion j's digits
                    k, rg, o, q = digits(j, n_out, nrg, gconv)
                    assert full == (k, rg, o, q, (o * gconv + q) * step)
