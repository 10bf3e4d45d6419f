"""Errors name the culprit: the value given, what it belongs to and what was expected (issue 9's list)."""

import models
import numpy as np
import pytest
from cimtile.compiler.errors import CompileError
from cimtile.compiler.ir import QConst, QSpec, TileLayer, Weights
from cimtile.compiler.passes.fold_scales import FoldScales
from cimtile.hw.isa import Opcode, encode
from cimtile.hw.params import PRESETS
from cimtile.sim import kernels
from cimtile.sim.tile import FeedError, Tile

from cimtile import compiler

CFG = PRESETS["tiny"]
HALT = encode(Opcode.HALT)


def test_cfgrq_error_states_the_values():
    r = Tile(CFG).run([encode(Opcode.CFGRQ, zero_point=-200, clamp_lo=0, clamp_hi=10), HALT])
    assert r.cause.name == "CONFIG"
    assert "zero_point = -200" in r.detail and "clamp_lo = 0" in r.detail and "-128..255" in r.detail


def test_ldrq_record_out_of_range_is_named():
    rec = np.array([[0, 1, 0], [0, 1, 0], [5, 70000, 2]])
    with pytest.raises(FeedError, match=r"record 2 has mult = 70000, outside 0\.\.65535"):
        Tile(CFG).run([encode(Opcode.LDRQ, start=0, count=3), HALT], [rec])


def test_feed_value_out_of_range_is_named():
    lv = np.zeros((CFG.rows, 2), dtype=np.int64)
    lv[3, 1] = 9
    with pytest.raises(FeedError, match=r"cell levels outside 0\.\.3: 9 at index \(3, 1\)"):
        Tile(CFG).run([encode(Opcode.LDW, start=0, count=2), HALT], [lv])


def test_fold_scales_names_zero_point_and_range():
    spec = QSpec(1.0, 0, 0, 255)
    L = TileLayer("fc", "Gemm", "x", "y", QConst(np.zeros((2, 2), np.int8), spec), in_spec=spec,
                  out_spec=QSpec(1.0, 300, 0, 400))
    L.weights = Weights(np.zeros((2, 2)), None, 2, 2, 8, True, 8, 8, False, np.zeros(2, np.int64),
                        np.full(2, 0.5), np.zeros(2))

    class M:
        layers = [L]

    with pytest.raises(CompileError, match=r"output zero point 300 and range 0\.\.400: .* inside -128\.\.255"):
        FoldScales().apply(M())


def test_pass_order_is_checked():
    spec = QSpec(1.0, 0, 0, 255)
    L = TileLayer("fc", "Gemm", "x", "y", None, in_spec=spec, out_spec=spec)

    class M:
        layers = [L]

    with pytest.raises(CompileError, match="FoldScales needs the weights stage of layer 'fc'"):
        FoldScales().apply(M())


def test_runtime_input_codes_name_value_and_range():
    b = compiler.compile_model(models.qlinear_conv(), "tiny")
    x = np.full((1, 3, 6, 6), 300, dtype=np.int16)
    with pytest.raises(CompileError, match=r"codes 300\.\.300 outside the uint8 range 0\.\.255"):
        compiler.run(b, x)


def test_kernel_overflow_names_shapes_and_bound():
    a, w = np.ones((2, 3)), np.ones((3, 4))
    with pytest.raises(OverflowError, match=r"GEMM of \(2, 3\) x \(3, 4\): integer sums up to 9007199254740993"):
        kernels._gemm(a, w, (1 << 53) + 1)
