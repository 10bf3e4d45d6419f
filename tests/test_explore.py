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
        # the area objective: the analog parts plus n_tiles controllers, whose source is recorded
        assert r["area_source"] in ("synthesised", "model") and r["controller"]["mm2"] > 0
        assert r["area_mm2"] == pytest.approx(r["area_analog_mm2"] + r["controller"]["mm2"] * r["candidate"]["n_tiles"])
    assert set(s["hypervolume"]) == {"joint", "precision"} and "explore_hv_ratio" in s
    assert {"hv_ideal", "hv_device", "left_front"} <= set(s["device"])
    assert (out / "objectives.png").stat().st_size > 0 and (out / "fronts.png").stat().st_size > 0
    # the seeded first generation is NSGA-II's generation 0 (enqueued trials get none of their own in optuna)
    import optuna

    st = optuna.load_study(study_name="joint", storage=f"sqlite:///{out / 'study.db'}")
    asked = [t for t in st.trials if t.state.is_finished()]  # the second enqueued trial waits for budget 2
    assert [t.system_attrs.get("NSGAIISampler:generation") for t in asked] == [0] and len(st.trials) == 2
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
    pop = initial_population("joint", sp, 7, seed=3, seeding="reference")
    other = initial_population("joint", sp, 7, 4, "reference")
    assert pop == initial_population("joint", sp, 7, 3, "reference") != other
    assert len(pop) == 7 and pop[0] == {n: ref[n] for n in sp.names()}
    # reference: every later individual varies one group (tile, network, precision in turn), keeps the others
    for i, p in enumerate(pop[1:]):
        group = ("tile", "network", "precision")[i % 3]
        assert all(v == ref[n] for n, v in p.items() if DIMENSIONS[n].group != group)
    # a single-sided strategy starts at the reference too, then NSGA-II's own sampling of its group
    assert initial_population("hardware", sp, 7, seed=3) == [{n: ref[n] for n in sp.names(("tile",))}]
    assert initial_population("hardware", sp, 7, 3, "reference") == initial_population("hardware", sp, 7, 3)
    # combined (the default): the reference, then individuals varying each group with probability 1/2 (at least
    # one), from the same per-group draws; each group is varied in about 4 of 7 (a half of those with >= 1)
    big = initial_population("joint", Space(sparsity=True), 701, seed=3, seeding="combined")
    full = _fixed(Space(sparsity=True))
    assert big[0] == {n: full[n] for n in big[0]}
    varied = [{DIMENSIONS[n].group for n, v in p.items() if v != full[n]} for p in big[1:]]
    assert all(varied)  # every individual leaves the reference (a uniform draw may repeat a gene's value, not all)
    for g in ("tile", "network", "precision"):
        assert 0.5 < sum(g in v for v in varied) / 700 < 0.65
    assert sum(len(v) > 1 for v in varied) > 300  # combinations of groups already in the first generation
    # factorial: the 7 non-empty group subsets once each (each group varied in exactly 4 of 7), and each gene's
    # values without replacement over the individuals varying its group; the baselines' first generations too
    fac = initial_population("joint", Space(sparsity=True), 8, seed=3, seeding="factorial")
    assert fac[0] == big[0] and fac == initial_population("joint", Space(sparsity=True), 8, 3, "factorial")
    varied = [{DIMENSIONS[n].group for n, v in p.items() if v != full[n]} for p in fac[1:]]
    assert len({frozenset(v) for v in varied}) == 7  # every combination of groups once
    assert all(sum(g in v for v in varied) == 4 for g in ("tile", "network", "precision"))
    hw = initial_population("hardware", Space(sparsity=True), 8, seed=3, seeding="factorial")
    assert len(hw) == 8 and sorted({p["n_tiles"] for p in hw[1:]}) == [1, 2, 4, 8, 16]
    ch = Space().choices
    assert all(max(sum(p[n] == v for p in hw[1:]) for v in ch[n]) == -(-7 // len(ch[n])) for n in hw[0])


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


# the smallest networks and tiles of SMALL, for the tests that evaluate the same candidates twice
TINY = {**SMALL, "rows": [32], "cols": [32], "stages": [1], "width0": [4], "w0": [4, 6], "a0": [8],
        "w1": [8], "a1": [4, 8]}


def _job(c: dict, sp: Space, reuse=None) -> dict:
    return {"data": "digits", "seed": 3, "float_epochs": 1, "qat_epochs": 0.25, "batch": 1000,
            "mapping": "calibrated", "device": None, "candidate": c, "reuse": None if reuse is None else str(reuse),
            "space": {"overrides": {k: list(v) for k, v in sp.choices.items()}, "sparsity": False, "base": "isaac"}}


_SCORES = ("key", "status", "params", "acc", "acc_torch", "cycles", "compute_cycles", "program_cycles", "golden_cycles",
           "latency", "batch_cycles", "xbar_tiles", "fits", "counts", "energy", "area", "policy")


@pytest.mark.slow
def test_a_reused_network_scores_as_a_fresh_one(tmp_path):
    from cimtile.explore.score import evaluate

    sp = Space(TINY)
    ref = sp.complete({}, {})
    tile = {**ref, "adc_bits": 4, "n_tiles": 8}  # the same network at the same bits on another tile
    bits = {**ref, "w0": 6}  # the same float network at other bits
    reuse = tmp_path / "reuse"
    first = evaluate(_job(ref, sp, reuse))
    got = {"tile": evaluate(_job(tile, sp, reuse)), "bits": evaluate(_job(bits, sp, reuse))}
    assert first["reused"] is None and got["tile"]["reused"] == "network" and got["bits"]["reused"] == "float"
    assert len(list(reuse.glob("net-*/candidate.onnx"))) == 2 and len(list(reuse.glob("float-*.npz"))) == 1
    for name, c in (("tile", tile), ("bits", bits)):
        fresh = evaluate(_job(c, sp))
        assert fresh["reused"] is None and got[name]["status"] == "ok"
        assert {k: got[name].get(k) for k in _SCORES} == {k: fresh.get(k) for k in _SCORES}, name


@pytest.mark.slow
def test_torchscript_export_compiles_to_the_dynamo_exports_bundle(tmp_path):
    """The explorer exports with torch's TorchScript exporter (score._network): the same crossbar layers, cycles,
    operation counts and golden outputs as the dynamo exporter's file (the exporters name nodes differently, and
    one writes the host's flatten as Flatten, the other as Reshape)."""
    import torch
    from cimtile.compiler import compile_model, run
    from cimtile.explore.score import _data
    from cimtile.search import qat
    from cimtile.sim.energy import operation_counts
    from cimtile.zoo import mnist_nets
    from cimtile.zoo.fit import fit

    sp = Space(TINY)
    c = sp.complete({"w0": 4, "a1": 4}, {})
    xf, yf, xv, _ = _data("digits")
    spec = sp.layers(c, xf.shape[-1])
    pol = sp.policy(c, mnist_nets.weight_layers(spec))
    torch.set_num_threads(1)
    net = fit(mnist_nets.torch_net(spec), xf, yf, epochs=1, lr=2e-3, seed=0)
    q = qat.finetune(qat.build(spec, pol, net), xf, yf, 0.25, 0)
    out = []
    for dynamo in (True, False):
        path = tmp_path / f"d{dynamo}.onnx"
        qat.export_qcdq(q, xv, path, dynamo=dynamo)
        b = compile_model(path, sp.tile(c), mapping="calibrated", calibration=xf[:256], progress=False)
        y, st = run(b, xv[:64], progress=False, stats=True)
        unnamed = lambda ls: [{k: v for k, v in lay.items() if k != "name"} for lay in ls]
        counts = operation_counts(b)
        out.append((unnamed(b.report["layers"]), b.report["totals"], {**counts, "layers": unnamed(counts["layers"])},
                    np.asarray(y), st.cycles))
    assert out[0][0] and out[0][:3] == out[1][:3]
    assert np.array_equal(out[0][3], out[1][3]) and out[0][4] == out[1][4]


@pytest.mark.slow
def test_results_do_not_depend_on_the_number_of_workers(tmp_path):
    from cimtile.search.executor import RayExecutor

    # tiny networks and tiles (each candidate a second or so); the joint search's second generation reuses networks
    # (score._network), which one worker and two workers meet in different orders
    cfg = ExploreConfig(budget=3, strategies=("joint",), float_epochs=1, qat_epochs=0.25, space=TINY,
                        population=2, progress=False, seed=5)
    explore(cfg, tmp_path / "one", executor=InProcessExecutor())
    ray = RayExecutor(workers=2)
    try:
        # its workers at the driver's priority, not Ray's default niceness of 15 (search/executor.py)
        def niceness(_) -> int:  # pickled by value (a local function): the workers need not import tests/
            import os

            return os.nice(0)

        assert ray.map(niceness, [0, 1]) == [0, 0]
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
    (["--area", "die"], None),
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


def _netlist(path, luts: int, ffs: int, brams: int, xbar_luts: int) -> None:
    """A tiny yosys ``synth_ecp5 -noflatten`` netlist: the top module instantiating a shift-and-add, a crossbar
    model and an ADC (each its own module of library cells)."""
    cell = lambda t, n: {f"{t}{i}": {"type": t} for i in range(n)}
    mods = {"tile": {"cells": {**cell("LUT4", luts), "sa": {"type": "tile.shift_add"}, "x": {"type": "tile.xbar"},
                               "a": {"type": "tile.adc0"}}},
            "tile.shift_add": {"cells": {**cell("TRELLIS_FF", ffs), **cell("CCU2C", 1), **cell("DP16KD", brams)}},
            "tile.xbar": {"cells": {**cell("LUT4", xbar_luts), **cell("DP16KD", 3)}},
            "tile.adc0": {"cells": cell("LUT4", 7)},
            "LUT4": {"cells": {}}}
    path.write_text(json.dumps({"modules": mods}))


def test_controller_area_cache_and_fallback_model(tmp_path):
    from cimtile.explore.synth import FPGA_AREA, ControllerModel, controller_area, entries, held_out, lookup, mm2, store
    from cimtile.hw.build import area_of_netlist

    sp = Space()
    cfg = sp.tile(sp.complete({}, {}))
    root = tmp_path / "cache"
    net = tmp_path / "n" / "tile_area.json"
    net.parent.mkdir()
    _netlist(net, luts=10, ffs=4, brams=1, xbar_luts=50)
    comps = area_of_netlist(cfg, net)
    assert lookup(cfg, root) is None
    e = store(cfg, "ab" * 32, comps, 1.0, root)
    # the crossbar's and the ADCs' RTL models are the analog parts' (counted from cited constants): not controller
    assert e["controller"] == {"luts": 10 + 2, "ffs": 4, "brams": 1, "dsps": 0}
    assert e["controller_mm2"] == pytest.approx(12 * FPGA_AREA["lut"][0] + 4 * FPGA_AREA["ff"][0]
                                                + FPGA_AREA["bram"][0])
    # keyed by the tile (not its name) and the hw/ sources; the entry lives under the Verilog's hash
    assert lookup(cfg.replace(name="other"), root)["verilog_sha256"] == "ab" * 32
    assert lookup(cfg.replace(adc_bits=cfg.adc_bits - 1), root) is None
    assert (root / ("ab" * 8) / "controller.json").exists()
    got = controller_area(cfg, root=root)
    assert got["source"] == "synthesised" and got["mm2"] == pytest.approx(e["controller_mm2"])
    # the fallback: fitted on synthesised tiles whose LUTs follow a linear law in the dimensions, it predicts a
    # held-out tile of the same law exactly; a tile not in the cache says its area came from the model
    law = lambda c: {"luts": 500 + 40 * c.cols + 3 * c.rows, "ffs": 100 + 8 * c.cols, "brams": 2,
                     "dsps": 0}
    tiles = [cfg.replace(name=f"t{i}", rows=r, cols=c, n_adcs=n)
             for i, (r, c, n) in enumerate([(32, 32, 2), (64, 32, 4), (32, 128, 8), (128, 64, 16), (64, 256, 2)])]
    root2 = tmp_path / "fit"
    for i, t in enumerate(tiles):
        store(t, f"{i:02d}" * 32, {"tile.py": law(t)}, None, root2)
    ents = entries(root2)
    assert len(ents) == 5
    assert all(abs(r["error_mm2"]) < 1e-9 for r in held_out(ents))
    m = ControllerModel.fit(ents)
    new = cfg.replace(rows=256, cols=64, n_adcs=2)
    assert m.predict(new)["luts"] == pytest.approx(law(new)["luts"])
    got = controller_area(new, m, root=root2)
    assert got["source"] == "model" and got["mm2"] == pytest.approx(mm2(law(new)))
    assert ControllerModel.from_json(json.loads(json.dumps(m.to_json()))).coef == m.coef
    # the committed model (python -m cimtile.explore.synth fit) loads and predicts a positive area
    assert controller_area(new, root=root2)["mm2"] > 0


def test_synth_option_synthesises_each_new_tile_once_on_the_executor(tmp_path, monkeypatch):
    import cimtile.explore.synth as synth
    from cimtile.explore.run import Evaluator

    monkeypatch.setenv("CIMTILE_BUILD_DIR", str(tmp_path / "build"))
    done = []

    def fake(cfg):  # stands in for yosys: a cache entry whose controller grows with the columns
        t = cfg if not isinstance(cfg, dict) else synth.TileConfig(**cfg)
        done.append(t.name)
        return synth.store(t, f"{len(done):02d}" * 32, {"tile.py": {"luts": 100 * t.cols, "ffs": 10, "brams": 1,
                                                                    "dsps": 0}})

    monkeypatch.setattr(synth, "synthesise", fake)
    sp = Space(SMALL, sparsity=True)
    job = {"space": {"overrides": {k: list(v) for k, v in sp.choices.items()}, "sparsity": True, "base": sp.base}}
    ev = Evaluator(InProcessExecutor(), job, tmp_path / "e.jsonl", synth=True, progress=False)
    a = sp.complete({"rows": 32, "cols": 32}, {})
    b = sp.complete({"rows": 32, "cols": 32, "width0": 8, "n_tiles": 8}, {})  # same tile, another network
    c = sp.complete({"rows": 64, "cols": 64}, {})
    ev._synthesise([a, b, c])
    assert sorted(done) == sorted({sp.tile(a).name, sp.tile(c).name})  # one synthesis per distinct tile
    ev._synthesise([a, c])
    assert len(done) == 2  # cached: not again
    # the area objective adds n_tiles controllers to the analog parts, and the record names the source
    rec = {"status": "ok", "candidate": b, "area": {"array": 1e-3, "total": 1e-3}, "area_mm2": 1e-3}
    r = ev._with_controller(rec)
    ctl = synth.mm2({"luts": 3200, "ffs": 10, "brams": 1})
    assert r["area_source"] == "synthesised" and r["controller"]["luts"] == 3200
    assert r["area_mm2"] == pytest.approx(1e-3 + 8 * ctl) == r["area"]["total"]
    assert r["area_analog_mm2"] == 1e-3
    ev.area = "analog"
    assert ev._with_controller(rec)["area_mm2"] == 1e-3


def test_resident_tiles_program_each_crossbar_tile_once_on_the_runtimes_schedule():
    from cimtile.explore.score import resident_batch_cycles
    from cimtile.search.cost import CostResult, LayerCost

    base = dict(wbits=8, abits=8, cycles=0, program_cycles=0, adc_conversions=0, xbar_tiles=2, rows_per_tile=64,
                prog_once=100, run_cycles=50, reload_cycles=20, positions=64, chunk=16)
    single = LayerCost(name="a", **base)  # every column tile one crossbar tile: the single-run schedule
    # column tiles of several crossbar tiles: the runtime runs a batch on the stationary schedule, whose runs reload
    # nothing; the single-run schedule's terms (prog_once, reload_cycles) are not what it runs
    stat = LayerCost(name="b", **{**base, "batch_prog_once": 300, "batch_run_cycles": 40, "batch_reload_cycles": 0})
    cost = CostResult([single, stat], init_cycles=7, weights="")
    runs = 1000 * 64 // 16
    assert single.batch_cycles(1000)[0] == 100 + runs * 50 and stat.batch_cycles(1000)[0] == 300 + runs * 40
    # resident: the single-run layer's reloaded weights programmed once and its runs without the reloads; the
    # stationary layer as the runtime runs it (subtracting the single-run terms' reloads from its batch cycles gave
    # 20 + 300 + runs x (40 - 20), and negative latencies where the single-run reloads exceed the stationary runs)
    assert resident_batch_cycles(cost, 1000) == 7 + (100 + 20 + runs * 30) + (300 + runs * 40)
    assert 0 < resident_batch_cycles(cost, 1000) <= cost.cost("batch", 1000)
