"""Small sequential vision networks for the search (LeNet-5-style CNN, VGG-style CNN of 6 conv layers), described
as layer lists so that the float network (torch) and its quantised twin (brevitas, :mod:`cimtile.search.qat`) are
built from one description. Trained once per (model, data set, seed) and cached under ``build/zoo/``.
"""

from __future__ import annotations

import numpy as np

from cimtile.paths import build_dir

from .data import digits, mnist

__all__ = ["MODELS", "layers", "load_data", "pretrained", "torch_net"]

MODELS = ("lenet", "vgg")


def load_data(name: str):
    """(x_train, y_train, x_test, y_test) of ``digits`` (8x8) or ``mnist`` (28x28, the fixed 4,000/1,000 split)."""
    if name == "digits":
        return digits()
    if name == "mnist":
        return mnist()
    raise ValueError(f"data set {name!r}: expected digits or mnist")


def layers(model: str, size: int) -> list[tuple]:
    """The layer list: ``("conv", cin, cout, k, pad)``, ``("pool",)`` (2x2 max), ``("fc", n_in, n_out)``.

    Every conv and fc but the last is followed by ReLU (and the next layer's input quantiser)."""
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
    raise ValueError(f"model {model!r}: expected one of {', '.join(MODELS)}")


def torch_net(spec: list[tuple]):
    """The float torch network of a layer list."""
    import torch
    from torch import nn

    mods = []
    n_w = sum(1 for s in spec if s[0] != "pool")
    k = 0
    for s in spec:
        if s[0] == "conv":
            mods.append(nn.Conv2d(s[1], s[2], s[3], padding=s[4]))
        elif s[0] == "fc":
            if not any(isinstance(m, nn.Flatten) for m in mods):
                mods.append(nn.Flatten())
            mods.append(nn.Linear(s[1], s[2]))
        else:
            mods.append(nn.MaxPool2d(2))
            continue
        k += 1
        if k < n_w:
            mods.append(nn.ReLU())
    torch.manual_seed(0)
    return nn.Sequential(*mods)


def pretrained(model: str, data: str, epochs: int = 8, seed: int = 0, progress: bool | None = None):
    """The float network trained on ``data`` (cached state dict under ``build/zoo``); returns (net, spec)."""
    import torch
    from tqdm import tqdm

    xtr, ytr, _, _ = load_data(data)
    spec = layers(model, xtr.shape[-1])
    net = torch_net(spec)
    path = build_dir("zoo", f"{model}_{data}_s{seed}_e{epochs}.pt")
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval(), spec
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    X, Y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    g = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc=f"train {model} on {data}", unit="epoch", leave=False,
                  disable=None if progress is None else not progress):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(X[b]), Y[b]).backward()
            opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(net.state_dict(), tmp)
    tmp.replace(path)
    return net.eval(), spec


def accuracy(net, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    import torch

    with torch.no_grad():
        return float((net(torch.from_numpy(x)).argmax(1).numpy() == y).mean() * 100)
