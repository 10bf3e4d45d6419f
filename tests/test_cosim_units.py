"""The co-simulation testbench's pure-Python parts, without a simulator: the program generator, the
reset and read-back programs, stream packing, the scoreboard's comparisons and reports, the
testbench top's text."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.isa import Cause, Opcode
from cimtile.hw.isa import encode as E
from cimtile.hw.params import PRESETS
from cimtile.sim.tile import Tile
from cimtile.tb import programs, wrapper
from cimtile.tb.regress import VARIANT
from cimtile.tb.scoreboard import RtlResult, Scoreboard, pack_block, rerun_command, unpack_block

CFGS = [PRESETS["tiny"], PRESETS["isaac"]]


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_random_programs_are_legal_and_cover_every_opcode(cfg):
    seen = set()
    for seed in range(40):
        p = programs.random_program(cfg, seed)
        r = Tile(cfg).run(p.words, p.feed)
        assert r.ok, f"seed {seed}: {r.cause.name} at pc {r.pc}: {r.text}: {r.detail}"
        assert len(p.words) <= cfg.prog_depth
        seen |= {d.op for _, d, _ in programs.executed(p.words, cfg)}
    assert seen == set(Opcode)


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
@pytest.mark.parametrize("cause", programs.ILLEGAL_CAUSES, ids=lambda c: c.name)
def test_injected_illegal_programs_stop_with_their_cause(cfg, cause):
    for seed in range(8):
        p = programs.random_program(cfg, seed, length=14, inject=cause)
        r = Tile(cfg).run(p.words, p.feed)
        assert r.cause is cause, f"seed {seed}: injected {cause.name}, golden says {r.cause.name} ({r.detail})"


@pytest.mark.parametrize("cfg", CFGS + [VARIANT], ids=lambda c: c.name)
def test_random_programs_exercise_multi_vector_mvm_and_req(cfg):
    """The random programs (at the RTL tests' length) run MVMs and REQs of several vectors often: in most programs,
    with a last conversion round that is partial (the vectors' rounds meet inside a round's worth of ADCs), with
    ranges that end at the buffer's last entry, and the injected ADDR programs include such a range one past it."""
    depth = {"in": cfg.in_depth, "acc": cfg.acc_depth, "out": cfg.out_depth}
    n, with_mvm, with_req, partial, at_end = 30, 0, 0, 0, set()
    for seed in range(n):
        p = programs.random_program(cfg, 9000 + seed, length=16)
        layer, win = isa.RESET_CFG, (cfg.rows, cfg.cols)
        got = set()
        for _, d, offs in programs.executed(p.words, cfg):
            if d.op is Opcode.CFG:
                layer = d.args
            elif d.op is Opcode.WIN:
                win = (d.args["row_count"], d.args["col_count"])
            elif d.op in (Opcode.MVM, Opcode.REQ) and d.count > 1:
                got.add(d.op)
                g = isa.geometry(cfg, layer["wbits"], layer["abits"], bool(layer["wsigned"]), bool(layer["asigned"]),
                                 *win)
                partial += d.op is Opcode.MVM and (g.nis * g.nrg * g.nconv) % cfg.n_adcs != 0
                spaces = (("in", "in_addr", 0), ("acc", "acc_addr", 1)) if d.op is Opcode.MVM else \
                    (("acc", "acc_addr", 1), ("out", "out_addr", 2))
                at_end |= {(d.op, sp) for sp, f, o in spaces if d.args[f] + offs[o] + d.count == depth[sp]}
        with_mvm += Opcode.MVM in got
        with_req += Opcode.REQ in got
    assert with_mvm >= n // 2 and with_req >= n // 3, (with_mvm, with_req)
    assert partial > 0
    assert at_end == {(Opcode.MVM, "in"), (Opcode.MVM, "acc"), (Opcode.REQ, "acc"), (Opcode.REQ, "out")}
    past = 0
    for seed in range(40):
        p = programs.random_program(cfg, seed, length=14, inject=Cause.ADDR)
        r = Tile(cfg).run(p.words, p.feed)
        assert r.cause is Cause.ADDR
        d = isa.decode(p.words[r.pc])
        past += d.op in (Opcode.MVM, Opcode.REQ) and d.count > 1
    assert past >= 5, past


def test_random_programs_sweep_every_cfg_field():
    """Over a few hundred seeds every CFG field takes every legal value (adc_shift 0..15 included)."""
    cfg = PRESETS["tiny"]
    seen: dict[str, set] = {}
    for seed in range(300):
        for w in programs.random_program(cfg, seed, length=20).words:
            d = isa.decode(w)
            if d.op is Opcode.CFG:
                for k, v in d.args.items():
                    seen.setdefault(k, set()).add(v)
    assert seen["wbits"] == set(range(1, 9)) and seen["abits"] == set(range(1, 9))
    assert seen["wsigned"] == {0, 1} and seen["asigned"] == {0, 1}
    assert seen["adc_shift"] == set(range(16))


@pytest.mark.parametrize("cfg", CFGS + [PRESETS["tiny"].replace(name="variant", dac_bits=2, n_adcs=3, adc_cycles=2,
                                                                 rows_per_conv=5,
                                                                 weight_encoding="differential-analog")],
                         ids=lambda c: c.name)
def test_layer_prologues_give_unclipped_mvms(cfg):
    """Most programs open with a layer prologue whose MVM (loaded weights, aligned window) gives a
    non-zero result that no conversion clipped: the same program on a 14-bit ADC gives the same sums."""
    wide = cfg.replace(adc_bits=14)
    prologues = useful = 0
    n = 60
    for seed in range(n):
        p = programs.random_program(cfg, seed, length=0)
        if not any(isa.decode(w).op is Opcode.MVM for w in p.words):
            continue
        prologues += 1
        a, b = Tile(cfg).run(p.words, p.feed), Tile(wide).run(p.words, p.feed)
        assert a.ok and b.ok
        useful += bool(np.any(a.outputs[0]) and np.array_equal(a.outputs[0], b.outputs[0]))
    assert prologues >= 0.65 * n
    assert useful >= 0.5 * prologues, f"only {useful} of {prologues} prologue MVMs are non-zero and unclipped"


def test_random_programs_reproduce_from_their_seed():
    cfg = PRESETS["tiny"]
    a, b = programs.random_program(cfg, 42), programs.random_program(cfg, 42)
    assert a.words == b.words and all(np.array_equal(x, y) for x, y in zip(a.feed, b.feed))
    assert programs.random_program(cfg, 43).words != a.words


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_reset_program_restores_power_on_state(cfg):
    t = Tile(cfg)
    p = programs.random_program(cfg, 7)
    assert t.run(p.words, p.feed).ok
    rp = programs.reset_program(cfg)
    assert t.run(rp.words, rp.feed).ok
    fresh = Tile(cfg)
    for k, v in fresh.state().items():
        np.testing.assert_array_equal(t.state()[k], v, err_msg=k)
    assert (t.layer, t.window, t.rq, t.sync_tag) == (fresh.layer, fresh.window, fresh.rq, fresh.sync_tag)


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_executed_trace_matches_golden_counts(cfg):
    for seed in range(10):
        p = programs.random_program(cfg, seed)
        r = Tile(cfg).run(p.words, p.feed)
        trace = list(programs.executed(p.words, cfg))
        assert len(trace) == r.instructions
        assert sum(d.op in programs.READS for _, d, _ in trace) == len(r.outputs)
        assert sum(d.op in programs.LOADS for _, d, _ in trace) == len(p.feed)


def test_conv_layer_program_is_layer_sized():
    cfg = PRESETS["tiny"]
    p = programs.conv_layer_program(cfg, 1)
    r = Tile(cfg).run(p.words, p.feed)
    assert r.ok and r.cycles > 50_000
    assert sum(d.op is Opcode.MVM for _, d, _ in programs.executed(p.words, cfg)) >= 256
    assert any(isa.decode(w).op is Opcode.LOOP for w in p.words)


@pytest.mark.parametrize("op", [Opcode.RDOUT, Opcode.RDACC, Opcode.RDW, Opcode.RDM])
def test_pack_unpack_read_blocks(op):
    cfg = PRESETS["isaac"]
    rng = np.random.default_rng(0)
    n = 3
    if op is Opcode.RDOUT:
        blk = rng.integers(0, 256, (1, n, cfg.cols))
    elif op is Opcode.RDACC:
        blk = rng.integers(-(1 << 31), 1 << 31, (1, n, cfg.cols))
    elif op is Opcode.RDW:
        blk = rng.integers(0, cfg.max_level + 1, (cfg.rows, n))
    else:
        blk = rng.integers(0, 2, (cfg.rows, n))
    words = pack_block(cfg, op, blk)
    np.testing.assert_array_equal(unpack_block(cfg, op, words, n), blk)


def _rtl_like(exp, **over) -> RtlResult:
    """The RtlResult a perfect RTL would give for ``exp`` (then altered by ``over``)."""
    res = exp.result
    words = [w for *_, w in exp.reads]
    dout = np.concatenate(words) if words else np.zeros((0, 1), dtype=np.uint64)
    base = dict(cycles=res.cycles, halted=res.ok, error=res.cause is not Cause.NONE, cause=res.cause.value,
                pc=res.pc or 0, sync_tag=res.sync_tag, dout=dout, din_used=len(exp.din), din_staged=len(exp.din),
                run_cycles=res.cycles + 2, load_cycles=10, timeout=False, protocol=0, seconds=0.0)
    base.update(over)
    return RtlResult(**base)


def test_scoreboard_accepts_a_perfect_run_and_names_each_difference():
    cfg = PRESETS["tiny"]
    p = programs.random_program(cfg, 11)
    sb = Scoreboard(cfg)
    exp = sb.expect(p.words, p.feed)
    assert sb.compare(exp, _rtl_like(exp)) is None
    assert "cycle count" in sb.compare(exp, _rtl_like(exp, cycles=exp.result.cycles + 1)).what
    assert "sync_tag" in sb.compare(exp, _rtl_like(exp, sync_tag=exp.result.sync_tag ^ 1)).what
    assert "how the run ended" in sb.compare(exp, _rtl_like(exp, error=True, cause=3, pc=5)).what
    assert "timeout" in sb.compare(exp, _rtl_like(exp, timeout=True)).what
    assert "din" in sb.compare(exp, _rtl_like(exp, din_used=len(exp.din) - 1)).what
    # One flipped bit in the first read block: the report names that read and the value.
    pc, d, words = exp.reads[0]
    bad = _rtl_like(exp)
    bad.dout = bad.dout.copy()
    bad.dout[0, 0] ^= np.uint64(1 << 8)
    mm = sb.compare(exp, bad)
    assert mm.pc == pc and mm.instruction == d.text()
    text = mm.report(rerun_command("random_programs/style=mixed", "tiny", 11))
    assert f"pc {pc}: {d.text()}" in text and "expected:" in text and "actual:" in text
    assert "make sim TESTS=random_programs/style=mixed CONFIG=tiny SEED=11 WAVES=1" in text


def test_scoreboard_checks_error_cause_and_pc():
    cfg = PRESETS["tiny"]
    sb = Scoreboard(cfg)
    exp = sb.expect([E(Opcode.NOP), E(Opcode.MSET, row=0, col=0, value=2), E(Opcode.HALT)])
    assert exp.result.cause is Cause.VALUE and exp.result.pc == 1
    assert sb.compare(exp, _rtl_like(exp)) is None
    mm = sb.compare(exp, _rtl_like(exp, pc=2))
    assert mm is not None and "error VALUE at pc 1" in mm.expected and "pc 2" in mm.actual


def test_top_level_treats_a_loop_as_one_instruction():
    words = [E(Opcode.NOP), E(Opcode.LOOP, count=2, body=2), E(Opcode.NOP), E(Opcode.NOP), E(Opcode.HALT)]
    assert programs.top_level(words) == [0, 1, 4]


def test_wrapper_text_and_control_file():
    cfg = PRESETS["isaac"]
    text = wrapper.render(cfg)
    assert f"module {wrapper.TOP}" in text and "tile dut" in text and f"[{cfg.bus_bits - 1}:0]" in text
    vlt = wrapper.render_vlt()
    for p in wrapper.TILE_PORTS:  # read-only: a writable signal's logic runs in every eval() (render_vlt)
        assert f'public_flat_rd -module "tile" -var "{p}"' in vlt
    for p in wrapper.PORTS:
        assert f'-module "{wrapper.TOP}" -var "{p}"' in vlt
    assert 'public_flat_rw -module "cimtile_tb" -var "rst"' in vlt
    assert 'public_flat_rd -module "cimtile_tb" -var "din_used"' in vlt
    assert 'public_flat_rw -module "tile" -var "rst"' in wrapper.render_vlt(registered_inputs=False)


def test_patterns():
    from cimtile.tb.drivers import Pattern

    assert Pattern.of([1, 1, 1, 0]).register() == (0b0111, 4)
    assert Pattern.of("random").register() == (0, 0)
    assert Pattern.of(None).register() == (1, 1)
    with pytest.raises(ValueError, match="pattern"):
        Pattern.of([0, 0])


def test_wrapper_inputs_are_registered():
    """No logic of the testbench top reads an input port except the registers that sample it (Verilator would
    evaluate such logic in every eval(), twice per clock cycle); the legacy top (the speed baseline) does."""
    import re

    cfg = PRESETS["tiny"]
    names = [n for n, _ in wrapper._INPUTS]
    for registered in (True, False):
        text = wrapper.render(cfg, registered_inputs=registered)
        body = text.partition("localparam S_IDLE")[2]
        readers = [n for n in names if re.search(rf"(?<![.\w]){n}\b", body)]
        if registered:
            assert readers == [] and ".rst(rst_q)" in body
            for n in names:
                assert re.search(rf"^\s*{n}_q <= {n};$", text, re.M)
        else:
            assert "rst" in readers and "go" in readers and "_q" not in text


def test_simulator_process_runs_without_blas_threads_except_the_baseline(monkeypatch, tmp_path):
    """The simulator process gets OPENBLAS_NUM_THREADS=1 (spinning BLAS threads took CPU from the model);
    the legacy baseline of ``python -m bench cosim`` runs as the former testbench did."""
    import cocotb_tools.runner
    from cimtile.tb import runner

    seen = []

    class FakeRunner:
        def test(self, *, extra_env, **kw):
            seen.append(dict(extra_env))

    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda sim: FakeRunner())
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    for legacy in (False, True):
        b = runner.Build(PRESETS["tiny"], tmp_path, False, None, False, 0.0, legacy)
        runner.run(b, "cimtile.tb.tile_tests", test_dir=tmp_path / str(legacy))
    assert seen[0]["OPENBLAS_NUM_THREADS"] == "1" and "OPENBLAS_NUM_THREADS" not in seen[1]
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # a user's own setting wins
    runner.run(runner.Build(PRESETS["tiny"], tmp_path, False, None, False, 0.0), "m", test_dir=tmp_path / "u")
    assert seen[2]["OPENBLAS_NUM_THREADS"] == "2"


def test_run_dirs_are_per_process_and_stale_ones_are_removed(tmp_path, monkeypatch):
    """Each simulator run stages its files in a directory of its own process (and thread): runs of
    make sim, the bench and pytest on one shared build no longer clobber each other's files."""
    import os
    import subprocess
    import sys

    import cocotb_tools.runner
    from cimtile.tb import runner

    other = subprocess.run([sys.executable, "-c", "from cimtile.tb import runner; import sys\n"
                            "with runner.run_dir(sys.argv[1]) as d: print(d)", str(tmp_path)],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.isdir(other)  # kept after the run (its sim.log is what failure reports name)
    with runner.run_dir(tmp_path) as mine, runner.run_dir(tmp_path) as second:
        assert mine.name == f"run-{os.getpid()}" and second.name == f"run-{os.getpid()}-1"
        assert mine.is_dir() and second.is_dir()
    assert mine != other and not os.path.exists(other)  # the finished process's directory was removed
    with runner.run_dir(tmp_path) as again:  # this process's own directory is reused, not removed
        assert again == mine and mine.is_dir()

    seen = []

    class FakeRunner:
        def test(self, *, test_dir, **kw):
            seen.append(test_dir)

    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda sim: FakeRunner())
    runner.run(runner.Build(PRESETS["tiny"], tmp_path, False, None, False, 0.0), "m")
    assert seen == [tmp_path / f"run-{os.getpid()}"]  # runner.run's default is this process's directory


def test_pgo_flags_reach_verilated_mk():
    """tb.runner.verilator_env passes a PGO build's compiler and linker flags to verilated.mk (USER_CPPFLAGS,
    USER_LDFLAGS) through MAKEFLAGS, spaces escaped; without flags MAKEFLAGS names neither."""
    from cimtile.tb import runner

    flags = runner.verilator_env("-O2", "-fprofile-use -fprofile-partial-training", "-fprofile-generate")["MAKEFLAGS"]
    assert "USER_CPPFLAGS=-fprofile-use\\ -fprofile-partial-training" in flags
    assert "USER_LDFLAGS=-fprofile-generate" in flags
    plain = runner.verilator_env("-O2")["MAKEFLAGS"]
    assert "USER_CPPFLAGS" not in plain and "USER_LDFLAGS" not in plain


def test_native_builds_are_keyed_on_the_cpu(monkeypatch, tmp_path):
    """A model compiled with -march=native has this machine's CPU in its build key (tb.runner._host_cpu), so a
    build directory shared with another CPU rebuilds instead of running instructions that CPU may lack; a build
    without it is keyed on no CPU. The default optimisation compiles for this machine."""
    import os

    from cimtile.tb import runner

    assert "-march=native" in runner.OPT_FAST or "CIMTILE_OPT_FAST" in os.environ
    native = runner._host_cpu("-O2 -march=native")
    assert native and native == runner._host_cpu("-O2", "-O2 -march=native")
    assert runner._host_cpu("-O2") == runner._host_cpu("-O2", "") == ""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Other CPU\nflags\t\t: fpu sse2\n\n"
                       "processor\t: 1\nmodel name\t: Other CPU\n")
    real_path = runner.Path
    monkeypatch.setattr(runner, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    other = runner._host_cpu("-march=native")
    assert "Other CPU" in other and "fpu sse2" in other and other != native
