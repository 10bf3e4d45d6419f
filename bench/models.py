"""Issue 10's models people have, against onnxruntime in the same run (``isaac`` preset, golden model):

- ``qop_*``: the residual CNN with Add/Concat/pools/sigmoid/leaky ReLU (``cimtile.zoo.digits``, kind ``mix``)
  quantized by ``quantize_static(..., quant_format=QOperator)`` (onnxruntime's com.microsoft QLinearAdd,
  QGemm, QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat, QLinearSigmoid, QLinearLeakyRelu);
- ``vit_qdq_*`` / ``vit_qcdq_*``: the zoo's ViT (``cimtile.zoo.vit``, trained on digits) quantized by
  onnxruntime (QDQ, TorchScript export) and by brevitas (QCDQ, W8A8);
- ``vitb32_cimaq_*``: the ViT-B/32 shape (random weights, the zoo's plain QDQ quantizer) compiled for cimaq.

Per model: accuracy on the digits test split of onnxruntime and of cimtile, class agreement over all 1,797
digits images (against onnxruntime with its default optimisations), and the share of output values within one
output quantization step of onnxruntime running the graph as written (basic optimisations) and with its
default ones (which fuse the transformer's QDQ graph into kernels of other arithmetic).

``python bench/models.py --markdown`` prints the tables of docs/compiler.md (``--json``: from the figures of
the last ``python -m bench models`` run in build/bench.json instead of measuring again).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOALS = {"qop_agreement_pct": ">= 99.5", "vit_qdq_agreement_pct": ">= 99.5", "vit_qcdq_agreement_pct": ">= 99.5",
         "qop_max_steps": "<= 1"}


def _ort(path, x, level):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = level
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _step(q) -> float | None:
    from onnx import numpy_helper

    last = next(n for n in q.graph.node if n.output[0] == q.graph.output[0].name)
    if last.op_type != "DequantizeLinear":
        return None
    return float(next(numpy_helper.to_array(i) for i in q.graph.initializer if i.name == last.input[1]))


def _compare(prefix: str, path: Path, xall: np.ndarray, yte: np.ndarray) -> dict[str, float]:
    import onnx
    import onnxruntime as ort

    from cimtile import compiler

    q = onnx.load(str(path))
    b = compiler.compile_model(q, "isaac")
    got = compiler.run(b, xall)
    lv = ort.GraphOptimizationLevel
    ref, ref_graph = _ort(path, xall, lv.ORT_ENABLE_ALL), _ort(path, xall, lv.ORT_ENABLE_BASIC)
    step = _step(q)
    n = len(yte)
    out = {"agreement_pct": 100 * float((got.argmax(1) == ref.argmax(1)).mean()),
           "acc_ort_pct": 100 * float((ref[-n:].argmax(1) == yte).mean()),
           "acc_cimtile_pct": 100 * float((got[-n:].argmax(1) == yte).mean())}
    if step is not None:
        out["within_step_graph_pct"] = 100 * float((np.abs(got - ref_graph) <= step * 1.0001).mean())
        out["within_step_default_pct"] = 100 * float((np.abs(got - ref) <= step * 1.0001).mean())
        out["max_steps"] = round(float(np.abs(got - ref).max() / step), 4)  # float32 step multiples
    else:
        tol = 1e-4 * float(np.abs(ref_graph).max())
        out["within_rounding_graph_pct"] = 100 * float((np.abs(got - ref_graph) <= tol).mean())
    t = b.report["totals"]
    out.update(host_macs=t["host_macs"], host_elem_ops=t.get("host_elem_ops", 0), cycles=t["cycles"])
    return {f"{prefix}_{k}": float(v) for k, v in out.items()}


def run() -> dict[str, float]:
    import onnx
    import torch
    from cimtile.search import qat
    from cimtile.zoo import digits as zd
    from cimtile.zoo import vit
    from cimtile.zoo.data import digits

    from cimtile import compiler

    xtr, _, xte, yte = digits()
    xall = np.concatenate([xtr, xte])
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        mix = zd.train("mix", epochs=10)
        zd.ort_quantize(zd.float_onnx("mix", mix), xtr[:200], d / "mix.onnx", quant_format="QOperator")
        out.update(_compare("qop", d / "mix.onnx", xall, yte))
        net, cfg = vit.pretrained("digits", epochs=16)
        vit.export_onnx(net, cfg, d / "vit.onnx")
        zd.ort_quantize(onnx.load(d / "vit.onnx"), xtr[:256], d / "vit_qdq.onnx")
        out.update(_compare("vit_qdq", d / "vit_qdq.onnx", xall, yte))
        qn = qat.build([cfg.spec()], [(8, 8)] * vit.weight_layers(cfg), net)
        with torch.no_grad():
            qn.train()
            qn(torch.from_numpy(xtr[:256]))
        vit.export_qcdq(qn, cfg, d / "vit_qcdq.onnx", xte)
        out.update(_compare("vit_qcdq", d / "vit_qcdq.onnx", xall, yte))
        big = vit.vit_b32()
        x = np.random.default_rng(0).uniform(0, 1, (2, 3, 224, 224)).astype(np.float32)
        vit.export_onnx(vit.vit_net(big), big, d / "b32.onnx", x=x)
        q = vit.quantize_weight_layers(onnx.load(d / "b32.onnx"), x)
        t0 = time.perf_counter()
        b = compiler.compile_model(q, "cimaq")
        t = b.report["totals"]
        out.update(vitb32_cimaq_compile_s=time.perf_counter() - t0, vitb32_cimaq_cycles=t["cycles"],
                   vitb32_cimaq_xbar_tiles=t["xbar_tiles"], vitb32_cimaq_host_macs=t["host_macs"],
                   vitb32_cimaq_host_elem_ops=t.get("host_elem_ops", 0), vitb32_cimaq_layers=len(b.model.layers))
    return {k: float(v) for k, v in out.items()}


def markdown(fig: dict[str, float]) -> str:
    """The docs table of these figures."""
    lines = ["| model | onnxruntime acc. | cimtile acc. | class agreement | outputs within one step (graph / "
             "default ORT) | host MACs / element ops per image |", "|---|---|---|---|---|---|"]
    for p, name in (("qop", "residual CNN, QOperator (com.microsoft ops)"), ("vit_qdq", "ViT, onnxruntime QDQ"),
                    ("vit_qcdq", "ViT, brevitas QCDQ")):
        if f"{p}_within_step_graph_pct" in fig:
            w = f"{fig[f'{p}_within_step_graph_pct']:.2f}% / {fig[f'{p}_within_step_default_pct']:.2f}%"
        else:
            w = f"{fig[f'{p}_within_rounding_graph_pct']:.2f}% (float output, to rounding) / -"
        lines.append(f"| {name} | {fig[f'{p}_acc_ort_pct']:.2f}% | {fig[f'{p}_acc_cimtile_pct']:.2f}% | "
                     f"{fig[f'{p}_agreement_pct']:.2f}% | {w} | {fig[f'{p}_host_macs']:.0f} / "
                     f"{fig[f'{p}_host_elem_ops']:.0f} |")
    lines += ["", "| ViT-B/32 shape on cimaq | weight layers on the tile | crossbar tiles | "
              "cycles, one image (programming included) | host MACs | host element ops | compile time |",
              "|---|---|---|---|---|---|---|",
              f"| random weights, plain QDQ | {fig['vitb32_cimaq_layers']:.0f} | "
              f"{fig['vitb32_cimaq_xbar_tiles']:.0f} | "
              f"{fig['vitb32_cimaq_cycles']:.0f} | {fig['vitb32_cimaq_host_macs']:.0f} | "
              f"{fig['vitb32_cimaq_host_elem_ops']:.0f} | {fig['vitb32_cimaq_compile_s']:.1f} s |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from bench import area_main

    area_main(run, markdown, sys.argv)
