"""End to end on scikit-learn's digits: train small networks with torch, quantise them (onnxruntime's static
quantizer; a mixed-precision CNN written as QCDQ and as QONNX), compile them for the tile, run them on the
golden model and compare with onnxruntime.

    python examples/digits_end_to_end.py build/digits

writes ``<dir>/<model>.onnx``, ``<dir>/x.npy`` (the test images) and ``<dir>/y.npy`` (labels), then runs the
command line on the CNN (compile, run, report) and prints the accuracy table of every model on two presets.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from cimtile.zoo import data, digits

from cimtile import compiler

MIXED = [(6, 8), (4, 6), (3, 4)]  # (weight bits, input activation bits) of c1, c2, fc


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr, xte, yte = data.digits()
    np.save(out / "x.npy", xte)
    np.save(out / "y.npy", yte)
    nets = {k: digits.train(k) for k in ("mlp", "cnn", "resnet")}
    zoo = {}
    for k, net in nets.items():
        digits.ort_quantize(digits.float_onnx(k, net), xtr[:256], out / f"{k}.onnx", per_channel=(k != "mlp"))
        zoo[k] = ("onnxruntime QDQ int8", lambda x, p=out / f"{k}.onnx": ort.InferenceSession(
            str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0])
    for style in ("qcdq", "qonnx"):
        m = digits.mixed_cnn(nets["cnn"], xtr[:256], MIXED, style)
        onnx.save(m, out / f"cnn_mixed_{style}.onnx")
        if style == "qcdq":
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(str(out / "cnn_mixed_qcdq.onnx"), so, providers=["CPUExecutionProvider"])
            zoo["cnn_mixed_qcdq"] = ("QCDQ w6a8/w4a6/w3a4 (oracle: onnxruntime, optimisations off)",
                                     lambda x, s=sess: s.run(None, {"x": x})[0])
        else:
            zoo["cnn_mixed_qonnx"] = ("QONNX w6a8/w4a6/w3a4 (oracle: onnx.reference)",
                                      lambda x, m=m: oracle.qonnx_reference(m, x))

    # the command line, on the CNN
    cli = [sys.executable, "-m", "cimtile"]
    for cmd in (["compile", str(out / "cnn.onnx"), "--tile", "isaac", "-o", str(out / "cnn.isaac")],
                ["run", str(out / "cnn.isaac"), "--input", str(out / "x.npy"), "-o", str(out / "cnn_y.npy")],
                ["report", str(out / "cnn.isaac")]):
        print("$ cimtile " + " ".join(cmd[:1] + [str(c) for c in cmd[1:]]))
        subprocess.run(cli + cmd, check=True)

    print("\n| model | quantisation | oracle accuracy | tile | cimtile run accuracy | class agreement | "
          "max abs diff | cycles per image |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (desc, oracle) in zoo.items():
        ref = oracle(xte)
        for tile in ("isaac", "tiny"):
            b = compiler.compile_model(out / f"{name}.onnx", tile)
            y = compiler.run(b, xte, progress=False)
            print(f"| {name} | {desc} | {100 * (ref.argmax(1) == yte).mean():.2f}% | {tile} | "
                  f"{100 * (y.argmax(1) == yte).mean():.2f}% | {100 * (y.argmax(1) == ref.argmax(1)).mean():.2f}% | "
                  f"{np.abs(y - ref).max():.3g} | {b.report['totals']['cycles']} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/digits"))
