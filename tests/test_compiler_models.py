"""Issue 10, models people have: asymmetric (uint8, nonzero zero point) weights, ONNX's own conformance cases,
padding forms and grouped convolutions, each against onnxruntime."""

from __future__ import annotations

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cimtile.compiler.ir import HostStep
from onnx import TensorProto, helper, numpy_helper

from cimtile import compiler


def ort_run(m: onnx.ModelProto, feeds: dict) -> np.ndarray:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _set(m: onnx.ModelProto, name: str, value: np.ndarray) -> onnx.ModelProto:
    for init in m.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(np.asarray(value), name))
            return m
    raise KeyError(name)


# -- asymmetric weights ---------------------------------------------------------------------------------------

def _asym_matmul_integer():
    """uint8 weights 0..255 with zero point 1: ``codes - zp`` reaches -1 and 254 (9 bits signed)."""
    r = np.random.default_rng(3)
    w = r.integers(0, 256, (30, 7)).astype(np.uint8)
    w[0] = 255
    w[1] = 0
    m = _set(_set(models.matmul_integer(), "w", w), "wz", np.uint8(1))
    return m, r.integers(-128, 128, (5, 30)).astype(np.int8)


def _asym_conv_integer():
    r = np.random.default_rng(4)
    m = models.conv_integer()
    w = r.integers(0, 256, (6, 4, 3, 3)).astype(np.uint8)
    m = _set(_set(m, "w", w), "wz", np.uint8(200))
    return m, r.integers(0, 256, (2, 4, 5, 5)).astype(np.uint8)


@pytest.mark.parametrize("tile", ["isaac", "tiny"])
@pytest.mark.parametrize("build", [_asym_matmul_integer, _asym_conv_integer])
def test_asymmetric_integer_weights_are_exact(build, tile):
    """The tile holds the uint8 codes; the host adds ``-zp_w * sum(x - zp_x)``: bit-exact int32 results."""
    m, x = build()
    b = compiler.compile_model(m, tile)
    y, st = compiler.run(b, x, stats=True)
    ref = ort_run(m, {"x": x})
    assert y.dtype == ref.dtype == np.int32
    np.testing.assert_array_equal(y, ref)
    (row,) = b.report["layers"]
    assert not row["wsigned"] and row["wbits"] == 8  # the codes themselves, unsigned
    # the correction is host work, reported per layer and counted by the runtime identically
    assert row["host_zp_ops"] == row["positions"] * (row["K"] + row["N"])
    assert st.host_ops == x.shape[0] * row["host_zp_ops"]
    assert "asymmetric-weight correction on the host" in compiler.report(b)
    # the tile's cycles are still the report's: the golden model counts the accumulator read-back
    _, st1 = compiler.run(b, x[:1], stats=True)
    assert st1.cycles == b.report["totals"]["cycles"]


def test_symmetric_weights_have_no_host_correction():
    m = models.matmul_integer()  # uint8 weights with zero point 128: codes - 128 fit the tile
    b = compiler.compile_model(m, "isaac")
    assert "host_zp_ops" not in b.report["layers"][0] and "host_zp_ops" not in b.report["totals"]


def test_asymmetric_qlinear_conv_within_one_step(tmp_path):
    """QLinearConv with uint8 per-channel weights and zero points: requantised on the host after the
    correction (float scale like onnxruntime), within one step; and through a saved bundle."""
    r = np.random.default_rng(5)
    m = models.qlinear_conv()
    w1 = r.integers(0, 256, (12, 3, 3, 3)).astype(np.uint8)
    m = _set(_set(m, "w1", w1), "w1z", r.integers(20, 60, 12).astype(np.uint8))
    x = r.integers(0, 256, (3, 3, 6, 6)).astype(np.uint8)
    b = compiler.compile_model(m, "isaac", out=tmp_path / "b")
    y = compiler.run(compiler.load(tmp_path / "b"), x)
    ref = ort_run(m, {"x": x})
    assert y.dtype == ref.dtype
    assert np.abs(y.astype(int) - ref.astype(int)).max() <= 1
    assert b.report["layers"][0].get("host_zp_ops") and not b.report["layers"][1].get("host_zp_ops")


@pytest.mark.slow
@pytest.mark.parametrize("per_channel", [False, True])
def test_digits_cnn_uint8_weights_equal_onnxruntime(tmp_path, per_channel):
    """onnxruntime's static quantizer with ``weight_type=QUInt8`` (asymmetric uint8 weights): class agreement
    >= 99.5%, within one output step; both accuracies reported."""
    xtr, _, xte, yte = models.digits()
    net = models.train("cnn", epochs=4)
    path = tmp_path / "cnn_u8.onnx"
    m = models.ort_quantize(models.float_onnx("cnn", net), xtr[:256], path, per_channel=per_channel,
                            weight_type="QUInt8")
    wz = [numpy_helper.to_array(i) for i in m.graph.initializer if i.name.endswith("w_zero_point")]
    assert wz and all(z.dtype == np.uint8 for z in wz)
    b = compiler.compile_model(m, "isaac")
    y = compiler.run(b, xte)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": xte})[0]
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    step = float(inits[[n for n in m.graph.node if n.output[0] == m.graph.output[0].name][0].input[1]])
    assert np.abs(y - ref).max() <= step * (1 + 1e-5)
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.995
    print(f"per_channel={per_channel}: accuracy onnxruntime {(ref.argmax(1) == yte).mean():.4f}, "
          f"cimtile {(y.argmax(1) == yte).mean():.4f}")


@pytest.mark.parametrize("n", [10, 16])
def test_minus_128_correction_before_on_tile_requantisation(n):
    """A -128 correction leaves a 2-column-per-output window; REQ takes its lanes from the window, so codegen
    restores the layer's window before REQ (10 outputs: 20 columns are not whole 8-column weight groups, an
    error; 16 outputs: 32 columns would requantise only 4 of the 16 outputs)."""
    r = np.random.default_rng(6)
    m = models.qlinear_matmul(k=40, n=n)
    w = r.integers(-127, 128, (40, n)).astype(np.int8)
    w[0, :] = -128
    m = _set(m, "b", w)
    x = r.integers(0, 256, (2, 3, 40)).astype(np.uint8)
    b = compiler.compile_model(m, "isaac")
    assert b.model.layers[0].tiling.fix_tiles and b.model.layers[0].requant_on_tile
    y = compiler.run(b, x)
    assert np.abs(y.astype(int) - ort_run(m, {"x": x}).astype(int)).max() <= 1


# -- ONNX's conformance cases ---------------------------------------------------------------------------------

_CONFORMANCE_OPS = ("qlinearconv", "qlinearmatmul", "convinteger", "matmulinteger")


def _conformance_cases():
    """ONNX's node test cases of the four ops. ``collect_testcases`` runs every op's case generators (about 10 s,
    in every test worker), so import only these ops' modules (importing one runs its generators, which
    register their cases in the package's list), falling back to the whole collection if that list is not there."""
    import importlib
    import warnings

    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():  # other ops' case generators warn about overflows; not ours
        warnings.simplefilter("ignore")
        for op in _CONFORMANCE_OPS:
            importlib.import_module(f"onnx.backend.test.case.node.{op}")
        cases = list(getattr(node_cases, "_NodeTestCases", []))
        if not any(c.name.startswith("test_qlinearconv") for c in cases):
            cases = node_cases.collect_testcases(None)
    return {c.name: c for c in cases if any(c.name.startswith(f"test_{op}") for op in _CONFORMANCE_OPS)}


_CASES = _conformance_cases()


def _frozen(case) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """The case's model with every input but the first frozen into an initializer (weights, scales, zero
    points); its first input and expected output."""
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    ins, outs = case.data_sets[0]
    g = m.graph
    for vi, a in list(zip(g.input, ins))[1:]:
        g.initializer.append(numpy_helper.from_array(np.asarray(a), vi.name))
    del g.input[1:]
    onnx.checker.check_model(m)
    return m, np.asarray(ins[0]), np.asarray(outs[0])


def test_conformance_cases_are_all_there():
    """uint8 and int8 QLinearMatMul (2-D and batched 3-D weights), QLinearConv, ConvInteger, MatMulInteger."""
    names = set(_CASES)
    for op in _CONFORMANCE_OPS:
        assert any(n.startswith(f"test_{op}") for n in names), op
    assert {"test_qlinearmatmul_3D_int8_float32", "test_qlinearmatmul_2D_uint8_float32",
            "test_convinteger_with_padding"} <= names


@pytest.mark.parametrize("name", sorted(_CASES))
def test_onnx_conformance_case_through_cli(name, tmp_path, capsys):
    """`cimtile compile` / `cimtile run` on the case with its weights frozen: integer ops exactly, QLinear ops
    within one output step, against the case's expected output and onnxruntime's."""
    from cimtile.cli import main

    m, x, expect = _frozen(_CASES[name])
    onnx.save(m, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", x)
    assert main(["compile", str(tmp_path / "m.onnx"), "--tile", "isaac", "-o", str(tmp_path / "b")]) == 0
    assert main(["run", str(tmp_path / "b"), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy", allow_pickle=False)
    assert y.dtype == expect.dtype and y.shape == expect.shape
    refs = [expect]
    try:
        refs.append(ort_run(m, {m.graph.input[0].name: x}))
    except Exception as e:  # onnxruntime refuses some cases (float16 scales of QLinearMatMul, per-channel
        # ConvInteger zero points): the case's expected output (the ONNX reference) is the oracle there
        assert any(k in str(e) for k in ("NOT_IMPLEMENTED", "Could not find an implementation",
                                          "Non per-tensor quantization is not supported")), e
    for ref in refs:
        d = np.abs(y.astype(np.int64) - ref.astype(np.int64)).max()
        assert d == 0 if "integer" in name else d <= 1, (name, d)


# -- padding forms --------------------------------------------------------------------------------------------

_PADDING = {
    "same_upper_k3_s2": dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "same_lower_k3_s2": dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
    "same_upper_k4": dict(kernel_shape=[4, 4], auto_pad="SAME_UPPER"),
    "same_lower_k4_d2": dict(kernel_shape=[4, 4], dilations=[2, 2], auto_pad="SAME_LOWER"),
    "same_upper_k2x3_s_2x1": dict(kernel_shape=[2, 3], strides=[2, 1], auto_pad="SAME_UPPER"),
    "asym_pads_dilated": dict(kernel_shape=[3, 3], pads=[0, 2, 1, 0], dilations=[2, 1]),
    "asym_pads_strided_dilated": dict(kernel_shape=[3, 2], pads=[2, 0, 0, 1], strides=[2, 3], dilations=[1, 2]),
    "valid": dict(kernel_shape=[3, 3], auto_pad="VALID"),
}


def _padded_conv(op: str, attrs: dict, seed: int = 0) -> onnx.ModelProto:
    """uint8 x (N, 3, 9, 10) -> ConvInteger or QLinearConv with the given padding attributes; output shape
    left to onnx's shape inference (so it is also checked against ours)."""
    r = np.random.default_rng(seed)
    kh, kw = attrs["kernel_shape"]
    w = r.integers(-127, 128, (5, 3, kh, kw)).astype(np.int8)
    if op == "ConvInteger":
        inits = {"w": w, "xz": np.uint8(9)}
        node = helper.make_node("ConvInteger", ["x", "w", "xz"], ["y"], name="c", **attrs)
        yt = TensorProto.INT32
    else:
        inits = {"xs": np.float32(0.02), "xz": np.uint8(9), "w": w, "ws": np.float32(0.01), "wz": np.int8(0),
                 "ys": np.float32(0.1), "yz": np.uint8(128)}
        node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="c",
                                **attrs)
        yt = TensorProto.UINT8
    g = helper.make_graph([node], "pad", [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 3, 9, 10])],
                          [helper.make_tensor_value_info("y", yt, ["N", "C", "H", "W"])],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("op", ["ConvInteger", "QLinearConv"])
@pytest.mark.parametrize("pad", list(_PADDING))
def test_padding_forms_equal_onnxruntime(pad, op):
    """auto_pad SAME_UPPER / SAME_LOWER (odd total pads: the extra one at the end / the start), asymmetric
    explicit pads, dilation and strides: the compiler's output shape equals onnxruntime's, the values
    onnxruntime's (ConvInteger exactly, QLinearConv within one step; onnx.reference's for dilated SAME, which
    onnxruntime refuses)."""
    m = _padded_conv(op, _PADDING[pad])
    x = np.random.default_rng(1).integers(0, 256, (2, 3, 9, 10)).astype(np.uint8)
    b = compiler.compile_model(m, "isaac")
    y = compiler.run(b, x)
    if "dilations" in _PADDING[pad] and "auto_pad" in _PADDING[pad]:
        # onnxruntime refuses dilation with SAME_*: onnx's reference implementation is the oracle there
        with pytest.raises(Exception, match="Dilation not supported for AutoPadType::SAME"):
            ort_run(m, {"x": x})
        from onnx.reference import ReferenceEvaluator

        ref = ReferenceEvaluator(m).run(None, {"x": x})[0]
    else:
        ref = ort_run(m, {"x": x})
    assert tuple(b.model.layers[0].out_shape[1:]) == ref.shape[1:]  # our shape inference, before any run
    assert y.shape == ref.shape and y.dtype == ref.dtype
    d = np.abs(y.astype(np.int64) - ref.astype(np.int64)).max()
    assert d == 0 if op == "ConvInteger" else d <= 1


def test_unknown_auto_pad_is_a_one_line_error():
    m = _padded_conv("ConvInteger", dict(kernel_shape=[3, 3]))
    m.graph.node[0].attribute.append(helper.make_attribute("auto_pad", "SAME_MIDDLE"))
    with pytest.raises(compiler.CompileError, match=r"node 'c' \(ConvInteger\): auto_pad = SAME_MIDDLE not supported"):
        compiler.compile_model(m, "isaac")


# -- grouped and depthwise convolutions -----------------------------------------------------------------------

def _separable(tmp_path, channels: int, per_channel: bool, weight_type: str = "QInt8"):
    from cimtile.zoo.digits import ort_quantize
    from cimtile.zoo.mobilenet import separable_block

    r = np.random.default_rng(channels)
    path = tmp_path / f"sep{channels}.onnx"
    m = ort_quantize(separable_block(channels=channels), r.random((64, 8, 12, 12)).astype(np.float32), path,
                     per_channel=per_channel, weight_type=weight_type)
    return m, path, r.random((100, 8, 12, 12)).astype(np.float32)


def _out_step(m: onnx.ModelProto) -> float:
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    (dq,) = [n for n in m.graph.node if n.output[0] == m.graph.output[0].name]
    return float(inits[dq.input[1]])


@pytest.mark.parametrize("channels,per_channel,weight_type", [(16, False, "QInt8"), (64, True, "QInt8"),
                                                               (32, False, "QUInt8")])
def test_separable_block_equals_onnxruntime(tmp_path, channels, per_channel, weight_type):
    """MobileNet-style block (1x1 expand, ReLU6, 3x3 depthwise stride 2, ReLU6, 1x1 project, pooling, Gemm)
    quantized by onnxruntime: within one output step, class agreement >= 99.5%; the depthwise layer uses only
    block-diagonal crossbar tiles, each holding whole groups."""
    m, path, x = _separable(tmp_path, channels, per_channel, weight_type)
    b = compiler.compile_model(m, "isaac")
    y, st = compiler.run(b, x, stats=True)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(y - ref).max() <= _out_step(m) * (1 + 1e-5)
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.995
    (dw,) = [L for L in b.model.layers if L.groups > 1]
    assert dw.groups == channels and dw.conv["strides"] == (2, 2)
    tl = dw.tiling
    gpt = tl.outs_per_tile  # depthwise: one output per group
    assert tl.row_tile == 9 * gpt and len(tl.pairs()) == len(tl.col_tiles) == -(-channels // gpt)
    assert gpt == min(b.cfg.rows // 9, b.cfg.cols // tl.group, channels)  # as many groups as fit
    row = next(r for r in b.report["layers"] if r["name"] == dw.name)
    assert row["xbar_tiles"] == len(tl.pairs()) + len(tl.fix_tiles) and row["groups"] == channels
    _, st1 = compiler.run(b, x[:1], stats=True)
    assert st1.cycles == b.report["totals"]["cycles"]


def test_depthwise_mapping_beats_dense_expansion(tmp_path):
    """The same depthwise layer expanded by hand into a dense Conv (group 1, zero weights off the diagonal):
    identical outputs, but 4x the crossbar tiles and more cycles than the block-diagonal mapping."""
    m, path, x = _separable(tmp_path, 64, True)
    dense = _dense_equivalent(m)
    bg, bd = compiler.compile_model(m, "isaac"), compiler.compile_model(dense, "isaac")
    np.testing.assert_array_equal(compiler.run(bg, x[:20]), compiler.run(bd, x[:20]))
    rg = next(r for r in bg.report["layers"] if r.get("groups"))
    rd = next(r for r in bd.report["layers"] if r["name"] == rg["name"])
    assert rd["xbar_tiles"] >= 4 * rg["xbar_tiles"] and rd["cycles"] > rg["cycles"]


def _dense_equivalent(m: onnx.ModelProto) -> onnx.ModelProto:
    from cimtile.zoo.mobilenet import densify_groups

    return densify_groups(m)


def test_relu6_clip_folds_into_on_tile_requantisation(tmp_path):
    """A float Clip(0, 6) between a layer and its QuantizeLinear (ReLU6 kept in the QDQ graph) folds into the
    REQ clamp exactly (quantisation is monotone); onnxruntime with the Clip agrees within one step."""
    m, path, x = _separable(tmp_path, 16, False)
    (conv,) = [n for n in m.graph.node if n.op_type == "Conv" and any(
        a.name == "group" and a.i > 1 for a in n.attribute)]
    out = conv.output[0]
    clipped = out + "_relu6"
    for n in m.graph.node:
        for i, v in enumerate(n.input):
            if v == out:
                n.input[i] = clipped
    m.graph.initializer.extend([numpy_helper.from_array(np.float32(0), "c_lo"),
                                numpy_helper.from_array(np.float32(6), "c_hi")])
    idx = list(m.graph.node).index(conv)
    m.graph.node.insert(idx + 1, helper.make_node("Clip", [out, "c_lo", "c_hi"], [clipped], name="relu6"))
    b = compiler.compile_model(m, "isaac")
    dw = next(L for L in b.model.layers if L.groups > 1)
    assert dw.requant_on_tile and not any(isinstance(s, HostStep) and s.op == "Clip" for s in b.model.steps)
    y = compiler.run(b, x)
    ref = ort_run(m, {"x": x})
    assert np.abs(y - ref).max() <= _out_step(m) * (1 + 1e-5)


def test_uint8_weights_above_their_zero_point_stay_unsigned():
    """uint8 codes 10..255 with zero point 5: ``codes - zp`` = 5..250 is non-negative, so the tile holds it as
    unsigned 8-bit weights (no 9-bit signed error, no host correction), bit-exact."""
    r = np.random.default_rng(8)
    w = r.integers(10, 256, (30, 7)).astype(np.uint8)
    w[0, 0] = 255
    m = _set(_set(models.matmul_integer(), "w", w), "wz", np.uint8(5))
    x = r.integers(-128, 128, (4, 30)).astype(np.int8)
    b = compiler.compile_model(m, "isaac")
    L = b.model.layers[0]
    assert not L.weights.wsigned and not L.weights.host_corrected
    np.testing.assert_array_equal(compiler.run(b, x), ort_run(m, {"x": x}))
