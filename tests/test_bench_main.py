"""``python -m bench``: a verdict per goal, one line naming the missed goals, ``--strict`` exits non-zero."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ lives beside tests/, not in the wheel
import bench
import bench.__main__ as bench_main


@pytest.mark.parametrize("value,goal,want", [
    (24.9, "<= 25", "pass"), (25.1, "<= 25", "MISS"), (3, "< 3", "MISS"), (0.96, ">= 0.95", "pass"),
    (1.0, "> 1", "MISS"), (0, "== 0", "pass"), (5, "(reported)", ""), (5, "", ""),
])
def test_verdict(value, goal, want):
    assert bench_main.verdict(value, goal) == want


@pytest.fixture
def fake_area(monkeypatch, tmp_path):
    runs = []
    mod = types.ModuleType("bench.fake")
    mod.__spec__ = importlib.machinery.ModuleSpec("bench.fake", None)
    mod.GOALS = {"fast_s": "< 1", "ratio": "<= 25", "info": "(reported)"}

    def run():
        runs.append(1)
        return {"fast_s": 0.5, "ratio": 30.0 + len(runs), "info": 7}

    mod.run = run
    monkeypatch.setitem(sys.modules, "bench.fake", mod)
    monkeypatch.setattr(bench_main, "AREAS", ("fake",))
    monkeypatch.setattr(bench, "AREAS", ("fake",))
    monkeypatch.setattr(bench_main, "OUT", tmp_path / "bench.json")
    return runs


def test_missed_goal_summary_and_strict(fake_area, capsys, tmp_path):
    assert bench_main.main([]) == 0  # not strict: report, do not fail
    out = capsys.readouterr().out
    assert "missed 1 of 2 goals: ratio = 31 (goal <= 25)" in out
    row = next(ln for ln in out.splitlines() if ln.startswith("ratio"))
    assert row.split()[-1] == "MISS"
    assert next(ln for ln in out.splitlines() if ln.startswith("fast_s")).split()[-1] == "pass"
    assert bench_main.main(["--strict"]) == 1
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["ratio"] == 32 and "load_avg_fake" in saved


def test_runs_give_a_range_and_markdown(fake_area, capsys):
    assert bench_main.main(["--runs", "3", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert len(fake_area) == 3
    assert "| `ratio` | 31 - 33 | <= 25 | MISS |" in out  # the range over runs; the verdict of the median


def test_all_met(monkeypatch, fake_area, capsys):
    monkeypatch.setattr(sys.modules["bench.fake"], "GOALS", {"fast_s": "< 1"})
    assert bench_main.main(["--strict"]) == 0
    assert "all 1 goals met" in capsys.readouterr().out


def test_bad_input_is_one_line_not_a_traceback(monkeypatch, fake_area, capsys):
    from cimtile.errors import CimtileError

    def run():
        raise CimtileError("BENCH_FAKE='x': not a number")

    monkeypatch.setattr(sys.modules["bench.fake"], "run", run)
    bench_main.main([])
    err = capsys.readouterr().err
    assert "bench: fake failed: BENCH_FAKE='x': not a number" in err
    assert "Traceback" not in err
