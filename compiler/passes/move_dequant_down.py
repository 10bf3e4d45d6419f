"""Move a DequantizeLinear below a shape op (Flatten, Reshape, Transpose, MaxPool) that feeds a tile layer, so
the layer reads integer codes: these ops commute with a per-tensor dequantisation (MaxPool because
dequantising is monotonic for a positive scale)."""

from __future__ import annotations

from ..ir import HostStep, Model, Tensor, TileLayer

MOVABLE = ("Flatten", "Reshape", "Transpose", "MaxPool")


class MoveDequantDown:
    def apply(self, model: Model) -> tuple[Model, bool]:
        changed = False
        for s in list(model.steps):
            if not (isinstance(s, HostStep) and s.op in MOVABLE):
                continue
            out = s.outputs[0]
            users = model.consumers(out)
            if not users or out in model.outputs or not all(isinstance(u, TileLayer) for u in users):
                continue
            dq = model.producer(s.inputs[0])
            if not (isinstance(dq, HostStep) and dq.op == "Dequantize"):
                continue
            codes = dq.inputs[0]
            t_codes, t_out = model.tensors[codes], model.tensors[out]
            new = out + "::codes"
            model.tensors[new] = Tensor(new, "codes", t_out.shape, t_codes.spec, t_codes.dtype)
            s.inputs = [codes] + s.inputs[1:]
            s.outputs = [new]
            i = model.steps.index(s)
            model.steps.insert(i + 1, HostStep(s.name + "::dq", "Dequantize", [new], [out], dict(dq.attrs)))
            old = dq.outputs[0]
            if not model.consumers(old) and old not in model.outputs:
                model.steps.remove(dq)
            changed = True
        return model, changed
