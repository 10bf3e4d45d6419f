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
default ones (which fuse the transformer's QDQ graph into kernels of other arithmetic). Why the ViT's default
figure is lower (docs/compiler.md, Transformers): ``vit_qdq_ort_default_vs_graph_within_step_pct`` (onnxruntime's
default session against its own as-written graph), ``vit_qdq_ort_softmax_unfused_vs_graph_within_step_pct`` (its
default graph with only the fused QLinearSoftmax put back as DequantizeLinear -> Softmax -> QuantizeLinear),
``vit_qdq_softmax_unfused_within_step_pct`` (cimtile against that graph), ``vit_qdq_softmax_inv_scale`` and
``_ort`` (1 / y_scale of the softmax output in float32, and the ``floor`` of it that QLinearSoftmax multiplies by).

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


def _compare(prefix: str, path: Path, xall: np.ndarray, yte: np.ndarray, extra=None) -> dict[str, float]:
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
    if extra is not None:
        out.update(extra(path, xall, got, step))
    t = b.report["totals"]
    out.update(host_macs=t["host_macs"], host_elem_ops=t.get("host_elem_ops", 0), cycles=t["cycles"])
    return {f"{prefix}_{k}": float(v) for k, v in out.items()}


def _unfuse_softmax(m):
    """``m`` (an onnxruntime-optimised model) with every ``com.microsoft`` QLinearSoftmax replaced by the
    ``DequantizeLinear -> Softmax -> QuantizeLinear`` it was fused from."""
    import onnx
    from onnx import helper

    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    nodes = []
    for k, n in enumerate(m.graph.node):
        if n.op_type != "QLinearSoftmax":
            nodes.append(n)
            continue
        axis = next(a.i for a in n.attribute if a.name == "axis")
        d, f = f"_unfused_dq{k}", f"_unfused_sm{k}"
        nodes += [helper.make_node("DequantizeLinear", list(n.input[:3]), [d]),
                  helper.make_node("Softmax", [d], [f], axis=axis),
                  helper.make_node("QuantizeLinear", [f, n.input[3], n.input[4]], [n.output[0]])]
    del m2.graph.node[:]
    m2.graph.node.extend(nodes)
    return m2


def _softmax_figures(path: Path, x: np.ndarray, got: np.ndarray, step: float) -> dict[str, float]:
    """Where onnxruntime's default session departs from the graph as written: onnxruntime against itself
    (basic vs default optimisations), and its default graph with only QLinearSoftmax unfused (against the graph
    as written, and against cimtile); plus the output-scale reciprocal its QLinearSoftmax kernel uses,
    ``floor(1 / y_scale)`` (qlinear_softmax.cc), beside the exact one."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    lv = ort.GraphOptimizationLevel
    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.graph_optimization_level = lv.ORT_ENABLE_EXTENDED  # (ALL adds only layout transforms here)
        so.optimized_model_filepath = str(Path(d) / "opt.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(str(Path(d) / "opt.onnx"))
    basic, default = _ort(path, x, lv.ORT_ENABLE_BASIC), _ort(path, x, lv.ORT_ENABLE_ALL)
    so = ort.SessionOptions()
    so.graph_optimization_level = lv.ORT_DISABLE_ALL
    s = ort.InferenceSession(_unfuse_softmax(opt).SerializeToString(), so, providers=["CPUExecutionProvider"])
    unf = s.run(None, {s.get_inputs()[0].name: x})[0]
    init = {i.name: numpy_helper.to_array(i) for i in opt.graph.initializer}
    sm = [n for n in opt.graph.node if n.op_type == "QLinearSoftmax"]
    ys = np.float32(init[sm[0].input[3]])
    within = (lambda a, b: 100 * float((np.abs(a - b) <= step * 1.0001).mean()))
    return {"ort_default_vs_graph_within_step_pct": within(default, basic),
            "ort_softmax_unfused_vs_graph_within_step_pct": within(unf, basic),
            "softmax_unfused_within_step_pct": within(got, unf),
            "qlinearsoftmax_nodes": len(sm),
            "softmax_inv_scale": float(np.float32(1) / ys),
            "softmax_inv_scale_ort": float(np.floor(np.float32(1) / ys))}


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
        out.update(_compare("vit_qdq", d / "vit_qdq.onnx", xall, yte, extra=_softmax_figures))
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
    if "vit_qdq_ort_default_vs_graph_within_step_pct" in fig:
        lines += ["", "| ViT, onnxruntime QDQ: outputs within one step | of onnxruntime's as-written graph |",
                  "|---|---|",
                  f"| onnxruntime's default session (fused kernels) | "
                  f"{fig['vit_qdq_ort_default_vs_graph_within_step_pct']:.2f}% |",
                  f"| onnxruntime's default graph, only its {fig['vit_qdq_qlinearsoftmax_nodes']:.0f} QLinearSoftmax "
                  f"unfused | {fig['vit_qdq_ort_softmax_unfused_vs_graph_within_step_pct']:.2f}% |",
                  f"| cimtile | {fig['vit_qdq_within_step_graph_pct']:.2f}% |",
                  "", f"(QLinearSoftmax multiplies by floor(1 / y_scale) = {fig['vit_qdq_softmax_inv_scale_ort']:.0f} "
                  f"where the graph divides by y_scale, 1 / y_scale = {fig['vit_qdq_softmax_inv_scale']:.5f}; "
                  f"cimtile against onnxruntime's default graph with QLinearSoftmax unfused: "
                  f"{fig['vit_qdq_softmax_unfused_within_step_pct']:.2f}%.)"]
    lines += ["", "| ViT-B/32 shape on cimaq | weight layers on the tile | crossbar tiles | "
              "cycles, one image (programming included) | host MACs | host element ops | compile time |",
              "|---|---|---|---|---|---|---|",
              f"| random weights, plain QDQ | {fig['vitb32_cimaq_layers']:.0f} | "
              f"{fig['vitb32_cimaq_xbar_tiles']:.0f} | "
              f"{fig['vitb32_cimaq_cycles']:.0f} | {fig['vitb32_cimaq_host_macs']:.0f} | "
              f"{fig['vitb32_cimaq_host_elem_ops']:.0f} | {fig['vitb32_cimaq_compile_s']:.1f} s |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/models.py` from the root
    from bench import area_main

    area_main(run, markdown, sys.argv)
