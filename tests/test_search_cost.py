"""search.cost: the cost API's cycles, ADC conversions and crossbar tiles equal the compiled program's (compiler
report) and the golden model's count when that program runs, for random policies on several models and presets."""

from __future__ import annotations

import tempfile
import zlib

import numpy as np
import pytest
from cimtile.compiler import compile_model, run
from cimtile.compiler.report import for_batch
from cimtile.search.cost import CostModel, PolicyError, apply_policy
from cimtile.zoo import digits as zd
from cimtile.zoo.data import digits


@pytest.fixture(scope="module")
def quantized():
    xtr, _, xte, _ = digits()
    out = {}
    for kind in ("cnn", "mlp", "resnet"):
        net = zd.train(kind, epochs=2)
        with tempfile.TemporaryDirectory() as d:
            out[kind] = zd.ort_quantize(zd.float_onnx(kind, net), xtr[:64], d + "/q.onnx", per_channel=True)
    return out, xte[:2]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cnn", "mlp", "resnet"])
@pytest.mark.parametrize("tile", ["tiny", "isaac", "cimaq"])
def test_cost_equals_compiled_and_golden(quantized, kind, tile):
    models, x = quantized
    q = models[kind]
    cm = CostModel(q, tile)
    rng = np.random.default_rng(zlib.crc32(f"{kind} {tile}".encode()))
    for _ in range(2):
        pol = cm.harmonise(rng.integers(2, 9, (len(cm), 2)))
        r = cm.query(pol)
        b = compile_model(apply_policy(q, pol, cm), tile)
        rep = b.report
        assert [(L["wbits"], L["abits"]) for L in rep["layers"]] == pol
        _, st = run(b, x, stats=True)
        assert st.init_cycles == r.init_cycles
        rep2 = for_batch(rep, 2)  # two images: every crossbar tile programmed once (docs/compiler.md, batch schedule)
        for lc, row, row2 in zip(r.layers, rep["layers"], rep2["layers"]):
            assert lc.name == row["name"]
            assert lc.cycles == row["cycles"] and lc.program_cycles == row["program_cycles"]
            assert st.layer_cycles[lc.name] == lc.batch_cycles(2)[0] == row2["cycles"]
            assert st.program_cycles[lc.name] == lc.batch_cycles(2)[1] == row2["program_cycles"]
            assert lc.adc_conversions == row["adc_conversions"]
            assert lc.xbar_tiles == row["xbar_tiles"]
            assert 0 < lc.program_cycles < lc.cycles
        assert r.totals["cycles"] == rep["totals"]["cycles"]
        assert r.cost("batch", 2) == st.cycles == rep2["totals"]["cycles"]


def test_worst_case_weights_bound_rows(quantized):
    models, _ = quantized
    cm = CostModel(models["cnn"], "isaac")
    pol = [(8, 8)] * len(cm)
    ref, worst = cm.query(pol), cm.query(pol, "worst")
    assert worst.weights == "worst"
    for a, b in zip(ref.layers, worst.layers):
        assert b.rows_per_tile <= a.rows_per_tile
    assert worst.totals["cycles"] >= ref.totals["cycles"]


def test_given_weights(quantized):
    models, _ = quantized
    cm = CostModel(models["mlp"], "isaac")
    K, N = cm._w_real[0].shape
    W = np.zeros((K, N), np.int32)
    r = cm.query([(4, 4), (4, 4)], [W, None])
    assert r.weights == "given"
    with pytest.raises(PolicyError, match="within"):
        cm.query([(4, 4), (4, 4)], [np.full((K, N), 9, np.int32), None])


@pytest.mark.parametrize("bad,msg", [([(8, 8)], "has 1 layers"), ([(8, 9), (8, 8), (8, 8)], "outside 2..8"),
                                     ([[8, 8, 8]] * 3, "pairs"), ([(8.5, 8), (8, 8), (8, 8)], "whole")])
def test_bad_policy(quantized, bad, msg):
    models, _ = quantized
    cm = CostModel(models["cnn"], "tiny")
    with pytest.raises(PolicyError, match=msg):
        cm.query(bad)
