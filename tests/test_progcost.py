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


@pytest.mark.parametrize("wc,pc", [(0, 0), (7, 1), (2, 5)])
def test_wset_and_vau_wait_their_programming_time_on_golden_and_rtl(wc, pc):
    """WSET waits write_cycles (write-and-verify of one cell), VAUR / VAUC wait VAUR_PHASES / VAUC_PHASES
    pulses of pulse_cycles, MSET (a digital mask bit) nothing: the formulas of docs/isa.md, counted equally by
    the golden model and the RTL (Amaranth's simulator), with the levels they write."""
    from cimtile.tb.amaranth_sim import golden_runs, run_rtl

    cfg = PRESETS["tiny"].replace(name="t", write_cycles=wc, pulse_cycles=pc)
    E = isa.encode
    prog = [E(Opcode.LDD, start=0, count=2), E(Opcode.VAUR, delta_addr=0, pair=0),
            E(Opcode.VAUC, delta_addr=1, pair=1), E(Opcode.WSET, row=3, col=2, value=0),
            E(Opcode.MSET, row=4, col=2, value=1), E(Opcode.WSET, row=4, col=2, value=2), E(Opcode.HALT)]
    deltas = np.zeros((2, cfg.delta_len), dtype=np.int64)
    deltas[0, :6], deltas[1, :4] = 1, [1, -1, 2, 0]
    read = [E(Opcode.RDW, start=0, count=cfg.cols), E(Opcode.HALT)]
    runs = [(prog, [deltas]), (read, [])]
    gold = golden_runs(cfg, runs)
    res, levels = gold[0][0], np.asarray(gold[1][0].outputs[0])
    nc = cfg.cols  # the reset window: the whole array
    want = (1 + 2 * cfg.delta_words) + (1 + nc + isa.VAU_LATENCY + isa.VAUR_PHASES * pc) \
        + (1 + nc + isa.VAU_LATENCY + isa.VAUC_PHASES * pc) + 2 * (isa.CELL_CYCLES + wc) + isa.CELL_CYCLES + 1
    assert res.cycles == want == Tile(cfg).run(prog, timing_only=True).cycles
    # reset CFG: 8-bit signed weights, groups of 8 columns (s0+ s0- s1+ ...): columns 0 and 2 positive, 1
    # negative; rows 0-5 +1 (same), then columns 0, 1, 2 by +1, -(-1), +2 (diff); WSET of a masked cell ignored
    assert levels[0, 0] == 2 and levels[0, 1] == 2 and levels[7, 0] == 1
    assert levels[3, 2] == 0 and levels[4, 2] == 3
    rtl = run_rtl(cfg, [(p, din) for (p, _), (_, din, _) in zip(runs, gold)])
    assert [r.cycles for r in rtl] == [g[0].cycles for g in gold]
    assert rtl[1].dout == gold[1][2]
