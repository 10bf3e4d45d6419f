"""Device models in the mixed-precision search and in the sparse training (issue 16, section 2): the device reaches
the accuracy the search ranks policies by and the training's forward products, and results stay reproducible for
a seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cimtile.sim.device import DeviceModel

# a deliberately harsh device (loud read noise, many stuck cells): its effect on accuracy cannot be rounded away
HARSH = DeviceModel(name="harsh", seed=5, read_sigma=0.08, stuck_low=0.05, stuck_high=0.05)


@pytest.mark.slow
def test_search_measures_accuracy_with_the_device():
    from cimtile.search.executor import InProcessExecutor
    from cimtile.search.run import SearchConfig, search

    def cfg(device):
        return SearchConfig(model="lenet", data="digits", agent="random", budget=2, max_loss=2.0,
                            finetune_epochs=0.2, progress=False, seed=1, device=device)

    _, ideal, _ = search(cfg(None), None, InProcessExecutor(), finalize=False)
    _, noisy, t_noisy = search(cfg(HARSH.to_dict()), None, InProcessExecutor(), finalize=False)
    _, again, t_again = search(cfg(HARSH.to_dict()), None, InProcessExecutor(), finalize=False)
    assert [t["policy"] for t in ideal] == [t["policy"] for t in noisy]  # same agent draws
    for i, n in zip(ideal, noisy):
        assert n["acc_torch"] == i["acc"]  # the same fine-tuned network ...
        assert n["acc"] < i["acc"] - 2  # ... loses accuracy on the harsh tile
    assert again == noisy and t_again == t_noisy  # reproducible for a seed
    # another device seed draws other stuck cells and noise
    _, other, _ = search(cfg(HARSH.replace(seed=6).to_dict()), None, InProcessExecutor(), finalize=False)
    assert [t["acc"] for t in other] != [t["acc"] for t in noisy]


def test_search_cli_bad_device(tmp_path, capsys):
    from cimtile.cli import main

    assert main(["search", "--device", "nosuch", "--budget", "1", "-o", str(tmp_path / "o")]) == 1
    assert "device 'nosuch'" in capsys.readouterr().err
    bad = tmp_path / "d.json"
    bad.write_text(json.dumps({"read_sigma": "x"}))
    assert main(["search", "--device", str(bad), "--budget", "1", "-o", str(tmp_path / "o")]) == 1
    assert "read_sigma" in capsys.readouterr().err


def test_resident_tile_with_a_device():
    """Stuck cells land in the resident levels (read back); read noise changes the forward products, seeded."""
    from cimtile.hw.params import PRESETS
    from cimtile.train.resident import ResidentError, ResidentTile

    cfg = PRESETS["tiny"].replace(name="tiny8", adc_bits=8)
    rng = np.random.default_rng(0)
    W = rng.integers(-3, 4, size=(16, 4))
    X = rng.integers(0, 16, size=(8, 16))

    def tile(dev):
        t = ResidentTile(cfg, device=dev)
        t.program(W, wbits=3, abits=4)
        return t

    ideal = tile(None)
    assert np.array_equal(ideal.read()[0], W)
    stuck = tile(DeviceModel(name="s", seed=1, stuck_high=0.3))
    assert not np.array_equal(stuck.read()[0], W)  # programming effects are in the stored (resident) weights
    noisy = [tile(DeviceModel(name="r", seed=2, read_sigma=0.05)) for _ in range(2)]
    assert np.array_equal(noisy[0].read()[0], W)  # read noise leaves the stored levels alone ...
    y0, y1 = noisy[0].forward(X), noisy[1].forward(X)
    assert not np.array_equal(y0, ideal.forward(X))  # ... but not the products
    assert np.array_equal(y0, y1)  # the same seed gives the same results
    with pytest.raises(ResidentError, match="only the golden backend"):
        ResidentTile(cfg, "rtl", device=HARSH)


@pytest.mark.slow
def test_train_sparse_cli_with_a_device(tmp_path):
    """The CLI trains on ideal and on noisy tiles and writes the comparison; the noisy run is reproducible."""
    from cimtile.cli import main

    dev = tmp_path / "harsh.json"
    HARSH.save(dev)
    args = ["train-sparse", "--model", "micro", "--data", "digits", "--tile", "cimaq", "--limit-train", "64",
            "--limit-test", "120", "--pretrain-epochs", "1", "--survive-epochs", "1", "--train-epochs", "1",
            "--methods", "float,vau-lsq", "--sparsity", "0.5", "--device", str(dev)]
    assert main(args + ["-o", str(tmp_path / "a")]) == 0
    assert main(args + ["-o", str(tmp_path / "b")]) == 0
    for f in ("device.md", "device.json", "device_accuracy.png", "metrics.csv"):
        assert (tmp_path / "a" / f).stat().st_size > 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "a" / "device.json").read_text())["rows"]}
    assert rows["float"]["ideal_acc"] == rows["float"]["device_acc"]  # the host's float training has no device
    assert rows["vau-lsq"]["device_acc"] < rows["vau-lsq"]["ideal_acc"]  # the harsh tile costs accuracy
    again = json.loads((tmp_path / "b" / "device.json").read_text())["rows"]
    assert again == list(rows.values())  # reproducible for a seed


@pytest.mark.slow
def test_search_final_figures_with_the_device(tmp_path):
    """The chosen policy's final figures are measured with the device (and on an ideal tile beside them)."""
    import csv

    from cimtile.compiler import load, run
    from cimtile.search.executor import InProcessExecutor
    from cimtile.search.run import SearchConfig, search
    from cimtile.zoo.mnist_nets import load_data

    out = tmp_path / "s"
    r = search(SearchConfig(model="lenet", data="digits", agent="random", budget=2, max_loss=2.0, finetune_epochs=0.2,
                            final_epochs=0.3, progress=False, device=HARSH), out, InProcessExecutor())
    summ = json.loads((out / "summary.json").read_text())
    assert summ["device"] == HARSH.to_dict() and summ["config"]["device"]["name"] == "harsh"
    _, _, xte, yte = load_data("digits")
    b = load(out / "bundle")

    def acc(device):
        return float((np.asarray(run(b, xte, device=device)).argmax(1) == yte).mean() * 100)

    assert summ["acc_golden"] == pytest.approx(acc(HARSH)) == pytest.approx(r.acc_golden)
    assert summ["acc_golden_ideal"] == pytest.approx(acc(None))
    assert r.acc_golden < r.acc_golden_ideal
    with open(out / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(row["acc"]) < float(row["acc_torch"]) for row in rows)
