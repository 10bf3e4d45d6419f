"""Small vision networks for the search (LeNet-5-style CNN, VGG-style CNN of 6 conv layers, small ResNet), described
as layer lists so that the float network (torch) and its quantised twin (brevitas, :mod:`cimtile.search.qat`) are
built from one description. Trained once per (model, data set, seed) and cached under ``build/zoo/``.
"""

from __future__ import annotations

import os

import numpy as np

from cimtile.paths import build_dir

from .data import digits, mnist
from .fit import fit

__all__ = ["MODELS", "accuracy", "layers", "load_data", "pretrained", "splits", "torch_net", "weight_layers"]

MODELS = ("lenet", "vgg", "resnet", "vit")


def load_data(name: str):
    """(x_train, y_train, x_test, y_test) of ``digits`` (8x8) or ``mnist`` (28x28, the fixed 4,000/1,000 split)."""
    if name == "digits":
        return digits()
    if name == "mnist":
        return mnist()
    raise ValueError(f"data set {name!r}: expected digits or mnist")


def splits(name: str):
    """(x_fit, y_fit, x_val, y_val, x_test, y_test): the training split cut into a fitting part and a validation
    part (its last quarter), which pre-training and fine-tuning never see, so a search can rank on it."""
    xtr, ytr, xte, yte = load_data(name)
    nval = len(xtr) // 4
    return xtr[:-nval], ytr[:-nval], xtr[-nval:], ytr[-nval:], xte, yte


def layers(model: str, size: int) -> list[tuple]:
    """The layer list: ``("conv", cin, cout, k, pad)``, ``("pool",)`` (2x2 max), ``("block", cin, cout, stride)``
    (a residual block: two 3x3 convolutions and a shortcut, a 1x1 convolution when the shape changes),
    ``("gap",)`` (global average pooling), ``("fc", n_in, n_out)``.

    Every weight layer but the last is followed by ReLU; in the quantised twin each weight layer has its own input
    quantiser (its activation bits)."""
    if model == "lenet":
        if size >= 28:  # the classic: 5x5 convolutions, 28 -> 14 -> 10 -> 5
            return [("conv", 1, 6, 5, 2), ("pool",), ("conv", 6, 16, 5, 0), ("pool",),
                    ("fc", 16 * 5 * 5, 120), ("fc", 120, 84), ("fc", 84, 10)]
        return [("conv", 1, 6, 3, 1), ("pool",), ("conv", 6, 16, 3, 1), ("pool",),
                ("fc", 16 * (size // 4) ** 2, 120), ("fc", 120, 84), ("fc", 84, 10)]
    if model == "vgg":
        w = (16, 16, 32, 32, 64, 64)
        out, cin, s = [], 1, size
        for i, c in enumerate(w):
            out.append(("conv", cin, c, 3, 1))
            cin = c
            if i % 2 == 1 and s >= 2:
                out.append(("pool",))
                s //= 2
        return out + [("fc", cin * s * s, 64), ("fc", 64, 10)]
    if model == "resnet":
        return [("conv", 1, 16, 3, 1), ("block", 16, 16, 1), ("block", 16, 32, 2), ("block", 32, 64, 2), ("gap",),
                ("fc", 64, 10)]
    if model == "vit":  # one entry: the whole transformer (cimtile.zoo.vit), 2x2 patches on digits, 4x4 on MNIST
        from .vit import DIGITS_VIT, ViTConfig

        return [DIGITS_VIT.spec() if size == 8 else ViTConfig(size=size, patch=4, dim=48, depth=2, heads=4,
                                                                mlp=96).spec()]
    raise ValueError(f"model {model!r}: expected one of {', '.join(MODELS)}")


def weight_layers(spec: list[tuple]) -> int:
    """Conv and fc layers of a layer list (the policy's length)."""
    if spec and spec[0][0] == "vit":
        from .vit import ViTConfig
        from .vit import weight_layers as vit_layers

        return vit_layers(ViTConfig.from_spec(spec[0]))
    return sum({"conv": 1, "fc": 1, "block": 3 if _has_down(s) else 2}.get(s[0], 0) for s in spec)


def _has_down(s) -> bool:
    return s[0] == "block" and (s[1] != s[2] or s[3] != 1)


class _Float:
    """Layer factory of the float network."""

    def conv(self, cin, cout, k, stride, pad, w):
        from torch import nn

        return nn.Conv2d(cin, cout, k, stride=stride, padding=pad)

    def fc(self, nin, nout, w):
        from torch import nn

        return nn.Linear(nin, nout)

    def inq(self, a):
        from torch import nn

        return nn.Identity()


def torch_net(spec: list[tuple], factory=None, policy=None):
    """The network of a layer list: float by default; ``factory`` (with ``conv``, ``fc``, ``inq``) and ``policy``
    (``[(w, a)]`` per weight layer) build the quantised twin (:func:`cimtile.search.qat.build`). Parameter names
    are the same in both, so the float weights load into the twin."""
    import torch
    from torch import nn

    if spec and spec[0][0] == "vit":
        from .vit import ViTConfig, vit_net

        return vit_net(ViTConfig.from_spec(spec[0]), factory, policy)
    fac = factory or _Float()
    n = weight_layers(spec)
    pol = policy or [(8, 8)] * n

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers, self.inq = nn.ModuleList(), nn.ModuleList()

            def add(kind, *args):
                w, a = pol[len(self.layers)]
                self.inq.append(fac.inq(a))
                self.layers.append(fac.conv(*args, w) if kind == "conv" else fac.fc(*args, w))

            for s in spec:
                if s[0] == "conv":
                    add("conv", s[1], s[2], s[3], 1, s[4])
                elif s[0] == "fc":
                    add("fc", s[1], s[2])
                elif s[0] == "block":
                    add("conv", s[1], s[2], 3, s[3], 1)
                    add("conv", s[2], s[2], 3, 1, 1)
                    if _has_down(s):
                        add("conv", s[1], s[2], 1, s[3], 0)

        def _apply(self, k, x, relu=True):
            y = self.layers[k](self.inq[k](x))
            return torch.relu(y) if relu and k < n - 1 else y

        def forward(self, x):
            k = 0
            flat = False
            for s in spec:
                if s[0] == "pool":
                    x = nn.functional.max_pool2d(x, 2)
                elif s[0] == "gap":
                    x = nn.functional.avg_pool2d(x, int(x.shape[-1]))  # exports as AveragePool (the host runs it)
                elif s[0] == "conv":
                    x = self._apply(k, x)
                    k += 1
                elif s[0] == "fc":
                    if not flat:
                        x, flat = torch.flatten(x, 1), True
                    x = self._apply(k, x)
                    k += 1
                else:  # residual block: the shortcut's layer comes last in the policy and in the graph
                    h = self._apply(k + 1, self._apply(k, x), relu=False)
                    sc = self._apply(k + 2, x, relu=False) if _has_down(s) else x
                    x = torch.relu(h + sc)
                    k += 3 if _has_down(s) else 2
            return x

    torch.manual_seed(0)
    return Net()


def pretrained(model: str, data: str, epochs: int = 8, seed: int = 0, progress: bool | None = None):
    """The float network trained on the fitting part of ``data`` (:func:`splits`; cached state dict under
    ``build/zoo``); returns (net, spec)."""
    import torch


    xtr, ytr, _, _, _, _ = splits(data)
    spec = layers(model, xtr.shape[-1])
    net = torch_net(spec)
    path = build_dir("zoo", f"{model}_{data}_s{seed}_e{epochs}_v3.pt")
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval(), spec
    torch.manual_seed(seed)
    fit(net, xtr, ytr, epochs=epochs, lr=2e-3, seed=seed, desc=f"train {model} on {data}", progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")  # one per process: two searches may train the same model at once
    torch.save(net.state_dict(), tmp)
    tmp.replace(path)
    return net.eval(), spec


def accuracy(net, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    import torch

    with torch.no_grad():
        return float((net(torch.from_numpy(x)).argmax(1).numpy() == y).mean() * 100)
