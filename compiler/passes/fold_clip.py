"""Fold a Clip on codes (QCDQ's sub-8-bit range) into the clamp of the step that produced the codes."""

from __future__ import annotations

from ..ir import HostStep, Model, TileLayer


class FoldClip:
    def apply(self, model: Model) -> tuple[Model, bool]:
        changed = False
        for step in list(model.steps):
            if not (isinstance(step, HostStep) and step.op == "ClipCodes"):
                continue
            src = step.inputs[0]
            prod = model.producer(src)
            if src in model.outputs or len(model.consumers(src)) != 1:
                continue
            lo, hi = step.attrs["lo"], step.attrs["hi"]
            if isinstance(prod, TileLayer) and prod.out_spec is not None:
                prod.out_spec = prod.out_spec.narrowed(lo, hi)
                prod.output = step.outputs[0]
            elif isinstance(prod, HostStep) and prod.op == "Quantize":
                prod.attrs["spec"] = prod.attrs["spec"].narrowed(lo, hi)
                prod.outputs = [step.outputs[0]]
            else:
                continue
            model.steps.remove(step)
            model.tensors.pop(src, None)
            changed = True
        return model, changed
