"""Check every tile layer before any work: quantised input, bit widths 2..8, per-tensor activations."""

from __future__ import annotations

from ..errors import node_error
from ..ir import Model


class CheckLayers:
    def apply(self, model: Model) -> tuple[Model, bool]:
        for L in model.layers:
            t = model.tensors[L.input]
            if t.kind != "codes" or L.in_spec is None:
                raise node_error(L.name, L.op, f"input {L.input!r} is not quantized (no QuantizeLinear/"
                                 "DequantizeLinear or Quant before it): the model is not quantized")
            for what, spec in (("activation", L.in_spec), ("weight", L.weight.spec), ("output", L.out_spec)):
                if spec is None:
                    continue
                if not 2 <= spec.bits <= 8:
                    raise node_error(L.name, L.op, f"{what} bit width {spec.bits} outside 2..8")
            if L.out_spec is not None and not L.out_spec.per_tensor:
                raise node_error(L.name, L.op, "per-channel output quantization is not supported")
        return model, False
