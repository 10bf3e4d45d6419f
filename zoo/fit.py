"""The one float training loop the zoo's models (and the benchmarks' small networks) are trained with."""

from __future__ import annotations

import numpy as np

__all__ = ["fit"]


def fit(net, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, seed: int, batch: int = 64,
        desc: str = "", progress: bool | None = False):
    """Train ``net`` (a torch module) on ``x``, ``y`` with Adam and cross-entropy for ``epochs`` epochs of
    shuffled mini-batches of ``batch`` (the shuffle seeded with ``seed``); returns ``net`` in eval mode.

    Seeding the network's initial weights is the caller's business (construct it after
    ``torch.manual_seed``); this function seeds only the data order, so it is reproducible either way.
    """
    import torch

    from cimtile.progress import bar

    opt = torch.optim.Adam(net.parameters(), lr=lr)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for _ in bar(range(epochs), desc=desc, unit="epoch", progress=progress):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), batch):
            b = perm[i:i + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(X[b]), Y[b]).backward()
            opt.step()
    return net.eval()
