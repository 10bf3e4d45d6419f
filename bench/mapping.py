"""Issue 10's mappings, measured against their baselines in the same run (``isaac`` preset, golden model).

- Grouped convolutions: the 3x3 depthwise layer (64 channels, stride 2) of the MobileNet-style block
  :func:`cimtile.zoo.mobilenet.separable_block`, quantized by onnxruntime (QDQ, per-channel int8 weights),
  mapped block-diagonally (whole groups per crossbar tile) against the same layer expanded into a dense
  ``group = 1`` convolution (:func:`cimtile.zoo.mobilenet.densify_groups`, the baseline a compiler without
  grouped convolutions needs). Figures: ``depthwise64_xbar_tiles`` / ``depthwise64_xbar_tiles_dense``,
  ``depthwise64_cycles`` / ``depthwise64_cycles_dense`` (tile cycles per image of that layer) and
  ``depthwise64_dense_over_grouped_cycles``.
- Asymmetric weights: the same block quantized with ``weight_type=QUInt8`` (per-tensor uint8 weights with zero
  points) against ``QInt8``: ``uint8w_block_cycles`` / ``int8w_block_cycles`` (tile cycles per image, whole
  block), ``uint8w_block_host_zp_ops`` (host operations per image of the zero-point correction) and
  ``uint8w_block_max_steps_vs_ort`` (largest difference from onnxruntime in output steps, 100 inputs).

``python -m bench mapping --markdown`` (or ``python bench/mapping.py --markdown``) prints the table of
docs/compiler.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

GOALS = {"depthwise64_dense_over_grouped_cycles": "> 1", "uint8w_block_max_steps_vs_ort": "<= 1"}


def _quantized(path: Path, weight_type: str, per_channel: bool, channels: int = 64):
    from cimtile.zoo.digits import ort_quantize
    from cimtile.zoo.mobilenet import separable_block

    r = np.random.default_rng(channels)
    return ort_quantize(separable_block(channels=channels), r.random((64, 8, 12, 12)).astype(np.float32), path,
                        per_channel=per_channel, weight_type=weight_type)


def run() -> dict[str, float]:
    import onnx
    import onnxruntime as ort
    from cimtile.zoo.mobilenet import densify_groups

    from cimtile import compiler

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        m = _quantized(Path(d) / "dw.onnx", "QInt8", True)
        bg, bd = compiler.compile_model(m, "isaac"), compiler.compile_model(densify_groups(m), "isaac")
        x = np.random.default_rng(2).random((20, 8, 12, 12)).astype(np.float32)
        assert np.array_equal(compiler.run(bg, x), compiler.run(bd, x))  # the same function
        rg = next(r for r in bg.report["layers"] if r.get("groups"))
        rd = next(r for r in bd.report["layers"] if r["name"] == rg["name"])
        out.update(depthwise64_xbar_tiles=rg["xbar_tiles"], depthwise64_xbar_tiles_dense=rd["xbar_tiles"],
                   depthwise64_cycles=rg["cycles"], depthwise64_cycles_dense=rd["cycles"],
                   depthwise64_dense_over_grouped_cycles=rd["cycles"] / rg["cycles"])
        bi = compiler.compile_model(_quantized(Path(d) / "i8.onnx", "QInt8", False), "isaac")
        mu = _quantized(Path(d) / "u8.onnx", "QUInt8", False)
        bu = compiler.compile_model(mu, "isaac")
        x = np.random.default_rng(3).random((100, 8, 12, 12)).astype(np.float32)
        y = compiler.run(bu, x)
        ref = ort.InferenceSession(str(Path(d) / "u8.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in mu.graph.initializer}
        (dq,) = [n for n in mu.graph.node if n.output[0] == mu.graph.output[0].name]
        out.update(uint8w_block_cycles=bu.report["totals"]["cycles"], int8w_block_cycles=bi.report["totals"]["cycles"],
                   uint8w_block_host_zp_ops=bu.report["totals"].get("host_zp_ops", 0),
                   uint8w_block_max_steps_vs_ort=float(np.abs(y - ref).max() / float(inits[dq.input[1]])))
    return {k: float(v) for k, v in out.items()}


def markdown(fig: dict[str, float]) -> str:
    """The docs table of these figures."""
    rows = [("depthwise 3x3, 64 ch, stride 2: crossbar tiles", fig["depthwise64_xbar_tiles"],
             fig["depthwise64_xbar_tiles_dense"]),
            ("depthwise 3x3, 64 ch, stride 2: tile cycles per image", fig["depthwise64_cycles"],
             fig["depthwise64_cycles_dense"])]
    lines = ["| layer | block-diagonal (grouped) | dense expansion (baseline) |", "|---|---|---|"]
    lines += [f"| {a} | {b:.0f} | {c:.0f} |" for a, b, c in rows]
    lines += ["", "| separable block (64 ch) | uint8 weights (QUInt8) | int8 weights (QInt8) |", "|---|---|---|",
              f"| tile cycles per image | {fig['uint8w_block_cycles']:.0f} | {fig['int8w_block_cycles']:.0f} |",
              f"| host zero-point correction ops per image | {fig['uint8w_block_host_zp_ops']:.0f} | 0 |",
              f"| largest difference from onnxruntime (output steps) | {fig['uint8w_block_max_steps_vs_ort']:.0f} | |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/mapping.py` from the root
    from bench import area_main

    area_main(run, markdown, sys.argv)
