"""Update rules: how a desired weight change becomes what the tile applies.

All rules take ``D`` (K x N), the desired change of the logical integer weights of one step (in weight
units, float), and the per-weight ``mask`` (True = pruned), and return integer deltas.

- :func:`lsq_fit`: the row and column deltas ``r`` (K) and ``c`` (N) minimising
  ``sum over unmasked (i, j) of (r_i + c_j - D_ij)^2`` (the additive rank-one-sum fit); solved by
  alternating exact minimisation (each half-step is the closed-form minimiser of one side, so the
  error never grows), starting from zero.
- :func:`sign_pulses`: what simple analog hardware applies: each row and each column gets at most one
  pulse (+1, -1 or 0) whose sign is that of half the mean desired change of its unmasked weights,
  fired with probability ``min(1, |half mean|)`` (stochastic pulse, unbiased below one level).
- :func:`stochastic_round`: unbiased rounding to integers (used for every rule, so no rule gains from
  a different rounding).
"""

from __future__ import annotations

import numpy as np

__all__ = ["Carry", "fit_error", "lsq_fit", "sign_pulses", "stochastic_round"]


def stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``floor(x)`` plus 1 with probability ``x - floor(x)``."""
    x = np.asarray(x, dtype=np.float64)
    f = np.floor(x)
    return (f + (rng.random(x.shape) < (x - f))).astype(np.int64)


def lsq_fit(D: np.ndarray, mask: np.ndarray, iters: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Row and column deltas ``(r, c)`` of the least-squares additive fit of ``D`` over unmasked cells."""
    A = (~np.asarray(mask, dtype=bool)).astype(np.float64)
    D = np.asarray(D, dtype=np.float64) * A
    K, N = D.shape
    r, c = np.zeros(K), np.zeros(N)
    nr, nc = np.maximum(A.sum(axis=1), 1), np.maximum(A.sum(axis=0), 1)
    for _ in range(iters):
        r = (D.sum(axis=1) - A @ c) / nr
        c = (D.sum(axis=0) - A.T @ r) / nc
    return r, c


def fit_error(D: np.ndarray, mask: np.ndarray, r: np.ndarray, c: np.ndarray) -> float:
    """Relative squared error of an additive fit over unmasked cells (0 = exact, 1 = no better than zero)."""
    A = ~np.asarray(mask, dtype=bool)
    E = (r[:, None] + c[None, :] - D)[A]
    den = float((D[A] ** 2).sum())
    return float((E ** 2).sum()) / den if den else 0.0


def sign_pulses(D: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One stochastic +-1 pulse (or none) per row and per column, from half the mean desired change."""
    A = (~np.asarray(mask, dtype=bool)).astype(np.float64)
    D = np.asarray(D, dtype=np.float64) * A
    rm = 0.5 * D.sum(axis=1) / np.maximum(A.sum(axis=1), 1)
    cm = 0.5 * D.sum(axis=0) / np.maximum(A.sum(axis=0), 1)
    r = np.sign(rm) * (rng.random(rm.shape) < np.minimum(1.0, np.abs(rm)))
    c = np.sign(cm) * (rng.random(cm.shape) < np.minimum(1.0, np.abs(cm)))
    return r.astype(np.int64), c.astype(np.int64)


class Carry:
    """Row and column residual registers: deltas are emitted as integers, the remainders carried to the next
    step (error feedback). K + N numbers, no per-weight state, so the update stays index-free."""

    def __init__(self, K: int, N: int):
        self.r = np.zeros(K)
        self.c = np.zeros(N)

    def step(self, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.r += r
        self.c += c
        ri = np.clip(np.round(self.r), -128, 127).astype(np.int64)
        ci = np.clip(np.round(self.c), -128, 127).astype(np.int64)
        self.r -= ri
        self.c -= ci
        return ri, ci
