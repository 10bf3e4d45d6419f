"""Independent oracles for quantized ONNX models that onnxruntime cannot run (QONNX ``Quant`` nodes)."""

from __future__ import annotations

import numpy as np
import onnx

__all__ = ["qonnx_reference"]


def qonnx_reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Independent oracle for QONNX models: onnx.reference with the QONNX ``Quant`` op written from its spec."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class Quant(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND"):
            b = int(bitwidth)
            if signed:
                lo, hi = -(2 ** (b - 1)) + int(narrow), 2 ** (b - 1) - 1
            else:
                lo, hi = 0, 2 ** b - 1 - int(narrow)
            q = np.clip(np.round(x / scale + zeropt), lo, hi)
            return (((q - zeropt) * scale).astype(x.dtype),)

    return ReferenceEvaluator(model, new_ops=[Quant]).run(None, {"x": x})[0]


# -- hand-built integer-op models --------------------------------------------------------------------
