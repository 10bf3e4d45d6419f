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


def test_multi_slice_vau_and_carry_replay_on_rtl():
    """Two-slice weights (wbits 5 on 2-bit cells): signed-digit programming, masks, multi-slice VAU steps
    (VAUR/VAUC with only/slice), the host's carry (RDW, LDW) and forward MVMs, each program equal on the
    RTL and the golden model (read-outs and cycles)."""
    pytest.importorskip("cocotb")
    import numpy as np
    from cimtile.train.replay import REPLAY_TILE
    from cimtile.train.resident import ResidentTile

    rng = np.random.default_rng(5)
    t = ResidentTile(REPLAY_TILE, backend="compare")
    try:
        W = rng.integers(-15, 16, (16, 8))
        t.program(W, wbits=5, abits=4, signed_digits=True)
        mask = rng.random(W.shape) < 0.5
        t.write_mask(mask)
        for k in range(6):
            t.vau(rng.integers(-9, 10, 16), rng.integers(-9, 10, 8))
            if k % 3 == 2:
                t.carry()
        t.forward(rng.integers(0, 16, (5, 16)))
        W2, m2 = t.read()
    finally:
        t.close()
    assert np.array_equal(m2, mask) and not np.array_equal(W2, np.where(mask, 0, W))
    assert t.stats.cycles["carry"] > 0 and t.stats.calls["vau"] == 6
