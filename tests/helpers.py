"""Helpers shared by several test modules (test modules do not import each other)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
from cimtile.hw.isa import Opcode, encode
from cimtile.hw.params import PRESETS
from cimtile.sim.tile import Tile
from cimtile.tb.regress import VARIANT  # noqa: F401  (re-exported: the tests import it from here)
from reference import RefTile

ROOT = Path(__file__).resolve().parent.parent
HALT = encode(Opcode.HALT)

TINY = PRESETS["tiny"]
#: ``VARIANT`` (tb/regress.py): different slice counts and ADC sharing: 2-bit DAC, 3 ADCs of 2 cycles over
#: 16 columns, row groups of 5 (a partial last group), differential pairs converted once, 3 requant lanes, a
#: 128-bit bus (two LDRQ records a word), two loop levels.

#: CI-sized runs (``CI`` set, as in CI's ``bash .ci/run``): the volume tests of the RTL in Amaranth's simulator
#: run fewer programs, and programs the Verilator co-simulation of the same suite runs are not run again in
#: Amaranth's simulator (README, "Tests"). ``make test`` elsewhere runs every size in full.
CI = bool(os.environ.get("CI"))


def ci_size(full, ci):
    """``ci`` in CI-sized runs, else ``full``."""
    return ci if CI else full


def bench_module(name: str) -> ModuleType:
    """``bench/<name>.py`` (the benchmarks are not an installed package; their modules import only
    ``cimtile``)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_same(res, ref, tile: Tile, rtile: RefTile, what: str) -> None:
    """Every observable of a sim run equals the reference's."""
    got = (res.cycles, res.instructions, res.halted, res.cause, res.pc, res.sync_tag)
    want = (ref.cycles, ref.instructions, ref.halted, ref.cause, ref.pc, ref.sync_tag)
    names = "cycles instructions halted cause pc sync_tag".split()
    for n, g, w in zip(names, got, want):
        assert g == w, f"{what}: {n} = {g}, reference {w} (sim stopped at: {res.text} {res.detail})"
    n, m = len(res.outputs), len(ref.outputs)
    assert n == m, f"{what}: {n} output blocks, reference {m}"
    for i, (g, w) in enumerate(zip(res.outputs, ref.outputs)):
        g = np.asarray(g).astype(np.int64)
        assert g.shape == w.shape, f"{what}: output block {i} shape {g.shape}, reference {w.shape}"
        assert np.array_equal(g, w), f"{what}: output block {i} differs:\n{g}\nreference\n{w}"
    sim_state, ref_state = tile.state(), rtile.state()
    assert sim_state.keys() == ref_state.keys()
    for k, w in ref_state.items():
        g = np.asarray(sim_state[k]).astype(np.int64)
        assert np.array_equal(g, w), f"{what}: state {k!r} differs:\n{g}\nreference\n{w}"
