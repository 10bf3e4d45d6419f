"""The vision transformer path: the zoo's ViT trained on digits, quantized by onnxruntime (QDQ) and by brevitas
(QCDQ), compiled and run against onnxruntime; a ViT-B/32-shaped model compiled for the cimaq preset; the ViT as
a model of the mixed-precision search."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cimtile.zoo import mnist_nets, vit
from onnx import numpy_helper

from cimtile import compiler


@pytest.fixture(scope="module")
def trained():
    net, cfg = vit.pretrained("digits", epochs=16)
    xtr, ytr, xva, yva, xte, yte = mnist_nets.splits("digits")
    return net, cfg, (xtr, xva, xte, yte)


def _out_step(q: onnx.ModelProto) -> float | None:
    """The scale of the DequantizeLinear that writes the graph output (one quantization step of it); None if the
    output is a float layer's accumulator (brevitas' head without an output quantizer)."""
    last = next(n for n in q.graph.node if n.output[0] == q.graph.output[0].name)
    if last.op_type != "DequantizeLinear":
        return None
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    return float(inits[last.input[1]])


def compare_with_onnxruntime(path, data, record_property=None, label=""):
    """Compile and run the model on every digits image. Class agreement and accuracies (test split) against
    onnxruntime as users run it (all graph optimizations); the share of outputs within one quantization step
    against onnxruntime running the graph as written (basic optimizations: its extended ones fuse the
    transformer's QDQ graph into kernels of other arithmetic, docs/compiler.md)."""
    xtr, xva, xte, yte = data
    xall = np.concatenate([xtr, xva, xte])
    q = onnx.load(str(path))
    b = compiler.compile_model(q, "isaac")
    refs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        refs.append(sess.run(None, {sess.get_inputs()[0].name: xall})[0])
    ref, ref_graph = refs
    got, stats = compiler.run(b, xall, stats=True)
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    n = len(yte)
    acc_ort, acc = float((ref[-n:].argmax(1) == yte).mean()), float((got[-n:].argmax(1) == yte).mean())
    step = _out_step(q)
    # a float output (the head's accumulator times its scale) equals onnxruntime's up to float rounding
    tol = step * 1.0001 if step is not None else 1e-4 * float(np.abs(ref_graph).max())
    within = float((np.abs(got - ref_graph) <= tol).mean())
    if record_property is not None:
        for k, v in (("agreement", agree), ("accuracy_onnxruntime", acc_ort), ("accuracy_cimtile", acc),
                     ("outputs_within_one_step", within)):
            record_property(f"{label}{k}", v)
    print(f"{label}: onnxruntime {100 * acc_ort:.2f}%, cimtile {100 * acc:.2f}%, class agreement "
          f"{100 * agree:.2f}% over {len(xall)} images, outputs within one step {100 * within:.2f}%")
    return b, stats, agree, acc_ort, acc, within


@pytest.mark.slow
def test_vit_quantized_by_onnxruntime_matches(trained, tmp_path, record_property):
    from cimtile.zoo import digits as zd

    net, cfg, data = trained
    vit.export_onnx(net, cfg, tmp_path / "vit.onnx")
    zd.ort_quantize(onnx.load(tmp_path / "vit.onnx"), data[0][:256], tmp_path / "vit_qdq.onnx")
    b, stats, agree, acc_ort, acc, within = compare_with_onnxruntime(tmp_path / "vit_qdq.onnx", data,
                                                                    record_property, "qdq_")
    assert agree >= 0.995
    assert within >= 0.99
    assert acc_ort > 0.85 and abs(acc - acc_ort) <= 0.02
    # every weight layer on the tile (patch embedding, 4 per block, head); the rest on the host, counted apart
    assert len(b.model.layers) == vit.weight_layers(cfg)
    rep = b.report
    ops = {h["op"] for h in rep["host"]}
    for op in ("LayerNormalization", "Softmax", "HostMatMul", "Erf", "Shape", "Expand", "Concat", "Gather"):
        assert op in ops, op
    T, D, H = cfg.tokens, cfg.dim, cfg.heads
    assert rep["totals"]["host_macs"] == cfg.depth * 2 * T * T * D  # q k^T and att v, per head D/H wide: H*T*T*D/H
    assert rep["totals"]["host_elem_ops"] > 0
    assert stats.host_macs == rep["totals"]["host_macs"] * len(np.concatenate(data[:3]))
    assert "host element ops" in compiler.report(b)
    assert H > 1


@pytest.mark.slow
def test_vit_quantized_by_brevitas_matches(trained, tmp_path, record_property):
    import torch
    from cimtile.search import qat

    net, cfg, data = trained
    qn = qat.build([cfg.spec()], [(8, 8)] * vit.weight_layers(cfg), net)
    with torch.no_grad():  # calibrate the activation scales
        qn.train()
        qn(torch.from_numpy(data[0][:256]))
    vit.export_qcdq(qn, cfg, tmp_path / "vit_qcdq.onnx", data[2])
    ops = {n.op_type for n in onnx.load(tmp_path / "vit_qcdq.onnx").graph.node}
    assert {"Clip", "QuantizeLinear", "DequantizeLinear", "LayerNormalization"} <= ops
    b, _, agree, acc_ort, acc, within = compare_with_onnxruntime(tmp_path / "vit_qcdq.onnx", data,
                                                                 record_property, "qcdq_")
    assert agree >= 0.995 and within >= 0.99
    assert acc_ort > 0.85
    assert len(b.model.layers) == vit.weight_layers(cfg)


def _random_vit(cfg: vit.ViTConfig, path):
    """A float ViT of ``cfg``'s shape with random weights, exported (TorchScript, opset 17), and two random
    images to calibrate its quantization on."""
    net = vit.vit_net(cfg)
    x = np.random.default_rng(0).uniform(0, 1, (2, cfg.channels, cfg.size, cfg.size)).astype(np.float32)
    vit.export_onnx(net, cfg, path, x=x)
    return net, x


@pytest.mark.slow
def test_vit_b32_shape_compiles_for_cimaq(tmp_path):
    """The ViT-B/32 shape with random weights compiles for the cimaq preset: 50 weight layers on the tile."""
    cfg = vit.vit_b32()
    net, x = _random_vit(cfg, tmp_path / "vitb32.onnx")
    # onnxruntime's quantizer takes about a minute on 88M weights: the zoo's plain QDQ quantizer instead
    q = vit.quantize_weight_layers(onnx.load(tmp_path / "vitb32.onnx"), x)
    b = compiler.compile_model(q, "cimaq")
    assert len(b.model.layers) == vit.weight_layers(cfg) == 50
    rep = b.report
    assert rep["totals"]["host_macs"] == cfg.depth * 2 * cfg.tokens ** 2 * cfg.dim
    assert {r["K"] for r in rep["layers"]} >= {768, 3072, 3 * 32 * 32}
    assert rep["totals"]["cycles"] > 0


def test_vit_is_a_search_model():
    """The search's registry knows the ViT: its layer list, policy length, brevitas twin and integer weights."""
    from cimtile.search import qat

    assert "vit" in mnist_nets.MODELS
    spec = mnist_nets.layers("vit", 8)
    n = mnist_nets.weight_layers(spec)
    assert n == vit.weight_layers(vit.DIGITS_VIT) == 10
    net = mnist_nets.torch_net(spec)
    pol = [(4, 6)] * n
    qn = qat.build(spec, pol, net)
    w = qat.int_weights(qn)
    assert len(w) == n and max(int(np.abs(m).max()) for m in w) <= 7  # 4-bit narrow weights
    assert mnist_nets.layers("vit", 28)[0][0] == "vit"
