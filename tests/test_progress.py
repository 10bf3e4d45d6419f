"""Long steps say what they do on a terminal and stay quiet in logs and CI (cimtile.progress)."""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pytest
from models import conv_qdq

from cimtile import compiler, progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("ci,tty,forced,want", [
    (None, True, None, True), ("true", True, None, False), ("1", True, None, False), (None, False, None, False),
    ("true", False, True, True), (None, True, False, False),
])
def test_enabled(monkeypatch, ci, tty, forced, want):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(sys, "stderr", _Tty() if tty else io.StringIO())
    assert progress.enabled(forced) is want


def test_status_names_each_step_and_ticks(monkeypatch):
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.delenv("CI", raising=False)
    with progress.status("synth tiny", steps=3, interval=0.05) as st:
        st.step("yosys")
        deadline = time.monotonic() + 10  # the ticker refreshes every 0.05 s; a loaded machine may be slow
        while err.getvalue().count("synth tiny: yosys") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        st.step("nextpnr")
    text = err.getvalue()
    assert "synth tiny: yosys [0/3]" in text and "synth tiny: nextpnr [1/3]" in text
    assert text.count("synth tiny: yosys") >= 3  # refreshed while the step ran (elapsed time moves)


def test_quiet_when_not_a_terminal(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress.status("synth tiny", steps=3) as st:
        st.step("yosys")
    for _ in progress.bar(range(3), desc="x"):
        pass
    assert err.getvalue() == ""


def test_run_progress_counts_program_runs(monkeypatch):
    """The run bar advances per program run (a layer's programs times its copies), several times through a long
    program, and shows the layer; results are bit-identical with and without the bar."""
    import cimtile.compiler.runtime as runtime

    b = compiler.compile_model(conv_qdq(), "tiny")
    L = b.model.layers[0]
    x = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    runs = len(L.programs) * -(-40 * L.schedule.positions // L.schedule.chunk)
    assert runs >= 16 * len(L.programs)
    bars, updates = [], []

    def keep(*a, **kw):
        bar = progress.bar(*a, **kw)
        update = bar.update
        bar.update = lambda n=1: (updates.append(n), update(n))[1]
        bars.append(bar)
        return bar

    monkeypatch.setattr(runtime, "progress_bar", keep)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    y, st = compiler.run(b, x, progress=True, stats=True)
    assert bars[0].total == runs and bars[0].n == runs
    assert len(updates) > 2 * len(L.programs)  # not one jump per program
    assert "layer conv" in sys.stderr.getvalue()
    y0, st0 = compiler.run(b, x, progress=False, stats=True)
    from cimtile.compiler.report import for_batch

    rep40 = for_batch(b.report, 40)["totals"]  # the batch schedule: weights once, compute per run
    assert np.array_equal(y, y0) and st.cycles == st0.cycles == rep40["cycles"]
    assert sum(st.program_cycles.values()) == rep40["program_cycles"]
