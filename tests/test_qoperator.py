"""onnxruntime's QOperator format: its com.microsoft operators, each against onnxruntime code for code, and a
residual CNN quantized by ``quantize_static(..., quant_format=QOperator)`` with every op type it quantizes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cimtile.compiler.frontend import import_model
from cimtile.compiler.hostops import run_host
from cimtile.compiler.ir import HostStep
from onnx import TensorProto, helper, numpy_helper

from cimtile import compiler

MS = "com.microsoft"


def _model(node, x_shapes, dtype, inits, out_type=None):
    et = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    ins = [helper.make_tensor_value_info(f"x{i}", et, s) for i, s in enumerate(x_shapes)]
    g = helper.make_graph([node], "t", ins, [helper.make_tensor_value_info("y", out_type or et, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])


def _compare(model, xs):
    """Run the model on onnxruntime and on the host steps the frontend makes of it; returns both outputs."""
    feeds = {f"x{i}": x for i, x in enumerate(xs)}
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    ir = import_model(model, require_tile=False)
    env = dict(feeds)
    for s in ir.steps:
        assert isinstance(s, HostStep)
        env[s.outputs[0]] = run_host(s, [env[n] if n in env else ir.consts[n] for n in s.inputs if n])
    assert ir.steps[-1].op == model.graph.node[0].op_type
    return ref, np.asarray(env["y"])


def _q(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)


def _zp(v, dtype):
    return np.asarray(v, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("shapes", [((2, 8, 5, 5), (2, 8, 5, 5)), ((2, 8, 5, 5), (1, 8, 1, 1)), ((3, 17), (17,))])
def test_qlinear_add_matches_onnxruntime(dtype, shapes):
    rng = np.random.default_rng(1)
    z = (3, -7, 5) if dtype == np.int8 else (120, 131, 128)
    inits = {"sa": np.float32(0.031), "za": _zp(z[0], dtype), "sb": np.float32(0.017), "zb": _zp(z[1], dtype),
             "sc": np.float32(0.043), "zc": _zp(z[2], dtype)}
    node = helper.make_node("QLinearAdd", ["x0", "sa", "za", "x1", "sb", "zb", "sc", "zc"], ["y"], domain=MS)
    ref, got = _compare(_model(node, shapes, dtype, inits), [_q(rng, s, dtype) for s in shapes])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 0], count_include_pad=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[7, 7]),  # the whole image: onnxruntime falls back to its global pool
])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_average_pool_matches_onnxruntime(attrs, dtype):
    rng = np.random.default_rng(2)
    inits = {"sx": np.float32(0.02), "zx": _zp(3 if dtype == np.int8 else 100, dtype), "sy": np.float32(0.013),
             "zy": _zp(-4 if dtype == np.int8 else 90, dtype)}
    node = helper.make_node("QLinearAveragePool", ["x0", "sx", "zx", "sy", "zy"], ["y"], domain=MS, **attrs)
    ref, got = _compare(_model(node, [(2, 6, 7, 7)], dtype, inits), [_q(rng, (2, 6, 7, 7), dtype)])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (8, 8), (13, 11)])
def test_qlinear_global_average_pool_matches_onnxruntime(hw):
    rng = np.random.default_rng(3)
    inits = {"sx": np.float32(0.021), "zx": _zp(117, np.uint8), "sy": np.float32(0.0093), "zy": _zp(7, np.uint8)}
    node = helper.make_node("QLinearGlobalAveragePool", ["x0", "sx", "zx", "sy", "zy"], ["y"], domain=MS)
    shape = (3, 10, *hw)
    ref, got = _compare(_model(node, [shape], np.uint8, inits), [_q(rng, shape, np.uint8)])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_concat_matches_onnxruntime(dtype):
    rng = np.random.default_rng(4)
    z0 = 0 if dtype == np.int8 else 128
    inits = {"sy": np.float32(0.05), "zy": _zp(z0, dtype),  # input 0 has the output's parameters: a plain copy
             "s0": np.float32(0.05), "z0": _zp(z0, dtype), "s1": np.float32(0.031), "z1": _zp(z0 + 9, dtype),
             "s2": np.float32(0.077), "z2": _zp(z0 - 20, dtype)}
    node = helper.make_node("QLinearConcat", ["sy", "zy", "x0", "s0", "z0", "x1", "s1", "z1", "x2", "s2", "z2"],
                            ["y"], domain=MS, axis=1)
    shapes = [(2, 3, 4, 4), (2, 5, 4, 4), (2, 2, 4, 4)]
    ref, got = _compare(_model(node, shapes, dtype, inits), [_q(rng, s, dtype) for s in shapes])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("op,attrs", [("QLinearSigmoid", {}), ("QLinearLeakyRelu", {"alpha": 0.1}),
                                      ("QLinearLeakyRelu", {"alpha": 0.01})])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("scale", [0.02, 0.11])
def test_qlinear_lookup_ops_match_onnxruntime_on_every_code(op, attrs, dtype, scale):
    info = np.iinfo(dtype)
    x = np.arange(info.min, info.max + 1).astype(dtype).reshape(1, -1)
    inits = {"sx": np.float32(scale), "zx": _zp(-5 if dtype == np.int8 else 130, dtype),
             "sy": np.float32(1 / 255 if op == "QLinearSigmoid" else scale * 0.7),
             "zy": _zp(info.min if op == "QLinearSigmoid" else (0 if dtype == np.int8 else 100), dtype)}
    node = helper.make_node(op, ["x0", "sx", "zx", "sy", "zy"], ["y"], domain=MS, **attrs)
    ref, got = _compare(_model(node, [x.shape], dtype, inits), [x])
    np.testing.assert_array_equal(got, ref)


def test_qgemm_variants_match_onnxruntime():
    """QGemm with transB, alpha, a bias and per-channel weight scales, on the tile; and without y_scale
    (float output), within one quantization step / exactly up to float rounding."""
    rng = np.random.default_rng(5)
    K, N = 20, 12
    w = rng.integers(-127, 128, size=(N, K)).astype(np.int8)
    common = {"sa": np.float32(0.02), "za": _zp(128, np.uint8), "w": w,
              "sb": rng.uniform(0.002, 0.01, N).astype(np.float32), "zb": np.zeros(N, np.int8),
              "c": rng.integers(-500, 500, N).astype(np.int32)}
    x = _q(rng, (9, K), np.uint8)
    for with_y in (True, False):
        inits = dict(common, **({"sy": np.float32(0.08), "zy": _zp(120, np.uint8)} if with_y else {}))
        ins = ["x0", "sa", "za", "w", "sb", "zb", "c"] + (["sy", "zy"] if with_y else [])
        node = helper.make_node("QGemm", ins, ["y"], domain=MS, transB=1, alpha=0.75)
        m = _model(node, [(None, K)], np.uint8, inits, None if with_y else TensorProto.FLOAT)
        ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x0": x})[0]
        got = compiler.run(compiler.compile_model(m, "isaac"), x)
        if with_y:
            assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_unknown_microsoft_operator_is_one_line_error():
    node = helper.make_node("QLinearSoftmax", ["x0", "sx", "zx", "sy", "zy"], ["y"], domain=MS)
    m = _model(node, [(1, 4)], np.uint8, {"sx": np.float32(0.1), "zx": _zp(0, np.uint8), "sy": np.float32(0.1),
                                          "zy": _zp(0, np.uint8)})
    with pytest.raises(compiler.CompileError, match="com.microsoft.QLinearSoftmax|QLinearSoftmax"):
        compiler.compile_model(m, "isaac")


@pytest.fixture(scope="module")
def qoperator_mix(tmp_path_factory):
    from cimtile.zoo import digits as zd
    from cimtile.zoo.data import digits

    net = zd.train("mix", epochs=10)
    xtr, _, xte, yte = digits()
    path = tmp_path_factory.mktemp("qop") / "mix_qop.onnx"
    q = zd.ort_quantize(zd.float_onnx("mix", net), xtr[:200], path, quant_format="QOperator")
    return q, path, xte, yte


@pytest.mark.slow
def test_qoperator_residual_cnn_matches_onnxruntime(qoperator_mix, record_property):
    q, path, xte, yte = qoperator_mix
    ops = {(n.domain, n.op_type) for n in q.graph.node}
    for op in ("QGemm", "QLinearAdd", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat",
               "QLinearSigmoid", "QLinearLeakyRelu"):
        assert (MS, op) in ops, f"quantize_static no longer emits {op}: the test would not test it"
    b = compiler.compile_model(q, "isaac")
    assert [L.op for L in b.model.layers][-1] == "QGemm"
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": xte})[0]
    got = compiler.run(b, xte)
    # the output is the dequantized QGemm output: one quantization step of it
    dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == q.graph.output[0].name)
    step = float(numpy_helper.to_array(next(i for i in q.graph.initializer if i.name == dq.input[1])))
    assert np.abs(got - ref).max() <= step * 1.0001
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    acc_ort, acc_tile = float((ref.argmax(1) == yte).mean()), float((got.argmax(1) == yte).mean())
    record_property("accuracy_onnxruntime", acc_ort)
    record_property("accuracy_cimtile", acc_tile)
    print(f"QOperator residual CNN: onnxruntime {100 * acc_ort:.2f}%, cimtile {100 * acc_tile:.2f}%, "
          f"class agreement {100 * agree:.2f}%")
    assert agree >= 0.995
    assert acc_tile > 0.5  # a trained model, not noise
    rep = compiler.report(b, as_json=True)
    host = {h["op"] for h in rep["host"]}
    assert {"QLinearAdd", "QLinearConcat", "QLinearSigmoid"} <= host
    assert onnx.checker.check_model(q) is None
