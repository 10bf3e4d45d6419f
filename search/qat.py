"""Quantisation-aware training with brevitas at per-layer bit widths (float scales, as CIM-AQ uses), fine-tuning
from the float network, integer weights for the cost model, and QCDQ ONNX export for the compiler."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

__all__ = ["build", "finetune", "int_weights", "export_qcdq", "evaluate_acc"]


@contextlib.contextmanager
def _quiet():
    # brevitas and torch.export warn about their own internals (deprecations), not about this model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


class _Quant:
    """Layer factory of the quantised twin: brevitas layers with per-tensor float scales, narrow-range signed
    weights (what the tile stores) and unsigned activation quantisers (images in [0, 1], then ReLU outputs)."""

    def __init__(self):
        with _quiet():
            import brevitas.nn as qnn
            from brevitas.quant import Int8ActPerTensorFloat, Uint8ActPerTensorFloat
        self.qnn, self.act, self.sact = qnn, Uint8ActPerTensorFloat, Int8ActPerTensorFloat

    def conv(self, cin, cout, k, stride, pad, w):
        return self.qnn.QuantConv2d(cin, cout, k, stride=stride, padding=pad, weight_bit_width=w)

    def fc(self, nin, nout, w):
        return self.qnn.QuantLinear(nin, nout, bias=True, weight_bit_width=w)

    def inq(self, a, signed: bool = False):
        # signed: inputs that go negative (the ViT's LayerNorm, attention and GELU outputs)
        return self.qnn.QuantIdentity(act_quant=self.sact if signed else self.act, bit_width=a,
                                      return_quant_tensor=True)


def build(spec: list[tuple], policy, float_net=None):
    """The brevitas twin of a :mod:`cimtile.zoo.mnist_nets` layer list at ``policy`` ([(w, a)] per weight layer,
    ``a`` being the bits of the layer's input), initialised from ``float_net``'s weights."""
    from cimtile.zoo.mnist_nets import torch_net

    with _quiet():
        net = torch_net(spec, _Quant(), [tuple(p) for p in policy])
        if float_net is not None:
            missing, unexpected = net.load_state_dict(float_net.state_dict(), strict=False)
            if unexpected or any("quant" not in m for m in missing):  # pragma: no cover - a layer-list bug
                raise AssertionError(f"float and quantised networks differ: {unexpected or missing}")
    return net


def finetune(net, x: np.ndarray, y: np.ndarray, epochs: float, seed: int, lr: float = 1e-3):
    """Fine-tune (Adam, batch 64) for ``epochs`` passes (fractions allowed: that share of one shuffled pass)."""
    import torch

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    with _quiet():
        net.train()
        with torch.no_grad():  # calibrate the activation scales on one batch before training moves them
            net(X[:256])
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        steps = int(round(epochs * len(X) / 64))
        perm = torch.randperm(len(X), generator=g)
        for i in range(steps):
            j = (i * 64) % len(X)
            if j == 0 and i:
                perm = torch.randperm(len(X), generator=g)
            b = perm[j:j + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(X[b]), Y[b]).backward()
            opt.step()
        net.eval()
    return net


def evaluate_acc(net, x: np.ndarray, y: np.ndarray) -> float:
    """Fake-quantised torch accuracy in percent."""
    import torch

    with _quiet(), torch.no_grad():
        return float((net(torch.from_numpy(x)).argmax(1).numpy() == y).mean() * 100)


def int_weights(net) -> list[np.ndarray]:
    """Integer weights of each conv/fc layer as the tile stores them: (K, N) in im2col order."""
    import torch

    with _quiet():
        import brevitas.nn as qnn

        out = []
        with torch.no_grad():
            for m in net.layers:
                if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear)):
                    q = m.quant_weight()
                    codes = torch.round(q.value / q.scale).to(torch.int64).numpy()
                    out.append(codes.reshape(codes.shape[0], -1).T.astype(np.int32).copy())
    return out


def export_qcdq(net, x: np.ndarray, path, dynamo: bool = False) -> None:
    """QCDQ ONNX (QuantizeLinear -> Clip -> DequantizeLinear) by brevitas' exporter: torch's TorchScript exporter (the
    default, for the search and the explorer alike), or its dynamo exporter with ``dynamo=True``, about 10x slower on
    the small CNNs (4.6 s of a 6.1 s evaluation in the explorer's profile) for the same compiled bundle:
    tests/test_explore.py compiles both exports and compares their crossbar layers, cycles and golden outputs. The
    zoo's ViT always takes the TorchScript exporter (:func:`cimtile.zoo.vit.export_qcdq`)."""
    import torch

    if getattr(net, "vit_config", None) is not None:  # the zoo's ViT: its own export keeps the batch dynamic
        from cimtile.zoo.vit import export_qcdq as export_vit

        export_vit(net, net.vit_config, path, x)
        return

    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices: torch's, not this model's
        from brevitas.export import export_onnx_qcdq

        export_onnx_qcdq(net.eval(), args=torch.from_numpy(x[:1]), export_path=str(path), opset_version=18,
                         dynamo=dynamo)
    _dynamic_batch(path)


def _dynamic_batch(path) -> None:
    """The exporter traces one image and writes Flatten as Reshape to (1, n): make that (-1, n) and the graph's
    batch dimension symbolic, so the model takes any batch. The weights go inside the file (the exporter may have
    written them beside it), so a model is one file."""
    from pathlib import Path

    import onnx
    from onnx import numpy_helper

    shallow = onnx.load(str(path), load_external_data=False)
    beside = {Path(path).parent / e.value for t in shallow.graph.initializer for e in t.external_data
              if e.key == "location"} | {Path(str(path) + ".data")}  # torch's exporter writes one, unreferenced
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Reshape" and n.input[1] in inits:
            shape = numpy_helper.to_array(inits[n.input[1]]).copy()
            if shape.ndim == 1 and len(shape) == 2 and shape[0] == 1:
                shape[0] = -1
                inits[n.input[1]].CopyFrom(numpy_helper.from_array(shape, n.input[1]))
    for v in list(m.graph.input) + list(m.graph.output):
        d = v.type.tensor_type.shape.dim
        if len(d):
            d[0].dim_param = "N"
    onnx.save(m, str(path), save_as_external_data=False)
    for f in beside:
        f.unlink(missing_ok=True)
