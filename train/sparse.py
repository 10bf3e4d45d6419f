"""Index-free sparse training on the tile: the schedule of the in-memory-sparsity paper, four update methods.

Schedule (:class:`Schedule`): **pre-train** the float network on the host; program it onto one resident
tile per layer (weights quantised to the tile's integer weights); **prune** by magnitude to the target
sparsity with mask writes (MSET); **survive**: train with the method's updates only (for the VAU rules
no index is used); **regrow**: swap a fraction of the active weights, pruning the smallest-magnitude
active weights and unmasking the same number of pruned weights with the largest accumulated gradient
magnitude over the last survive epoch (so the sparsity stays at the target; regrown weights start at 0);
**train** again with the method's updates.

Methods (:data:`METHODS`), all on the same data order, schedule and learning rate:

- ``float``: float SGD on the host with the same masks (no tile);
- ``exact``: tile forward; the desired change of each integer weight is stochastically rounded and every
  changed cell is written (WSET): exact per-weight updates;
- ``vau-lsq``: tile forward; the least-squares additive fit of row and column deltas
  (:func:`cimtile.train.rules.lsq_fit`), stochastically rounded, applied with VAUR and VAUC (``diff``
  pair mode);
- ``vau-sign``: tile forward; one stochastic +-1 pulse per row and column
  (:func:`cimtile.train.rules.sign_pulses`), applied with VAUR and VAUC.

Forward through the tile: activations are quantised to ``abits`` unsigned integers with a per-layer scale
calibrated after pre-training; the tile's accumulators (ADC clipping and range shift included) times the
scales plus the host's bias give the layer output. Backward is float on the host (torch), with the tile's
output standing in for the float product (straight-through). Biases are float, updated on the host.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from cimtile.errors import CimtileError

from . import rules
from .resident import ResidentTile

__all__ = ["ALL_METHODS", "DIAGNOSTIC_METHODS", "METHODS", "Schedule", "SparseResult", "TrainError", "run",
           "run_method"]

METHODS = ("float", "exact", "vau-lsq", "vau-sign")
#: Methods run only when asked for: ``exact-fit`` writes the least-squares row+column fit that ``vau-lsq``
#: applies, but per cell (WSET, stochastically rounded per weight). It separates the fit's error from the
#: VAU's level steps (every weight of a row or column moving at once).
DIAGNOSTIC_METHODS = ("exact-fit",)
ALL_METHODS = METHODS + DIAGNOSTIC_METHODS


class TrainError(CimtileError, ValueError):
    """A training option is out of range (one-line message naming it)."""


@dataclass
class Schedule:
    """What to train, on what, and how long. Every field has a CLI option of ``cimtile train-sparse``."""

    model: str = "cnn"
    data: str = "digits"
    tile: str = "cimaq"
    wbits: int | None = None  # default: cell_bits + 1 (one weight slice, differential pair)
    abits: int = 4
    sparsity: float = 0.75
    pretrain_epochs: int = 4
    survive_epochs: int = 2
    regrow_fraction: float = 0.1
    train_epochs: int = 2
    lr: float = 0.05
    pretrain_lr: float = 0.1
    batch: int = 64
    seed: int = 0
    limit_train: int | None = None
    limit_test: int | None = None
    backend: str = "golden"
    # The fitted deltas are divided by this before rounding. A 'diff' VAU moves a weight by 1x-2x the
    # delta; damping to 1/3 trained better on MNIST than the nominal 1.5-2 (fewer over-corrections of the
    # weights the additive fit gets wrong).
    vau_gain: float = 3.0
    encoding: str = "canonical"  # how the VAU methods program weights: canonical | balanced
    adc_headroom: int = 0  # extra ADC range-shift bits over the programmed levels' worst case
    train_lr_scale: float = 1.0  # the train phase (after regrowth) uses lr * train_lr_scale
    # multi-slice weights (wbits > cell_bits + 1) under VAU: the host's carry (ResidentTile.carry: read the
    # levels, re-encode with signed digits, write back) after every ``carry_every`` VAU steps
    carry_every: int = 8
    # a DeviceModel preset, JSON file or dict (docs/devices.md): the golden tiles program and read with it
    device: str | dict | None = None

    def device_model(self):
        """The schedule's :class:`~cimtile.sim.device.DeviceModel`, or None for ideal tiles."""
        from cimtile.sim.device import DeviceModel, load_device

        dev = DeviceModel.from_dict(self.device) if isinstance(self.device, dict) else load_device(self.device)
        return None if dev is None or dev.off else dev

    def check(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise TrainError(f"sparsity = {self.sparsity}: expected 0 <= sparsity < 1")
        if not 0.0 <= self.regrow_fraction <= 1.0:
            raise TrainError(f"regrow_fraction = {self.regrow_fraction}: expected 0..1")
        for n in ("pretrain_epochs", "survive_epochs", "train_epochs"):
            if getattr(self, n) < 0:
                raise TrainError(f"{n} = {getattr(self, n)}: expected >= 0")
        if self.batch < 1 or self.lr <= 0 or self.pretrain_lr <= 0:
            raise TrainError("batch, lr and pretrain_lr must be positive")
        if not 1 <= self.abits <= 8:
            raise TrainError(f"abits = {self.abits}: expected 1..8")
        if self.data not in ("digits", "mnist"):
            raise TrainError(f"data {self.data!r}: expected digits or mnist")
        if self.encoding not in ("canonical", "balanced"):
            raise TrainError(f"encoding {self.encoding!r}: expected canonical or balanced")
        if self.carry_every < 1:
            raise TrainError(f"carry_every = {self.carry_every}: expected >= 1")
        if self.vau_gain <= 0 or self.train_lr_scale <= 0 or not 0 <= self.adc_headroom <= 15:
            raise TrainError("vau_gain and train_lr_scale must be positive, adc_headroom in 0..15")
        if self.device_model() is not None and self.backend != "golden":
            raise TrainError(f"backend {self.backend!r} with a device model: only the golden backend models devices")


@dataclass
class SparseResult:
    """One method's run: accuracy after every epoch (phase-labelled), cycles per operation kind, timing."""

    method: str
    sparsity: float
    epochs: list = field(default_factory=list)  # dicts: epoch, phase, acc, loss
    cycles: dict = field(default_factory=dict)  # op kind -> cycles (tile methods)
    calls: dict = field(default_factory=dict)
    steps: int = 0
    final_acc: float = 0.0
    seconds: float = 0.0
    fit_error: float | None = None  # mean relative error of the VAU fit (vau-lsq)
    measured_sparsity: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def update_cycles(self) -> int:
        return int(self.cycles.get("vau", 0) + self.cycles.get("wset", 0) + self.cycles.get("carry", 0))


def _torch():
    """torch, limited to one intra-op thread: on a shared 2-core machine its thread pool made im2col of small
    batches 300x slower (0.5 s instead of 1.5 ms per call)."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return torch


def load_data(s: Schedule):
    from cimtile.zoo import data

    xtr, ytr, xte, yte = data.mnist(s.seed) if s.data == "mnist" else data.digits(s.seed)
    if s.limit_train:
        xtr, ytr = xtr[:s.limit_train], ytr[:s.limit_train]
    if s.limit_test:
        xte, yte = xte[:s.limit_test], yte[:s.limit_test]
    return xtr, ytr, xte, yte


def _batches(n: int, batch: int, rng: np.random.Generator):
    idx = rng.permutation(n)
    return [idx[i:i + batch] for i in range(0, n, batch)]


def pretrain(s: Schedule, progress: Callable | None = None):
    """The float network after ``pretrain_epochs`` of SGD (with momentum) and its per-epoch test accuracy."""
    import torch.nn.functional as F
    from cimtile.zoo.sparse_models import build

    torch = _torch()

    xtr, ytr, xte, yte = load_data(s)
    net = build(s.model, xtr.shape[-1], s.seed)
    opt = torch.optim.SGD(net.parameters(), lr=s.pretrain_lr, momentum=0.9)
    rng = np.random.default_rng(s.seed)
    X, Y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    hist = []
    fmm = lambda i, x: x @ net.weights[i]
    for ep in range(s.pretrain_epochs):
        for b in _batches(len(X), s.batch, rng):
            loss = F.cross_entropy(net(X[b], fmm), Y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = float((net(torch.from_numpy(xte), fmm).argmax(1).numpy() == yte).mean())
        hist.append({"epoch": ep + 1, "phase": "pretrain", "acc": acc})
        if progress:
            progress()
    return net, hist


class _Method:
    """Weights, masks and forward products of one method (float on the host, or resident tiles)."""

    def __init__(self, name: str, net, s: Schedule, calib: list[float], rng: np.random.Generator):
        import torch
        from cimtile.hw.params import load_config

        self.name, self.s, self.rng = name, s, rng
        self.net = net
        self.cfg = load_config(s.tile)
        self.wbits = s.wbits or self.cfg.cell_bits + 1
        self.amax = (1 << s.abits) - 1
        self.ascale = [c / self.amax for c in calib]
        self.masks = [np.zeros(tuple(w.shape), dtype=bool) for w in net.weights]
        self.tiles: list[ResidentTile] = []
        self.wscale: list[float] = []
        self.fit_errors: list[float] = []
        self.carry = [rules.Carry(w.shape[0], w.shape[1]) for w in net.weights]
        self.vau_steps = 0
        if name != "float":
            from cimtile.hw import encoding

            _, wmax = encoding.weight_range(self.wbits, True)
            dev = s.device_model()
            for i, w in enumerate(net.weights):
                wf = w.detach().numpy().astype(np.float64)
                sc = float(np.abs(wf).max()) / wmax or 1.0
                # one physical array per layer: its own stuck cells and noise (seed + layer), the same for every
                # method (common random numbers)
                t = ResidentTile(self.cfg, s.backend, device=None if dev is None else dev.replace(seed=dev.seed + i))
                # Exact updates write canonical levels; VAU methods use the schedule's encoding.
                # Multi-slice weights under VAU start with signed digits (room both ways in every slice).
                balanced = name.startswith("vau") and s.encoding == "balanced"
                t.program(np.clip(np.round(wf / sc), -wmax, wmax).astype(np.int64), wbits=self.wbits,
                          abits=s.abits, balanced=balanced, adc_headroom=s.adc_headroom,
                          signed_digits=name.startswith("vau") and not balanced)
                self.tiles.append(t)
                self.wscale.append(sc)
        self.torch = torch

    # -- forward ------------------------------------------------------------------------------------

    def weights_int(self) -> list[np.ndarray]:
        return [t.read()[0] for t in self.tiles]

    def products(self, train: bool):
        """``mm(i, X)`` for the network, and the weight leaves whose gradients the step uses."""
        torch = self.torch
        if self.name == "float":
            leaves = [w for w in self.net.weights]
            masks = [torch.from_numpy(~m).float() for m in self.masks]
            return (lambda i, x: x @ (leaves[i] * masks[i])), leaves
        leaves = []
        for i, W in enumerate(self.weights_int()):
            leaves.append(torch.tensor(W * self.wscale[i], dtype=torch.float32, requires_grad=train))

        def mm(i, x):
            sa = self.ascale[i]
            xq = torch.clamp(torch.round(x / sa), 0, self.amax)
            xs = x + (xq * sa - x).detach()  # straight-through quantiser
            acc = self.tiles[i].forward(xq.detach().numpy().astype(np.int64))
            y_tile = torch.from_numpy(acc.astype(np.float32)) * (sa * self.wscale[i])
            y_float = xs @ leaves[i]
            return y_float + (y_tile - y_float).detach()

        return mm, leaves

    # -- update -------------------------------------------------------------------------------------

    def update(self, grads: list, lr: float) -> None:
        if self.name == "float":
            with self.torch.no_grad():
                for w, g, m in zip(self.net.weights, grads, self.masks):
                    w -= lr * g * self.torch.from_numpy(~m).float()
            return
        for i, (t, g) in enumerate(zip(self.tiles, grads)):
            D = -lr * g.numpy().astype(np.float64) / self.wscale[i]
            m = self.masks[i]
            if self.name in ("exact", "exact-fit"):
                if self.name == "exact-fit":
                    r, c = rules.lsq_fit(D, m)
                    D = r[:, None] + c[None, :]
                W = t.read()[0]
                lo, hi = t.weight_range
                new = np.clip(W + rules.stochastic_round(D, self.rng), lo, hi)
                t.write_weights(np.where(m, 0, new))
            elif self.name == "vau-lsq":
                r, c = rules.lsq_fit(D, m)
                self.fit_errors.append(rules.fit_error(D, m, r, c))
                # VAU 'diff' moves a weight through both cells of its pair: between 1x and 2x the delta.
                # The fractional part carries over in one register per row and per column (index-free).
                ri, ci = self.carry[i].step(r / self.s.vau_gain, c / self.s.vau_gain)
                t.vau(ri if ri.any() else None, ci if ci.any() else None)
            else:
                r, c = rules.sign_pulses(D, m, self.rng)
                t.vau(r if r.any() else None, c if c.any() else None)
        if self.name.startswith("vau") and self.tiles and self.tiles[0].slices > 1:
            # Slice cells saturate without carrying (docs/isa.md): the host carries every carry_every steps.
            self.vau_steps += 1
            if self.vau_steps % self.s.carry_every == 0:
                for t in self.tiles:
                    t.carry()

    # -- masks --------------------------------------------------------------------------------------

    def magnitudes(self) -> list[np.ndarray]:
        if self.name == "float":
            return [np.abs(w.detach().numpy()) for w in self.net.weights]
        # Integer magnitudes tie often: break ties by a fixed random order (no float shadow exists).
        return [np.abs(W) + 0.5 * self.rng.random(W.shape) for W in self.weights_int()]

    def set_masks(self, masks: list[np.ndarray]) -> None:
        self.masks = [m.copy() for m in masks]
        if self.name == "float":
            with self.torch.no_grad():
                for w, m in zip(self.net.weights, masks):
                    w[self.torch.from_numpy(m)] = 0.0
            return
        for t, m in zip(self.tiles, masks):
            old = t.read()[1]
            t.write_mask(m)
            # A regrown weight starts at 0: masked cells kept their old levels, so clear them (WSET,
            # indexed, as regrowth is allowed to be).
            t.zero(old & ~m)

    def cycles(self) -> tuple[dict, dict]:
        cyc, calls = {}, {}
        for t in self.tiles:
            for k, v in t.stats.cycles.items():
                cyc[k] = cyc.get(k, 0) + v
            for k, v in t.stats.calls.items():
                calls[k] = calls.get(k, 0) + v
        return cyc, calls

    def close(self) -> None:
        for t in self.tiles:
            t.close()


def _prune(mags: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """Per-layer magnitude pruning: the ``round(sparsity * size)`` smallest weights of each layer."""
    out = []
    for m in mags:
        k = int(round(sparsity * m.size))
        mask = np.zeros(m.size, dtype=bool)
        mask[np.argsort(m, axis=None, kind="stable")[:k]] = True
        out.append(mask.reshape(m.shape))
    return out


def _regrow(masks, mags, grad_mag, fraction: float) -> list[np.ndarray]:
    """Swap ``fraction`` of each layer's active weights: prune the smallest active, unmask the pruned with the
    largest accumulated gradient magnitude (the sparsity is unchanged)."""
    out = []
    for m, a, g in zip(masks, mags, grad_mag):
        active, pruned = np.flatnonzero(~m), np.flatnonzero(m)
        k = min(int(round(fraction * active.size)), pruned.size)
        new = m.copy().reshape(-1)
        if k:
            grow = pruned[np.argsort(-g.reshape(-1)[pruned], kind="stable")[:k]]
            drop = active[np.argsort(a.reshape(-1)[active], kind="stable")[:k]]
            new[grow] = False
            new[drop] = True
        out.append(new.reshape(m.shape))
    return out


def calibrate(net, xtr: np.ndarray, n: int = 512) -> list[float]:
    """Per-layer activation range (99.9th percentile of each layer's inputs over ``n`` training images)."""
    import torch

    cap: list = []
    with torch.no_grad():
        net(torch.from_numpy(xtr[:n]), lambda i, x: x @ net.weights[i], capture=cap)
    return [max(float(np.percentile(c.numpy(), 99.9)), 1e-6) for c in cap]


def run_method(name: str, s: Schedule, net, pre_hist: list, calib: list[float],
               progress: Callable | None = None) -> SparseResult:
    """Prune, survive, regrow and train one method from the pre-trained network ``net`` (deep-copied)."""
    import copy

    import torch.nn.functional as F

    torch = _torch()

    if name not in ALL_METHODS:
        raise TrainError(f"method {name!r}: expected one of {', '.join(ALL_METHODS)}")
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_data(s)
    net = copy.deepcopy(net)
    rng = np.random.default_rng(s.seed + 1)  # same data order and rounding stream for every method
    M = _Method(name, net, s, calib, np.random.default_rng(s.seed + 2))
    res = SparseResult(name, s.sparsity, epochs=[dict(e) for e in pre_hist])
    X, Y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    ep = len(pre_hist)

    def evaluate() -> float:
        mm, _ = M.products(train=False)
        correct = 0
        with torch.no_grad():
            for i in range(0, len(xte), 500):
                correct += int((net(torch.from_numpy(xte[i:i + 500]), mm).argmax(1).numpy() == yte[i:i + 500]).sum())
        return correct / len(xte)

    def epoch(phase: str, grad_acc: list | None = None) -> None:
        nonlocal ep
        total = 0.0
        lr = s.lr * (s.train_lr_scale if phase == "train" else 1.0)
        for b in _batches(len(X), s.batch, rng):
            mm, leaves = M.products(train=True)
            loss = F.cross_entropy(net(X[b], mm), Y[b])
            for p in list(net.biases) + leaves:
                p.grad = None
            loss.backward()
            grads = [w.grad.detach().clone() for w in leaves]
            if grad_acc is not None:
                for a, g in zip(grad_acc, grads):
                    a += np.abs(g.numpy())
            M.update(grads, lr)
            with torch.no_grad():
                for bb in net.biases:
                    bb -= lr * bb.grad
            total += float(loss.detach()) * len(b)
            res.steps += 1
        ep += 1
        res.epochs.append({"epoch": ep, "phase": phase, "acc": evaluate(), "loss": total / len(X)})
        if progress:
            progress()

    try:
        res.epochs.append({"epoch": ep, "phase": "quantised", "acc": evaluate()})
        M.set_masks(_prune(M.magnitudes(), s.sparsity))
        res.epochs.append({"epoch": ep, "phase": "pruned", "acc": evaluate()})
        grad_acc = [np.zeros(m.shape) for m in M.masks]
        for k in range(s.survive_epochs):
            last = k == s.survive_epochs - 1
            if last:
                grad_acc = [np.zeros(m.shape) for m in M.masks]
            epoch("survive", grad_acc if last else None)
        if s.regrow_fraction > 0:
            M.set_masks(_regrow(M.masks, M.magnitudes(), grad_acc, s.regrow_fraction))
            res.epochs.append({"epoch": ep, "phase": "regrown", "acc": evaluate()})
        for _ in range(s.train_epochs):
            epoch("train")
        res.final_acc = res.epochs[-1]["acc"]
        res.cycles, res.calls = M.cycles()
        if M.tiles:  # the masks as the tiles hold them (read back), not the host's copy
            pruned = sum(int(t.read()[1].sum()) for t in M.tiles)
            res.measured_sparsity = pruned / sum(m.size for m in M.masks)
        else:
            res.measured_sparsity = sum(int(m.sum()) for m in M.masks) / sum(m.size for m in M.masks)
        if M.fit_errors:
            res.fit_error = float(np.mean(M.fit_errors))
    finally:
        M.close()
    res.seconds = time.perf_counter() - t0
    return res


def run(s: Schedule, methods=METHODS, progress: Callable | None = None) -> tuple[list[SparseResult], list]:
    """Pre-train once, then every method from the same pre-trained network; returns results and the
    pre-training history."""
    s.check()
    for m in methods:
        if m not in ALL_METHODS:
            raise TrainError(f"method {m!r}: expected one of {', '.join(ALL_METHODS)}")
    net, hist = pretrain(s, progress)
    xtr = load_data(s)[0]
    calib = calibrate(net, xtr)
    return [run_method(m, s, net, hist, calib, progress) for m in methods], hist


def epochs_total(s: Schedule, n_methods: int) -> int:
    """Epochs a :func:`run` performs (for a progress bar)."""
    return s.pretrain_epochs + n_methods * (s.survive_epochs + s.train_epochs)
