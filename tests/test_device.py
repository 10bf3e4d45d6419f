"""The device model (sim/device.py): off is exact, seeded runs repeat, programming effects land in the stored
levels (so the RTL fed them agrees bit for bit), masking makes stuck cells contribute exactly zero, remapping
avoids them, the fast read model matches the per-conversion one, and bad models are one-line errors."""

from __future__ import annotations

import json

import models
import numpy as np
import pytest
from cimtile.compiler.errors import CompileError
from cimtile.compiler.faults import mask_faults
from cimtile.hw import isa
from cimtile.hw.isa import Opcode
from cimtile.hw.params import PRESETS as TILES
from cimtile.hw.params import TileConfig
from cimtile.sim import fastmvm
from cimtile.sim.device import PRESETS, DeviceError, DeviceModel, find_stuck, load_device
from cimtile.sim.kernels import Layer
from cimtile.sim.tile import Tile

from cimtile import compiler
from cimtile.cli import main

E = isa.encode


def _mvm_program(cfg: TileConfig, n_in: int = 4):
    """LDW the whole array, LDIN n_in vectors, MVM each (signed 8-bit weights over the whole window), RDACC."""
    words = [E(Opcode.CFG, wbits=4, abits=8, wsigned=1, asigned=0, adc_shift=0),
             E(Opcode.LDW, start=0, count=cfg.cols), E(Opcode.LDIN, start=0, count=n_in),
             E(Opcode.LOOP, count=n_in, body=1, stride_in=1, stride_acc=1, stride_out=0),
             E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0),
             E(Opcode.RDACC, start=0, count=n_in), E(Opcode.RDW, start=0, count=cfg.cols), E(Opcode.HALT)]
    r = np.random.default_rng(1)
    feed = [r.integers(0, cfg.max_level + 1, (cfg.rows, cfg.cols)), r.integers(0, 256, (n_in, cfg.rows))]
    return words, feed


def test_off_is_exact_and_costs_nothing():
    cfg = TILES["tiny"]
    words, feed = _mvm_program(cfg)
    ref = Tile(cfg).run(words, feed).check()
    for dev in (DeviceModel(), PRESETS["ideal"], DeviceModel(seed=5, prog_scale=3.0, drift_nu=0.1)):
        t = Tile(cfg, device=dev)
        assert dev.off and t.device is None  # no hook is called at all
        res = t.run(words, feed).check()
        assert res.cycles == ref.cycles
        for a, b in zip(res.outputs, ref.outputs):
            np.testing.assert_array_equal(a, b)
    m = models.qlinear_conv(cin=2, cout=4, hw=3)
    b = compiler.compile_model(m, "tiny")
    x = np.random.default_rng(5).integers(0, 256, (3, 2, 3, 3)).astype(np.uint8)
    np.testing.assert_array_equal(compiler.run(b, x, device="ideal"), compiler.run(b, x))


@pytest.mark.parametrize("name", ["rram", "pcm", "rram-faults"])
def test_seeded_runs_repeat_and_seeds_differ(name):
    cfg = TILES["tiny"]
    words, feed = _mvm_program(cfg, 8)
    dev = PRESETS[name]
    if name == "rram":  # the published spread rarely moves a 2-bit level on 256 cells: widen it
        dev = dev.replace(prog_scale=5.0)
    ideal = Tile(cfg).run(words, feed).check().outputs[0]
    a = Tile(cfg, device=dev).run(words, feed).check().outputs[0]
    b = Tile(cfg, device=dev).run(words, feed).check().outputs[0]
    c = Tile(cfg, device=dev.replace(seed=7)).run(words, feed).check().outputs[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, ideal) and not np.array_equal(a, c)


def test_programming_effects_are_in_the_stored_levels():
    cfg = TILES["tiny"]
    dev = DeviceModel(stuck_low=0.1, stuck_high=0.1, seed=2)
    arr = dev.array(cfg)
    words, feed = _mvm_program(cfg)
    res = Tile(cfg, device=arr).run(words, feed).check()
    stored = res.outputs[1]
    st = arr.stuck
    assert (st >= 0).sum() > 10
    np.testing.assert_array_equal(stored[st == 0], 0)
    np.testing.assert_array_equal(stored[st == 1], cfg.max_level)
    np.testing.assert_array_equal(stored[st < 0], feed[0][st < 0])
    # an ideal tile given the stored levels computes exactly what the device tile did
    again = Tile(cfg).run(words, [stored, feed[1]]).check()
    np.testing.assert_array_equal(again.outputs[0], res.outputs[0])
    # the feed the RTL gets holds the same levels (same seed, same programming order)
    fed = dev.array(cfg).program_feed(words, feed)
    np.testing.assert_array_equal(fed[0], stored)
    # WSET and VAU cannot move a stuck cell either
    r, c = map(int, np.argwhere(st == 1)[0])
    t = Tile(cfg, device=dev)
    t.run([E(Opcode.WSET, row=r, col=c, value=0), E(Opcode.HALT)]).check()
    assert t.levels[r, c] == cfg.max_level


def test_program_feed_follows_loops():
    """The RTL's feed is perturbed block by block in execution order, loops included."""
    cfg = TILES["tiny"]
    dev = DeviceModel(prog_coeff=(0.2,), stuck_high=0.1, seed=1)
    words = [E(Opcode.LOOP, count=2, body=2, stride_in=1, stride_acc=0, stride_out=0),
             E(Opcode.LDIN, start=0, count=1), E(Opcode.LDW, start=2, count=3),
             E(Opcode.RDW, start=0, count=cfg.cols), E(Opcode.HALT)]
    r = np.random.default_rng(0)
    feed = [r.integers(0, 256, (1, cfg.rows)), r.integers(0, 4, (cfg.rows, 3)),
            r.integers(0, 256, (1, cfg.rows)), r.integers(0, 4, (cfg.rows, 3))]
    golden = Tile(cfg, device=dev).run(words, feed).check().outputs[0]
    fed = dev.array(cfg).program_feed(words, feed)
    assert fed[0] is feed[0] and fed[2] is feed[2]  # inputs untouched
    np.testing.assert_array_equal(Tile(cfg).run(words, fed).check().outputs[0], golden)
    assert not np.array_equal(fed[3], feed[3])


def test_programming_variation_is_the_rounded_gaussian():
    cfg = TILES["isaac"]
    sig = 0.4  # levels
    dev = DeviceModel(prog_coeff=(sig / cfg.max_level,))
    arr = dev.array(cfg)
    out = np.concatenate([arr.program(np.full((cfg.rows, cfg.cols), 1), 0).ravel() for _ in range(8)])
    from math import erf, sqrt
    phi = lambda x: 0.5 * (1 + erf(x / sqrt(2)))
    for k, p in ((0, phi(-0.5 / sig)), (1, phi(0.5 / sig) - phi(-0.5 / sig)), (2, phi(1.5 / sig) - phi(0.5 / sig))):
        assert abs((out == k).mean() - p) < 4 * sqrt(p * (1 - p) / out.size) + 1e-4


def test_masked_stuck_cells_contribute_exactly_zero():
    m = models.qlinear_conv(cin=3, cout=8, hw=5)
    b = compiler.compile_model(m, "isaac")
    x = np.random.default_rng(3).integers(0, 256, (2, 3, 5, 5)).astype(np.uint8)
    dev = DeviceModel(stuck_low=0.02, stuck_high=0.03, seed=4)
    fm = find_stuck(b.cfg, dev)
    np.testing.assert_array_equal(fm, dev.array(b.cfg).stuck >= 0)  # detection by program + RDW finds them all
    ideal = compiler.run(b, x)
    assert not np.array_equal(compiler.run(b, x, device=dev), ideal)  # unmasked faults change the result
    for remap in (False, True):
        bm = mask_faults(b, fm, remap=remap)
        # masked cells contribute 0 whatever they store: with the device == on an ideal tile with the same masks
        np.testing.assert_array_equal(compiler.run(bm, x, device=dev), compiler.run(bm, x))
        _, st = compiler.run(bm, x[:1], device=dev, stats=True)
        assert st.cycles == bm.report["totals"]["cycles"] > b.report["totals"]["cycles"]  # the LDM words
    # 27 weight rows on 128 physical rows: remapping finds rows where no weight is lost, so it is exact again
    bm = mask_faults(b, fm, remap=True)
    assert bm.row_maps
    np.testing.assert_array_equal(compiler.run(bm, x, device=dev), ideal)


def test_masked_bundle_round_trips(tmp_path):
    b = compiler.compile_model(models.qlinear_conv(cin=3, cout=8, hw=5), "isaac")
    fm = find_stuck(b.cfg, DeviceModel(stuck_high=0.02, seed=1))
    bm = mask_faults(b, fm, remap=True)
    compiler.save(bm, tmp_path / "m")
    back = compiler.load(tmp_path / "m")
    np.testing.assert_array_equal(back.fault_mask, fm)
    assert back.row_maps.keys() == bm.row_maps.keys()
    x = np.random.default_rng(3).integers(0, 256, (1, 3, 5, 5)).astype(np.uint8)
    np.testing.assert_array_equal(compiler.run(back, x), compiler.run(bm, x))
    with pytest.raises(CompileError, match=r"expected a \(128, 128\) boolean array"):
        mask_faults(b, np.zeros((16, 16), bool))
    with pytest.raises(CompileError, match="rows_per_conv"):
        mask_faults(compiler.compile_model(models.qlinear_conv(cin=2, cout=4, hw=3), "tiny"),
                    np.zeros((16, 16), bool), remap=True)


def test_fast_read_model_matches_per_conversion_statistics():
    """The output-referred model has the per-conversion model's mean and spread (noise well above one LSB)."""
    cfg = TileConfig(name="t", rows=32, cols=16, cell_bits=2, adc_bits=10, rows_per_conv=32, n_adcs=2)
    geo = isa.geometry(cfg, 4, 8, True, False, 32, 16)
    layer = Layer(4, 8, True, False, 0)
    r = np.random.default_rng(0)
    levels = r.integers(0, 4, (32, 16))
    masks = r.random((32, 16)) < 0.1
    raw = np.repeat(r.integers(0, 256, (1, 32)).astype(np.uint8), 3000, axis=0)
    ideal = fastmvm.mvm(raw[:1], levels, masks, layer, geo, cfg)[0]
    dev = DeviceModel(read_sigma=0.3, read_exp=0.35, drift_nu=0.05, drift_t=1000.0, ir_drop=0.2)
    fast = dev.array(cfg).mvm_acc((0, 0), raw, levels, masks, layer, geo, cfg) - ideal
    exact = dev.replace(exact=True).array(cfg).mvm_acc((0, 0), raw, levels, masks, layer, geo, cfg) - ideal
    sd = exact.std(axis=0)
    assert (sd > 1).all()
    np.testing.assert_allclose(fast.mean(axis=0), exact.mean(axis=0), atol=0.1 * sd.max())
    np.testing.assert_allclose(fast.std(axis=0), sd, rtol=0.15)
    # with every read term off, the per-conversion model is the ideal MVM
    arr = DeviceModel(exact=True, stuck_high=0.0).array(cfg)
    np.testing.assert_array_equal(arr._mvm_exact((0, 0), raw[:5], levels, masks, layer, geo, cfg),
                                  fastmvm.mvm(raw[:5], levels, masks, layer, geo, cfg))


def test_json_round_trip_and_one_line_errors(tmp_path, capsys):
    for d in PRESETS.values():
        assert DeviceModel.from_json(d.to_json()) == d
    p = tmp_path / "d.json"
    PRESETS["pcm"].replace(seed=9).save(p)
    assert load_device(str(p)) == PRESETS["pcm"].replace(seed=9)
    bad = {"nope": "not a preset", '{"seed": -1}': "seed", '{"read_sigma": "x"}': "read_sigma",
           '{"foo": 1}': "unknown field", '{"stuck_low": 0.6, "stuck_high": 0.6}': "at most 1",
           "{oops": "invalid JSON", '{"prog_coeff": [1, 2, 3, 4, 5]}': "prog_coeff", "[]": "JSON object"}
    for i, (text, what) in enumerate(bad.items()):
        spec = text
        if text != "nope":
            spec = str(tmp_path / f"bad{i}.json")
            (tmp_path / f"bad{i}.json").write_text(text)
        with pytest.raises(DeviceError) as e:
            load_device(spec)
        assert what in str(e.value) and "\n" not in str(e.value)
    # the command line: one line, exit 1, no output written
    out = tmp_path / "b"
    compiler.compile_model(models.qlinear_conv(cin=2, cout=4, hw=3), "tiny", out=out)
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 3, 3), dtype=np.uint8))
    code = main(["run", str(out), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--device", str(tmp_path / "bad1.json")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("cimtile: error: ") and "seed" in err
    assert not (tmp_path / "y.npy").exists()
    code = main(["run", str(out), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--device", "pcm", "--backend", "rtl"])
    err = capsys.readouterr().err
    assert code == 1 and "golden-model-only" in err and err.count("\n") == 1
    code = main(["run", str(out), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--device", "rram"])
    assert code == 0 and np.load(tmp_path / "y.npy").shape == (1, 5, 3, 2)
    json.loads(PRESETS["rram"].to_json())


@pytest.mark.cosim
def test_rtl_with_the_same_stored_levels_equals_golden():
    """Programming effects reach the RTL as stored levels: golden (device hook) == RTL (device feed), bit for bit,
    outputs and cycles, unmasked and with the fault mask."""
    pytest.importorskip("cocotb")
    m = models.qlinear_conv(cin=2, cout=4, hw=3)
    b = compiler.compile_model(m, "tiny")
    x = np.random.default_rng(5).integers(0, 256, (1, 2, 3, 3)).astype(np.uint8)
    dev = DeviceModel(prog_coeff=(0.1,), stuck_low=0.05, stuck_high=0.05, seed=3)
    y_i = compiler.run(b, x)
    y_g, st_g = compiler.run(b, x, backend="golden", stats=True, device=dev)
    y_r, st_r = compiler.run(b, x, backend="rtl", stats=True, device=dev)
    assert not np.array_equal(y_g, y_i)
    np.testing.assert_array_equal(y_r, y_g)
    assert st_r.cycles == st_g.cycles == b.report["totals"]["cycles"]
    bm = mask_faults(b, find_stuck(b.cfg, dev))
    y_g, st_g = compiler.run(bm, x, backend="golden", stats=True, device=dev)
    y_r, st_r = compiler.run(bm, x, backend="rtl", stats=True, device=dev)
    np.testing.assert_array_equal(y_r, y_g)
    assert st_r.cycles == st_g.cycles == bm.report["totals"]["cycles"]


@pytest.mark.slow
def test_digits_cnn_one_percent_stuck_cells_recovered(tmp_path):
    """CI-sized `python -m bench devices` goal: with 1% stuck cells (one seed) on the digits CNN (isaac), masking and
    remapping recover the fault-free accuracy within 1 point; unmasked faults lose more."""
    xtr, _, xte, yte = models.digits()
    models.ort_quantize(models.float_onnx("cnn", models.train("cnn")), xtr[:256], tmp_path / "cnn.onnx",
                        per_channel=True)
    b = compiler.compile_model(tmp_path / "cnn.onnx", "isaac")
    acc = lambda bundle, dev: 100 * (compiler.run(bundle, xte, device=dev).argmax(1) == yte).mean()
    ideal = acc(b, None)
    dev = DeviceModel(stuck_low=0.0016, stuck_high=0.0084, seed=0)
    fm = find_stuck(b.cfg, dev)
    unmasked, recovered = acc(b, dev), acc(mask_faults(b, fm, remap=True), dev)
    assert ideal - recovered <= 1 < ideal - unmasked


def test_remapping_moves_signed_inputs_and_the_minus_128_correction():
    """Remapped rows carry their inputs (signed here) and the -128 correction tile along: with faults only where
    a spare row can take over, the remapped, masked bundle under the device equals the ideal tile exactly."""
    r = np.random.default_rng(0)
    w = r.integers(-127, 128, (30, 7)).astype(np.int8)
    w[3, 2] = w[20, 5] = -128
    m = models.matmul_integer_int8(w)
    b = compiler.compile_model(m, "isaac")
    assert b.model.layers[0].tiling.fix_tiles
    x = r.integers(-128, 128, (16, 30)).astype(np.int8)
    dev = DeviceModel(stuck_high=0.004, seed=11)
    fm = find_stuck(b.cfg, dev)
    assert fm[:30].any()  # some faults land on the rows the layer uses unremapped
    bm = mask_faults(b, fm, remap=True)
    assert bm.row_maps
    np.testing.assert_array_equal(compiler.run(bm, x, device=dev), compiler.run(b, x))


def test_read_stream_is_one_sequence_of_standard_normals():
    """The read stream (docs/devices.md, Seeds): Box-Muller normals taken in order, whatever the MVM sizes."""
    from cimtile.sim.device import _Z_MAX

    cfg = TILES["isaac"]
    a, b = (DeviceModel(read_sigma=0.1, seed=3).array(cfg) for _ in range(2))
    parts = [a._normals((3, 5)), a._normals((70000,)), a._normals((2, 40000))]  # across block boundaries
    z = b._normals((150015,))
    np.testing.assert_array_equal(np.concatenate([p.ravel() for p in parts]), z)
    assert z.dtype == np.float32 and np.abs(z).max() <= _Z_MAX
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n) and abs(z.std() - 1) < 0.01
    assert abs((z.astype(np.float64) ** 4).mean() - 3) < 0.1  # Gaussian kurtosis
    tail = (np.abs(z) > 2).mean()  # 2 * (1 - Phi(2)) = 0.0455
    assert abs(tail - 0.0455) < 5 * np.sqrt(0.0455 / n)
    assert not np.array_equal(DeviceModel(read_sigma=0.1, seed=4).array(cfg)._normals((10,)), z[:10])


def test_programming_stream_does_not_depend_on_how_writes_are_split():
    """Programming variation is drawn on the sequence of written cells: blocks of one column (a few candidates each,
    the Python path) and one wide block (many candidates, the array path) store the same levels."""
    cfg = TILES["isaac"]
    dev = DeviceModel(prog_coeff=(0.08,), seed=2)  # p_max about 0.03: a few candidates per column
    r = np.random.default_rng(5)
    blocks = [r.integers(0, cfg.max_level + 1, (cfg.rows, n)) for n in (1, 1, 90, 1, 37)]
    a, b = dev.array(cfg), dev.array(cfg)
    split = np.concatenate([a.program(blk, 0).ravel() for blk in blocks])
    whole = np.concatenate([blk.ravel() for blk in blocks]).reshape(cfg.rows, -1)
    stored = b.program(whole, 0)
    np.testing.assert_array_equal(split, stored.ravel())
    assert 0.005 < (stored != whole).mean() < 0.1  # the variation did act
    assert a._p_max * cfg.rows < 8 < a._p_max * cfg.rows * 90  # both paths were taken
    untouched = np.zeros((cfg.rows, 3), dtype=np.int64)
    assert DeviceModel(prog_coeff=(1e-3,)).array(cfg).program(untouched, 0) is untouched  # nothing moved: no copy


def test_fast_model_folds_drift_into_the_ideal_gemm():
    """With drift and IR drop only, the output is the nearest integer to ideal + x @ (G - L) (float32 rounding of
    the one folded GEMM moves a rare output by one), returned as int32 when a bound proves it fits."""
    cfg = TILES["isaac"]
    geo = isa.geometry(cfg, 8, 8, True, False, cfg.rows, cfg.cols)
    layer = Layer(8, 8, True, False, 0)
    r = np.random.default_rng(2)
    levels = (r.random((cfg.rows, cfg.cols)) < 0.1).astype(np.uint8)  # sparse: no conversion can clip
    masks = np.zeros_like(levels, dtype=bool)
    assert fastmvm._linear(levels, masks, layer, geo, cfg) is not None
    raw = r.integers(0, 256, (200, cfg.rows)).astype(np.uint8)
    arr = DeviceModel(drift_nu=0.05, drift_nu_std=0.01, drift_t=86400.0, ir_drop=0.2, seed=1).array(cfg)
    y = arr.mvm_acc((0, 0), raw, levels, masks, layer, geo, cfg)
    assert y.dtype == np.int32
    from cimtile.hw import encoding
    cw = encoding.column_weights(cfg, layer.wbits, layer.wsigned)
    G = ((levels * arr.gain).reshape(-1, cw.size) @ cw).reshape(cfg.rows, geo.n_out)
    want = np.rint(raw.astype(np.float64) @ G)
    diff = y - want
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.01
    assert not np.array_equal(y, fastmvm.mvm(raw, levels, masks, layer, geo, cfg))


def test_level_power_pair_lookup_equals_the_table():
    """The read-noise level factor looked up two uint8 cells at a time equals the per-level table, on any window."""
    cfg = TILES["isaac"]
    arr = DeviceModel(read_sigma=0.05, read_exp=0.35).array(cfg)
    levels = np.random.default_rng(0).integers(0, cfg.max_level + 1, (cfg.rows, cfg.cols)).astype(np.uint8)
    for win in (levels, levels[3:40, 8:72], levels[:, 1:9], levels[:, :7]):  # paired and fallback paths
        np.testing.assert_array_equal(arr._level_power(win), arr._lvl_pow[win])
    assert arr._lvl_pow[0] == 0 and arr._lvl_pow[-1] == 1
