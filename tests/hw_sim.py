"""Amaranth-simulator helpers for the component tests of hw/ (tests/test_hw_<component>.py)."""

from __future__ import annotations

from amaranth.sim import Simulator


def simulate(dut, bench, clock: bool = True) -> None:
    """Run the async testbench ``bench(ctx)`` on ``dut`` (with a clock unless ``clock`` is False)."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def digits(j: int, n_out: int, nrg: int, gconv: int) -> tuple[int, int, int, int]:
    """Conversion ``j`` of an MVM as (input slice, row group, output, conversion in the output's
    group), q fastest (docs/microarchitecture.md, MVM)."""
    q, j = j % gconv, j // gconv
    o, j = j % n_out, j // n_out
    rg, k = j % nrg, j // nrg
    return k, rg, o, q
