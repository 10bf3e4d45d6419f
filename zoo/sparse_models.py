"""Small networks for sparse training on the tile, written as lists of layers whose matrix products a caller
supplies (float on the host, or the resident tile), so one definition serves every training method.

- ``cnn``: the ~1,000-weight CNN of the in-memory-sparsity chip demo (Ning et al., Nature Electronics
  2025): conv 3x3/2 (1->8), conv 3x3/2 (8->8), average pool to 2x2, fully connected (32->10): 968 weights.
- ``mlp``: inputs average-pooled to 11x11 (MNIST; digits stay 8x8), 121->64->10: its first layer needs
  121 rows x 128 columns with 3-bit signed weights, i.e. it fills the 128x128 ``isaac`` tile.
- ``micro``: inputs pooled to 4x4, 16->8->10 (208 weights): small enough for a training run replayed on
  the RTL of a 16x32 tile.

Every weight is a matrix ``(K inputs, N outputs)``; convolutions use im2col patches (``K = cin*9``).
Biases stay on the host (digital), as in the compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cimtile.errors import CimtileError

__all__ = ["MODELS", "SparseNet", "build"]


@dataclass(frozen=True)
class Conv:
    cin: int
    cout: int
    k: int = 3
    stride: int = 2
    pad: int = 1


@dataclass(frozen=True)
class Fc:
    fin: int
    fout: int


def _specs(name: str, side: int) -> list:
    if name == "cnn":
        return [Conv(1, 8), "relu", Conv(8, 8), "relu", ("pool", 2), "flatten", Fc(8 * 4, 10)]
    if name == "mlp":
        s = 11 if side > 11 else side
        return [("resize", s), "flatten", Fc(s * s, 64), "relu", Fc(64, 10)]
    if name == "micro":
        return [("resize", 4), "flatten", Fc(16, 8), "relu", Fc(8, 10)]
    raise KeyError(name)


MODELS = ("cnn", "mlp", "micro")


class SparseNet(torch.nn.Module):
    """Layers whose products go through ``mm(index, X2d) -> Y2d`` (without bias)."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.layers = [s for s in spec if isinstance(s, (Conv, Fc))]
        ws, bs = [], []
        for s in self.layers:
            K, N = (s.cin * s.k * s.k, s.cout) if isinstance(s, Conv) else (s.fin, s.fout)
            w = torch.empty(K, N)
            torch.nn.init.kaiming_uniform_(w.T, a=5 ** 0.5)
            ws.append(torch.nn.Parameter(w))
            bs.append(torch.nn.Parameter(torch.zeros(N)))
        self.weights = torch.nn.ParameterList(ws)
        self.biases = torch.nn.ParameterList(bs)

    @property
    def n_weights(self) -> int:
        return sum(int(w.numel()) for w in self.weights)

    def forward(self, x, mm: Callable, capture: list | None = None):
        li = 0
        for s in self.spec:
            if isinstance(s, Conv):
                B, _, H, W = x.shape
                p = F.unfold(x, s.k, padding=s.pad, stride=s.stride)  # (B, K, L)
                Ho, Wo = (H + 2 * s.pad - s.k) // s.stride + 1, (W + 2 * s.pad - s.k) // s.stride + 1
                X2 = p.transpose(1, 2).reshape(-1, p.shape[1])
                if capture is not None:
                    capture.append(X2)
                y = mm(li, X2) + self.biases[li]
                x = y.reshape(B, Ho * Wo, s.cout).transpose(1, 2).reshape(B, s.cout, Ho, Wo)
                li += 1
            elif isinstance(s, Fc):
                if capture is not None:
                    capture.append(x)
                x = mm(li, x) + self.biases[li]
                li += 1
            elif s == "relu":
                x = F.relu(x)
            elif s == "flatten":
                x = x.reshape(x.shape[0], -1)
            elif s[0] == "pool":
                x = F.adaptive_avg_pool2d(x, s[1])
            elif s[0] == "resize":
                if x.shape[-1] != s[1]:
                    x = F.adaptive_avg_pool2d(x, s[1])
        return x


def build(name: str, side: int, seed: int = 0) -> SparseNet:
    """A :class:`SparseNet` for ``side`` x ``side`` single-channel images (weights seeded by ``seed``)."""
    if name not in MODELS:
        raise CimtileError(f"model {name!r}: expected one of {', '.join(MODELS)}")
    torch.manual_seed(seed)
    return SparseNet(_specs(name, side))
