"""torch's default (dynamo) ONNX exporter at opsets 18, 19 and 20: the zoo's CNN and ViT exported with
``torch.onnx.export(..., dynamo=True)`` (dynamic batch), quantized by onnxruntime (QDQ), compiled and run against
onnxruntime. (The TorchScript exporter is what tests/test_vit.py and the digits tests use.)"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cimtile.zoo import digits as zd
from cimtile.zoo import vit
from cimtile.zoo.data import digits

from cimtile import compiler


def _dynamo_export(net, path, opset: int) -> onnx.ModelProto:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes about its own internals
        torch.onnx.export(net.eval(), (torch.zeros(2, 1, 8, 8),), str(path), dynamo=True, opset_version=opset,
                          input_names=["x"], output_names=["y"], dynamic_shapes={"x": {0: torch.export.Dim("N")}},
                          verbose=False)
    m = onnx.load(str(path))
    assert m.opset_import[0].version == opset or any(o.domain == "" and o.version == opset for o in m.opset_import)
    return m


@pytest.fixture(scope="module")
def cnn():
    return zd.train("cnn", epochs=6)


@pytest.fixture(scope="module")
def small_vit():
    return vit.pretrained("digits", epochs=16)[0]


def _check(m: onnx.ModelProto, tmp_path, record_property, label: str) -> None:
    xtr, _, xte, yte = digits()
    xall = np.concatenate([xtr, xte])
    q = zd.ort_quantize(m, xtr[:256], tmp_path / "q.onnx")
    b = compiler.compile_model(q, "isaac")
    ref = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None,
                                                                                                {"x": xall})[0]
    got = compiler.run(b, xall)
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    n = len(yte)
    acc_ort, acc = float((ref[-n:].argmax(1) == yte).mean()), float((got[-n:].argmax(1) == yte).mean())
    record_property(f"{label}_accuracy_onnxruntime", acc_ort)
    record_property(f"{label}_accuracy_cimtile", acc)
    print(f"{label}: onnxruntime {100 * acc_ort:.2f}%, cimtile {100 * acc:.2f}%, agreement {100 * agree:.2f}%")
    assert agree >= 0.995
    assert acc_ort > 0.85 and abs(acc - acc_ort) <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("opset", [18, 19, 20])
def test_dynamo_export_cnn(cnn, opset, tmp_path, record_property):
    m = _dynamo_export(cnn, tmp_path / "cnn.onnx", opset)
    _check(m, tmp_path, record_property, f"cnn_dynamo{opset}")


@pytest.mark.slow
@pytest.mark.parametrize("opset", [18, 19, 20])
def test_dynamo_export_vit(small_vit, opset, tmp_path, record_property):
    m = _dynamo_export(small_vit, tmp_path / "vit.onnx", opset)
    ops = {n.op_type for n in m.graph.node}
    assert "LayerNormalization" in ops and "Shape" in ops  # the dynamic batch's shape arithmetic is there
    if opset >= 20:
        assert "Gelu" in ops  # opset 20's own GELU
    _check(m, tmp_path, record_property, f"vit_dynamo{opset}")
