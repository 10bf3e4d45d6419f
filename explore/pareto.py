"""Pareto fronts and their hypervolume over one reference point.

Objectives are minimised: ``error = 100 - accuracy`` (points), and latency (cycles per image), energy (pJ per
image) and area (mm^2), the three costs on a log10 scale (they span orders of magnitude across tiles). Every
strategy's front is measured in one normalised box shared by all strategies of a run: each objective maps the
best value any strategy reached to 0 and the reference point to 1. The reference point is chance accuracy (10%)
and, for each cost, 1.1 times the worst value any strategy evaluated (on the log scale, 0.1 decades past it),
so every evaluated candidate lies inside the box. The hypervolume (exact, by slicing) is then a number in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["OBJECTIVES", "Box", "front", "hypervolume", "objectives"]

#: (record field, direction, log scale) of each objective.
OBJECTIVES = (("acc", "max", False), ("latency", "min", True), ("energy_pj", "min", True), ("area_mm2", "min", True))

CHANCE = 10.0


def objectives(rec: dict) -> list[float]:
    """A record's objective vector to minimise: error in points, log10 of each cost."""
    return [100.0 - rec["acc"]] + [math.log10(max(rec[k], 1e-30)) for k, _, _ in OBJECTIVES[1:]]


def front(records: list[dict]) -> list[dict]:
    """The records no other record dominates (ties: the first kept), in their order."""
    pts = [objectives(r) for r in records]
    keep = []
    for i, p in enumerate(pts):
        dom = False
        for j, q in enumerate(pts):
            if j != i and all(a <= b for a, b in zip(q, p)) and (any(a < b for a, b in zip(q, p)) or j < i):
                dom = True
                break
        if not dom:
            keep.append(records[i])
    return keep


class Box:
    """The normalised box of one run: ideal (0) and reference (1) per objective, from all records of all
    strategies."""

    def __init__(self, records: list[dict]):
        if not records:
            raise ValueError("no evaluated candidates")
        pts = np.array([objectives(r) for r in records])
        self.lo = pts.min(axis=0)
        hi = pts.max(axis=0)
        self.ref = np.concatenate([[100.0 - CHANCE], hi[1:] + math.log10(1.1)])
        self.ref[0] = max(self.ref[0], hi[0] + 1e-9)  # a candidate below chance still lies inside
        self.lo = np.minimum(self.lo, self.ref - 1e-9)

    def normalise(self, records: list[dict]) -> np.ndarray:
        pts = np.array([objectives(r) for r in records]).reshape(-1, len(OBJECTIVES))
        return (pts - self.lo) / (self.ref - self.lo)

    def to_json(self) -> dict:
        return {"ideal": self.lo.tolist(), "reference": self.ref.tolist(),
                "meaning": "error (points), log10 latency (cycles), log10 energy (pJ), log10 area (mm^2)"}


def _hv(points: np.ndarray) -> float:
    """Hypervolume dominated by ``points`` (minimisation) inside the unit box, reference at 1."""
    p = points[np.all(points < 1.0, axis=1)]
    if len(p) == 0:
        return 0.0
    if p.shape[1] == 1:
        return float(1.0 - p[:, 0].min())
    p = p[np.argsort(p[:, -1], kind="stable")]
    vol = 0.0
    for i in range(len(p)):
        top = p[i + 1, -1] if i + 1 < len(p) else 1.0
        depth = top - p[i, -1]
        if depth > 0:
            vol += depth * _hv(_nondominated(p[:i + 1, :-1]))
    return vol


def _nondominated(p: np.ndarray) -> np.ndarray:
    keep = []
    for i in range(len(p)):
        if not any(np.all(p[j] <= p[i]) and (np.any(p[j] < p[i]) or j < i) for j in range(len(p)) if j != i):
            keep.append(i)
    return p[keep]


def hypervolume(records: list[dict], box: Box) -> float:
    """Normalised hypervolume of ``records``' front in ``box`` (0: nothing better than the reference; 1: the
    ideal point)."""
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        return 0.0
    return _hv(_nondominated(box.normalise(front(ok))))
