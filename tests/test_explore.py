"""The joint exploration (cimtile.explore): the space's validation, the scorers' consistency with the compiled
bundle and the golden model, resumable studies, hypervolumes, and one-line errors (docs/explore.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cimtile.explore import ExploreConfig, ExploreError, Space, explore
from cimtile.explore.pareto import _hv
from cimtile.search.executor import InProcessExecutor

from cimtile.cli import main

# a narrow space of tiny networks and small tiles: each candidate trains and compiles in a second or two
SMALL = {"rows": [32, 64], "cols": [32, 64], "adc_bits": [4, 6, 8], "family": ["cnn"], "stages": [1, 2],
         "convs": [1], "width0": [4, 8], "width1": [4, 8], "n_tiles": [1, 8]}


class Counting(InProcessExecutor):
    """The in-process executor, counting the evaluations it runs."""

    def __init__(self):
        self.items = 0

    def map(self, fn, items):
        self.items += len(items)
        return super().map(fn, items)


def _cfg(budget: int, **kw) -> ExploreConfig:
    return ExploreConfig(budget=budget, strategies=("joint", "precision"), float_epochs=1, qat_epochs=0.25,
                         precision_agent="random", space=SMALL, population=2, progress=False, sparsity=True, **kw)


def test_space_dimensions_are_checked_against_tile_config():
    sp = Space()
    assert all(32 <= v <= 256 for v in sp.choices["rows"])
    with pytest.raises(ExploreError, match=r"'rows': choice 2048 outside TileConfig.rows's range 2..1024"):
        Space({"rows": [64, 2048]})
    with pytest.raises(ExploreError, match=r"'adc_bits': choice 1 outside TileConfig.adc_bits's range 2..14"):
        Space({"adc_bits": [1]})
    with pytest.raises(ExploreError, match="unknown dimension 'rowz'"):
        Space({"rowz": [64]})
    with pytest.raises(ExploreError, match="'w3': choice 9 outside 2..8 bits"):
        Space({"w3": [9]})
    with pytest.raises(ExploreError, match="'sparsity': choice 1.5"):
        Space({"sparsity": [0.0, 1.5]}, sparsity=True)
    # a candidate's tile is a valid TileConfig with the base preset's other fields; rows_per_conv clipped
    c = sp.complete({"rows": 32, "rows_per_conv": 256, "cols": 32}, {})
    t = sp.tile(c)
    assert (t.rows, t.rows_per_conv, t.cols, t.acc_bits) == (32, 32, 32, sp.base.acc_bits)


def test_hypervolume_exact():
    assert _hv(np.array([[0.5, 0.5, 0.5, 0.5]])) == pytest.approx(0.0625)
    # two boxes of volume 0.5 overlapping in 0.25
    assert _hv(np.array([[0.5, 0, 0, 0], [0, 0.5, 0, 0]])) == pytest.approx(0.75)
    assert _hv(np.array([[1.2, 0, 0, 0]])) == 0.0  # outside the reference point


def test_energy_table_has_one_home():
    import importlib.util
    import sys
    from pathlib import Path

    from cimtile.sim import energy

    path = Path(__file__).resolve().parent.parent / "bench" / "training.py"
    spec = importlib.util.spec_from_file_location("_bench_training", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_bench_training"] = mod
    try:
        spec.loader.exec_module(mod)
        assert mod.ENERGY is energy.ENERGY
    finally:
        del sys.modules["_bench_training"]
    # ADC energy doubles per bit (Walden), equal to ISAAC's at 8 bits
    assert energy.adc_energy_pj(8) == energy.ENERGY["adc_conversion"][0]
    assert energy.adc_energy_pj(6) == energy.adc_energy_pj(8) / 4


def test_registry_copies_equal_a_fresh_build():
    from cimtile.explore.score import _registry_once
    from torch.onnx._internal.exporter import _registration as R

    _registry_once()
    a, b = R.ONNXRegistry.from_torchlib(), R.ONNXRegistry.from_torchlib()
    fresh = R.ONNXRegistry._cimtile_fresh()
    assert a is not b and a.functions is not b.functions
    assert {k: len(v) for k, v in a.functions.items()} == {k: len(v) for k, v in fresh.functions.items()}
    a.functions.clear()  # an export registering into its copy leaves the next export's copy whole
    assert len(R.ONNXRegistry.from_torchlib().functions) == len(fresh.functions)


@pytest.mark.slow
def test_small_exploration_is_consistent_and_resumes(tmp_path):
    out = tmp_path / "x"
    ex = Counting()
    s = explore(_cfg(1, device="rram-faults"), out, executor=ex)
    assert s["evaluations"] == {"joint": 1, "precision": 1}
    assert ex.items == s["performed_this_run"] <= 3  # the reference and one candidate per strategy
    rows = json.loads((out / "candidates.json").read_text())
    assert len(rows) == 2 and (out / "candidates.csv").read_text().count("\n") == 3
    for r in rows:
        if r["status"] != "ok":
            continue
        # the reported cycles are the cost API's, equal to the compiled bundle's report; the golden model's run of
        # the validation batch equals the report's count for that batch
        assert r["cycles"] == r["bundle_cycles"]
        assert r["golden_cycles"] == r["report_batch_cycles"] and r["golden_images"] > 100
        # weight-stationary on n_tiles tiles when the crossbar tiles fit; the latency is a batch's cycles per image
        assert r["fits"] == (r["xbar_tiles"] <= r["candidate"]["n_tiles"])
        assert r["latency"] == pytest.approx(r["batch_cycles"] / 1000)
        assert 0 <= r["acc_device"] <= 100 and r["acc"] == r["acc_device"]
    assert set(s["hypervolume"]) == {"joint", "precision"} and "explore_hv_ratio" in s
    assert {"hv_ideal", "hv_device", "left_front"} <= set(s["device"])
    assert (out / "objectives.png").stat().st_size > 0 and (out / "fronts.png").stat().st_size > 0
    # resumed with a larger budget: only the new candidates are evaluated
    ex2 = Counting()
    s2 = explore(_cfg(2, device="rram-faults"), out, executor=ex2)
    assert s2["evaluations"] == {"joint": 2, "precision": 2}
    assert ex2.items == s2["performed_this_run"] <= 2
    first = json.loads((out / "candidates.json").read_text())
    assert [r["key"] for r in first if r["index"] < 1] == [r["key"] for r in rows]
    # the same run again: nothing left to evaluate
    ex3 = Counting()
    explore(_cfg(2, device="rram-faults"), out, executor=ex3)
    assert ex3.items == 0
    # other settings in the same directory: refused, not mixed
    with pytest.raises(ExploreError, match="other settings"):
        explore(_cfg(2), out, executor=Counting())


def test_initial_population_starts_at_the_reference():
    from cimtile.explore.run import _fixed, initial_population
    from cimtile.explore.space import DIMENSIONS

    sp = Space(SMALL, sparsity=True)
    ref = _fixed(sp)
    pop = initial_population("joint", sp, 7, seed=3)
    assert pop == initial_population("joint", sp, 7, seed=3) != initial_population("joint", sp, 7, seed=4)
    assert len(pop) == 7 and pop[0] == {n: ref[n] for n in sp.names()}
    # every later individual varies one group (tile, network, precision in turn) and keeps the reference's others
    for i, p in enumerate(pop[1:]):
        group = ("tile", "network", "precision")[i % 3]
        assert all(v == ref[n] for n, v in p.items() if DIMENSIONS[n].group != group)
    # a single-sided strategy starts at the reference too, then NSGA-II's own sampling of its group
    assert initial_population("hardware", sp, 7, seed=3) == [{n: ref[n] for n in sp.names(("tile",))}]


def test_vit_in_the_space():
    sp = Space()
    assert set(sp.choices["family"]) == {"cnn", "vit"}
    c = sp.complete({"family": "vit", "vit_dim": 16, "vit_depth": 2}, {})
    (spec,) = sp.layers(c, 8)
    assert spec[0] == "vit" and spec[1:7] == (8, 2, 16, 2, 4, 32) and Space.n_layers(c) == 10
    # the key drops the CNN genes of a ViT and the ViT genes of a CNN (one evaluation each)
    assert Space.key(c) == Space.key({**c, "stages": 3, "width0": 32})
    assert Space.key(c) != Space.key({**c, "w9": 8}) and "vit_dim" not in Space.key(sp.complete({}, {}))
    with pytest.raises(ExploreError, match="'vit_dim': choice 18 is not a multiple of 4"):
        Space({"vit_dim": [16, 18]})
    with pytest.raises(ExploreError, match="'family': choice 'rnn'"):
        Space({"family": ["rnn"]})


@pytest.mark.slow
def test_vit_candidate_is_scored_consistently():
    from cimtile.explore.score import evaluate

    sp = Space()
    c = sp.complete({"family": "vit", "vit_dim": 16, "vit_depth": 1, "rows": 64, "cols": 64}, {})
    r = evaluate({"data": "digits", "seed": 0, "float_epochs": 1, "qat_epochs": 0.25, "batch": 1000,
                  "mapping": "calibrated", "device": None, "candidate": c,
                  "space": {"overrides": {}, "sparsity": False, "base": "isaac"}})
    assert r["status"] == "ok" and r["layers"] == 6
    assert r["cycles"] == r["bundle_cycles"] and r["golden_cycles"] == r["report_batch_cycles"]
    assert r["counts"]["adc_conversions"] > 0 and 0 <= r["acc"] <= 100


@pytest.mark.slow
def test_results_do_not_depend_on_the_number_of_workers(tmp_path):
    from cimtile.search.executor import RayExecutor

    cfg = ExploreConfig(budget=3, strategies=("joint",), float_epochs=1, qat_epochs=0.25, space=SMALL,
                        population=2, progress=False, seed=5)
    explore(cfg, tmp_path / "one", executor=InProcessExecutor())
    ray = RayExecutor(workers=2)
    try:
        explore(cfg, tmp_path / "two", executor=ray)
    finally:
        ray.close()
    keep = ("key", "status", "acc", "acc_torch", "latency", "cycles", "energy_pj", "area_mm2")
    one, two = ([{k: r.get(k) for k in keep} for r in json.loads((tmp_path / d / "candidates.json").read_text())]
                for d in ("one", "two"))
    assert len(one) == 3 and one == two
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["hypervolume"] == \
        json.loads((tmp_path / "two" / "summary.json").read_text())["hypervolume"]


@pytest.mark.parametrize("args, msg", [
    (["--budget", "0"], "budget 0: at least 1"),
    (["--strategies", "joint,magic"], "strategy 'magic'"),
    (["--mapping", "fuzzy"], "mapping 'fuzzy'"),
    (["--synth", "all"], None),
    (["--device", "nosuch"], "nosuch"),
    (["--precision-agent", "oracle"], "precision agent 'oracle'"),
    (["--seeding", "magic"], None),
])
def test_cli_bad_input_one_line(tmp_path, capsys, args, msg):
    if msg is None:  # an argparse choice: a usage error (exit 2)
        with pytest.raises(SystemExit) as e:
            main(["explore", "-o", str(tmp_path / "o"), *args])
        assert e.value.code == 2 and not (tmp_path / "o").exists()
        return
    assert main(["explore", "-o", str(tmp_path / "o"), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cimtile: error:") and msg in err and "\n" not in err
    assert not (tmp_path / "o").exists()  # nothing written for a refused run


def test_cli_bad_space_file(tmp_path, capsys):
    f = tmp_path / "space.json"
    f.write_text(json.dumps({"cols": [64, 4096]}))
    assert main(["explore", "-o", str(tmp_path / "o"), "--space", str(f)]) == 1
    err = capsys.readouterr().err.strip()
    assert "'cols': choice 4096 outside TileConfig.cols's range" in err and "\n" not in err
    f.write_text("{not json")
    assert main(["explore", "-o", str(tmp_path / "o"), "--space", str(f)]) == 1
    assert "space file" in capsys.readouterr().err


def test_synth_cache_key_and_netlist_counts(tmp_path):
    from cimtile.explore.synth import config_hash, netlist_resources

    sp = Space()
    cfg = sp.tile(sp.complete({}, {}))
    assert config_hash(cfg) == config_hash(cfg.replace(name="other"))  # one synthesis per tile, whatever its name
    assert config_hash(cfg) != config_hash(cfg.replace(adc_bits=cfg.adc_bits + 1))
    cells = {f"c{i}": {"type": t} for i, t in enumerate(["LUT4"] * 3 + ["TRELLIS_FF"] * 2 + ["DP16KD", "PFUMX"]
                                                       + ["CCU2C"])}
    net = tmp_path / "tile_synth.json"
    net.write_text(json.dumps({"modules": {"tile": {"cells": cells}}}))
    # hw.build's one counting rule: a carry cell is two LUTs (make synth's pnr=False figures count the same)
    assert netlist_resources(net) == {"luts": 5, "ffs": 2, "brams": 1, "mults": 0,
                                      "source": "yosys synth_ecp5 netlist"}
