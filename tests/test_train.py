"""Sparse training: the resident tile (golden backend), the update rules, the schedule on a CI-sized run,
the train-sparse command, and the training bench's cost model."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw import encoding
from cimtile.hw.params import PRESETS
from cimtile.train import rules
from cimtile.train.resident import ResidentError, ResidentTile

TINY8 = PRESETS["tiny"].replace(name="tiny8", adc_bits=8)  # no ADC clipping on 16 rows of 2-bit cells


def test_resident_forward_is_the_integer_product_and_weights_stay_resident():
    rng = np.random.default_rng(0)
    t = ResidentTile(TINY8)
    W = rng.integers(-3, 4, (16, 8))
    assert t.program(W, wbits=3, abits=4) > 0
    X = rng.integers(0, 16, (70, 16))  # three chunks of 32, the last padded
    assert np.array_equal(t.forward(X), X @ W)
    assert np.array_equal(t.forward(X[:5]), X[:5] @ W)
    W2, m = t.read()
    assert np.array_equal(W2, W) and not m.any()
    assert t.stats.calls["forward"] == 2 and t.stats.cycles["forward"] > 0


def test_resident_vau_masks_and_exact_writes():
    rng = np.random.default_rng(1)
    t = ResidentTile(TINY8)
    W = rng.integers(-3, 4, (12, 6))
    t.program(W, wbits=3, abits=4)
    mask = rng.random(W.shape) < 0.5
    assert t.write_mask(mask) > 0
    Wm, m = t.read()
    assert np.array_equal(m, mask) and np.array_equal(Wm, np.where(mask, 0, W))
    r = rng.integers(-1, 2, 12)
    c = rng.integers(-1, 2, 6)
    cyc = t.vau(r, c)
    assert cyc == t.stats.cycles["vau"] > 0
    Wv, _ = t.read()
    assert np.array_equal(Wv[mask], np.zeros(mask.sum())), "pruned weights moved"
    # Every active weight moved towards r_i + c_j (each delta moves it by 0..2 levels, with saturation).
    want = np.sign(r[:, None] + c[None, :])
    moved = np.sign(Wv - Wm)
    active = ~mask & (np.abs(Wm) < 3) & (want != 0) & (r[:, None] * c[None, :] >= 0)
    assert np.array_equal(moved[active], want[active])
    target = np.where(mask, 0, np.clip(Wv + 1, -3, 3))
    t.write_weights(target)
    assert np.array_equal(t.read()[0], target)
    # Regrowth: unmask and clear.
    t.write_mask(np.zeros_like(mask))
    t.zero(mask)
    Wr, mr = t.read()
    assert not mr.any() and np.array_equal(Wr[mask], np.zeros(mask.sum()))


def test_multi_slice_vau_moves_weights_by_slice_digits():
    """wbits 5 on 2-bit cells (two slices): from zero, a VAU delta d moves every active weight by exactly d
    (one signed digit per slice, each applied with only/slice); pruned weights stay at 0."""
    rng = np.random.default_rng(3)
    t = ResidentTile(TINY8)
    t.program(np.zeros((8, 4), dtype=int), wbits=5, abits=4)
    assert t.slices == 2
    mask = rng.random((8, 4)) < 0.3
    t.write_mask(mask)
    r = np.array([5, -6, 7, -10, 1, -1, 4, 0])
    t.vau(r)
    assert np.array_equal(t.read()[0], np.where(mask, 0, r[:, None]))
    u = ResidentTile(TINY8)
    u.program(np.zeros((8, 4), dtype=int), wbits=5, abits=4)
    c = np.array([-7, 6, 3, -4])
    u.vau(None, c)
    assert np.array_equal(u.read()[0], np.broadcast_to(c, (8, 4)))
    # A delta on one slice alone moves the weights by its slice weight (2**(slice * cell_bits)); pair
    # mode pos (2) moves only the positive cell, so each weight moves by exactly one step of slice 1.
    u.vau(np.ones(8, dtype=int), weight_slice=1, pair=2)
    assert np.array_equal(u.read()[0], np.broadcast_to(c + 4, (8, 4)))
    for d in range(-128, 128):
        assert sum(int(x) << (2 * s) for s, x in enumerate(t.slice_digits(np.int64(d)))) == d


@pytest.mark.parametrize("via", ["cheapest", "wset"])  # the carry writes by LDW per column, or by WSET per cell
def test_multi_slice_cells_saturate_and_the_host_carries(via):
    """Without a carry a slice saturates (the cells never carry, docs/isa.md); the host's carry re-encodes
    the same weights with signed digits, so later steps move them again."""
    cfg = TINY8.replace(write_cycles=500)
    t = ResidentTile(cfg)
    t.program(np.zeros((4, 2), dtype=int), wbits=5, abits=4)
    for _ in range(5):
        t.vau(np.ones(4, dtype=int))
    assert np.array_equal(t.read()[0], np.full((4, 2), 3)), "the low slice saturates at max_level"
    u = ResidentTile(cfg)
    u.program(np.zeros((4, 2), dtype=int), wbits=5, abits=4)
    u.write_mask(np.array([[True, False]] * 4))
    for k in range(5):
        u.vau(np.ones(4, dtype=int))
        if k % 2 == 1:
            before_levels, before_masks = u.read_cells()
            W = u.read()[0]
            n = u.stats.calls.get("carry", 0)
            cyc = u.carry(via=via)
            # the carry's write: 4 changed cells in each active column, WSET (3 + 500 each) or LDW per column
            # (1 + col_words + 500): the cheapest path takes LDW, its cycles below those of the WSETs
            assert cyc > 500 and u.stats.calls["carry"] == n + 2
            if via == "cheapest":
                assert cyc < 2 * 4 * (3 + 500)
            levels, masks = u.read_cells()
            assert np.array_equal(u.read()[0], W) and np.array_equal(masks, before_masks)
            assert np.array_equal(levels[masks], before_levels[masks]), "masked cells changed"
            want = encoding.encode_weights(TINY8, W, 5, True, signed_digits=True)
            assert np.array_equal(levels[~masks], want[~masks])
    W = u.read()[0]
    assert (W[:, 1] > 3).all() and (W[:, 0] == 0).all()
    assert u.stats.cycles["carry"] > 0


def test_signed_digit_encoding_decodes_to_the_same_weights():
    cfg = PRESETS["tiny"]
    for wbits in (4, 5, 7, 8):
        lo, hi = encoding.weight_range(wbits, True)
        w = np.arange(lo, hi + 1)[None]
        lv = encoding.encode_weights(cfg, w, wbits, True, signed_digits=True)
        assert np.array_equal(encoding.decode_weights(cfg, lv, None, wbits, True), w)
        assert lv.max() <= cfg.max_level
        nws = encoding.weight_slices(wbits, True, cfg.cell_bits)
        low = lv.reshape(-1, nws, 2)[:, :-1]
        # lower slices hold signed digits (-2..1) wherever the rest fits the top slice
        fits = np.abs(low[..., 0].astype(int) - low[..., 1]) <= 2
        assert fits.mean() > 0.8


def test_resident_errors_are_one_line():
    t = ResidentTile("tiny")
    with pytest.raises(ResidentError, match="no layer programmed"):
        t.forward(np.zeros((1, 4)))
    with pytest.raises(ResidentError, match="needs 17 rows"):
        t.program(np.zeros((17, 2), dtype=int), wbits=3)
    t.program(np.zeros((4, 2), dtype=int), wbits=3)
    with pytest.raises(ResidentError, match=r"inputs of shape \(1, 3\)"):
        t.forward(np.zeros((1, 3)))
    with pytest.raises(ResidentError, match="row deltas outside"):
        t.vau(np.full(4, 200))
    with pytest.raises(encoding.EncodingError, match="outside -3..3"):
        t.write_weights(np.full((4, 2), 9))


def test_lsq_fit_recovers_an_additive_update_and_ignores_masked_cells():
    rng = np.random.default_rng(2)
    r, c = rng.normal(size=7), rng.normal(size=5)
    D = r[:, None] + c[None, :]
    mask = rng.random(D.shape) < 0.3
    D_noisy = np.where(mask, 100.0, D)  # masked entries must not matter
    fr, fc = rules.lsq_fit(D_noisy, mask, iters=200)
    assert rules.fit_error(D, mask, fr, fc) < 1e-6
    # On a general update the fit beats both zero and the row-only fit.
    G = rng.normal(size=(7, 5))
    fr, fc = rules.lsq_fit(G, mask)
    row_only = np.where(mask, 0, G).sum(1) / np.maximum((~mask).sum(1), 1)
    assert rules.fit_error(G, mask, fr, fc) < rules.fit_error(G, mask, row_only, np.zeros(5)) < 1.0


def test_sign_pulses_carry_and_stochastic_rounding():
    rng = np.random.default_rng(3)
    D = np.array([[4.0, 4.0], [-4.0, -4.0], [0.0, 0.0]])
    r, c = rules.sign_pulses(D, np.zeros(D.shape, dtype=bool), rng)
    assert r.tolist() == [1, -1, 0] and set(c.tolist()) <= {-1, 0, 1}
    carry = rules.Carry(1, 1)
    outs = [carry.step(np.array([0.3]), np.array([-0.3])) for _ in range(10)]
    assert sum(int(o[0][0]) for o in outs) == 3 and sum(int(o[1][0]) for o in outs) == -3
    x = rules.stochastic_round(np.full(20000, 0.25), rng)
    assert set(np.unique(x)) == {0, 1} and abs(x.mean() - 0.25) < 0.02


@pytest.mark.slow
def test_ci_sized_schedule_on_digits():
    """A few steps of every method through the whole schedule; masks on the tiles hold the target sparsity."""
    from cimtile.train import sparse

    s = sparse.Schedule(model="cnn", data="digits", tile="cimaq", sparsity=0.75, pretrain_epochs=2,
                        survive_epochs=1, regrow_fraction=0.2, train_epochs=1, lr=2.0, limit_train=128, batch=32,
                        limit_test=60)
    results, hist = sparse.run(s)
    assert [r.method for r in results] == list(sparse.METHODS)
    for r in results:
        phases = [e["phase"] for e in r.epochs]
        assert phases == ["pretrain", "pretrain", "quantised", "pruned", "survive", "regrown", "train"]
        assert abs(r.measured_sparsity - 0.75) < 0.01
        assert r.steps == 2 * 4
    by = {r.method: r for r in results}
    assert by["exact"].cycles["wset"] > 0 and "vau" not in by["exact"].cycles
    assert by["vau-lsq"].cycles["vau"] > 0 and "wset" not in by["vau-lsq"].cycles
    assert 0 < by["vau-lsq"].fit_error < 1
    # Every tile method starts from the same programmed network.
    q = {r.epochs[2]["acc"] for r in results if r.method != "float"}
    assert len(q) == 1


def test_schedule_with_multi_slice_weights_carries():
    """Two-slice weights (5 bits on 2-bit cells): the VAU methods carry every carry_every steps and the carry
    counts in their update cycles; the exact method writes cells and never carries."""
    from cimtile.train import sparse

    s = sparse.Schedule(model="micro", data="digits", tile=TINY8.replace(cols=48), wbits=5, sparsity=0.5,
                        pretrain_epochs=1, survive_epochs=1, regrow_fraction=0.25, train_epochs=1, lr=2.0,
                        limit_train=64, batch=16, limit_test=40, carry_every=2)
    results, _ = sparse.run(s, ("exact", "vau-lsq", "exact-fit"))
    by = {r.method: r for r in results}
    assert by["exact-fit"].cycles["wset"] > 0 and "carry" not in by["exact-fit"].cycles
    vau = by["vau-lsq"]
    assert vau.steps == 8 and vau.calls["carry"] == 2 * 2 * (8 // 2)  # two layers, a read and a write each
    assert vau.update_cycles == vau.cycles["vau"] + vau.cycles["carry"]
    assert "carry" not in by["exact"].cycles and by["exact"].cycles["wset"] > 0
    assert abs(vau.measured_sparsity - 0.5) < 0.02
    with pytest.raises(sparse.TrainError, match="carry_every"):
        sparse.Schedule(carry_every=0).check()


def test_train_sparse_cli_writes_tables_and_plots(tmp_path):
    from cimtile.cli import main

    out = tmp_path / "o"
    code = main(["train-sparse", "--model", "micro", "--data", "digits", "--tile", "cimaq", "--limit-train", "64",
                 "--pretrain-epochs", "1", "--survive-epochs", "1", "--train-epochs", "1", "--methods",
                 "float,vau-lsq", "--sparsity", "0.5,0.75", "-o", str(out)])
    assert code == 0
    for f in ("metrics.csv", "metrics.md", "history.json", "accuracy.png", "sparsity.png", "cycles.png"):
        assert (out / f).stat().st_size > 0
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("method,sparsity")
    assert not list(out.glob("*.tmp*"))


def test_train_sparse_cli_bad_input(capsys):
    from cimtile.cli import main

    assert main(["train-sparse", "--methods", "sgd"]) == 1
    assert "unknown method 'sgd'" in capsys.readouterr().err
    assert main(["train-sparse", "--sparsity", "0.5,x"]) == 1
    assert main(["train-sparse", "--model", "resnet", "--limit-train", "8", "--pretrain-epochs", "0"]) == 1
    assert "model 'resnet'" in capsys.readouterr().err


def test_bench_cost_model_counts_vau_as_one_sweep():
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("bench_training", root / "bench" / "training.py")
    bt = importlib.util.module_from_spec(spec)
    sys.modules["bench_training"] = bt
    spec.loader.exec_module(bt)
    cfg = PRESETS["isaac"]
    ratio, w, v = bt.update_speedup(cfg, 0.75)
    wc, pc = cfg.write_cycles, cfg.pulse_cycles
    # 2,048 active weights, one changed cell each, in every one of the 128 columns: one LDW of the 128 columns
    # (1 + 128 * (1 word + write_cycles)) and HALT, cheaper than 2,048 WSETs of 3 + write_cycles; VAU: CFG,
    # WIN, one LDD of two delta vectors (1 + 2 * 4 words), two sweeps of 128 columns (1 + 128 + 2 each) with
    # 4 (VAUR) and 2 (VAUC) pulse phases, and HALT.
    assert w == 1 + 128 * (1 + wc) + 1 and v == 2 + 9 + 2 * 131 + 6 * pc + 1 and abs(ratio - w / v) < 1e-9
    c = bt.update_costs(cfg, 0.75)
    assert c["exact"] == w and c["changed"] == 2048 and c["wset"] == 2048 * (3 + wc) + 3
    assert ratio < c["bound"] == 128 * (1 + wc) / (2 * 131 + 6 * pc)
    rows = bt.vgg8_table(cfg)
    assert rows[-1]["index_free"]["upd"] < rows[-1]["indexed"]["upd"] < rows[-1]["dense"]["upd"]
    assert rows[-1]["index_free"]["fwd"] == rows[-1]["dense"]["fwd"]


def test_docs_training_cost_tables_are_generated():
    """docs/training.md's cost tables are exactly what ``python -m bench.training --markdown`` prints."""
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("bench_training_doc", root / "bench" / "training.py")
    bt = importlib.util.module_from_spec(spec)
    sys.modules["bench_training_doc"] = bt
    spec.loader.exec_module(bt)
    text = (root / "docs" / "training.md").read_text()
    i, j = text.index(bt.COST_BEGIN) + len(bt.COST_BEGIN), text.index(bt.COST_END)
    assert text[i:j] == "\n" + bt.markdown(), "regenerate: python -m bench.training --update-doc docs/training.md"
