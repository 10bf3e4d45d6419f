"""The runtime's float pooling is bit-identical to onnxruntime's (graph optimisations off: the graph's own
semantics), so a QuantizeLinear after a pool gives the same codes: window sums in onnxruntime's order."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from cimtile.compiler.hostops import run_host
from cimtile.compiler.ir import HostStep
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ lives beside tests/, not in the wheel
from bench.agreement import differ_pct


def ort_float(op: str, x: np.ndarray, **attrs) -> np.ndarray:
    g = helper.make_graph([helper.make_node(op, ["x"], ["p"], **attrs)], "pool",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("p", TensorProto.FLOAT, None)])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
                                .SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def codes_as_floats(shape, seed=0) -> np.ndarray:
    """Dequantized codes: many window sums sit on rounding ties, where the order of additions shows."""
    return ((np.random.default_rng(seed).integers(0, 256, shape) - 3) * np.float32(0.0371)).astype(np.float32)


POOLS = [  # kernel, strides, pads, count_include_pad, ceil_mode
    ((2, 2), (2, 2), (0, 0, 0, 0), 0, 0), ((3, 3), (1, 1), (1, 1, 1, 1), 0, 0), ((3, 3), (1, 1), (1, 1, 1, 1), 1, 0),
    ((3, 3), (2, 2), (0, 0, 0, 0), 0, 1), ((3, 3), (3, 3), (1, 1, 1, 1), 0, 0), ((2, 3), (1, 1), (0, 1, 0, 1), 0, 0),
    ((3, 3), (1, 3), (0, 0, 0, 0), 0, 0), ((5, 5), (1, 1), (0, 0, 0, 0), 0, 0), ((4, 4), (4, 4), (0, 0, 0, 0), 0, 0),
]


@pytest.mark.parametrize("k,st,pads,cip,ceil", POOLS)
def test_average_pool_bit_identical(k, st, pads, cip, ceil):
    x = codes_as_floats((4, 8, 13, 13))
    attrs = {"kernel_shape": list(k), "strides": list(st), "pads": list(pads), "count_include_pad": cip,
             "ceil_mode": ceil}
    got = run_host(HostStep("p", "AveragePool", ["x"], ["p"], attrs), [x])
    ref = ort_float("AveragePool", x, **attrs)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.array_equal(got, ref), f"{(got != ref).mean():.3%} of averages differ"


@pytest.mark.parametrize("hw", [1, 2, 3, 4, 7, 8, 14])
def test_global_average_pool_bit_identical(hw):
    x = codes_as_floats((4, 16, hw, hw))
    got = run_host(HostStep("g", "GlobalAveragePool", ["x"], ["g"], {}), [x])
    ref = ort_float("GlobalAveragePool", x)
    assert got.shape == ref.shape and np.array_equal(got, ref)


def test_qdq_pool_codes_equal_onnxruntime_graph():
    """The bench's figures: 0% differing codes against the graph's semantics (the default-optimised
    onnxruntime fuses QLinearAveragePool, whose rounding differs; bench/agreement.py reports that rate)."""
    assert differ_pct("AveragePool", optimise=False) == 0
    assert differ_pct("GlobalAveragePool", optimise=False) == 0
