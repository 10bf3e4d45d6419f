"""search.agents on a synthetic evaluation (no training): every agent keeps its budget and is deterministic for a
seed; DDPG's warm-up episodes are evaluated in batches and give exactly the policies and rewards of evaluating
every episode at once."""

from __future__ import annotations

import pytest
from cimtile.search.agents import AGENTS, BATCH, Space, reward, run_agent

N = 5
TABLE = [{"cin": 1 + i, "cout": 8 * (i + 1), "stride": 1, "kernel": 3, "params": 72 * (i + 1), "positions": 64}
         for i in range(N)]


class Recorder:
    """A synthetic evaluation: accuracy falls with lost bits, cost is the bits' product; records batches."""

    def __init__(self):
        self.batches, self.table = [], []

    def __call__(self, pols):
        self.batches.append(len(pols))
        out = []
        for p in pols:
            lost = sum(16 - w - a for w, a in p)
            r = {"acc": 95.0 - 0.15 * lost - 0.05 * (p[0][0] % 3), "ratio": sum(w * a for w, a in p) / (64.0 * N)}
            r["reward"] = reward(r["acc"], r["ratio"], 93.0)
            out.append(r)
            self.table.append((p, r["reward"]))
        return out


def _run(agent, budget, seed=0, **opts):
    rec = Recorder()
    run_agent(agent, Space(N, 2), rec, budget, seed, 93.0, TABLE, **opts)
    return rec


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_budget_and_determinism(agent):
    a, b = _run(agent, 10, seed=4), _run(agent, 10, seed=4)
    assert sum(a.batches) <= 10 and a.table == b.table
    if agent != "greedy":  # greedy may stop early (no knob left); the others use the whole budget
        assert sum(a.batches) == 10
    assert max(a.batches) <= BATCH


@pytest.mark.slow
def test_ddpg_warmup_in_batches_same_policies():
    budget = 20  # warm-up: 5 random episodes
    batched, seq = _run("ddpg", budget, seed=2), _run("ddpg", budget, seed=2, batch_warmup=False)
    assert batched.batches == [BATCH, 1] + [1] * (budget - 5)
    assert seq.batches == [1] * budget
    assert batched.table == seq.table  # same policies and rewards, so the same actor after the warm-up


def test_ddpg_leaves_no_logger_folder(tmp_path, monkeypatch):
    """DDPG runs with a logger of no outputs: stable-baselines3's default one would create an empty
    SB3-<date> folder in the temporary directory on every search."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    _run("ddpg", 4, seed=1)
    assert sorted(p.name for p in tmp_path.glob("SB3-*")) == []  # (torch keeps its own caches there)
