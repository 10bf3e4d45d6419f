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
    m = models.matmul_integer()
    from onnx import numpy_helper

    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    m.graph.initializer[2].CopyFrom(numpy_helper.from_array(np.int8(0), "wz"))
    b = compiler.compile_model(m, "tiny")
    assert b.model.layers[0].tiling.fix_tiles
    x = r.integers(-128, 128, (1, 30)).astype(np.int8)
    y_g, st_g = compiler.run(b, x, backend="golden", stats=True)
    y_r, st_r = compiler.run(b, x, backend="rtl", stats=True)
    np.testing.assert_array_equal(y_r, y_g)
    assert st_r.cycles == st_g.cycles == b.report["totals"]["cycles"]
