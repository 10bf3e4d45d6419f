"""End-to-end: digits networks trained with torch, quantised (onnxruntime's static quantizer, or mixed
precision written as QCDQ / QONNX), compiled for two presets and run on the golden model, against an
independent oracle (onnxruntime; onnx.reference for QONNX)."""

from __future__ import annotations

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cimtile import compiler
from cimtile.cli import main

pytestmark = pytest.mark.slow

TILES = ["isaac", "tiny"]
MIXED = {"mixed_a": [(5, 8), (3, 4), (2, 6)], "mixed_b": [(8, 2), (2, 8), (6, 3)]}


@pytest.fixture(scope="session")
def data():
    return models.digits()


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, data):
    """name -> (model path, oracle(x) -> y, output step), built once per session."""
    xtr, _, _, _ = data
    d = tmp_path_factory.mktemp("zoo")
    out = {}
    nets = {k: models.train(k) for k in ("mlp", "cnn", "resnet")}
    for k, net in nets.items():
        path = d / f"{k}.onnx"
        m = models.ort_quantize(models.float_onnx(k, net), xtr[:256], path, per_channel=(k != "mlp"))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out[k] = (path, lambda x, s=sess: s.run(None, {"x": x})[0], _last_step(m))
    for name, bits in MIXED.items():
        for style in ("qcdq", "qonnx"):
            m = models.mixed_cnn(nets["cnn"], xtr[:256], bits, style)
            path = d / f"{name}_{style}.onnx"
            onnx.save(m, path)
            if style == "qcdq":
                # graph optimisations of onnxruntime rewrite sub-8-bit QCDQ chains (see docs/compiler.md):
                # compare with the graph's own semantics, optimisations off
                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                oracle = lambda x, s=sess: s.run(None, {"x": x})[0]
            else:
                oracle = lambda x, m=m: models.qonnx_reference(m, x)
            out[f"{name}_{style}"] = (path, oracle, None)
    return out


def _last_step(m: onnx.ModelProto) -> float:
    """Scale of the DequantizeLinear producing the graph output (one quantisation step of the output)."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:
        if n.output[0] == m.graph.output[0].name and n.op_type == "DequantizeLinear":
            return float(inits[n.input[1]])
    raise AssertionError("output is not dequantized")


def _check(y, ref, step, labels):
    assert y.shape == ref.shape and y.dtype == ref.dtype
    if step is not None:
        assert np.abs(y - ref).max() <= step * (1 + 1e-5)
    else:  # float output of an unquantised last layer: float rounding only
        assert np.abs(y - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    agree = (y.argmax(1) == ref.argmax(1)).mean()
    assert agree >= 0.995
    return (ref.argmax(1) == labels).mean(), (y.argmax(1) == labels).mean()


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", *[f"{m}_{s}" for m in MIXED for s in ("qcdq", "qonnx")]])
def test_digits_equal_oracle(zoo, data, name, tile):
    _, _, xte, yte = data
    path, oracle, step = zoo[name]
    b = compiler.compile_model(path, tile)
    y = compiler.run(b, xte)
    acc_ref, acc_tile = _check(y, oracle(xte), step, yte)
    assert acc_tile >= acc_ref - 0.005
    if name.startswith("mixed_a"):
        assert [(L.weights.wbits, L.weights.abits) for L in b.model.layers] == MIXED["mixed_a"]


def test_digits_cli_end_to_end(zoo, data, tmp_path):
    _, _, xte, yte = data
    path, oracle, step = zoo["cnn"]
    out = tmp_path / "cnn"
    assert main(["compile", str(path), "--tile", "tiny", "-o", str(out)]) == 0
    np.save(tmp_path / "x.npy", xte[:50])
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    _check(np.load(tmp_path / "y.npy"), oracle(xte[:50]), step, yte[:50])


def test_one_image_cycles_equal_report(zoo, data):
    _, _, xte, _ = data
    b = compiler.compile_model(zoo["resnet"][0], "isaac")
    _, st = compiler.run(b, xte[:1], stats=True)
    assert st.cycles == b.report["totals"]["cycles"]


def test_brevitas_qcdq_export(tmp_path):
    pytest.importorskip("brevitas")
    m = models.brevitas_cnn(tmp_path / "brevitas.onnx")
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(str(tmp_path / "brevitas.onnx"),
                               providers=["CPUExecutionProvider"]).run(None, {m.graph.input[0].name: x})[0]
    for tile in TILES:
        b = compiler.compile_model(m, tile)
        assert [(L.weights.wbits, L.weights.abits) for L in b.model.layers] == [(4, 8), (3, 5), (6, 4)]
        y = compiler.run(b, x)
        assert np.abs(y - ref).max() <= 1e-4 and (y.argmax(1) == ref.argmax(1)).all()
