"""Requantise on the tile: a layer whose float output only feeds (Relu ->) (Clip ->) QuantizeLinear writes codes.

A float Clip with constant bounds (ReLU6 as exporters write it) before the quantizer folds into the clamp exactly:
quantisation is monotone, so ``Q(clip(x, a, b)) = clip(Q(x), Q(a), Q(b))`` (Q computed as the host computes it).
"""

from __future__ import annotations

import numpy as np

from ..ir import HostStep, Model


def _q(v: float, spec) -> int:
    """``QuantizeLinear`` of one value, as the host op computes it (float32, round half to even, saturated)."""
    q = np.rint(np.float32(v) / np.float32(spec.scale)) + int(spec.zero_point)
    return int(np.clip(q, spec.lo, spec.hi))


class FuseOutputQuant:
    def apply(self, model: Model) -> tuple[Model, bool]:
        changed = False
        for layer in model.layers:
            if layer.out_spec is not None or layer.out_dtype != "float32":
                continue
            chain, name, relu, clip = [], layer.output, False, None
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
                if u.op == "Clip" and clip is None:
                    clip = (u.attrs.get("lo"), u.attrs.get("hi"))
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
            if clip is not None:
                spec = layer.out_spec
                layer.out_spec = spec.narrowed(spec.lo if clip[0] is None else _q(clip[0], spec),
                                               spec.hi if clip[1] is None else _q(clip[1], spec))
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
