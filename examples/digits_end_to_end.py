"""End to end on scikit-learn's digits: train small networks with torch, quantise them (onnxruntime's static
quantizer; a mixed-precision CNN written as QCDQ and as QONNX), compile them for the tile, run them on the
golden model and compare with onnxruntime.

    python examples/digits_end_to_end.py build/digits [--update-docs]

writes ``<dir>/<model>.onnx``, ``<dir>/x.npy`` (the test images), ``<dir>/y.npy`` (their labels), then runs
the command line on the CNN (compile to ``cnn.isaac``, run to ``cnn_y.npy``, report) and prints the accuracy
table of every model on two presets. ``--update-docs`` also writes that table and the CNN's report into the
generated blocks of docs/compiler.md and README.md (so the documented figures are this script's output).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from cimtile.zoo import data, digits
from cimtile.zoo.oracle import qonnx_reference

from cimtile import compiler

MIXED = [(6, 8), (4, 6), (3, 4)]  # (weight bits, input activation bits) of c1, c2, fc
ROOT = Path(__file__).resolve().parent.parent
#: Elements "differ" beyond float32 rounding of the last layer's dequantisation.
RTOL = ATOL = 1e-5

DESC = {"mlp": "MLP 64-32-10", "cnn": "CNN (2 conv, 2 maxpool, gemm)", "resnet": "residual CNN + GAP",
        "cnn_mixed_qcdq": "CNN w6a8 / w4a6 / w3a4", "cnn_mixed_qonnx": "CNN w6a8 / w4a6 / w3a4"}


def main(out: Path, update_docs: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr, xte, yte = data.digits()
    np.save(out / "x.npy", xte)
    np.save(out / "y.npy", yte)
    nets = {k: digits.train(k) for k in ("mlp", "cnn", "resnet")}
    zoo = {}
    for k, net in nets.items():
        digits.ort_quantize(digits.float_onnx(k, net), xtr[:256], out / f"{k}.onnx", per_channel=(k != "mlp"))
        zoo[k] = ("QDQ int8", "onnxruntime", lambda x, p=out / f"{k}.onnx": ort.InferenceSession(
            str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0])
    for style in ("qcdq", "qonnx"):
        m = digits.mixed_cnn(nets["cnn"], xtr[:256], MIXED, style)
        onnx.save(m, out / f"cnn_mixed_{style}.onnx")
        if style == "qcdq":
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(str(out / "cnn_mixed_qcdq.onnx"), so, providers=["CPUExecutionProvider"])
            zoo["cnn_mixed_qcdq"] = ("QCDQ", "onnxruntime (opt. off)", lambda x, s=sess: s.run(None, {"x": x})[0])
        else:
            zoo["cnn_mixed_qonnx"] = ("QONNX `Quant`", "onnx.reference", lambda x, m=m: qonnx_reference(m, x))

    # the command line, on the CNN (its own output file: y.npy holds the labels)
    cli = [sys.executable, "-m", "cimtile"]
    report = ""
    for cmd in (["compile", str(out / "cnn.onnx"), "--tile", "isaac", "-o", str(out / "cnn.isaac")],
                ["run", str(out / "cnn.isaac"), "--input", str(out / "x.npy"), "-o", str(out / "cnn_y.npy")],
                ["report", str(out / "cnn.isaac")]):
        print("$ cimtile " + " ".join(cmd), flush=True)
        p = subprocess.run(cli + cmd, check=True, stdout=subprocess.PIPE, text=True)
        print(p.stdout, end="", flush=True)
        report = p.stdout

    lines = ["| model | quantization | oracle | oracle accuracy | tile | `cimtile run` accuracy | class agreement | "
             "max abs diff | elements differing | cycles / image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, (quant, oracle_name, oracle) in zoo.items():
        ref = oracle(xte)
        for tile in ("isaac", "tiny"):
            b = compiler.compile_model(out / f"{name}.onnx", tile)
            y = compiler.run(b, xte, progress=False)
            differ = int((~np.isclose(y, ref, rtol=RTOL, atol=ATOL)).sum())
            lines.append(f"| {DESC[name]} | {quant} | {oracle_name} | {100 * (ref.argmax(1) == yte).mean():.2f}% | "
                         f"{tile} | {100 * (y.argmax(1) == yte).mean():.2f}% | "
                         f"{100 * (y.argmax(1) == ref.argmax(1)).mean():.2f}% | {np.abs(y - ref).max():.3g} | "
                         f"{differ} / {y.size} | {b.report['totals']['cycles']} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    if update_docs:
        for doc in (ROOT / "docs" / "compiler.md", ROOT / "README.md"):
            text = doc.read_text()
            new = replace_block(replace_block(text, "digits-accuracy", table), "digits-cnn-report", report)
            if new != text:
                doc.write_text(new)
                print(f"updated {doc.relative_to(ROOT)}")


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the lines between ``<!-- generated: NAME ... -->`` and ``<!-- end: NAME -->`` set to ``body``
    (a text without that block is returned unchanged)."""
    pat = re.compile(rf"(<!-- generated: {re.escape(name)}\b[^\n]*-->\n)(.*?)(<!-- end: {re.escape(name)} -->)", re.S)
    return pat.sub(lambda m: m.group(1) + body + m.group(3), text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="build/digits", help="output directory (default build/digits)")
    ap.add_argument("--update-docs", action="store_true",
                    help="write the accuracy table and the CNN's report into docs/compiler.md and README.md")
    a = ap.parse_args()
    main(Path(a.out), a.update_docs)
