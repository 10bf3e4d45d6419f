"""search.run: a CI-sized search (a few policies on digits, in-process executor) checked for behaviour: the budget
is respected, the chosen policy's reported cycles equal its compiled bundle's, the exported model compiles and
matches its reported accuracy, and results do not depend on the order evaluations run in."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from cimtile.compiler import compile_model, load, run
from cimtile.search.executor import Executor, InProcessExecutor
from cimtile.search.run import SearchConfig, SearchError, search
from cimtile.zoo.mnist_nets import load_data


class Reversed(Executor):
    """Runs a batch's evaluations last to first (as a pool of workers may finish them)."""

    def map(self, fn, items, on_result=None):
        out = [fn(x) for x in reversed(items)][::-1]
        for i in reversed(range(len(out))):
            if on_result is not None:
                on_result(i, out[i])
        return out


class Interrupted(Exception):
    pass


class Counting(Executor):
    """In-process, counting evaluations; raises Interrupted (as Ctrl-C would) after ``stop`` of them."""

    def __init__(self, stop=None):
        self.count, self.stop = 0, stop

    def map(self, fn, items, on_result=None):
        out = []
        for i, x in enumerate(items):
            if self.stop is not None and self.count >= self.stop:
                raise Interrupted
            out.append(fn(x))
            self.count += 1
            if on_result is not None:
                on_result(i, out[-1])
        return out


def _cfg(agent, **kw):
    return SearchConfig(model="lenet", data="digits", agent=agent, budget=5, max_loss=2.0, finetune_epochs=0.2,
                        final_epochs=0.3, progress=False, **kw)


@pytest.mark.slow
def test_ci_search_ddpg(tmp_path):
    out = tmp_path / "ddpg"
    r = search(_cfg("ddpg", pin_first_last=True, final_candidates=2, final_seeds=2), out, InProcessExecutor())
    summ = json.loads((out / "summary.json").read_text())
    with open(out / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == r.evaluations == 5  # the evaluation budget
    pol = json.loads((out / "best_policy.json").read_text())
    assert pol[0] == [8, 8] and pol[-1] == [8, 8]  # pinned
    for row in rows:
        assert int(row["w0"]) == 8 and int(row["a0"]) == 8
    # the chosen policy met the accuracy target in the search (or is the W8A8 fallback)
    chosen = [t for t in r.table if t["policy"] == pol]
    assert pol == [[8, 8]] * len(pol) or all(t["acc"] >= summ["target_acc"] for t in chosen)
    # reported cycles = the compiled bundle's; the exported model compiles and gives the reported accuracy
    b = load(out / "bundle")
    assert b.report["totals"]["cycles"] == r.cycles["total"] == r.bundle_cycles
    assert [[L["wbits"], L["abits"]] for L in b.report["layers"]] == pol
    _, _, xte, yte = load_data("digits")
    b2 = compile_model(out / "model.onnx", "isaac")
    assert b2.report["totals"] == b.report["totals"]
    acc = float((np.asarray(run(b2, xte)).argmax(1) == yte).mean() * 100)
    assert acc == pytest.approx(r.final_runs[0]["golden"])  # the shipped model is the first final seed's
    # two final seeds, the same recipe for W8A8 and the policy; the figures are their means
    assert [f["seed"] for f in r.final_runs] == [1, 2]
    assert r.acc_golden == pytest.approx(np.mean([f["golden"] for f in r.final_runs]))
    assert r.loss == pytest.approx(np.mean([f["golden_w8a8"] - f["golden"] for f in r.final_runs]))
    assert summ["loss_std"] == pytest.approx(r.loss_std)
    # the chosen policy is the cheapest candidate that kept the budget after the long fine-tune, if any did
    assert 1 <= len(r.candidates) <= 2
    ok = [c for c in r.candidates if c["val_acc"] >= c["val_acc_w8a8"] - 2.0]
    assert pol == (ok[0]["policy"] if ok else max(r.candidates, key=lambda c: c["val_acc"])["policy"])
    # the tile computes what fake quantisation predicts, within 1 point
    assert abs(r.final_runs[0]["golden"] - r.final_runs[0]["torch"]) <= 1.0
    assert r.speedup["compute"] == r.cycles_w8a8["compute"] / r.cycles["compute"]
    for f in ("bits.png", "pareto.png", "report.md"):
        assert (out / f).stat().st_size > 0


@pytest.mark.slow
def test_results_do_not_depend_on_execution_order(tmp_path):
    pa, ta, _ = search(_cfg("random", seed=3), None, InProcessExecutor(), finalize=False)
    pb, tb, _ = search(_cfg("random", seed=3), None, Reversed(), finalize=False)
    assert [t["policy"] for t in ta] == [t["policy"] for t in tb]
    assert [(t["acc"], t["compute"]) for t in ta] == [(t["acc"], t["compute"]) for t in tb]
    assert pa == pb


def test_bad_settings(tmp_path):
    with pytest.raises(SearchError, match="agent"):
        search(_cfg("sgd"), tmp_path)
    with pytest.raises(SearchError, match="budget"):
        search(SearchConfig(budget=0), tmp_path)
    with pytest.raises(SearchError, match="final-seeds 0"):
        search(SearchConfig(final_seeds=0), tmp_path)
    with pytest.raises(SearchError, match="screen-loss -1"):
        search(SearchConfig(screen_loss=-1.0), tmp_path)


@pytest.mark.slow
def test_resnet_policy_cycles_equal_compiled(tmp_path):
    """The residual network's exported QCDQ model compiles to exactly the cycles the cost API gives for its
    fine-tuned weights (the policy's layer order is the graph's)."""
    from cimtile.search import qat
    from cimtile.search.cost import CostModel
    from cimtile.zoo import mnist_nets

    spec = mnist_nets.layers("resnet", 8)
    net = mnist_nets.torch_net(spec)  # untrained: the cycles need real integer weights, not good ones
    xtr, ytr, xte, _ = load_data("digits")
    n = mnist_nets.weight_layers(spec)
    ref = qat.build(spec, [(8, 8)] * n, net)
    qat.export_qcdq(ref, xte, tmp_path / "w8a8.onnx")
    cm = CostModel(tmp_path / "w8a8.onnx", "isaac")
    pol = [tuple(int(v) for v in p) for p in np.random.default_rng(5).integers(2, 9, (n, 2))]
    q = qat.finetune(qat.build(spec, pol, net), xtr, ytr, 0.05, 0)
    qat.export_qcdq(q, xte, tmp_path / "p.onnx")
    b = compile_model(tmp_path / "p.onnx", "isaac")
    assert [(L["wbits"], L["abits"]) for L in b.report["layers"]] == pol
    r = cm.query(pol, qat.int_weights(q))
    assert [x.cycles for x in r.layers] == [L["cycles"] for L in b.report["layers"]]
    assert r.totals["cycles"] == b.report["totals"]["cycles"]


def test_output_dir_guard(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(SearchError, match="not a previous search"):
        search(_cfg("random"), tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep"


@pytest.mark.slow
def test_interrupted_search_resumes_without_repeating(tmp_path):
    """A search interrupted in the middle of a batch, rerun on its output directory, evaluates only what it had not
    finished and ends with the table of an uninterrupted run; a third run repeats nothing."""
    cfg = _cfg("random", seed=1)
    cfg.budget = 6
    whole = Counting()
    full = search(cfg, tmp_path / "whole", whole)
    assert whole.count == 7  # W8A8 and 6 policies
    first = Counting(stop=3)  # W8A8 and two policies of the first batch of 4: interrupted in the middle of it
    with pytest.raises(Interrupted):
        search(cfg, tmp_path / "cut", first)
    assert not (tmp_path / "cut").exists()  # nothing half-written where the output goes
    second = Counting()
    res = search(cfg, tmp_path / "cut", second)
    assert second.count == 7 - 3 and res.evaluated == 4
    assert [(t["policy"], t["acc"], t["compute"]) for t in res.table] == \
        [(t["policy"], t["acc"], t["compute"]) for t in full.table]
    assert res.policy == full.policy and res.acc_golden == full.acc_golden
    third = Counting()
    again = search(cfg, tmp_path / "cut", third)  # a finished search's directory: all from its journal
    assert third.count == 0 and again.evaluated == 0 and again.policy == full.policy
    assert len((tmp_path / "cut" / "evaluations.jsonl").read_text().splitlines()) == 7


def test_journal_survives_a_cut_line(tmp_path):
    from cimtile.search.journal import Journal

    j = Journal(tmp_path / "j.jsonl")
    j.add({"policy": [[8, 8]]}, {"acc": 1.5})
    with open(tmp_path / "j.jsonl", "a") as f:
        f.write('{"key": "abc", "res')  # killed while writing
    j2 = Journal(tmp_path / "j.jsonl")
    assert j2.get({"policy": [[8, 8]]}) == {"acc": 1.5} and len(j2) == 1
    j2.add({"policy": [[4, 4]]}, {"acc": 2.0})
    assert Journal(tmp_path / "j.jsonl").get({"policy": [[4, 4]]}) == {"acc": 2.0}


def test_a_candidate_exactly_at_the_loss_budget_is_within_it():
    from cimtile.search.run import budget_floor

    assert 88.1 >= budget_floor(88.2, 0.1)  # 88.2 - 0.1 is 88.10000000000001 in floats
    assert 100 * 881 / 1000 >= budget_floor(100 * 882 / 1000, 0.1)
    assert not 88.0 >= budget_floor(88.2, 0.1)
