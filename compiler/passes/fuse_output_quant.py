"""Requantise on the tile: a layer whose float output only feeds (Relu ->) QuantizeLinear writes codes."""

from __future__ import annotations

from ..ir import HostStep, Model


class FuseOutputQuant:
    def apply(self, model: Model) -> tuple[Model, bool]:
        changed = False
        for layer in model.layers:
            if layer.out_spec is not None or layer.out_dtype != "float32":
                continue
            chain, name, relu = [], layer.output, False
            while True:
                if name in model.outputs:
                    break
                users = model.consumers(name)
                if len(users) != 1 or not isinstance(users[0], HostStep):
                    break
                u = users[0]
                if u.op == "Relu" and not relu:
                    relu = True
                    chain.append(u)
                    name = u.outputs[0]
                    continue
                if u.op == "Quantize":
                    chain.append(u)
                break
            if not chain or chain[-1].op != "Quantize":
                continue
            q = chain[-1]
            layer.out_spec = q.attrs["spec"]
            layer.relu = relu
            for s in chain:
                model.steps.remove(s)
                for o in s.outputs:
                    if o != q.outputs[0]:
                        model.tensors.pop(o, None)
            model.tensors.pop(layer.output, None)
            layer.output = q.outputs[0]
            changed = True
        return model, changed
