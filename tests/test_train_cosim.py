"""Sparse training replayed on the RTL: every program of a short run equals the golden model's (outputs,
levels, masks, cycles). ``make test`` runs a two-step version; ``make sim`` sets CIMTILE_TRAIN_REPLAY=full
for a longer one (more images, two epochs per phase)."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.cosim


def test_training_run_replays_on_rtl_step_for_step():
    pytest.importorskip("cocotb")
    from cimtile.train.replay import replay

    full = os.environ.get("CIMTILE_TRAIN_REPLAY") == "full"
    results = replay(128 if full else 32, epochs=2 if full else 1)
    # The replay compares every program on the way (CompareBackend raises on the first difference);
    # here: the run exercised every kind of operation it is meant to check.
    kinds = {r.method: r.cycles for r in results}
    for method, cyc in kinds.items():
        for k in ("program", "forward", "read", "mask"):
            assert cyc.get(k, 0) > 0, f"{method}: no {k} program ran"
    assert kinds["exact"].get("wset", 0) > 0
    assert kinds["vau-lsq"].get("vau", 0) > 0 and kinds["vau-sign"].get("vau", 0) > 0
    assert all(abs(r.measured_sparsity - 0.75) < 0.02 for r in results)
