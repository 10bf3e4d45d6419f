"""A small vision transformer (ViT): patch-embedding convolution, a class token and learned position embeddings,
pre-norm encoder blocks (LayerNorm, multi-head self-attention, LayerNorm, an MLP with GELU), a final LayerNorm
and a linear head on the class token.

Built like :mod:`cimtile.zoo.mnist_nets`' networks from a layer factory (``conv``, ``fc``, ``inq``), so the float
network and its brevitas twin (:func:`cimtile.search.qat.build`) share parameter names and the mixed-precision
search can treat it as any other model: its weight layers, in policy order, are the patch embedding, then per
block the qkv, output-projection and two MLP linears, then the head. :func:`vit_b32` is the ViT-B/32 shape
(224x224 RGB, 32x32 patches, width 768, 12 blocks of 12 heads, MLP 3072) that CIM-AQ evaluates.

The compiler runs the weight layers on the tile; LayerNorm, Softmax, GELU, the attention's two activation x
activation products, the class token's Expand/Concat and the reshapes of a dynamic batch run on the host.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["ViTConfig", "DIGITS_VIT", "vit_b32", "vit_net", "weight_layers", "export_onnx", "export_qcdq", "pretrained",
           "quantize_weight_layers"]


@dataclass(frozen=True)
class ViTConfig:
    """The shape of a ViT: input ``channels`` x ``size`` x ``size`` cut into ``patch`` x ``patch`` patches."""

    size: int
    patch: int
    dim: int
    depth: int
    heads: int
    mlp: int
    channels: int = 1
    classes: int = 10

    def __post_init__(self):
        if self.size % self.patch or self.dim % self.heads:
            raise ValueError(f"ViT {self}: size must be a multiple of patch and dim of heads")

    @property
    def tokens(self) -> int:
        """Tokens per image: the patches and the class token."""
        return (self.size // self.patch) ** 2 + 1

    def spec(self) -> tuple:
        """The layer-list entry of :mod:`cimtile.zoo.mnist_nets` (``("vit", config fields...)``)."""
        return ("vit", *asdict(self).values())

    @classmethod
    def from_spec(cls, s: tuple) -> ViTConfig:
        return cls(*s[1:])


#: The ViT the zoo trains on digits (8x8 images, 2x2 patches: 16 patches and a class token).
DIGITS_VIT = ViTConfig(size=8, patch=2, dim=32, depth=2, heads=4, mlp=64)


def vit_b32(classes: int = 1000) -> ViTConfig:
    """ViT-B/32: 224x224 RGB, 32x32 patches (50 tokens), width 768, 12 blocks of 12 heads, MLP 3072."""
    return ViTConfig(size=224, patch=32, dim=768, depth=12, heads=12, mlp=3072, channels=3, classes=classes)


def weight_layers(cfg: ViTConfig) -> int:
    """Weight layers (the search policy's length): patch embedding, 4 per block, the head."""
    return 2 + 4 * cfg.depth


class _Float:
    def conv(self, cin, cout, k, stride, pad, w):
        from torch import nn

        return nn.Conv2d(cin, cout, k, stride=stride, padding=pad)

    def fc(self, nin, nout, w):
        from torch import nn

        return nn.Linear(nin, nout)

    def inq(self, a, signed: bool = False):
        from torch import nn

        return nn.Identity()


def vit_net(cfg: ViTConfig, factory=None, policy=None, seed: int = 0):
    """The ViT as a torch module (float by default; ``factory``/``policy`` as :func:`mnist_nets.torch_net`)."""
    import torch
    from torch import nn

    fac = factory or _Float()
    n = weight_layers(cfg)
    pol = policy or [(8, 8)] * n
    D, H = cfg.dim, cfg.heads
    hd = D // H
    T = cfg.tokens

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers, self.inq = nn.ModuleList(), nn.ModuleList()

            def add(kind, *args):
                w, a = pol[len(self.layers)]
                # the image is non-negative; every other weight layer's input (LayerNorm, attention, GELU
                # outputs) is signed
                self.inq.append(fac.inq(a, signed=bool(self.layers)))
                self.layers.append(fac.conv(*args, w) if kind == "conv" else fac.fc(*args, w))

            add("conv", cfg.channels, D, cfg.patch, cfg.patch, 0)
            for _ in range(cfg.depth):
                add("fc", D, 3 * D)
                add("fc", D, D)
                add("fc", D, cfg.mlp)
                add("fc", cfg.mlp, D)
            add("fc", D, cfg.classes)
            self.norms = nn.ModuleList([nn.LayerNorm(D) for _ in range(2 * cfg.depth + 1)])
            self.cls = nn.Parameter(torch.zeros(1, 1, D))
            self.vit_config = cfg  # (a plain attribute: not a parameter) what exporters need to know
            self.pos = nn.Parameter(torch.randn(1, T, D) * 0.02)

        def _apply(self, k, x):
            return self.layers[k](self.inq[k](x))

        def forward(self, x):
            B = x.shape[0]  # the batch stays dynamic: exporters write Shape/Gather/Concat for it
            h = self._apply(0, x).flatten(2).transpose(1, 2)  # (B, patches, D)
            h = torch.cat([self.cls.expand(B, -1, -1), h], dim=1) + self.pos
            k = 1
            for b in range(cfg.depth):
                a = self.norms[2 * b](h)
                qkv = self._apply(k, a).reshape(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)
                q, kk, v = qkv[0], qkv[1], qkv[2]
                att = torch.softmax((q @ kk.transpose(-2, -1)) * (hd ** -0.5), dim=-1)
                o = (att @ v).transpose(1, 2).reshape(B, T, D)
                h = h + self._apply(k + 1, o)
                m = nn.functional.gelu(self._apply(k + 2, self.norms[2 * b + 1](h)))
                h = h + self._apply(k + 3, m)
                k += 4
            return self._apply(k, self.norms[-1](h)[:, 0])

    torch.manual_seed(seed)
    return ViT()


def export_onnx(net, cfg: ViTConfig, path, opset: int = 17, dynamo: bool = False, x: np.ndarray | None = None):
    """The float ONNX graph of a ViT with a dynamic batch: torch's TorchScript exporter (``dynamo=False``) or its
    default dynamo exporter (``dynamo=True``, opset 18 or later)."""
    import warnings

    import torch

    x = torch.zeros(2, cfg.channels, cfg.size, cfg.size) if x is None else torch.from_numpy(x[:2])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporters' notes about their own internals
        if dynamo:
            torch.onnx.export(net.eval(), (x,), str(path), dynamo=True, opset_version=opset,
                              input_names=["x"], output_names=["y"],
                              dynamic_shapes={"x": {0: torch.export.Dim("N")}}, verbose=False)
        else:
            torch.onnx.export(net.eval(), (x,), str(path), dynamo=False, opset_version=opset,
                              input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


def export_qcdq(qnet, cfg: ViTConfig, path, x: np.ndarray) -> None:
    """brevitas' QCDQ export of the ViT's quantised twin (:func:`cimtile.search.qat.build`) with a dynamic batch:
    through torch's TorchScript exporter (opset 17), whose trace keeps the batch's shape arithmetic (Shape,
    Gather, Concat feeding Reshape and Expand) where the dynamo exporter would fix the traced batch size."""
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        from brevitas.export import export_onnx_qcdq

        export_onnx_qcdq(qnet.eval(), args=torch.from_numpy(np.ascontiguousarray(x[:2])), export_path=str(path),
                         opset_version=17, dynamo=False, input_names=["x"], output_names=["y"],
                         dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


def pretrained(data: str = "digits", epochs: int = 16, seed: int = 0):
    """The zoo's ViT trained on ``data`` through :func:`cimtile.zoo.fit` (via
    :func:`cimtile.zoo.mnist_nets.pretrained`: cached under ``build/zoo``), on one thread (a small network: more
    threads only contend); returns (net, config)."""
    import torch

    from . import mnist_nets

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net, spec = mnist_nets.pretrained("vit", data, epochs=epochs, seed=seed)
    finally:
        torch.set_num_threads(threads)
    return net, ViTConfig.from_spec(spec[0])


def quantize_weight_layers(model, x: np.ndarray):
    """A plain QDQ quantization for large models, where onnxruntime's quantizer takes minutes: every Conv,
    MatMul and Gemm with a float constant weight gets int8 symmetric per-output-channel weight codes
    (DequantizeLinear) and an int8 symmetric per-tensor QuantizeLinear/DequantizeLinear on its input, scaled to
    the input's largest magnitude on ``x`` (one onnxruntime run of the float model). Everything else stays float:
    the host runs it. Returns the quantized ModelProto."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    layers = [n for n in g.node if n.op_type in ("Conv", "MatMul", "Gemm") and n.input[1] in inits]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for n in layers:
        if n.input[0] not in have:
            probe.graph.output.append(helper.make_tensor_value_info(n.input[0], onnx.TensorProto.FLOAT, None))
            have.add(n.input[0])
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    vals = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    new_inits = []
    for n in layers:
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        trans_b = n.op_type == "Gemm" and any(a.name == "transB" and a.i for a in n.attribute)
        axis = 0 if n.op_type == "Conv" or trans_b else 1
        red = tuple(i for i in range(w.ndim) if i != axis)
        s = np.maximum(np.abs(w).max(axis=red), 1e-12) / 127
        shape = [1] * w.ndim
        shape[axis] = -1
        codes = np.clip(np.rint(w / s.reshape(shape)), -127, 127).astype(np.int8)
        base = n.name or n.output[0]
        new_inits += [numpy_helper.from_array(codes, f"{base}.wq"), numpy_helper.from_array(s.astype(np.float32),
                                                                                            f"{base}.ws"),
                      numpy_helper.from_array(np.zeros(len(s), np.int8), f"{base}.wz")]
        g.node.append(helper.make_node("DequantizeLinear", [f"{base}.wq", f"{base}.ws", f"{base}.wz"],
                                       [f"{base}.wdq"], axis=axis))
        amax = max(float(np.abs(vals[n.input[0]]).max()), 1e-6)
        new_inits += [numpy_helper.from_array(np.float32(amax / 127), f"{base}.xs"),
                      numpy_helper.from_array(np.int8(0), f"{base}.xz")]
        g.node.append(helper.make_node("QuantizeLinear", [n.input[0], f"{base}.xs", f"{base}.xz"], [f"{base}.xq"]))
        g.node.append(helper.make_node("DequantizeLinear", [f"{base}.xq", f"{base}.xs", f"{base}.xz"],
                                       [f"{base}.xdq"]))
        n.input[0], n.input[1] = f"{base}.xdq", f"{base}.wdq"
    g.initializer.extend(new_inits)
    used = {i for node in g.node for i in node.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    # topological order: the new Q/DQ nodes were appended at the end
    from cimtile.compiler.frontend import sort_nodes

    if not sort_nodes(g):
        raise ValueError("graph has a cycle")
    return m
