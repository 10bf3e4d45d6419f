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


def _ldw(cfg, cols: int) -> int:
    """Cycles of ``LDW cols``, from the ISA's formula."""
    return isa.cycles(Opcode.LDW, isa.cfg_namespace(cfg), {"start": 0, "count": cols})


def _programming_once(b, L, weights_halts: bool) -> int:
    """Every crossbar tile of ``L`` programmed once: one LDW of its columns each (the -128 correction tiles 2
    columns per output), plus the HALT of a weights program per crossbar tile (``weights_halts``) or per stationary
    column tile only (the single-run schedule, whose other LDWs sit in run programs)."""
    cfg, tl = b.cfg, L.tiling
    halt = isa.cycles(Opcode.HALT, isa.cfg_namespace(cfg), {})
    width = [(c1 - c0) for c0, c1 in tl.col_tiles]
    once = sum(_ldw(cfg, width[ct] * tl.group) for ct, _ in tl.pairs())
    once += sum(_ldw(cfg, width[ct] * 2) for ct, _ in tl.fix_tiles)
    n_w = len(tl.pairs()) + len(tl.fix_tiles) if weights_halts else sum(
        1 for i in L.programs if b.programs[i].setup is not None)
    return once + n_w * halt


def _separate_cycles(b, L, x1, n: int) -> int:
    """Layer ``L``'s cycles for ``n`` images with the stationary schedule's programs run one by one on the golden
    model (each weights program once, then its run program on the batch's runs), without the runtime."""
    from cimtile.compiler.backends import GoldenBackend
    from cimtile.compiler.runtime import _Blocks, _feed_block, im2col

    li = b.model.layers.index(L)
    A, _ = im2col(x1, L.conv, int(L.in_spec.zero_point))
    P = L.schedule.chunk
    B = -(-A.shape[0] // P)
    Ap = np.full((B * P, A.shape[1]), int(L.in_spec.zero_point), dtype=np.uint8)
    Ap[:A.shape[0]] = A
    A3 = Ap.reshape(B, P, -1)
    be, blocks, total = GoldenBackend(b.cfg), _Blocks(b), 0
    for pi in [i for i in L.programs if b.programs[i].setup is not None]:
        p, w = b.programs[pi], b.programs[b.programs[pi].setup]
        total += be.run(w.words, [_feed_block(blocks, li, L, A3, r, {}, 0) for r in w.feed], B).check().cycles
        total += B * be.run(p.words, [_feed_block(blocks, li, L, A3, r, {}, 0) for r in p.feed], B).check().cycles
    for pi in L.batch_programs:
        p = b.model.batch_programs[pi]
        w = b.model.batch_programs[p.setup]
        total += be.run(w.words, [_feed_block(blocks, li, L, A3, r, {}, 0) for r in w.feed], B).check().cycles
        total += B * be.run(p.words, [_feed_block(blocks, li, L, A3, r, {}, 0) for r in p.feed], B).check().cycles
    return total


@pytest.mark.parametrize("n", [1, 2, 3])
def test_batch_rule_programming_once_plus_n_compute(n):
    """Issue 10's batch rule on a model with a layer whose column tiles span several crossbar tiles: the cycles of
    N images = programming once per crossbar tile + N x compute, in the report and as the golden model counts them,
    and the outputs equal N single-image runs (docs/compiler.md, "Batch schedule")."""
    b = compiler.compile_model(models.qlinear_conv(hw=5), "tiny")
    L1, L2 = b.model.layers
    assert len(L1.tiling.row_tiles) > 1 and L1.batch_programs  # column tiles of several crossbar tiles
    assert len(L2.tiling.row_tiles) == 1 and not L2.batch_programs  # every column tile one crossbar tile
    x = np.random.default_rng(4).integers(0, 256, (3, 3, 5, 5)).astype(np.uint8)
    y, st = compiler.run(b, x[:n], stats=True)
    assert np.array_equal(y, np.concatenate([compiler.run(b, x[i:i + 1]) for i in range(n)]))
    rep = for_batch(b.report, n)
    assert st.cycles == rep["totals"]["cycles"] and st.compute_cycles == rep["totals"]["compute_cycles"]
    one = {r["name"]: r for r in b.report["layers"]}
    for L, row in zip(b.model.layers, rep["layers"]):
        stationary = n > 1 and bool(L.batch_programs)
        assert row["schedule"] == st.schedules[L.name] == ("stationary" if stationary else "single-run")
        assert st.layer_cycles[L.name] == row["cycles"] and st.program_cycles[L.name] == row["program_cycles"]
        assert row["positions"] == row["chunk"]  # one run per image: N x compute exactly
        # programming once per crossbar tile, whatever n
        assert row["program_cycles"] == _programming_once(b, L, stationary)
        # N x compute: one image's compute on the schedule the batch uses
        per_image = (row["batch_run_cycles"] - row["batch_reload_cycles"]) if stationary else \
            one[L.name]["compute_cycles"]
        assert row["compute_cycles"] == n * per_image
        assert row["cycles"] == row["program_cycles"] + n * per_image
        if stationary:  # the partial sums cost host operations; the programs run one by one count the same cycles
            assert row["host_psum_ops"] == n * row["positions"] * row["psum_ops"] > 0
            assert _separate_cycles(b, L, x[:n], n) == row["cycles"]
    assert st.host_psum_ops == rep["totals"].get("host_psum_ops", 0)
    assert "batch schedule: " + ("stationary for qconv1" if n > 1 else "single-run") in compiler.report(b, batch=n)


def test_one_image_of_several_runs_programs_each_crossbar_tile_once():
    """One image that takes several runs of a layer whose column tiles span several crossbar tiles (more positions
    than a chunk) runs it on the stationary schedule: every crossbar tile programmed once, not once per run, in the
    report and as the golden model counts it, with the outputs of the single-run programs."""
    from cimtile.compiler.backends import GoldenBackend
    from cimtile.compiler.runtime import execute

    b = compiler.compile_model(models.qlinear_conv(hw=12), "tiny")
    L1 = b.model.layers[0]
    assert L1.batch_programs and L1.schedule.positions > L1.schedule.chunk  # several runs per image
    x = np.random.default_rng(5).integers(0, 256, (1, 3, 12, 12)).astype(np.uint8)
    y, st = compiler.run(b, x, stats=True)
    row = {r["name"]: r for r in b.report["layers"]}[L1.name]
    assert row["schedule"] == st.schedules[L1.name] == "stationary" and row["runs"] > 1
    assert row["program_cycles"] == _programming_once(b, L1, True) == st.program_cycles[L1.name]
    assert st.cycles == b.report["totals"]["cycles"]
    assert _separate_cycles(b, L1, x, 1) == row["cycles"]
    out_d, st_d = execute(b, x, GoldenBackend(b.cfg))
    out_s, st_s = execute(b, x, GoldenBackend(b.cfg, run_stationary=True))  # the stationary programs themselves
    (k,) = out_d
    assert np.array_equal(out_s[k], out_d[k]) and np.array_equal(out_d[k], y)
    assert st_s.cycles == st_d.cycles == st.cycles


@pytest.mark.parametrize("make", ["conv", "int32_minus_128", "fault_mask", "saved"])
def test_golden_runs_the_stationary_programs_themselves_alike(make, tmp_path):
    """The golden backend's default (single-run programs for the outputs, the stationary programs' cycles counted in
    timing mode) equals running the stationary programs themselves: outputs (the host's sums of partial sums and its
    requantisation with the tile's REQ arithmetic) and cycles; the -128 correction tiles and accumulator mode too."""
    from cimtile.compiler.backends import GoldenBackend
    from cimtile.compiler.runtime import execute

    r = np.random.default_rng(7)
    if make != "int32_minus_128":
        b = compiler.compile_model(models.qlinear_conv(hw=5), "tiny", out=tmp_path / "b" if make == "saved" else None)
        if make == "fault_mask":  # the stationary programs load the fault mask too
            from cimtile.compiler.faults import mask_faults

            fm = np.zeros((b.cfg.rows, b.cfg.cols), dtype=bool)
            fm[2, 3] = fm[9, 12] = True
            b = mask_faults(b, fm)
        elif make == "saved":  # the bundle keeps the stationary schedule's programs
            b = compiler.load(tmp_path / "b")
            assert b.model.batch_programs and "batch program" in compiler.disasm(b)
        x = r.integers(0, 256, (3, 3, 5, 5)).astype(np.uint8)
    else:
        w = r.integers(-127, 128, (40, 5)).astype(np.int8)
        w[3, 2] = w[30, 4] = -128
        b = compiler.compile_model(models.matmul_integer_int8(w), "tiny")
        assert b.model.layers[0].tiling.fix_tiles and b.model.layers[0].batch_programs
        x = r.integers(-128, 128, (3, 40)).astype(np.int8)
    out_d, st_d = execute(b, x, GoldenBackend(b.cfg))
    out_s, st_s = execute(b, x, GoldenBackend(b.cfg, run_stationary=True))
    (k,) = out_d
    assert np.array_equal(out_d[k], out_s[k])
    assert st_d.layer_cycles == st_s.layer_cycles and st_d.program_cycles == st_s.program_cycles
    assert st_s.host_psum_ops == st_d.host_psum_ops > 0
    assert st_d.cycles == for_batch(b.report, 3)["totals"]["cycles"]
    if make == "int32_minus_128":  # exact: (x - zero point) @ w
        assert np.array_equal(out_s[k], (x.astype(np.int64) + 3) @ w.astype(np.int64))


def test_cell_writing_instructions_are_programming():
    """WSET, VAUR and VAUC write cells, as LDW does: the report's split (:func:`write_cycles`) puts their cycles,
    inside loops too, under programming; MSET (a digital mask bit) and the rest are compute. Checked against the
    golden model's count of the program with those instructions replaced by NOPs."""
    from cimtile.compiler.ir import Program
    from cimtile.compiler.report import PROGRAMMING_OPS, program_cycles, write_cycles

    cfg = PRESETS["tiny"].replace(name="t", write_cycles=7, pulse_cycles=3)
    E = isa.encode
    prog = [E(Opcode.LDD, start=0, count=2), E(Opcode.LOOP, count=3, body=3, stride_in=0, stride_acc=0, stride_out=0),
            E(Opcode.WSET, row=3, col=2, value=1), E(Opcode.VAUR, delta_addr=0, pair=0),
            E(Opcode.VAUC, delta_addr=1, pair=1), E(Opcode.MSET, row=4, col=2, value=1),
            E(Opcode.LDW, start=0, count=2), E(Opcode.HALT)]
    nop = [E(Opcode.NOP) if isa.decode(w).op in PROGRAMMING_OPS else w for w in prog]
    deltas = np.zeros((2, cfg.delta_len), dtype=np.int64)
    lv = np.zeros((cfg.rows, 2), dtype=np.int64)
    full = Tile(cfg).run(prog, [deltas, lv], timing_only=True).check().cycles
    rest = Tile(cfg).run(nop, [deltas], timing_only=True).check().cycles
    n_nops = 3 * 3 + 1
    p = Program(0, prog, [], [])
    assert program_cycles(cfg, p) == full
    assert write_cycles(cfg, p) == full - rest + n_nops * isa.cycles(Opcode.NOP, isa.cfg_namespace(cfg), {}) > 0


@pytest.mark.parametrize("run_stationary", [False, True])
def test_progress_bar_counts_the_stationary_schedules_runs(monkeypatch, run_stationary):
    """The run bar's total is the program runs the batch makes, on either golden path of the stationary schedule."""
    import io
    import sys

    import cimtile.compiler.runtime as runtime
    from cimtile.compiler.backends import GoldenBackend

    from cimtile import progress

    b = compiler.compile_model(models.qlinear_conv(hw=5), "tiny")
    x = np.random.default_rng(3).integers(0, 256, (20, 3, 5, 5)).astype(np.uint8)
    bars = []

    def keep(*a, **kw):
        bars.append(progress.bar(*a, **kw))
        return bars[-1]

    monkeypatch.setattr(runtime, "progress_bar", keep)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    out, st = runtime.execute(b, x, GoldenBackend(b.cfg, run_stationary=run_stationary), progress=True)
    assert st.schedules[b.model.layers[0].name] == "stationary"
    assert bars[0].total == bars[0].n > 0
    assert np.array_equal(next(iter(out.values())), compiler.run(b, x, progress=False))
