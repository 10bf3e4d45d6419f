"""compiler.hostops: each host op's shape inference (frontend) agrees with its execution (runtime) and with
onnxruntime, in particular for ``ceil_mode`` pooling whose last window would start in the trailing pad."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cimtile.compiler.hostops import HOST, Typing, onnx_host_ops, pool_out_size
from cimtile.compiler.ir import HostStep, Tensor
from onnx import TensorProto, helper


def _infer(op: str, shape: tuple, attrs: dict) -> tuple:
    x = Tensor("x", "float", shape)
    t = Typing("n", op, attrs, ["x"], ["y"], [x], lambda n: shape, lambda n, w: None, shape, "float", None,
               "float32", dict(attrs))
    HOST[op].infer(t)
    return t.shape, t.step_attrs


def _ort(op: str, x: np.ndarray, attrs: dict) -> np.ndarray:
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("n, k, s, pads, ceil", [(4, 2, 2, (0, 1), 1), (5, 3, 2, (1, 1), 1), (7, 3, 3, (0, 2), 1),
                                                 (6, 2, 2, (0, 0), 0), (5, 2, 2, (1, 1), 1)])
def test_pool_shape_inference_equals_execution_and_onnxruntime(op, n, k, s, pads, ceil):
    attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": [pads[0], pads[0], pads[1], pads[1]],
             "ceil_mode": ceil}
    x = np.random.default_rng(0).random((1, 2, n, n)).astype(np.float32)
    shape, step_attrs = _infer(op, x.shape, attrs)
    y = HOST[op].run(HostStep("n", op, ["x"], ["y"], step_attrs), x)
    want = _ort(op, x, attrs)
    assert shape == y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-6)


def test_ceil_mode_drops_a_window_starting_in_the_trailing_pad():
    # 4 inputs, kernel 2, stride 2, one trailing pad: ceil((4 + 1 - 2) / 2) + 1 = 3 windows, but the third
    # would start at 4, inside the pad.
    assert pool_out_size(4, 2, 2, 0, 1, 1, True) == 2
    assert pool_out_size(5, 2, 2, 0, 1, 1, True) == 3


def test_every_onnx_host_op_has_inference_and_execution():
    for onnx_op, name in onnx_host_ops().items():
        assert HOST[name].infer is not None and HOST[name].run is not None, onnx_op
        # a standard op, or one of onnxruntime's contrib operators (domain com.microsoft)
        assert onnx.defs.has(onnx_op) if not HOST[name].domain else HOST[name].domain == "com.microsoft", onnx_op


def test_sort_nodes_orders_appended_nodes_and_refuses_a_dangling_input():
    from cimtile.compiler.frontend import sort_nodes

    first, second = helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["y"], ["z"])
    g = helper.make_graph([second, first], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    assert sort_nodes(g) and [n.output[0] for n in g.node] == ["y", "z"]
    g.node.append(helper.make_node("Relu", ["missing"], ["w"]))
    before = [n.output[0] for n in g.node]
    assert not sort_nodes(g) and [n.output[0] for n in g.node] == before
