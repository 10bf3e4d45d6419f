"""Test-model builders for the compiler tests: hand-built QLinear*/...Integer models and an independent QONNX
oracle. The digits networks and data live in :mod:`cimtile.zoo` (re-exported here for the tests' brevity).
"""

from __future__ import annotations

import numpy as np
import onnx
from cimtile.zoo.data import digits
from cimtile.zoo.digits import brevitas_cnn, float_onnx, mixed_cnn, ort_quantize, train
from cimtile.zoo.oracle import qonnx_reference
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]

__all__ = ["OPSET", "brevitas_cnn", "conv_integer", "conv_qdq", "digits", "float_onnx", "matmul_integer", "mixed_cnn",
           "ort_quantize", "qdq_gemm", "qlinear_conv", "qlinear_matmul", "qonnx_reference", "train"]


def _model(nodes, inits, x_type, x_shape, y_type, y_shape, opset=17):
    g = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info("x", x_type, x_shape)],
                          [helper.make_tensor_value_info("y", y_type, y_shape)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m


def qlinear_conv(seed: int = 0, cin: int = 3, cout: int = 12, hw: int = 6) -> onnx.ModelProto:
    """uint8 x -> QLinearConv (int8 per-channel weights, int32 bias) -> QLinearConv -> uint8 y."""
    r = np.random.default_rng(seed)
    w1 = r.integers(-127, 128, (cout, cin, 3, 3)).astype(np.int8)
    w2 = r.integers(-127, 128, (5, cout, 1, 1)).astype(np.int8)
    inits = {"xs": np.float32(0.02), "xz": np.uint8(7), "w1": w1,
             "w1s": (r.random(cout) * 0.01 + 0.002).astype(np.float32),
             "w1z": np.zeros(cout, np.int8), "ys": np.float32(0.05), "yz": np.uint8(3),
             "b1": r.integers(-2000, 2000, cout).astype(np.int32),
             "w2": w2, "w2s": np.float32(0.004), "w2z": np.int8(0), "zs": np.float32(0.03), "zz": np.uint8(128)}
    nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "w1", "w1s", "w1z", "ys", "yz", "b1"], ["h"],
                              kernel_shape=[3, 3], pads=[1, 0, 1, 2], strides=[1, 2], name="qconv1"),
             helper.make_node("QLinearConv", ["h", "ys", "yz", "w2", "w2s", "w2z", "zs", "zz"], ["y"],
                              kernel_shape=[1, 1], name="qconv2")]
    ow = (hw + 2 - 3) // 2 + 1
    return _model(nodes, inits, TensorProto.UINT8, ["N", cin, hw, hw], TensorProto.UINT8, ["N", 5, hw, ow])


def qlinear_matmul(seed: int = 0, k: int = 40, n: int = 24) -> onnx.ModelProto:
    """uint8 x (N, T, K) -> QLinearMatMul with int8 weights -> uint8 y."""
    r = np.random.default_rng(seed)
    inits = {"as": np.float32(0.03), "az": np.uint8(100), "b": r.integers(-127, 128, (k, n)).astype(np.int8),
             "bs": np.float32(0.01), "bz": np.int8(0), "ys": np.float32(0.2), "yz": np.uint8(120)}
    nodes = [helper.make_node("QLinearMatMul", ["x", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"], name="qmm")]
    return _model(nodes, inits, TensorProto.UINT8, ["N", 3, k], TensorProto.UINT8, ["N", 3, n])


def conv_integer(seed: int = 0) -> onnx.ModelProto:
    """uint8 x -> ConvInteger (int8 weights with a zero point) -> int32 y (exact integers)."""
    r = np.random.default_rng(seed)
    inits = {"w": r.integers(-100, 100, (6, 4, 3, 3)).astype(np.int8), "xz": np.uint8(12), "wz": np.int8(3)}
    nodes = [helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              name="convint")]
    return _model(nodes, inits, TensorProto.UINT8, ["N", 4, 5, 5], TensorProto.INT32, ["N", 6, 5, 5], opset=13)


def matmul_integer(seed: int = 0) -> onnx.ModelProto:
    """int8 x -> MatMulInteger (uint8 weights with zero point 128) -> int32 y."""
    r = np.random.default_rng(seed)
    inits = {"w": r.integers(1, 256, (30, 7)).astype(np.uint8), "xz": np.int8(-3), "wz": np.uint8(128)}
    nodes = [helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"], name="mmint")]
    return _model(nodes, inits, TensorProto.INT8, ["N", 30], TensorProto.INT32, ["N", 7], opset=13)


def matmul_integer_int8(w: np.ndarray) -> onnx.ModelProto:
    """int8 x -> MatMulInteger (the given int8 weights, zero point 0) -> int32 y."""
    k, n = w.shape
    inits = {"w": w.astype(np.int8), "xz": np.int8(-3), "wz": np.int8(0)}
    nodes = [helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"], name="mmint")]
    return _model(nodes, inits, TensorProto.INT8, ["N", k], TensorProto.INT32, ["N", n], opset=13)


def qdq_gemm(w_codes: np.ndarray, w_scale: float = 0.01, name: str = "fc") -> onnx.ModelProto:
    """float x -> Q -> DQ -> Gemm(DQ(int8 w)) -> Q -> DQ -> y: a one-layer QDQ model with given weight codes."""
    k, n = w_codes.shape
    inits = {"xs": np.float32(1 / 64), "xz": np.uint8(0), "w": w_codes.astype(np.int8), "ws": np.float32(w_scale),
             "wz": np.int8(0), "ys": np.float32(0.05), "yz": np.uint8(128)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("Gemm", ["xd", "wd"], ["g"], name=name),
             helper.make_node("QuantizeLinear", ["g", "ys", "yz"], ["gq"]),
             helper.make_node("DequantizeLinear", ["gq", "ys", "yz"], ["y"])]
    return _model(nodes, inits, TensorProto.FLOAT, ["N", k], TensorProto.FLOAT, ["N", n])


def conv_qdq() -> onnx.ModelProto:
    """float x [N, 1, 8, 8] -> Q -> DQ -> Conv 3x3 (int8 weights) -> Relu -> Q -> DQ -> y: one tile layer."""
    r = np.random.default_rng(0)
    inits = {"xs": np.float32(1 / 64), "xz": np.uint8(0), "w": r.integers(-90, 90, (4, 1, 3, 3)).astype(np.int8),
             "ws": np.float32(0.02), "wz": np.int8(0), "ys": np.float32(0.05), "yz": np.uint8(0)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "ys", "yz"], ["y"])]
    g = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=OPSET)
