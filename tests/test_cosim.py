"""Pytest launchers of the RTL co-simulation (cocotb on Verilator against the golden model).

Each launcher runs cocotb test modules through :mod:`cimtile.tb.suite` in a simulator process; builds are
cached per configuration under ``build/sim/`` (a first build of ``tiny`` takes about a minute).
"""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw.isa import Opcode
from cimtile.hw.isa import encode as E
from cimtile.hw.params import PRESETS
from helpers import CI

pytestmark = pytest.mark.cosim


def _check(res):
    from cimtile.tb.suite import format_table

    print(format_table(res.records))
    failed = [r for r in res.records if r["result"] != "PASS"]
    assert not failed, "\n\n".join(f"{r['test']} on {r['config']}:\n{r.get('report', '')}" for r in failed)


def test_cosim_tiny():
    """The whole suite on the tiny preset."""
    from cimtile.tb.suite import run_suite

    _check(run_suite(["tiny"]))


@pytest.mark.slow
def test_cosim_isaac():
    """The suite on the ISAAC-like 128x128 preset (random programs, edge cases, a conv layer)."""
    from cimtile.tb.suite import run_suite

    _check(run_suite(["isaac"]))


@pytest.mark.slow
def test_cosim_variant():
    """The suite on ``variant`` (tb/regress.py: 2-bit DAC, 3 ADCs of 2 cycles, row groups of 5, pairs converted
    once): its directed programs and read-backs among them (CI-sized runs take them from here rather than from
    Amaranth's simulator, tests/test_hw_tile.py)."""
    from cimtile.tb.programs import DIRECTED
    from cimtile.tb.regress import VARIANT
    from cimtile.tb.suite import run_suite

    res = run_suite([VARIANT])
    _check(res)
    ran = {r["test"] for r in res.records if r["instructions"] > 0}
    assert {f"directed/which={w}" for w in DIRECTED} <= ran, sorted(ran)


def test_cosim_mutant_is_caught():
    """A design with a deliberately wrong shift in the shift-and-add fails the suite's fast tests."""
    from cimtile.tb.suite import run_mutant

    caught, res = run_mutant("tiny", "shift_add")
    assert res.records, "no test ran on the mutant"
    assert caught, "the mutated design (shift_add) passed every test:\n" + "\n".join(
        f"{r['test']}: {r['result']}" for r in res.records)


def test_backend_matches_golden_batch():
    """tb.backend.run equals the golden model's batched run: outputs, cycles, sync_tag."""
    from cimtile.sim.tile import Tile
    from cimtile.tb import backend
    from cimtile.tb.programs import conv_layer_program

    cfg = PRESETS["tiny"]
    p = conv_layer_program(cfg, 5, pixels=cfg.in_depth)
    words = p.words[:-1] + [E(Opcode.SYNC, tag=77), E(Opcode.RDW, start=0, count=4), E(Opcode.HALT)]
    rng = np.random.default_rng(5)
    feed = list(p.feed[:3]) + [rng.integers(0, 256, (2, cfg.in_depth, cfg.rows))]
    gold = Tile(cfg, batch=2).run(words, feed)
    rtl = backend.run(cfg, words, feed, batch=2)
    assert gold.ok and rtl.ok
    assert (rtl.cycles, rtl.instructions, rtl.sync_tag) == (gold.cycles, gold.instructions, gold.sync_tag)
    assert len(rtl.outputs) == len(gold.outputs)
    for a, b in zip(rtl.outputs, gold.outputs):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.astype(np.int64), b.astype(np.int64))


def test_backend_reports_errors():
    """An illegal program: the backend reports the golden model's cause and pc."""
    from cimtile.sim.tile import Tile
    from cimtile.tb import backend

    cfg = PRESETS["tiny"]
    words = [E(Opcode.NOP), E(Opcode.SYNC, tag=1), E(Opcode.WSET, row=0, col=cfg.cols, value=0), E(Opcode.HALT)]
    gold = Tile(cfg).run(words)
    rtl = backend.run(cfg, words)
    assert (rtl.cause, rtl.pc, rtl.cycles, rtl.halted) == (gold.cause, gold.pc, gold.cycles, gold.halted)


def test_backend_missing_data_is_an_error_not_a_hang():
    """A load instruction without a feed block: a one-line BackendError, not a stalled simulation."""
    from cimtile.tb import backend

    cfg = PRESETS["tiny"]
    with pytest.raises(backend.BackendError, match="feed hold a block for every load"):
        backend.run(cfg, [E(Opcode.LDIN, start=0, count=2), E(Opcode.HALT)], [])


def _lz4_block_decompress(src: bytes, size: int) -> bytes:
    """Decode one LZ4 block (the format FST's hierarchy block uses); a reader independent of lz4.c."""
    out = bytearray()
    i = 0

    def length(n: int, i: int) -> tuple[int, int]:
        if n == 15:  # 15 means "more bytes follow", each added until one is not 255
            while True:
                b = src[i]
                i += 1
                n += b
                if b != 255:
                    break
        return n, i

    while True:
        token = src[i]
        i += 1
        n, i = length(token >> 4, i)
        out += src[i:i + n]
        i += n
        if i >= len(src):  # the last sequence has literals only
            break
        offset = src[i] | src[i + 1] << 8
        i += 2
        m, i = length(token & 15, i)
        start = len(out) - offset
        for k in range(m + 4):  # byte by byte: a match may overlap its own output
            out.append(out[start + k])
    assert len(out) == size, f"LZ4 block decoded to {len(out)} bytes, the header says {size}"
    return bytes(out)


@pytest.mark.slow
def test_waves_are_fst():
    """WAVES=1 writes a complete FST file (lz4 compiled in when the system lacks it), readable here.

    Walks the FST blocks (type byte, big-endian length), checks the header (FST's endianness
    constant e, variables, a value-change block) and decodes the LZ4-compressed hierarchy with
    an independent decoder: it must name the testbench top and the tile instance.
    """
    import math
    import struct

    from cimtile.tb import runner
    from cimtile.tb.suite import run_suite

    res = run_suite(["tiny"], tests="smoke", waves=True)
    _check(res)
    ws = runner.wave_support()
    assert ws.format == "fst", f"traced builds fell back to VCD: {ws.reason}"
    dump = res.logs["tiny"].parent / "dump.fst"
    data = dump.read_bytes()
    blocks, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 1:pos + 9], "big")  # counts itself, not the type byte
        assert length >= 8, f"{dump}: block at byte {pos} has length {length}"
        blocks.append((data[pos], data[pos + 9:pos + 1 + length]))
        pos += 1 + length
    assert pos == len(data), f"{dump}: blocks overrun the file (not closed?)"
    types = [t for t, _ in blocks]
    assert types[0] == 0 and 8 in types and 6 in types, f"{dump}: block types {types}"
    head = blocks[0][1]
    start, end = struct.unpack(">QQ", head[:16])
    (endian,) = struct.unpack("<d", head[16:24])
    _, n_scopes, n_vars, _, n_wave_blocks = struct.unpack(">QQQQQ", head[24:64])
    assert endian == math.e and end > start and n_scopes > 1 and n_vars > 10 and n_wave_blocks >= 1
    hier = next(p for t, p in blocks if t == 6)
    names = _lz4_block_decompress(hier[8:], int.from_bytes(hier[:8], "big"))
    assert b"cimtile_tb\0" in names and b"dut\0" in names


def test_concurrent_runs_on_one_build_do_not_clobber():
    """Two simulator processes on the same build at once (make sim, the bench and pytest sharing
    CIMTILE_SIM_DIR): each stages its program, data and results in its own run directory."""
    import os
    import subprocess
    import sys

    from cimtile.tb import runner

    runner.build(PRESETS["tiny"])  # built once, shared
    code = ("from cimtile.tb.suite import run_suite\n"
            "r = run_suite(['tiny'], tests=r'\\.(smoke|signed_inputs)$')\n"
            "print(r.ok, len(r.records), r.logs['tiny'])\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "CI": "true"}) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [o[:2] for o in outs] == [["True", "2"], ["True", "2"]], outs
    assert outs[0][2] != outs[1][2]  # two logs in two run directories


@pytest.mark.skipif(CI, reason="CI-sized run: its models are built without PGO, and this test's two compilations "
                               "of tiny cost about 4 minutes of CI's cores (README, 'Tests: full size and CI size')")
def test_pgo_build_is_trained_on_the_layer_program():
    """A profile-guided build (the default outside CI, tb.runner.PGO): compiled instrumented, trained on the
    layer program (which leaves the profile beside the objects), then compiled again with the profile and no
    mismatch between the two compilations. Where PGO is not the default it is built in a directory of its own
    (``CIMTILE_PGO=0 make test`` runs that case). Not in CI-sized runs: their models are all built without PGO."""
    from cimtile.tb import runner

    b = runner.build(PRESETS["tiny"], pgo=True)
    assert b.build_dir == runner.build_dir_for(PRESETS["tiny"], pgo=True)
    assert b.build_dir.name == ("tiny" if runner.PGO else "tiny-pgo")
    assert (b.build_dir / "build-pgo-generate.log").read_text().count("-fprofile-generate") > 0
    log = (b.build_dir / "build.log").read_text()
    assert "-fprofile-use" in log and "coverage-mismatch" not in log
    trained = [f.name for f in b.build_dir.glob("Vtop___024root__*.gcda")]
    assert trained, "the training run left no profile of the model"
