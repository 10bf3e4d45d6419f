"""``BENCH_EXPLORE_OUT``: the bench's tables read the seeds of the directory it names, and a path is refused."""

import json
import sys
from pathlib import Path

import pytest

from cimtile.errors import CimtileError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ lives beside tests/, not in the wheel
import bench.explore as be


def _seed(root, name, seed, ratio):
    d = root / "explore" / name / f"seed{seed}"
    d.mkdir(parents=True)
    cand = {"family": "cnn"}
    rows = [{"strategy": s, "status": "ok", "acc": 90.0, "fits": True, "candidate": cand}
            for s in ("joint", "hardware", "network", "precision")]
    (d / "candidates.json").write_text(json.dumps(rows))
    (d / "summary.json").write_text(json.dumps({
        "hypervolume": {"joint": 0.5, "hardware": 0.25, "network": 0.125, "precision": 0.0625},
        "best_single_sided": "hardware", "explore_hv_ratio": ratio}))


def test_markdown_reads_the_named_runs_seeds(tmp_path, monkeypatch):
    build = tmp_path / "build"
    _seed(build, "bench", 0, 1.5)
    _seed(build, "long", 0, 1.75)
    (build / "bench.json").write_text(json.dumps({"explore_hv_ratio_seed0": 1.0}))
    monkeypatch.setenv("BENCH_EXPLORE_OUT", "long")
    text = be.markdown(build / "bench.json")
    assert "`build/explore/long/seed<k>/summary.json`" in text
    assert "| 0 | 0.5000 | 0.2500 | 0.1250 | 0.0625 | hardware | 1.750 |" in text
    assert "1.500" not in text  # not the default directory's seed
    assert "| joint | 1 | 0 | 0 | 0 | 0 | 90.0 |" in text  # the candidates table reads the named run too
    monkeypatch.delenv("BENCH_EXPLORE_OUT")
    assert "| 0 | 0.5000 | 0.2500 | 0.1250 | 0.0625 | hardware | 1.500 |" in be.markdown(build / "bench.json")


@pytest.mark.parametrize("value", ["build/explore/long100", "..", "", "a\\b"])
def test_a_path_is_refused_in_one_line(monkeypatch, value):
    monkeypatch.setenv("BENCH_EXPLORE_OUT", value)
    with pytest.raises(CimtileError, match=r"^BENCH_EXPLORE_OUT=.*a directory name") as e:
        be._out_name()
    assert "\n" not in str(e.value)
