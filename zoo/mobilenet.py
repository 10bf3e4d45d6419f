"""A MobileNet-style depthwise-separable block as a float ONNX graph (written with onnx.helper, random weights):
the grouped-convolution test and benchmark model. Quantize it with :func:`cimtile.zoo.digits.ort_quantize`."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["densify_groups", "separable_block"]


def separable_block(channels: int = 16, size: int = 12, cin: int = 8, cout: int = 12, classes: int = 10,
                    seed: int = 0) -> onnx.ModelProto:
    """x (N, cin, size, size) -> 1x1 expand to ``channels`` -> ReLU6 -> 3x3 depthwise (group = channels,
    stride 2, pads 1) -> ReLU6 -> 1x1 project to ``cout`` -> GlobalAveragePool -> Flatten -> Gemm ``classes``.

    ReLU6 is ``Clip(0, 6)``, as torch exports it.
    """
    r = np.random.default_rng(seed)
    inits = []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def he(shape, fan):
        return r.normal(0, np.sqrt(2.0 / fan), shape)

    zero, six = init("zero", 0.0), init("six", 6.0)
    nodes = [
        helper.make_node("Conv", ["x", init("w_exp", he((channels, cin, 1, 1), cin)),
                                  init("b_exp", r.normal(0, 0.1, channels))], ["e"], name="expand"),
        helper.make_node("Clip", ["e", zero, six], ["e6"], name="relu6_a"),
        helper.make_node("Conv", ["e6", init("w_dw", he((channels, 1, 3, 3), 9)),
                                  init("b_dw", r.normal(0, 0.1, channels))], ["d"], name="depthwise",
                         group=channels, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["d", zero, six], ["d6"], name="relu6_b"),
        helper.make_node("Conv", ["d6", init("w_pw", he((cout, channels, 1, 1), channels)),
                                  init("b_pw", r.normal(0, 0.1, cout))], ["p"], name="project"),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", init("w_fc", he((classes, cout), cout)), init("b_fc", np.zeros(classes))],
                         ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "separable", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             ["N", cin, size, size])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m


def densify_groups(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same QDQ model with every grouped Conv's weight codes expanded into a dense ``group = 1`` weight (zeros
    off the block diagonal): what a compiler without grouped convolutions would have to map (a baseline).

    Expects the weight as ``DequantizeLinear(codes initializer)`` with a zero point of 0 (symmetric weights)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type != "Conv":
            continue
        attrs = {a.name: a for a in n.attribute}
        g = helper.get_attribute_value(attrs["group"]) if "group" in attrs else 1
        if g == 1:
            continue
        dq = producer[n.input[1]]
        w = numpy_helper.to_array(inits[dq.input[0]])
        if len(dq.input) > 2 and np.any(numpy_helper.to_array(inits[dq.input[2]])):
            raise ValueError("densify_groups needs symmetric (zero point 0) weights")
        cout, cg = w.shape[:2]
        og = cout // g
        dense = np.zeros((cout, cg * g, *w.shape[2:]), dtype=w.dtype)
        for i in range(g):
            dense[i * og:(i + 1) * og, i * cg:(i + 1) * cg] = w[i * og:(i + 1) * og]
        inits[dq.input[0]].CopyFrom(numpy_helper.from_array(dense, dq.input[0]))
        attrs["group"].i = 1
    return m
