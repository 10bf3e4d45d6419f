"""Weight programming is part of the cost (issue 10): LDW's write-and-verify wait, weights programs run once per
batch, the report's programming/compute split and its batch figures equal the runtime's counts."""

from __future__ import annotations

import models
import numpy as np
import pytest
from cimtile.compiler.report import for_batch
from cimtile.hw import isa
from cimtile.hw.isa import Opcode
from cimtile.hw.params import PRESETS, WRITE_US_PER_XBAR, write_cycles_for
from cimtile.sim.tile import Tile

from cimtile import compiler
from cimtile.errors import CimtileError


def test_cimaq_write_time_matches_cim_aq():
    c = PRESETS["cimaq"]
    # 256 columns at write_cycles each, at the presets' 1 GHz: CIM-AQ's 56 us per crossbar within rounding
    assert abs(c.cols * c.write_cycles / 1000.0 - WRITE_US_PER_XBAR) < 0.5 / 1000 * c.cols
    assert write_cycles_for(100.0) == 22 and write_cycles_for() == c.write_cycles


@pytest.mark.parametrize("wc", [0, 5, 219])
def test_ldw_waits_write_cycles_per_column(wc):
    cfg = PRESETS["tiny"].replace(name="t", write_cycles=wc)
    words = [isa.encode(Opcode.LDW, start=2, count=5), isa.encode(Opcode.HALT)]
    lv = np.ones((cfg.rows, 5), dtype=np.int64)
    res = Tile(cfg).run(words, [lv]).check()
    assert res.cycles == 1 + 5 * (cfg.col_words + wc) + 1
    assert res.cycles == Tile(cfg).run(words, timing_only=True).cycles


def test_stationary_tiles_programmed_once_per_batch():
    b = compiler.compile_model(models.qlinear_conv(hw=5), "tiny")
    roles = [p.role for p in b.programs]
    assert "weights" in roles
    for p in b.programs:
        if p.setup is not None:
            w = b.programs[p.setup]
            assert w.role == "weights" and [isa.decode(x).op for x in w.words] == [Opcode.LDW, Opcode.HALT]
            assert not any(isa.decode(x).op is Opcode.LDW for x in p.words)
    x = np.random.default_rng(1).integers(0, 256, (3, 3, 5, 5)).astype(np.uint8)
    y3, st3 = compiler.run(b, x, stats=True)
    y1, _ = compiler.run(b, x[:1], stats=True)
    assert np.array_equal(y3[:1], y1)  # programming once changes no result
    rep = for_batch(b.report, 3)
    assert st3.cycles == rep["totals"]["cycles"] and st3.compute_cycles == rep["totals"]["compute_cycles"]
    for row in rep["layers"]:
        assert st3.layer_cycles[row["name"]] == row["cycles"]
        assert st3.program_cycles[row["name"]] == row["program_cycles"]
        one = next(r for r in b.report["layers"] if r["name"] == row["name"])
        # stationary tiles: programmed once, so a batch costs less than N separate images
        if one["prog_once"]:
            assert row["cycles"] < 3 * one["cycles"]
            assert row["program_cycles"] - row["prog_once"] == row["runs"] * row["reload_cycles"]
    assert compiler.report(b, as_json=True, batch=3)["totals"] == rep["totals"]
    assert "a batch of 3 images" in compiler.report(b, batch=3)


def test_batch_must_be_positive():
    b = compiler.compile_model(models.qlinear_conv(hw=5), "tiny")
    with pytest.raises(CimtileError, match="batch = 0"):
        for_batch(b.report, 0)
