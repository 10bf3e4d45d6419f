"""Feed a tile layer the integer codes behind its DequantizeLinear input (the zero point goes to the bias)."""

from __future__ import annotations

from ..ir import HostStep, Model


class FuseInputDequant:
    def apply(self, model: Model) -> tuple[Model, bool]:
        changed = False
        for layer in model.layers:
            if model.tensors[layer.input].kind != "float":
                continue
            dq = model.producer(layer.input)
            if not (isinstance(dq, HostStep) and dq.op == "Dequantize"):
                continue
            codes = dq.inputs[0]
            layer.in_spec = dq.attrs["spec"].with_range(model.tensors[codes].spec.lo, model.tensors[codes].spec.hi)
            old = layer.input
            layer.input = codes
            if not model.consumers(old) and old not in model.outputs:
                model.steps.remove(dq)
            changed = True
        return model, changed
