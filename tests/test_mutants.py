"""tb/mutants.py: every named mutant still applies to the RTL source, and a mutated design differs."""

from __future__ import annotations

import pytest
from cimtile.tb import mutants
from cimtile.tb.amaranth_sim import golden_runs, run_rtl
from cimtile.tb.programs import directed_programs
from helpers import TINY


@pytest.mark.parametrize("name", mutants.MUTANTS)
def test_mutant_applies_to_a_copy(name):
    cls = mutants.tile_class(name)
    import cimtile.hw.tile as tile

    assert cls is not tile.Tile and cls.__module__ != tile.__name__
    assert hasattr(cls, "elaborate")
    assert mutants.mutant_key(name).startswith(name + ":")


def test_unknown_mutant_is_refused():
    with pytest.raises(mutants.MutantError, match="unknown mutant"):
        mutants.tile_class("nope")


def test_an_import_cycle_is_refused_not_looped_on(tmp_path, monkeypatch):
    """A mutant's copies load each after what it imports: modules importing each other (a function-local import
    of one in the other, say) have no such order, and must be refused with their names rather than hang."""
    (tmp_path / "tile.py").write_text("from .lanes import Lanes\n")
    (tmp_path / "lanes.py").write_text("from .adder import LAYOUT\n")
    (tmp_path / "adder.py").write_text("def f():\n    from .lanes import Lanes\n")
    monkeypatch.setattr(mutants, "_HW", tmp_path)
    with pytest.raises(mutants.MutantError, match="adder, lanes import each other in a cycle"):
        mutants._importers("adder")
    (tmp_path / "adder.py").write_text("LAYOUT = 1\n")  # the cycle broken: an order exists
    assert mutants._importers("adder") == ["adder", "lanes", "tile"]


def test_cfg_decode_mutant_changes_the_adc_shift_sweep():
    """The mutant (adc_shift loses its top bit) gives other MVM results; the real RTL does not."""
    p = directed_programs(TINY)["adc_shift_sweep"]
    (res, din, dout), = golden_runs(TINY, [(p.words, p.feed)])
    good, = run_rtl(TINY, [(p.words, din)])
    bad, = run_rtl(TINY, [(p.words, din)], mutation="cfg_decode")
    assert good.dout == dout
    assert bad.dout != dout


def test_looped_req_kills_requant_rounding():
    """The directed looped_req program alone tells REQ's rounding from truncation."""
    p = directed_programs(TINY)["looped_req"]
    (res, din, dout), = golden_runs(TINY, [(p.words, p.feed)])
    bad, = run_rtl(TINY, [(p.words, din)], mutation="requant_rounding")
    assert bad.dout != dout


def test_make_sim_configurations_reach_every_weight_encoding():
    """make sim's default list (which make mutate's sim suite runs, smallest first) includes a differential-analog
    configuration: without one, diff_column_index is an equivalent mutant for make sim."""
    from cimtile.tb.mutate import sim_order
    from cimtile.tb.regress import resolve
    from cimtile.tb.suite import SIM_CONFIGS

    order = sim_order()
    assert sorted(c.name for c in order) == sorted(resolve(n).name for n in SIM_CONFIGS)
    assert [c.rows * c.cols for c in order] == sorted(c.rows * c.cols for c in order)
    assert {c.weight_encoding for c in order} >= {"differential", "differential-analog"}


def test_mutate_reports_kills_per_suite(monkeypatch, capsys):
    from cimtile.tb import mutate

    monkeypatch.setattr(mutate, "run_pytest", lambda name, jobs: (name != "cfg_decode", "t"))
    monkeypatch.setattr(mutate, "run_sim", lambda name: (True, "t"))
    rc = mutate.main(["--suites", "pytest,sim", "--mutants", "cfg_decode,sign_slice"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "pytest: 1/2 mutants killed (NOT all)" in out and "sim: 2/2 mutants killed" in out
