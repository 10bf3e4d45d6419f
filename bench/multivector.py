"""The multi-vector MVM and REQ (issue 14; docs/isa.md ``count``) in compiled models, against the loop form in the
same run (``isaac`` preset, golden model).

The compiler emits a chunk's positions as one ``MVM count=P`` (and ``REQ count=P``); the baseline compiles the same
model with :data:`cimtile.compiler.codegen.MULTI_VECTOR` off: a ``LOOP count=P`` of single MVMs (REQs), the program
shape of the ISA before ``count``, which pays every vector's issue and drain cycles. Both bundles run one image on
the golden model: the outputs are equal and each run's cycles equal its report's.

Models: ResNet-18 (:func:`bench.compiler.resnet18_qdq`, 224x224, random weights) and the MobileNet-style block
:func:`cimtile.zoo.mobilenet.separable_block` quantized by onnxruntime (per-channel int8). Figures per model
(``resnet18_``, ``mobilenet_block_``): ``cycles`` / ``cycles_loop`` (tile cycles per image, weight programming
included), ``compute_cycles`` / ``compute_cycles_loop`` (without it), ``compute_adc_util`` /
``compute_adc_util_loop`` (ADC conversion cycles over compute cycles x ADCs) and ``words`` / ``words_loop``
(microcode words); ``resnet18_compute_saved`` is the fraction of compute cycles the multi-vector form saves.

``python -m bench multivector --markdown`` (or ``python bench/multivector.py --markdown``) prints the table of
docs/compiler.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

GOALS = {"resnet18_compute_saved": "> 0", "mobilenet_block_compute_saved": "> 0"}

MODELS = ("resnet18", "mobilenet_block")


def _models(d: Path) -> dict:
    import onnx
    from cimtile.zoo.digits import ort_quantize
    from cimtile.zoo.mobilenet import separable_block

    from bench.compiler import resnet18_qdq

    src = d / "resnet18.onnx"
    onnx.save(resnet18_qdq(), src)
    r = np.random.default_rng(64)
    block = ort_quantize(separable_block(channels=64), r.random((64, 8, 12, 12)).astype(np.float32),
                         d / "block.onnx", per_channel=True)
    rng = np.random.default_rng(1)
    return {"resnet18": (src, rng.random((1, 3, 224, 224)).astype(np.float32)),
            "mobilenet_block": (block, rng.random((1, 8, 12, 12)).astype(np.float32))}


def _figures(b, x) -> tuple[dict, np.ndarray]:
    from cimtile import compiler

    y, st = compiler.run(b, x, stats=True, progress=False)
    t = b.report["totals"]
    assert st.cycles == t["cycles"], (st.cycles, t["cycles"])  # the golden model counts the report's cycles
    cfg = b.report["tile_config"]
    util = t["adc_conversions"] * cfg["adc_cycles"] / (t["compute_cycles"] * cfg["n_adcs"])
    return {"cycles": t["cycles"], "compute_cycles": t["compute_cycles"], "compute_adc_util": util,
            "words": t["words"]}, y


def run() -> dict[str, float]:
    from cimtile.compiler import codegen

    from cimtile import compiler

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        for name, (model, x) in _models(Path(d)).items():
            got = {}
            for multi in (True, False):
                codegen.MULTI_VECTOR = multi
                try:
                    b = compiler.compile_model(model, "isaac")
                finally:
                    codegen.MULTI_VECTOR = True
                got[multi] = _figures(b, x)
            assert np.array_equal(got[True][1], got[False][1]), name  # the same function
            for k, v in got[True][0].items():
                out[f"{name}_{k}"] = float(v)
                out[f"{name}_{k}_loop"] = float(got[False][0][k])
            out[f"{name}_compute_saved"] = 1 - got[True][0]["compute_cycles"] / got[False][0]["compute_cycles"]
            print(f"{name}: compute cycles {got[False][0]['compute_cycles']} (loop form) -> "
                  f"{got[True][0]['compute_cycles']} (multi-vector)")
    return out


def markdown(fig: dict[str, float]) -> str:
    """The table of docs/compiler.md: per model, the loop form and the multi-vector form side by side."""
    lines = ["| model | form | cycles / image | compute cycles | ADC util. of compute | program words |",
             "|---|---|---|---|---|---|"]
    for name in MODELS:
        for form, sfx in (("LOOP of single MVMs / REQs", "_loop"), ("multi-vector MVM / REQ", "")):
            f = {k: fig[f"{name}_{k}{sfx}"] for k in ("cycles", "compute_cycles", "compute_adc_util", "words")}
            lines.append(f"| {name} | {form} | {f['cycles']:.0f} | {f['compute_cycles']:.0f} "
                         f"| {100 * f['compute_adc_util']:.1f}% | {f['words']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import area_main

    area_main(run, markdown, sys.argv)
