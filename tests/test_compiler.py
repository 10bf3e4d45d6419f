"""Compiler tests on hand-built models: every accepted integer-op form against onnxruntime, cycles against
the golden model, the bundle and CLI contract, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import re

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cimtile.compiler.ir import InputBlock, LevelBlock, RqBlock
from cimtile.hw.params import PRESETS
from cimtile.sim.tile import Tile
from onnx import TensorProto, helper, numpy_helper

from cimtile import compiler
from cimtile.cli import main

TILES = ["isaac", "tiny"]


def ort_run(m: onnx.ModelProto, x: np.ndarray, optimize: bool = True) -> np.ndarray:
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _hand_cases():
    r = np.random.default_rng(1)
    return {
        "qlinear_conv": (models.qlinear_conv, r.integers(0, 256, (3, 3, 6, 6)).astype(np.uint8)),
        "qlinear_matmul": (models.qlinear_matmul, r.integers(0, 256, (3, 3, 40)).astype(np.uint8)),
        "conv_integer": (models.conv_integer, r.integers(0, 256, (3, 4, 5, 5)).astype(np.uint8)),
        "matmul_integer": (models.matmul_integer, r.integers(-128, 128, (3, 30)).astype(np.int8)),
    }


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("case", list(_hand_cases()))
def test_integer_ops_equal_onnxruntime(case, tile):
    build, x = _hand_cases()[case]
    m = build()
    b = compiler.compile_model(m, tile)
    y = compiler.run(b, x)
    ref = ort_run(m, x)
    assert y.dtype == ref.dtype and y.shape == ref.shape
    # integer ops: exact (the tile computes exact integer sums; requantisation rounds like onnxruntime here)
    assert np.abs(y.astype(np.int64) - ref.astype(np.int64)).max() <= 1
    if case.endswith("integer"):
        np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("tile", TILES)
def test_report_cycles_equal_golden_run(tile):
    m = models.qlinear_conv()
    b = compiler.compile_model(m, tile)
    x = np.random.default_rng(2).integers(0, 256, (1, 3, 6, 6)).astype(np.uint8)
    _, st = compiler.run(b, x, stats=True)
    rep = b.report
    assert st.cycles == rep["totals"]["cycles"]
    for row in rep["layers"]:
        assert st.layer_cycles[row["name"]] == row["cycles"]
    # timing_only counts exactly what a real run counts, program by program
    cfg = PRESETS[tile]
    for p in b.programs[1:]:
        L = b.model.layers[p.layer]
        t = Tile(cfg)
        feed = []
        for ref in p.feed:  # blocks of the shapes the typed references describe
            if isinstance(ref, InputBlock):
                assert ref.chunk == L.schedule.chunk and ref.pad_rows == cfg.rows
                feed.append(np.zeros((L.schedule.chunk * len(ref.tiles), cfg.rows), dtype=np.int64))
            elif isinstance(ref, LevelBlock):
                assert ref.pad_rows == cfg.rows and (ref.k1 - ref.k0) % L.tiling.group == 0
                feed.append(np.ones((ref.pad_rows, ref.k1 - ref.k0), dtype=np.int64))
            else:
                assert isinstance(ref, RqBlock)
                feed.append(np.tile([0, 1, 0], (ref.hi - ref.lo, 1)))
        real = t.run(p.words, feed)
        assert real.ok and real.cycles == p.cycles == Tile(cfg).run(p.words, timing_only=True).cycles


def test_program_size_grows_with_tiles_not_positions():
    small = compiler.compile_model(models.qlinear_conv(hw=6), "isaac")
    big = compiler.compile_model(models.qlinear_conv(hw=30), "isaac")
    assert big.report["totals"]["words"] == small.report["totals"]["words"]
    # compute grows with positions; the weights are programmed once (same crossbar tiles)
    assert big.report["totals"]["compute_cycles"] > 10 * small.report["totals"]["compute_cycles"]
    assert big.report["totals"]["program_cycles"] == small.report["totals"]["program_cycles"] > 0


@pytest.mark.parametrize("tile", TILES)
def test_weight_minus_128_is_corrected_exactly(tile):
    """int8 weight -128 is not a symmetric tile weight: -127 plus an accumulated 2-bit correction MVM."""
    r = np.random.default_rng(0)
    w = r.integers(-127, 128, (30, 7)).astype(np.int8)
    w[3, 2] = w[20, 5] = w[21, 5] = -128
    m = models.matmul_integer_int8(w)
    b = compiler.compile_model(m, tile)
    L = b.model.layers[0]
    assert L.weights.wbits == 8 and len(L.tiling.fix_tiles) >= 1
    x = r.integers(-128, 128, (16, 30)).astype(np.int8)
    ref = ort_run(m, x)
    np.testing.assert_array_equal(compiler.run(b, x), ref)
    # the correction matters: with -127 instead of -128 the products differ
    assert not np.array_equal((x.astype(np.int64) + 3) @ np.maximum(w, -127).astype(np.int64), ref)
    _, st = compiler.run(b, x[:1], stats=True)
    assert st.cycles == b.report["totals"]["cycles"]


def test_7bit_minimum_uses_8_bits():
    # 7-bit codes reaching -64: one more bit (8) for that layer, exact result
    w7 = np.random.default_rng(0).integers(-63, 64, (20, 6))
    w7[0, 0] = -64
    m = models.qdq_gemm(w7)
    # declare 7 bits with a Clip on the weight codes (QCDQ)
    g = m.graph
    g.initializer.extend([numpy_helper.from_array(np.int8(-64), "wlo"), numpy_helper.from_array(np.int8(63), "whi")])
    g.node.insert(0, helper.make_node("Clip", ["w", "wlo", "whi"], ["wc"]))
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] == "w":
            n.input[0] = "wc"
    b = compiler.compile_model(m, "isaac")
    assert b.model.layers[0].weights.wbits == 8
    x = np.random.default_rng(1).random((8, 20)).astype(np.float32) * 3
    y, ref = compiler.run(b, x), ort_run(m, x)
    assert np.abs(y - ref).max() <= 0.05 + 1e-6


@pytest.mark.parametrize("tile", TILES)
def test_cli_compile_run_report_disasm(tmp_path, tile, capsys):
    m = models.qlinear_conv()
    src = tmp_path / "m.onnx"
    onnx.save(m, src)
    out = tmp_path / "out"
    assert main(["compile", str(src), "--tile", tile, "-o", str(out)]) == 0
    for f in ("tile.json", "network.json", "microcode.npy", "weights.npz", "consts.npz", "report.json", "report.txt"):
        assert (out / f).exists()
    x = np.random.default_rng(3).integers(0, 256, (2, 3, 6, 6)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, compiler.run(compiler.load(out), x))
    assert np.abs(y.astype(int) - ort_run(m, x).astype(int)).max() <= 1
    capsys.readouterr()
    assert main(["report", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rep["layers"]] == ["qconv1", "qconv2"]
    for key in ("name", "op", "shape", "wbits", "abits", "xbar_tiles", "mvms", "adc_conversions", "cycles",
                "adc_util"):
        assert key in rep["layers"][0]
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| qconv1 | QLinearConv |" in text and "**total**" in text
    assert main(["disasm", str(out)]) == 0
    dis = capsys.readouterr().out
    # the chunk's positions as one multi-vector MVM (no LOOP of single MVMs: docs/compiler.md, Programs)
    assert "HALT" in dis and "LOOP" not in dis and re.search(r"MVM in_addr=\d+ acc_addr=0 accumulate=\d count=\d+", dis)
    words = np.load(out / "microcode.npy")
    assert dis.count("\n") >= len(words)


# -- bad inputs: one-line error, non-zero exit, nothing written ---------------------------------------

def _float_model():
    w = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")], "f",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=models.OPSET)


def _unsupported_op():
    m = models.qdq_gemm(np.ones((4, 3), dtype=np.int64))
    g = m.graph
    g.node.append(helper.make_node("Sin", ["y"], ["z"], name="sine"))
    g.output[0].name = "z"
    return m


def _dynamic_weight():
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
         helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
         helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"]),
         helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
         helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv", kernel_shape=[1, 1])], "d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 2, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])],
        [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(0), "z")])
    return helper.make_model(g, opset_imports=models.OPSET)


def _bits9():
    g = helper.make_graph(
        [helper.make_node("Quant", ["x", "s", "z", "b"], ["xq"], domain="qonnx.custom_op.general", signed=0),
         helper.make_node("Quant", ["w", "s", "z", "b4"], ["wq"], domain="qonnx.custom_op.general", narrow=1),
         helper.make_node("MatMul", ["xq", "wq"], ["y"], name="mm")], "b",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.float32(0), "z"),
         numpy_helper.from_array(np.float32(9), "b"), numpy_helper.from_array(np.float32(4), "b4"),
         numpy_helper.from_array(np.ones((4, 2), np.float32), "w")])
    return helper.make_model(g, opset_imports=models.OPSET + [helper.make_opsetid("qonnx.custom_op.general", 1)])


BAD = {
    "float": (_float_model, "isaac", r"node 'fc' \(Gemm\): weight 'w' is a float constant: the model is not quantized"),
    "unsupported": (_unsupported_op, "isaac", r"node 'sine' \(Sin\): unsupported operator"),
    "dynamic": (_dynamic_weight, "isaac", r"node 'conv' \(Conv\): weight 'wd' is not a constant"),
    "bits9": (_bits9, "isaac", r"\(Quant\): bit width 9 outside 2\.\.8"),
    "cannot_fit": (lambda: models.qdq_gemm(np.ones((4, 3), dtype=np.int64)), "narrow",
                   r"node 'fc' \(Gemm\): layer cannot fit: one 8-bit weight needs 14 columns, the crossbar has 8"),
    "unreadable": (None, "isaac", r"cannot read .*: not an ONNX model"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_error(case, tmp_path, capsys):
    build, tile, pattern = BAD[case]
    src = tmp_path / "m.onnx"
    if build is None:
        src.write_bytes(b"\x00\x01 this is not protobuf \xff" * 10)
    else:
        onnx.save(build(), src)
    if tile == "narrow":
        tile = str(tmp_path / "narrow.json")
        PRESETS["tiny"].replace(name="narrow", cols=8, cell_bits=1, n_adcs=2, rq_lanes=2).save(tile)
    out = tmp_path / "out"
    code = main(["compile", str(src), "--tile", tile, "-o", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("cimtile: error: ")
    import re

    assert re.search(pattern, err), err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cimtile-")]


def test_missing_file_and_bad_bundle(tmp_path, capsys):
    assert main(["compile", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 1
    assert "not a cimtile bundle" in capsys.readouterr().err
    assert main(["compile", str(tmp_path / "nope.onnx"), "--tile", "huge", "-o", str(tmp_path / "o")]) == 1
    assert "not a preset" in capsys.readouterr().err


def test_host_ops_and_float_input_shapes(tmp_path):
    """Host-side ops around the tile: Transpose, Reshape, Concat, AveragePool, Softmax, activation x activation."""
    r = np.random.default_rng(4)
    s = numpy_helper.from_array
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["cr"]),
        helper.make_node("QuantizeLinear", ["cr", "ys", "yz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["cd"]),
        helper.make_node("AveragePool", ["cd"], ["ap"], kernel_shape=[2, 2], strides=[2, 2], name="avg"),
        helper.make_node("MaxPool", ["cd"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["ap", "mp"], ["cat"], axis=1),
        helper.make_node("Reshape", ["cat", "shape"], ["seq"]),  # (N, 8, 4)
        helper.make_node("Transpose", ["seq"], ["seqT"], perm=[0, 2, 1]),  # (N, 4, 8)
        helper.make_node("MatMul", ["seqT", "seq"], ["att"], name="att"),  # activation x activation (N, 4, 4)
        helper.make_node("Softmax", ["att"], ["y"], axis=-1),
    ]
    inits = [s(np.float32(0.02), "xs"), s(np.uint8(0), "xz"),
             s(r.integers(-127, 128, (4, 2, 3, 3)).astype(np.int8), "w"),
             s((r.random(4) * 0.01 + 0.005).astype(np.float32), "ws"), s(np.zeros(4, np.int8), "wz"),
             s((r.standard_normal(4) * 0.1).astype(np.float32), "b"), s(np.float32(0.03), "ys"), s(np.uint8(0), "yz"),
             s(np.array([0, 8, -1], np.int64), "shape")]
    g = helper.make_graph(nodes, "h", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 4])], inits)
    m = helper.make_model(g, opset_imports=models.OPSET)
    onnx.checker.check_model(m)
    x = r.random((5, 2, 4, 4)).astype(np.float32) * 4
    b = compiler.compile_model(m, "tiny")
    assert {h["op"] for h in b.report["host"]} >= {"AveragePool", "MaxPool", "Concat", "HostMatMul", "Softmax"}
    assert b.report["totals"]["host_macs"] == 4 * 8 * 4
    y = compiler.run(b, x)
    ref = ort_run(m, x, optimize=False)
    assert np.abs(y - ref).max() < 1e-5


def test_long_rows_on_tiny_fit_one_program():
    """K = 300 inputs on the 16x16 tile: dozens of row tiles, inputs loaded in groups, one program per column tile."""
    w = np.random.default_rng(6).integers(-127, 128, (300, 10))
    m = models.qdq_gemm(w, w_scale=0.002)
    b = compiler.compile_model(m, "tiny")
    L = b.model.layers[0]
    assert len(L.tiling.row_tiles) > 20
    assert all(len(b.programs[i].words) <= PRESETS["tiny"].prog_depth for i in L.programs)
    x = np.random.default_rng(7).random((6, 300)).astype(np.float32) * 3
    y, st = compiler.run(b, x[:1], stats=True)
    assert st.cycles == b.report["totals"]["cycles"]
    assert np.abs(compiler.run(b, x) - ort_run(m, x)).max() <= 0.05 * (1 + 1e-5)


CUSTOM = {
    "tiny_analog": PRESETS["tiny"].replace(name="tiny_analog", weight_encoding="differential-analog"),
    "isaac_analog6": PRESETS["isaac"].replace(name="isaac_analog6", weight_encoding="differential-analog", adc_bits=6),
    "cell1_dac2": PRESETS["tiny"].replace(name="cell1_dac2", cell_bits=1, dac_bits=2, adc_bits=5, rows_per_conv=4),
}


@pytest.mark.parametrize("cfg", list(CUSTOM))
@pytest.mark.parametrize("case", ["qlinear_conv", "matmul_integer"])
def test_other_tile_configs_stay_exact(case, cfg):
    """Signed ADC ranges (differential-analog), 1-bit cells, 2-bit DACs: rows per tile keep every conversion
    unclipped, so results stay exact."""
    build, x = _hand_cases()[case]
    m = build()
    b = compiler.compile_model(m, CUSTOM[cfg])
    y, ref = compiler.run(b, x), ort_run(m, x)
    assert np.abs(y.astype(np.int64) - ref.astype(np.int64)).max() <= (0 if case.endswith("integer") else 1)
    _, st = compiler.run(b, x[:1], stats=True)
    assert st.cycles == b.report["totals"]["cycles"]


def test_cli_run_bad_input_is_a_one_line_error(tmp_path, capsys):
    m = models.qlinear_conv()
    out = tmp_path / "out"
    compiler.compile_model(m, "tiny", out=out)
    np.save(tmp_path / "wrong.npy", np.zeros((1, 3, 5, 5), dtype=np.uint8))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    for x, what in (("wrong.npy", "does not match"), ("junk.npy", "cannot read"), ("missing.npy", "cannot read")):
        code = main(["run", str(out), "--input", str(tmp_path / x), "-o", str(tmp_path / "y.npy")])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and what in err, err
        assert not (tmp_path / "y.npy").exists()
