"""Compiler speed: compile an 8-bit ResNet-18-shaped QDQ model (random weights, 224x224 input, built with
onnx.helper) for the ``isaac`` preset, and run one image through the golden backend.

Figures: ``compile_resnet18_s`` (ONNX file to bundle directory, as ``cimtile compile`` does),
``golden_resnet18_img_s`` (one image, bundle already loaded, as ``cimtile run`` does after loading; best of 3),
``golden_resnet18_img_cpu_s`` (the same runs' CPU time of this process, all threads: what the wall time would be
on an idle machine with one BLAS thread; on a shared machine the wall time mostly measures the other jobs),
``resnet18_program_words`` (microcode words of all programs), ``resnet18_cycles`` (tile cycles per image).

Weight programming (issue 10): ``resnet18_program_cycles`` (of the cycles per image, weight programming: LDW and
write-and-verify), ``resnet18_cycles_per_image_batch16`` (cycles of a batch of 16 images / 16, the batch
schedule of docs/compiler.md: every crossbar tile programmed once per batch), ``resnet18_program_cycles_batch16``
(of those cycles, programming, per batch: every crossbar tile once), ``resnet18_cycles_batch2_golden`` (two images
run as one batch on the golden model, checked equal to the report's ``batch=2`` figure),
``golden_resnet18_batch2_img_s`` (the wall time of that batch run per image, best of 2) and
``golden_batch2_vs_single_img`` (it over ``golden_resnet18_img_s`` of the same run: at most 1 when a batch is not
slower per image than single images).

Calibrated mapping (issue 10; docs/compiler.md): ``calibrated_cycles_ratio_isaac_resnet18`` and
``calibrated_cycles_ratio_isaac_digits`` (exact-mapping cycles / calibrated-mapping cycles, one image; cycles do
not depend on the chosen shifts); for the trained digits models (mlp, cnn, resnet of ``zoo.digits``, 12 epochs,
onnxruntime static quantisation), the test-set accuracy of onnxruntime, of exact and of calibrated mapping on
``isaac`` (``acc_<mode>_digits_<model>``, percent; calibration: 256 training images) and
``calibrated_acc_loss_digits`` (onnxruntime's accuracy minus calibrated mapping's, in points, the largest over the
models); the ADC sweep: ``isaac`` variants with 8 down to 3 ADC bits, calibrated mapping, and
``calibrated_min_adc_bits_digits``: the fewest ADC bits at which every model stays within 0.5 points of
onnxruntime (``acc_calibrated_digits_<model>_adc<b>`` for each; ``calibrated_cycles_ratio_digits_cnn_adc<b>``
exact / calibrated cycles of the CNN at that resolution).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GOALS = {"compile_resnet18_s": "< 3", "golden_resnet18_img_s": "<= 0.3", "calibrated_acc_loss_digits": "<= 0.5"}
DIGITS_MODELS = ("mlp", "cnn", "resnet")
ADC_SWEEP = (8, 7, 6, 5, 4, 3)


def resnet18_qdq(seed: int = 0, size: int = 224, classes: int = 1000) -> onnx.ModelProto:
    """ResNet-18 in the QDQ form onnxruntime's static quantizer writes: uint8 activations, int8 symmetric
    per-channel weights, int32 biases; Relu before QuantizeLinear; QDQ around pooling and residual adds."""
    r = np.random.default_rng(seed)
    nodes, inits = [], []
    n = [0]

    def uid(p):
        n[0] += 1
        return f"{p}{n[0]}"

    def const(arr, p="c"):
        name = uid(p)
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def qdq(x, scale):
        s, z = const(np.float32(scale), "s"), const(np.uint8(0), "z")
        q, d = uid("q"), uid("d")
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [q]))
        nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [d]))
        return d, scale

    def conv(x, xs, cin, cout, k, stride, relu, out_scale=0.05):
        fan = cin * k * k
        w = r.integers(-127, 128, (cout, cin, k, k)).astype(np.int8)
        ws = (np.sqrt(2.0 / fan) / 73 * (0.8 + 0.4 * r.random(cout))).astype(np.float32)
        b = r.integers(-200, 200, cout).astype(np.int32)
        wd, bd, y = uid("wd"), uid("bd"), uid("conv")
        nodes.append(helper.make_node("DequantizeLinear",
                                      [const(w, "w"), const(ws, "ws"), const(np.zeros(cout, np.int8))], [wd], axis=0))
        nodes.append(helper.make_node("DequantizeLinear", [const(b, "b"), const((xs * ws).astype(np.float32)),
                                                           const(np.zeros(cout, np.int32))], [bd], axis=0))
        nodes.append(helper.make_node("Conv", [x, wd, bd], [y], name=y, kernel_shape=[k, k], strides=[stride] * 2,
                                      pads=[k // 2] * 4))
        if relu:
            nodes.append(helper.make_node("Relu", [y], [y + "_relu"]))
            y = y + "_relu"
        return qdq(y, out_scale)

    x, xs = qdq("x", 1 / 255)
    x, xs = conv(x, xs, 3, 64, 7, 2, True)
    mp = uid("pool")
    nodes.append(helper.make_node("MaxPool", [x], [mp], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, xs = qdq(mp, xs)
    cin = 64
    for cout, stride in ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)):
        h, hs = conv(x, xs, cin, cout, 3, stride, True)
        h, hs = conv(h, hs, cout, cout, 3, 1, False)
        sc, _ = conv(x, xs, cin, cout, 1, stride, False) if (stride != 1 or cin != cout) else (x, xs)
        a = uid("add")
        nodes.append(helper.make_node("Add", [h, sc], [a]))
        nodes.append(helper.make_node("Relu", [a], [a + "_relu"]))
        x, xs = qdq(a + "_relu", 0.05)
        cin = cout
    g = uid("gap")
    nodes.append(helper.make_node("GlobalAveragePool", [x], [g]))
    x, xs = qdq(g, 0.02)
    f = uid("flat")
    nodes.append(helper.make_node("Flatten", [x], [f]))
    w = r.integers(-127, 128, (classes, 512)).astype(np.int8)
    ws = np.float32(np.sqrt(1 / 512) / 73)
    wd, y = uid("wd"), "fc"
    nodes.append(helper.make_node("DequantizeLinear", [const(w, "w"), const(ws), const(np.int8(0))], [wd]))
    nodes.append(helper.make_node("Gemm", [f, wd], [y], name="fc", transB=1))
    s, z = const(np.float32(0.05)), const(np.uint8(128))
    nodes.append(helper.make_node("QuantizeLinear", [y, s, z], ["yq"]))
    nodes.append(helper.make_node("DequantizeLinear", ["yq", s, z], ["y"]))
    graph = helper.make_graph(nodes, "resnet18_qdq",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run() -> dict[str, float]:
    from cimtile import compiler

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "resnet18.onnx"
        onnx.save(resnet18_qdq(), src)
        best_c = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            b = compiler.compile_model(src, "isaac", out=Path(d) / "out")
            best_c = min(best_c, time.perf_counter() - t)
        b = compiler.load(Path(d) / "out")
        x = np.random.default_rng(1).random((1, 3, 224, 224)).astype(np.float32)
        # Each run builds its own backend and tiles, as `cimtile run` does; best of 3 because the machine is
        # shared (a first run in a fresh process is as fast: only small tables such as decoded words are kept).
        golden = golden_cpu = float("inf")
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            _, st = compiler.run(b, x, stats=True, progress=False)
            golden = min(golden, time.perf_counter() - t)
            golden_cpu = min(golden_cpu, time.process_time() - c)
        words = b.report["totals"]["words"]
        print(f"resnet18 on isaac: {len(b.model.layers)} tile layers, {b.report['totals']['xbar_tiles']} crossbar "
              f"tiles, {words} words in {b.report['totals']['programs']} programs, {st.cycles} cycles per image")
        assert st.cycles == b.report["totals"]["cycles"]
        out = {"compile_resnet18_s": best_c, "golden_resnet18_img_s": golden, "golden_resnet18_img_cpu_s": golden_cpu,
               "resnet18_program_words": float(words),
               "resnet18_cycles": float(st.cycles),
               "resnet18_program_cycles": float(b.report["totals"]["program_cycles"]),
               "resnet18_cycles_per_image_batch16": compiler.report(b, as_json=True, batch=16)["totals"]["cycles"] / 16}
        out["resnet18_program_cycles_batch16"] = float(
            compiler.report(b, as_json=True, batch=16)["totals"]["program_cycles"])
        # the batch schedule on the golden model: two images as one batch cost what the report says
        x2 = np.random.default_rng(2).random((2, 3, 224, 224)).astype(np.float32)
        golden2 = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            _, st2 = compiler.run(b, x2, stats=True, progress=False)
            golden2 = min(golden2, (time.perf_counter() - t) / 2)
        if st2.cycles != compiler.report(b, as_json=True, batch=2)["totals"]["cycles"]:  # pragma: no cover
            raise AssertionError(f"golden model: {st2.cycles} cycles for a batch of 2, the report says otherwise")
        out.update(resnet18_cycles_batch2_golden=float(st2.cycles), golden_resnet18_batch2_img_s=golden2,
                   golden_batch2_vs_single_img=golden2 / golden)
        # calibrated mapping: the cycles depend on the rows per tile only, so shift 0 everywhere gives them
        names = [L.name for L in b.model.layers]
        cal = compiler.compile_model(src, "isaac", mapping="calibrated", adc={n: {"shift": 0} for n in names})
        out["calibrated_cycles_ratio_isaac_resnet18"] = b.report["totals"]["cycles"] / cal.report["totals"]["cycles"]
    out.update(digits_calibrated())
    return out


def digits_calibrated() -> dict[str, float]:
    """Exact vs calibrated mapping on the trained digits models (cycles, accuracies beside onnxruntime's, the ADC
    sweep)."""
    import onnxruntime as ort
    from cimtile.hw.params import PRESETS
    from cimtile.zoo import digits as zd
    from cimtile.zoo.data import digits

    from cimtile import compiler

    xtr, _, xte, yte = digits()
    cal = xtr[:256]
    out: dict[str, float] = {}
    loss, ok_bits = 0.0, {}
    with tempfile.TemporaryDirectory() as d:
        for kind in DIGITS_MODELS:
            path = Path(d) / f"{kind}.onnx"
            zd.ort_quantize(zd.float_onnx(kind, zd.train(kind)), xtr[:256], path, per_channel=kind != "mlp")
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            acc = {"ort": 100 * float(np.mean(sess.run(None, {"x": xte})[0].argmax(1) == yte))}
            ex = compiler.compile_model(path, "isaac")
            cb = compiler.compile_model(path, "isaac", mapping="calibrated", calibration=cal, progress=False)
            for mode, b in (("exact", ex), ("calibrated", cb)):
                acc[mode] = 100 * float(np.mean(compiler.run(b, xte, progress=False).argmax(1) == yte))
                out[f"acc_{mode}_digits_{kind}"] = acc[mode]
            out[f"acc_ort_digits_{kind}"] = acc["ort"]
            if kind == "cnn":
                r = ex.report["totals"]["cycles"] / cb.report["totals"]["cycles"]
                out["calibrated_cycles_ratio_isaac_digits"] = r
            loss = max(loss, acc["ort"] - acc["calibrated"])
            print(f"digits {kind}: onnxruntime {acc['ort']:.2f}%, exact {acc['exact']:.2f}%, calibrated "
                  f"{acc['calibrated']:.2f}% (isaac, 8-bit ADC)")
            for bits in ADC_SWEEP:
                cfg = PRESETS["isaac"].replace(name=f"isaac_adc{bits}", adc_bits=bits)
                b = cb if bits == PRESETS["isaac"].adc_bits else compiler.compile_model(
                    path, cfg, mapping="calibrated", calibration=cal, progress=False)
                a = 100 * float(np.mean(compiler.run(b, xte, progress=False).argmax(1) == yte))
                out[f"acc_calibrated_digits_{kind}_adc{bits}"] = a
                if kind == "cnn":  # the cost side of the knob: exact mapping splits rows as the ADC narrows
                    e = compiler.compile_model(path, cfg)
                    out[f"calibrated_cycles_ratio_digits_cnn_adc{bits}"] = (e.report["totals"]["cycles"] /
                                                                            b.report["totals"]["cycles"])
                ok_bits.setdefault(bits, True)
                ok_bits[bits] &= abs(acc["ort"] - a) <= 0.5
    out["calibrated_acc_loss_digits"] = loss
    # the fewest bits of the sweep from which every larger resolution also stays within 0.5 points
    best = None
    for bits in ADC_SWEEP:  # descending
        if not ok_bits[bits]:
            break
        best = bits
    out["calibrated_min_adc_bits_digits"] = float(best) if best is not None else float("nan")
    return out


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k}: {v:.4g}")
