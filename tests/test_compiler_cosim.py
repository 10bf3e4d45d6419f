"""The compiler's RTL backend: a small compiled model gives exactly the golden backend's outputs and cycles."""

from __future__ import annotations

import models
import numpy as np
import pytest

from cimtile import compiler

pytestmark = pytest.mark.cosim


def test_rtl_backend_equals_golden_on_small_model():
    pytest.importorskip("cocotb")
    m = models.qlinear_conv(cin=2, cout=4, hw=3)
    b = compiler.compile_model(m, "tiny")
    x = np.random.default_rng(5).integers(0, 256, (1, 2, 3, 3)).astype(np.uint8)
    y_g, st_g = compiler.run(b, x, backend="golden", stats=True)
    y_r, st_r = compiler.run(b, x, backend="rtl", stats=True)
    np.testing.assert_array_equal(y_r, y_g)
    assert st_r.layer_cycles == st_g.layer_cycles
    assert st_r.cycles == st_g.cycles == b.report["totals"]["cycles"]


def test_rtl_backend_accumulator_mode_and_minus_128_correction():
    pytest.importorskip("cocotb")
    r = np.random.default_rng(0)
    w = r.integers(-127, 128, (30, 7)).astype(np.int8)
    w[3, 2] = -128
    m = models.matmul_integer_int8(w)
    b = compiler.compile_model(m, "tiny")
    assert b.model.layers[0].tiling.fix_tiles
    x = r.integers(-128, 128, (1, 30)).astype(np.int8)
    y_g, st_g = compiler.run(b, x, backend="golden", stats=True)
    y_r, st_r = compiler.run(b, x, backend="rtl", stats=True)
    np.testing.assert_array_equal(y_r, y_g)
    assert st_r.cycles == st_g.cycles == b.report["totals"]["cycles"]


def test_rtl_backend_grouped_conv_with_asymmetric_weights():
    """Issue 10's mappings on the RTL: a grouped ConvInteger (block-diagonal tiles, skipped zero tiles) with
    uint8 weights whose zero point the host corrects for; outputs and cycles equal the golden backend's."""
    pytest.importorskip("cocotb")
    from onnx import TensorProto, helper, numpy_helper

    r = np.random.default_rng(2)
    w = r.integers(0, 256, (4, 2, 3, 3)).astype(np.uint8)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.uint8(5), "xz"),
             numpy_helper.from_array(np.uint8(30), "wz")]
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], name="gconv", group=2,
                            auto_pad="SAME_UPPER", strides=[2, 2])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 4, 2, 2])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    b = compiler.compile_model(m, "tiny")
    L = b.model.layers[0]
    assert L.groups == 2 and L.weights.host_corrected
    x = r.integers(0, 256, (1, 4, 4, 4)).astype(np.uint8)
    y_g, st_g = compiler.run(b, x, backend="golden", stats=True)
    y_r, st_r = compiler.run(b, x, backend="rtl", stats=True)
    np.testing.assert_array_equal(y_r, y_g)
    assert st_r.cycles == st_g.cycles == b.report["totals"]["cycles"]


def test_rtl_backend_runs_the_stationary_batch_schedule():
    """Issue 10's batch schedule on the RTL: a batch of 2 images of a model whose first layer's column tiles span
    several crossbar tiles runs that layer's stationary programs (each weights program once, partial sums read back
    and added on the host); outputs and cycles equal the golden backend's, the report's and single-image runs'."""
    pytest.importorskip("cocotb")
    from cimtile.compiler.report import for_batch

    m = models.qlinear_conv(cin=2, cout=4, hw=3)
    b = compiler.compile_model(m, "tiny")
    assert b.model.layers[0].batch_programs and len(b.model.layers[0].tiling.row_tiles) > 1
    x = np.random.default_rng(6).integers(0, 256, (2, 2, 3, 3)).astype(np.uint8)
    y_g, st_g = compiler.run(b, x, backend="golden", stats=True)
    y_r, st_r = compiler.run(b, x, backend="rtl", stats=True)
    assert st_r.schedules[b.model.layers[0].name] == "stationary"
    np.testing.assert_array_equal(y_r, y_g)
    np.testing.assert_array_equal(y_g, np.concatenate([compiler.run(b, x[i:i + 1]) for i in range(2)]))
    assert st_r.layer_cycles == st_g.layer_cycles and st_r.program_cycles == st_g.program_cycles
    assert st_r.cycles == st_g.cycles == for_batch(b.report, 2)["totals"]["cycles"]
