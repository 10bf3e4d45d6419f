"""Device non-idealities of an RRAM tile, for the golden model: programming variation, stuck cells, read noise,
conductance drift and IR drop (docs/devices.md).

A :class:`DeviceModel` is a frozen, validated, JSON-round-tripping dataclass configured beside the
:class:`~cimtile.hw.params.TileConfig` (the RTL's parameters do not change). Its runtime state for one
physical array (which cells are stuck, each cell's drift exponent, the random streams) is a
:class:`DeviceArray`, made by :meth:`DeviceModel.array`; a :class:`~cimtile.sim.tile.Tile` given a device
calls two hooks:

- **programming** (:meth:`DeviceArray.program`, at LDW; :meth:`DeviceArray.hold` at WSET and VAU): what is
  fixed when a cell is written (variation, stuck cells) changes the *stored levels*, so the RTL fed the same
  stored levels (:meth:`DeviceArray.program_feed`) computes the same outputs and cycles bit for bit;
- **reading** (:meth:`DeviceArray.mvm_acc`, at MVM): read noise, drift and IR drop act on the analog column
  sums, which the RTL (a digital model of the array) does not have: they are golden-model-only.

With every term zero the model is off: the Tile does not call either hook (bit-exact, zero cost).
Everything random is seeded by ``DeviceModel.seed``: the same model, programs and inputs give the same
results.

Conductances are in units of one cell level (``gmax = max_level``; ``ghat = level / max_level``); the
off state is conductance 0.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import operator
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from cimtile.hw import encoding, isa
from cimtile.hw.isa import Geometry, Opcode
from cimtile.hw.params import TileConfig

from cimtile.errors import CimtileError

from . import fastmvm, kernels
from .kernels import Layer

__all__ = ["DeviceError", "DeviceModel", "DeviceArray", "PRESETS", "find_stuck", "load_device"]


class DeviceError(CimtileError, ValueError):
    """A DeviceModel field, preset name or JSON file is invalid (one-line message naming it)."""


def _doc(text: str, lo: float | None = None, hi: float | None = None, **kw):
    return field(metadata={"doc": text, "lo": lo, "hi": hi}, **kw)


@dataclass(frozen=True)
class DeviceModel:
    """Non-idealities of the cells of a tile (all zero: an ideal tile, the default).

    Attributes
    ----------
    name : str
        Name of the model (a preset name or any identifier).
    seed : int
        Seed of every random draw (stuck-cell map, drift exponents, programming and read noise).
    prog_coeff : tuple of float
        Programming variation: a written level lands on ``level + max_level * sigma(ghat) * N(0, 1)``, rounded
        to a stored level and clipped, with ``sigma(ghat) = sum_i prog_coeff[i] * ghat**i`` (relative to gmax;
        the form of aihwkit's and CrossSim's programming-noise fits). Empty: off.
    prog_scale : float
        Multiplies ``sigma`` (a knob for sweeps; 1 is the published fit).
    read_sigma, read_exp : float
        Read noise of every unmasked cell in every conversion: Gaussian with standard deviation
        ``max_level * read_sigma * ghat**read_exp`` (``read_exp`` 0: state-independent; aihwkit's PCM 1/f
        noise is ``ghat**0.35``). The noise of a conversion is the sum over its driven cells.
    stuck_low, stuck_high : float
        Fractions of cells stuck at level 0 and at ``max_level``: whatever is written, they hold that level.
    drift_nu, drift_nu_std, drift_t, drift_t0 : float
        Conductance drift ``g(t) = g * (t / t0) ** -nu``, ``nu ~ N(drift_nu, drift_nu_std)`` per cell
        (at least 0), ``t = drift_t0 + drift_t`` seconds after programming (aihwkit's PCM form). ``drift_t``
        0: off.
    ir_drop : float
        IR-drop attenuation: a cell at physical row r, column c contributes ``1 - ir_drop * (r / (rows - 1) +
        c / (cols - 1)) / 2`` of its conductance (the farthest cell from row drivers and sense amplifiers
        loses ``ir_drop``). First order only: no dependence on the other cells' currents.
    exact : bool
        Per-conversion analog model (every conversion's noisy sum rounded, shifted and clipped by the ADC)
        instead of the fast output-referred one (docs/devices.md, "Two evaluations"). Slower.
    """

    name: str = _doc("name of the model", default="custom")
    seed: int = _doc("seed of every random draw", 0, (1 << 63) - 1, default=0)
    prog_coeff: tuple = _doc("programming-noise polynomial sigma(ghat)/gmax, low order first", default=())
    prog_scale: float = _doc("scale of the programming noise", 0.0, 100.0, default=1.0)
    read_sigma: float = _doc("read noise per cell per conversion, relative to gmax", 0.0, 1.0, default=0.0)
    read_exp: float = _doc("exponent of ghat in the read noise", 0.0, 2.0, default=0.0)
    stuck_low: float = _doc("fraction of cells stuck at level 0", 0.0, 1.0, default=0.0)
    stuck_high: float = _doc("fraction of cells stuck at max_level", 0.0, 1.0, default=0.0)
    drift_nu: float = _doc("mean drift exponent", 0.0, 1.0, default=0.0)
    drift_nu_std: float = _doc("cell-to-cell std of the drift exponent", 0.0, 1.0, default=0.0)
    drift_t: float = _doc("seconds since programming (0: no drift)", 0.0, 1e10, default=0.0)
    drift_t0: float = _doc("drift reference time in seconds", 1e-9, 1e6, default=20.0)
    ir_drop: float = _doc("conductance lost by the farthest cell (IR drop)", 0.0, 0.9, default=0.0)
    exact: bool = field(default=False, metadata={"doc": "per-conversion analog model (slow)", "lo": None,
                                                 "hi": None})

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.replace("-", "_").isidentifier():
            raise DeviceError(f"DeviceModel.name = {self.name!r}: expected an identifier (letters, digits, _, -)")
        if not isinstance(self.exact, bool):
            raise DeviceError(f"DeviceModel.exact = {self.exact!r}: expected true or false")
        pc = self.prog_coeff
        if isinstance(pc, list):
            object.__setattr__(self, "prog_coeff", pc := tuple(pc))
        if not isinstance(pc, tuple) or len(pc) > 4 or not all(_is_num(c) and math.isfinite(c) for c in pc):
            raise DeviceError(f"DeviceModel.prog_coeff = {pc!r}: expected up to 4 numbers")
        for f in fields(self):
            lo, hi = f.metadata["lo"], f.metadata["hi"]
            if lo is None:
                continue
            v = getattr(self, f.name)
            if f.type in ("int", int):
                ok = isinstance(v, int) and not isinstance(v, bool)
            else:
                ok = _is_num(v) and math.isfinite(v)
            if not ok:
                what = "an integer" if f.type in ("int", int) else "a number"
                raise DeviceError(f"DeviceModel.{f.name} = {v!r}: expected {what} in {lo}..{hi}")
            if not lo <= v <= hi:
                raise DeviceError(f"DeviceModel.{f.name} = {v}: allowed range is {lo}..{hi}")
        if self.stuck_low + self.stuck_high > 1:
            raise DeviceError(f"DeviceModel.stuck_low + stuck_high = {self.stuck_low + self.stuck_high}: "
                              "must be at most 1")

    # -- what is on ---------------------------------------------------------------------------------

    @property
    def programming(self) -> bool:
        """True when writes change the stored levels (variation or stuck cells)."""
        return self.stuck_low > 0 or self.stuck_high > 0 or self._prog_on

    @property
    def _prog_on(self) -> bool:
        return self.prog_scale > 0 and any(c != 0 for c in self.prog_coeff)

    @property
    def analog(self) -> bool:
        """True when reads are perturbed (read noise, drift or IR drop): golden-model-only terms."""
        return self.read_sigma > 0 or self.ir_drop > 0 or (self.drift_t > 0 and (self.drift_nu > 0 or
                                                                                self.drift_nu_std > 0))

    @property
    def off(self) -> bool:
        """True when the model changes nothing (an ideal tile)."""
        return not (self.programming or self.analog)

    def array(self, cfg: TileConfig) -> DeviceArray:
        """The state of one physical array of ``cfg`` with these cells (see :class:`DeviceArray`)."""
        return DeviceArray(self, cfg)

    # -- serialisation ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["prog_coeff"] = list(self.prog_coeff)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> DeviceModel:
        if not isinstance(d, dict):
            raise DeviceError(f"DeviceModel: expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DeviceError(f"DeviceModel: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> DeviceModel:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise DeviceError(f"DeviceModel: invalid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DeviceModel:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise DeviceError(f"DeviceModel: cannot read {path}: {e.strerror}") from None
        return cls.from_json(text)

    def replace(self, **changes) -> DeviceModel:
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        return {f.name: f.metadata["doc"] for f in fields(cls)}


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- presets: published figures (docs/devices.md cites each) -------------------------------------------

def _wan2022_prog() -> tuple:
    """CrossSim's RRAMWan model: sigma_G(G) = 1.536e-4 G^3 - 1.167e-2 G^2 + 0.2374 G + 1.053 (uS), a cubic fit
    to Extended Data Fig. 3 of Wan et al., Nature 2022, valid for Gmax <= 39.26 uS; rewritten in ghat with
    Gmax = 39.26 uS and relative to Gmax."""
    gmax = 39.26
    a, b, c, d = 1.536e-4, -1.167e-2, 2.374e-1, 1.053
    return (d / gmax, c, b * gmax, a * gmax ** 2)


def _pcm_prog() -> tuple:
    """aihwkit's PCMLikeNoiseModel: sigma_prog(g) = 0.26348 + 1.9650 ghat - 1.1731 ghat^2 (uS) at g_max 25 uS
    (Nandakumar et al., 2019), relative to g_max."""
    return tuple(c / 25.0 for c in (0.26348, 1.9650, -1.1731))


def _pcm_read(t: float, t_read: float = 250e-9) -> float:
    """aihwkit's PCM 1/f read noise, sigma/g = Q_s sqrt(ln((t + t_read) / (2 t_read))) with
    Q_s = 0.0088 / ghat**0.65: relative to g_max that is 0.0088 sqrt(...) ghat**0.35."""
    return 0.0088 * math.sqrt(math.log((t + t_read) / (2 * t_read)))


_DAY = 86400.0

#: Named device models. ``ideal``: nothing. ``rram``: programming variation of Wan et al. 2022 (CrossSim's
#: RRAMWan). ``rram-faults``: stuck-at rates of Chen et al. 2015 (1.75% at low, 9.04% at high conductance).
#: ``pcm``: aihwkit's PCMLikeNoiseModel one day after programming (programming noise, 1/f read noise,
#: drift with nu = 0.049 +- 0.008, its value at g_max, t0 = 20 s).
PRESETS: dict[str, DeviceModel] = {
    "ideal": DeviceModel(name="ideal"),
    "rram": DeviceModel(name="rram", prog_coeff=_wan2022_prog()),
    "rram-faults": DeviceModel(name="rram-faults", stuck_low=0.0175, stuck_high=0.0904),
    "pcm": DeviceModel(name="pcm", prog_coeff=_pcm_prog(), read_sigma=_pcm_read(_DAY), read_exp=0.35,
                       drift_nu=0.049, drift_nu_std=0.008, drift_t=_DAY, drift_t0=20.0),
}


def load_device(spec: str | DeviceModel | None) -> DeviceModel | None:
    """A preset name, a path to a JSON file, a DeviceModel itself, or None (no model)."""
    if spec is None or isinstance(spec, DeviceModel):
        return spec
    if not isinstance(spec, str | Path):
        raise DeviceError(f"device {spec!r}: expected a preset name, a JSON file or a DeviceModel")
    if spec in PRESETS:
        return PRESETS[spec]
    p = Path(spec)
    if p.suffix == ".json" or p.exists():
        return DeviceModel.load(p)
    raise DeviceError(f"device {str(spec)!r}: not a preset ({', '.join(PRESETS)}) nor a JSON file")


# -- the state of one physical array -------------------------------------------------------------------

_STUCK, _DRIFT, _PROG, _READ = 1, 2, 3, 4  # independent random streams of one seed
_PROG_CHUNK = 4096  # candidate cells drawn at a time from the programming stream (part of its definition)


class DeviceArray:
    """One physical array of a tile with a :class:`DeviceModel`'s cells: the stuck-cell map, each cell's drift
    exponent, the IR-drop attenuation, and the random streams of programming and read noise.

    Share one DeviceArray between all golden-model Tiles that stand for the same physical array (the
    runtime keeps one Tile per batch size). ``stuck`` is ``(rows, cols)`` int8: -1 none, 0 stuck at level 0,
    1 stuck at ``max_level``.
    """

    def __init__(self, model: DeviceModel, cfg: TileConfig):
        self.model, self.cfg = model, cfg
        R, C, s = cfg.rows, cfg.cols, model.seed
        u = np.random.default_rng([s, _STUCK]).random((R, C))
        self.stuck = np.full((R, C), -1, dtype=np.int8)
        self.stuck[u < model.stuck_low] = 0
        self.stuck[(u >= model.stuck_low) & (u < model.stuck_low + model.stuck_high)] = 1
        self._stuck_any = bool((self.stuck >= 0).any())
        self._stuck_level = np.where(self.stuck == 1, cfg.max_level, 0).astype(np.int64)
        # Conductance multiplier of each cell: drift and IR drop (1 where off).
        gain = np.ones((R, C))
        if model.drift_t > 0 and (model.drift_nu > 0 or model.drift_nu_std > 0):
            nu = np.maximum(model.drift_nu + model.drift_nu_std * np.random.default_rng([s, _DRIFT]).standard_normal(
                (R, C)), 0.0)
            gain *= ((model.drift_t0 + model.drift_t) / model.drift_t0) ** -nu
        if model.ir_drop > 0:
            r = np.arange(R)[:, None] / max(R - 1, 1)
            c = np.arange(C)[None, :] / max(C - 1, 1)
            gain *= 1 - model.ir_drop * (r + c) / 2
        self.gain = gain
        L = np.arange(cfg.max_level + 1)
        # Programming: a written level l is stored as k with P(k) = P(round(l + sigma(l) z) clipped = k),
        # z ~ N(0, 1): a discrete distribution per level. Most cells keep their level, so only the cells that
        # change are drawn: candidates at the largest change rate (geometric gaps), each accepted with its own
        # level's rate, then its new level from that level's distribution given a change. Exact, and cheap.
        self._p_change = None
        if model._prog_on:
            gh = L / cfg.max_level
            sig = np.maximum(sum(a * gh ** i for i, a in enumerate(model.prog_coeff)), 0.0)
            sig = sig * (model.prog_scale * cfg.max_level)
            pk = np.zeros((L.size, L.size))  # pk[l, k] = P(stored k | written l)
            for lv in L:
                up = [_phi((k + 0.5 - lv) / sig[lv]) if sig[lv] > 0 else float(k >= lv) for k in L[:-1]] + [1.0]
                pk[lv] = np.diff(np.concatenate([[0.0], up]))
            change = 1 - pk[L, L]
            if change.max() > 0:
                self._p_change, self._p_change_list = change, change.tolist()
                self._p_max = float(change.max())
                cond = pk.copy()
                cond[L, L] = 0
                cond /= np.where(change > 0, change, 1)[:, None]
                self._cond_cdf = np.cumsum(cond, axis=1)[:, :-1]  # P(new <= k | change), k < max_level
                self._cond_cdf_list = self._cond_cdf.tolist()
        # Reading (fast model): conductance change of every cell, and read-noise variance per cell and level.
        self._gm1 = (gain - 1).astype(np.float32) if (gain != 1).any() else None
        self._rvar = self._lvl_pow = self._lvl_pow2 = None
        if model.read_sigma > 0:
            e2 = 2 * model.read_exp
            self._rvar = ((model.read_sigma * cfg.max_level) ** 2 * gain ** e2).astype(np.float32)
            self._lvl_pow = ((L / cfg.max_level) ** e2).astype(np.float32) if e2 else None
            self._lvl_pow2 = _pair_table(self._lvl_pow) if e2 else None
        self._cw: dict = {}
        self._bound_cache: dict = {}
        self._in_cache: dict = {}
        self._in_bytes = 0
        self._in_frozen: OrderedDict = OrderedDict()  # see _block_inputs
        self._in_frozen_bytes = 0
        self._prog_rng = np.random.default_rng([s, _PROG])
        # programming stream state: cells written so far, buffered candidate positions (absolute, increasing;
        # the first entry -1 is a sentinel) with their uniforms, the first unused one and its position
        self._written, self._cand_at = 0, 1
        self._cand_pos, self._cand_u = np.array([-1], dtype=np.int64), np.zeros((1, 2))
        self._cand_list, self._cand_ulist = [-1], [[0.0, 0.0]]  # the same as Python lists (few-candidate path)
        self._next_cand = -1 if self._p_change is not None else 1 << 62
        self._read_rng = np.random.default_rng([s, _READ])
        self._pool = (np.empty(0, dtype=np.float32), 0)
        self.writes = 0  # LDW blocks programmed so far
        # id of a block program() returned -> (weak reference, [(row, col, level given, level stored)] it moved)
        self._moved: dict = {}
        # (model, cfg) as a small integer for _WEIGHTS' keys (hashing the two records per window cost more than
        # the lookup); every array of the same model and configuration has the same cells' gains and variances
        self._token = _TOKENS.setdefault((model, cfg), len(_TOKENS))

    # -- programming: changes the stored levels (the RTL sees them through the feed) ----------------

    def program(self, block: np.ndarray, col_start: int) -> np.ndarray:
        """The levels cells store when LDW writes ``block`` (rows x n) to columns ``col_start ..``: ``block`` itself
        when no cell changes (``block`` is never modified), else a new int64 array."""
        self.writes += 1
        lv = np.asarray(block)
        copied = False
        if self._p_change is not None and lv.size:
            hit = self._prog_candidates(lv.size)
            if hit is not None:
                start, i, j = hit
                nc = lv.shape[1]
                if j - i <= 8:  # the usual case at published spreads: a few candidates, cheaper in Python
                    changes = []
                    for k in range(i, j):
                        p = self._cand_list[k] - start
                        r, c = divmod(p, nc)  # (row-major position; a view's reshape(-1) would copy the block)
                        old = int(lv[r, c])
                        acc, pick = self._cand_ulist[k]
                        if acc * self._p_max < self._p_change_list[old]:
                            changes.append((r, c, old, int((pick >= self._cond_cdf[old]).sum())))
                    if changes:
                        lv, copied = lv.astype(np.int64), True
                        for r, c, _, new in changes:
                            lv[r, c] = new
                        moved = changes
                else:
                    pos, u = self._cand_pos[i:j] - start, self._cand_u[i:j]
                    rr, cc = np.divmod(pos, nc)
                    old = lv[rr, cc]
                    keep = u[:, 0] * self._p_max < self._p_change[old]
                    lv, copied = lv.astype(np.int64), True
                    rr, cc, old = rr[keep], cc[keep], old[keep]
                    new = (u[keep, 1][:, None] >= self._cond_cdf[old]).sum(axis=1)
                    lv[rr, cc] = new
                    moved = list(zip(rr.tolist(), cc.tolist(), old.tolist(), new.tolist()))
        if not self._stuck_any:
            if copied:  # (the cells programming moved, for mvm_many: cheaper than comparing the blocks)
                if len(self._moved) > 4096:
                    self._moved.clear()
                self._moved[id(lv)] = (weakref.ref(lv), moved)
            return lv
        if not copied:
            lv = lv.astype(np.int64)
        return self.hold(lv, slice(None), slice(col_start, col_start + lv.shape[1]))

    def program_many(self, loads: list) -> list:
        """:meth:`program_levels` of each ``(block, col_start)`` of ``loads``, in order: the same programming stream
        (its candidates do not depend on how the writes are split into blocks), one candidate search for all of
        them, and a copy only of the blocks where a cell moves."""
        if self._p_change is None or self._stuck_any or not loads:
            return [self.program_levels(b, s) for b, s in loads]
        blocks = [np.asarray(b) for b, _ in loads]
        sizes = [b.size for b in blocks]
        self.writes += len(blocks)
        out = [b if b.dtype == np.uint8 else b.astype(np.uint8) for b in blocks]
        hit = self._prog_candidates(sum(sizes))
        if hit is None:
            return out
        start, i, j = hit
        cdf = self._cond_cdf_list
        pmax, pch = self._p_max, self._p_change_list
        b, lo, hi = 0, 0, sizes[0]
        moved: dict = {}  # block -> [(row, col, level given, level stored)]
        for q, (acc, pick) in zip(self._cand_list[i:j], self._cand_ulist[i:j]):  # (positions increase)
            q -= start
            while q >= hi:
                b += 1
                lo, hi = hi, hi + sizes[b]
            r, c = divmod(q - lo, blocks[b].shape[1])
            old = int(blocks[b][r, c])
            if acc * pmax < pch[old]:
                # (pick >= cdf).sum() of program(): cdf is non-decreasing, so the entries <= pick
                moved.setdefault(b, []).append((r, c, old, bisect.bisect_right(cdf[old], pick)))
        for b, ch in moved.items():
            new = out[b].copy() if out[b] is blocks[b] else out[b]
            new[[r for r, _, _, _ in ch], [c for _, c, _, _ in ch]] = [v for _, _, _, v in ch]
            out[b] = new
            if len(self._moved) > 4096:
                self._moved.clear()
            self._moved[id(new)] = (weakref.ref(new), ch)
        return out

    def program_levels(self, block: np.ndarray, col_start: int) -> np.ndarray:
        """:meth:`program` as uint8 levels (``block`` itself when nothing changed and it is uint8), keeping the record
        of the cells it moved (see :meth:`mvm_many`)."""
        lv = self.program(block, col_start)
        if lv.dtype == np.uint8:
            return lv
        out = lv.astype(np.uint8)
        rec = self._moved.pop(id(lv), None)
        if rec is not None and rec[0]() is lv:
            self._moved[id(out)] = (weakref.ref(out), rec[1])
        return out

    def _prog_candidates(self, n: int) -> tuple | None:
        """``(start, i, j)``: the candidate cells among the next ``n`` cells written are entries ``i .. j-1`` of
        the candidate buffer (absolute positions; ``start`` is the first of the ``n``), or None when there is none.

        The programming stream (docs/devices.md, Seeds): every cell written by LDW, block after block and row-major
        within a block, is one position of a single sequence; candidates are a Bernoulli(``p_max``) process on
        it, drawn as geometric gaps in chunks of ``_PROG_CHUNK`` (the gaps, then an acceptance uniform and a
        new-level uniform per candidate). A block with no candidate costs one comparison, and the draws do not
        depend on how the writes are split into blocks."""
        start, end = self._written, self._written + n
        self._written = end
        if self._next_cand >= end:
            return None
        rng = self._prog_rng
        while self._cand_pos[-1] < end:  # extend the candidate buffer past this block
            gaps = rng.geometric(self._p_max, size=_PROG_CHUNK)
            pos = int(self._cand_pos[-1]) + np.cumsum(gaps)
            u = rng.random((_PROG_CHUNK, 2))
            self._cand_pos = np.concatenate([self._cand_pos[self._cand_at:], pos])
            self._cand_u = np.concatenate([self._cand_u[self._cand_at:], u])
            # (the lists: the unused rest and the new chunk, without converting the rest again)
            self._cand_list = self._cand_list[self._cand_at:] + pos.tolist()
            self._cand_ulist = self._cand_ulist[self._cand_at:] + u.tolist()
            self._cand_at = 0
        i = j = self._cand_at
        if self._cand_list[min(i + 8, len(self._cand_list) - 1)] < end:
            j += int(np.searchsorted(self._cand_pos[i:], end))
        else:  # a few candidates, the usual case: scanning costs less than a search
            while self._cand_list[j] < end:
                j += 1
        self._cand_at = j
        self._next_cand = int(self._cand_pos[j])
        return start, i, j

    def hold(self, levels: np.ndarray, rows, cols) -> np.ndarray:
        """``levels`` of the cells ``[rows, cols]`` with the stuck cells at their stuck level (in place)."""
        if self._stuck_any:
            st = self.stuck[rows, cols]
            # (unsafe: a Tile's levels are uint8, the stuck levels 0..max_level)
            np.copyto(levels, self._stuck_level[rows, cols], where=st >= 0, casting="unsafe")
        return levels

    def program_feed(self, words, feed: list) -> list:
        """``feed`` with every LDW block replaced by the levels the cells store: what the RTL must be given to
        equal a golden-model run with this device (the program's loads are matched to blocks in execution
        order)."""
        out = list(feed)
        ops = _load_ops([isa.decode(int(w)) for w in words], 0, len(words))
        for i, (op, start) in enumerate(ops[:len(out)]):
            if op is Opcode.LDW:
                out[i] = self.program(out[i], start)
        return out

    # -- reading: golden-model-only terms -------------------------------------------------------------

    def mvm_acc(self, origin: tuple[int, int], raw: np.ndarray, levels: np.ndarray, masks: np.ndarray,
                layer: Layer, geo: Geometry, cfg: TileConfig, prev: np.ndarray | None = None) -> np.ndarray:
        """:func:`cimtile.sim.fastmvm.mvm_acc` of a window at physical ``origin`` (row, col) with read noise,
        drift and IR drop (int64, wrapped to the accumulator width)."""
        if self.model.exact:
            y = self._mvm_exact(origin, raw, levels, masks, layer, geo, cfg)
        else:
            y = self._mvm_fast(origin, raw, levels, masks, layer, geo, cfg)
            if prev is None and y.dtype == np.int32 and cfg.acc_bits >= 32:
                return y  # a bound proved it fits (see _mvm_fast)
        if prev is not None:
            y += prev
        return kernels.wrap(y, cfg.acc_bits)

    def _cells(self, origin, levels, masks):
        """(conductance, read-noise variance or None) of the window's cells, in level units; masked cells 0."""
        m, c = self.model, self.cfg
        r0, c0 = origin
        nr, nc = levels.shape
        lv = np.where(masks, 0, levels).astype(np.float64)
        g = lv * self.gain[r0:r0 + nr, c0:c0 + nc]
        var = None
        if m.read_sigma > 0:
            sd = m.read_sigma * c.max_level * ((g / c.max_level) ** m.read_exp if m.read_exp else 1.0)
            var = np.where(masks, 0.0, sd * sd)
        return g, var

    def _col_weights(self, layer: Layer, cfg: TileConfig) -> tuple[np.ndarray, np.ndarray]:
        """(cw, cw**2) as float32: ``cells.reshape(-1, group) @ cw`` sums each output's columns."""
        key = (layer.wbits, layer.wsigned)
        m = self._cw.get(key)
        if m is None:
            cw = encoding.column_weights(cfg, layer.wbits, layer.wsigned).astype(np.float32)
            m = self._cw[key] = (cw, cw * cw)
        return m

    def _mvm_fast(self, origin, raw, levels, masks, layer, geo, cfg) -> np.ndarray:
        """Output-referred model: the nearest integer to the ideal MVM (exact, with its clipping) plus the linear
        effect of drift and IR drop on every conversion plus the sum of every conversion's read noise as one
        Gaussian per output (its exact variance); the ADC's rounding of the perturbation is not modelled
        (docs/devices.md).

        Cost: when no conversion of the window can clip (``fastmvm._linear``), drift and IR drop are folded into
        the weight matrix, so ideal and drift are one float32 GEMM; the read-noise variance is a second GEMM of
        the inputs' squared slices; one normal per output. Everything else is per window (a few passes over
        its cells), not per input vector."""
        u8 = raw if raw.dtype == np.uint8 else (raw.astype(np.int64) & 0xFF).astype(np.uint8)
        nr, nc = levels.shape
        if nr == 0 or geo.n_out == 0:
            return fastmvm._mvm_float(u8, levels, masks, layer, geo, cfg)[0].astype(np.int64)
        r0, c0 = origin
        win = (slice(r0, r0 + nr), slice(c0, c0 + nc))
        cw1, cw2 = self._col_weights(layer, cfg)
        x1, x2 = self._inputs(u8, layer, cfg)
        masked = masks.any()
        wd = None
        if self._gm1 is not None:  # drift and IR drop: (G - levels) summed per output, linear in the inputs
            lv = np.multiply(levels, self._gm1[win], dtype=np.float32)
            if masked:
                lv[masks] = 0
            wd = np.dot(lv.reshape(-1, cw1.size), cw1).reshape(nr, geo.n_out)
        lin = fastmvm._linear(levels, masks, layer, geo, cfg)
        bound = None  # on |y|, when one is known
        if lin is not None and lin[0].dtype == np.float32:  # no clipping: one GEMM for ideal + drift
            w = lin[0] if wd is None else lin[0] + wd
            y = np.dot(x1, w)  # (np.dot: less overhead per call than the @ operator)
            bound = self._bounds(layer, nr, cfg)[0]
        else:
            y = fastmvm._mvm_float(u8, levels, masks, layer, geo, cfg)[0]
            if wd is not None:
                y = y + np.dot(x1, wd)
        if self._rvar is not None:  # read noise: a sum of independent Gaussians, one Gaussian per output
            var = self._rvar[win]
            if self._lvl_pow is not None:
                var = self._level_power(levels) * var
            elif masked:
                var = var.copy()
            if masked:
                var[masks] = 0
            wv = np.dot(var.reshape(-1, cw2.size), cw2).reshape(nr, geo.n_out)
            sd = np.dot(x2, wv)
            np.sqrt(sd, out=sd)
            sd *= self._normals(sd.shape)
            y += sd
            if bound is not None:
                bound += self._bounds(layer, nr, cfg)[1]
        np.rint(y, out=y)
        if bound is not None and bound * (1 + 2 ** -20) + 1 < 1 << 31:  # (with room for float32 rounding)
            return y.astype(np.int32)
        return y.astype(np.int64)

    def mvm_many(self, t, p, blocks: list, written: list | None = None) -> list:
        """Every MVM of a :mod:`cimtile.sim.fastrun` plan ``p`` on Tile ``t`` with this array: ``(value, bound)``
        (bound None: unknown), the read noise taken from the read stream in program order, as the instruction
        path's :meth:`mvm_acc` would one MVM at a time.

        The same output-referred model as :meth:`_mvm_fast`, batched: MVMs over the same input block (a layer's
        column tiles) share one GEMM for ideal plus drift and one for the read-noise variance, over their
        concatenated weight columns. Only float32 rounding can differ from MVM-by-MVM GEMMs (an output at a
        rounding boundary may move by one level). Windows that may clip take :meth:`_mvm_fast` itself."""
        cfg = t.cfg
        mv = p.mvms
        pre: dict = {}  # mvm index -> (mean, sd or None, bound)
        inputs: dict = {}
        any_mask = bool(t.masks.any())
        from .fastrun import _grouping, _inputs, _known_frozen

        grouped: list = []  # (mvm indices, mean, sd or None, bound, n_out) per group of precomputed MVMs
        for idx in (_grouping(p, blocks) if not self.model.exact else [[i] for i in range(len(mv))]):
            g = len(grouped)
            m0 = mv[idx[0]]
            r0, nr, _, nc = m0.window
            layer, geo = m0.layer, m0.geo
            for i in idx:
                inputs[i] = m0
            if self.model.exact:
                continue

            def windows(src, idx=idx, r0=r0, nr=nr, nc=nc):  # (made only when needed)
                return [src[mv[i].ldw_load][r0:r0 + nr, mv[i].col_off:mv[i].col_off + nc] for i in idx]

            mlist = [t.masks[r0:r0 + nr, mv[i].window[2]:mv[i].window[2] + nc] for i in idx] if any_mask else None
            c0s = [mv[i].window[2] for i in idx]
            given = blocks if written is None else written
            keep = None
            if not any_mask and all(_known_frozen(p, given, mv[i].ldw_load) for i in idx):
                # frozen LDW blocks (their values cannot change): the weights are kept under the blocks themselves
                keep = (p, idx, [given[mv[i].ldw_load] for i in idx])
            if written is None:
                got = self._weights((lambda f=windows, b=blocks: f(b)) if keep is not None else windows(blocks), mlist,
                                    r0, c0s, layer, geo, cfg, keep=keep, shape=(nr, nc))
            else:  # the levels LDW was given (views of the same arrays every image), and what programming changed
                fed = (lambda f=windows, w=written: f(w)) if keep is not None else windows(written)
                moved = [j for j, i in enumerate(idx) if blocks[mv[i].ldw_load] is not written[mv[i].ldw_load]]
                changes = {}
                for j in moved:  # the cells program() moved, where it recorded them, in window coordinates
                    b = blocks[mv[idx[j]].ldw_load]
                    rec = self._moved.get(id(b))
                    if rec is not None and rec[0]() is b:
                        co = mv[idx[j]].col_off
                        changes[j] = [(r - r0, c - co, o, v) for r, c, o, v in rec[1]
                                      if r0 <= r < r0 + nr and co <= c < co + nc]
                got = self._weights(fed, mlist, r0, c0s, layer, geo, cfg, windows(blocks) if moved else None, moved,
                                    keep, changes, (nr, nc))
            if got is None:
                continue  # (windows that may clip: _mvm_fast one by one, below)
            w, wv = got
            n = geo.n_out
            x1, x2 = self._block_inputs(t, blocks[m0.in_load], m0)
            mean = np.dot(x1, w)
            bound = self._bounds(layer, nr, cfg)[0]
            sd = None
            if wv is not None:
                sd = np.dot(x2, wv)
                np.sqrt(sd, out=sd)
                bound += self._bounds(layer, nr, cfg)[1]
            for j, i in enumerate(idx):
                pre[i] = (g, j)
            grouped.append((idx, mean, sd, bound, n))
        if len(pre) == len(mv) and grouped:
            return self._noisy_groups(mv, grouped)
        pre = {i: (mean[:, j * n:(j + 1) * n], None if sd is None else sd[:, j * n:(j + 1) * n], bound)
               for idx, mean, sd, bound, n in grouped for j, i in enumerate(idx)}
        out = []
        for i, m in enumerate(mv):  # program order: the read stream's order
            hit = pre.get(i)
            if hit is None:
                r0, nr, c0, nc = m.window
                win = blocks[m.ldw_load][r0:r0 + nr, m.col_off:m.col_off + nc]
                m0 = inputs[i]  # (the first MVM of its group: the same input vectors)
                y = self.mvm_acc((r0, c0), _inputs(t, blocks[m0.in_load], m0), win, t.masks[r0:r0 + nr, c0:c0 + nc],
                                 m.layer, m.geo, cfg)
                out.append((y, None))  # (wrapped to the accumulator width: the chain wraps its sum again)
                continue
            mean, sd, bound = hit
            if sd is None:
                y = mean.copy()
            else:
                y = self._normals(sd.shape) * sd  # (a new array: the normals are a view of the stream's pool)
                y += mean
            np.rint(y, out=y)
            if bound * (1 + 2 ** -20) + 1 < 1 << 31:
                out.append((y.astype(np.int32), int(bound * (1 + 2 ** -20)) + 1))
            else:
                out.append((y.astype(np.int64), None))
        return out

    def _weights(self, wins: list, masks: list | None, r0: int, c0s: list, layer: Layer, geo: Geometry,
                 cfg: TileConfig, stored: list | None = None, moved: tuple = (), keep: tuple | None = None,
                 changes: dict | None = None, shape: tuple | None = None) -> tuple | None:
        """The folded weights (ideal plus drift and IR drop) and the read-noise variance weights of windows of one
        shape at physical rows ``r0 ..`` and columns ``c0s``, side by side (``(rows, k * n_out)`` each, the second
        None without read noise), or None when a window may clip.

        ``wins`` are the levels LDW was given; with programming variation or stuck cells, ``stored[j]`` are the levels
        the cells took for the windows ``moved`` (the others stored what they were given). The weights of ``wins``
        are remembered (:data:`_WEIGHTS`, under the model, the configuration, the windows' place in the array and in
        memory: a runtime gives the same level blocks for every image) with a copy of their levels and masks, and
        reused only while they are equal; the few cells programming moved are then corrected one by one (their
        column sums checked against the ADC range as :func:`fastmvm._linear` does).

        ``keep``: ``(plan, MVM indices, LDW blocks)`` when the windows lie in frozen blocks
        (:func:`cimtile.sim.fastrun.freeze`, no masks): the weights are then kept under the plan, the windows and
        the blocks themselves (held by the entry), and reused without comparing levels. ``changes``: per moved window,
        the cells programming moved as ``(row, col, level given, level stored)`` in window coordinates, where
        :meth:`program` recorded them (else the windows are compared).
        With ``keep``, ``wins`` may be a function that makes them (called only when they are needed) and ``shape``
        their ``(rows, cols)``."""
        from .fastrun import _equal, side_by_side

        if callable(wins) and keep is None:
            wins = wins()
        nr, nc = shape if callable(wins) else wins[0].shape
        n, k = geo.n_out, (len(keep[1]) if callable(wins) else len(wins))
        side = msk = None
        if keep is not None:
            key = ("frozen", self._token, id(keep[0]), keep[1], tuple(map(id, keep[2])))
            e = _WEIGHTS.get(key)
            hit = e is not None and e[0][0] is keep[0] and all(map(operator.is_, e[0][2], keep[2]))
        else:
            key = ((self._token, r0, _TOKENS.setdefault((layer, geo), len(_TOKENS))),
                   tuple((c, w.__array_interface__["data"][0], w.strides) for c, w in zip(c0s, wins)))
            side = side_by_side(wins)
            msk = None if masks is None else side_by_side(masks)
            e = _WEIGHTS.get(key)
            hit = e is not None and not isinstance(e[0], tuple) and _equal(side, e[0]) and (
                e[1] is None if msk is None else e[1] is not None and _equal(msk, e[1]))
        if hit:
            _WEIGHTS.move_to_end(key)
        else:
            if callable(wins):
                wins = wins()
            if side is None:
                side = side_by_side(wins)
            got = self._fold(side, msk, k, r0, c0s, layer, geo, cfg)
            if got is None:
                return None
            # (frozen: the plan, windows and blocks instead of copies of the levels)
            e = ((keep if keep is not None else side.copy()), None if msk is None else msk.copy()) + got
            old = _WEIGHTS.pop(key, None)
            if old is not None:
                _WEIGHTS_BYTES[0] -= _entry_bytes(old)
            _WEIGHTS[key] = e
            _WEIGHTS_BYTES[0] += _entry_bytes(e)
            while len(_WEIGHTS) > 1 and _WEIGHTS_BYTES[0] > WEIGHTS_BYTES:
                _, old = _WEIGHTS.popitem(last=False)
                _WEIGHTS_BYTES[0] -= _entry_bytes(old)
        w, wv, sums = e[2:]
        if not moved:
            return w, wv
        if sums is None:  # (analog pairs: no per-cell correction; the stored windows from scratch)
            got = self._fold(side_by_side(stored), None if masks is None else side_by_side(masks), k, r0, c0s, layer,
                             geo, cfg)
            return None if got is None else got[:2]
        if callable(wins):
            wins = wins()
        cap = fastmvm._linear_consts(layer, geo, cfg)[2]
        cw1, cw2 = self._col_weights(layer, cfg)
        P, grp = cfg.rows_per_conv, geo.group
        w = w.copy()
        wv = None if wv is None else wv.copy()
        if masks is None and changes is not None and all(j in changes for j in moved):
            # every moved cell from programming's record: all windows' corrections at once (windows touch disjoint
            # columns of w and wv, and each window's cells keep their order: the same sums as window by window)
            ch = [(j, r, c, o, v) for j in moved for r, c, o, v in changes[j]]
            if not ch:
                return w, wv
            jj, rr, cc, l0, l1 = (np.array(v, dtype=np.int64) for v in zip(*ch))
            d = l1 - l0
            s = sums.astype(np.int64)
            np.add.at(s, (rr // P, jj * nc + cc), d)
            if s.reshape(s.shape[0], k, nc)[:, sorted(set(moved))].max() > cap:
                return None  # (a stored window that may clip)
            o = jj * n + cc // grp
            cols = np.asarray(c0s, dtype=np.int64)[jj] + cc
            np.add.at(w, (rr, o), (cw1[cc % grp] * d * self.gain[r0 + rr, cols]).astype(np.float32))
            if wv is not None and self._lvl_pow is not None:
                dv = cw2[cc % grp] * self._rvar[r0 + rr, cols] * (self._lvl_pow[l1] - self._lvl_pow[l0])
                np.add.at(wv, (rr, o), dv.astype(np.float32))
            return w, wv
        for j in moved:
            rr, cc = np.nonzero(stored[j] != wins[j])
            if masks is not None:
                keep = ~masks[j][rr, cc]
                rr, cc = rr[keep], cc[keep]
            if not rr.size:
                continue
            l0, l1 = wins[j][rr, cc].astype(np.int64), stored[j][rr, cc].astype(np.int64)
            d = l1 - l0
            s = sums[:, j * nc:(j + 1) * nc].astype(np.int64)
            np.add.at(s, (rr // P, cc), d)
            if s.max() > cap:
                return None  # (a stored window that may clip)
            o = j * n + cc // grp
            np.add.at(w, (rr, o), (cw1[cc % grp] * d * self.gain[r0 + rr, c0s[j] + cc]).astype(np.float32))
            if wv is not None and self._lvl_pow is not None:
                dv = cw2[cc % grp] * self._rvar[r0 + rr, c0s[j] + cc] * (self._lvl_pow[l1] - self._lvl_pow[l0])
                np.add.at(wv, (rr, o), dv.astype(np.float32))
        return w, wv

    def _fold(self, side: np.ndarray, msk: np.ndarray | None, k: int, r0: int, c0s: list, layer: Layer,
              geo: Geometry, cfg: TileConfig) -> tuple | None:
        """(folded weights, variance weights or None, column sums per row group or None) of ``k`` windows side by
        side (see :meth:`_mvm_fast`), or None when one may clip (or its weights are not float32). The column sums
        (of the levels, masked cells 0; not for analog pairs) let :meth:`_weights` check a few changed cells."""
        nr = side.shape[0]
        nc, n = side.shape[1] // k, geo.n_out
        lin = fastmvm.linear_many(side, msk, k, layer, geo, cfg)
        if lin is None or lin[0].dtype != np.float32 or not lin[1].all():
            return None
        w = lin[0]
        cw1, cw2 = self._col_weights(layer, cfg)
        rows = slice(r0, r0 + nr)

        def cells(a):  # the windows' cells of a per-cell array, side by side
            return np.concatenate([a[rows, c:c + nc] for c in c0s], axis=1) if k > 1 else a[rows, c0s[0]:c0s[0] + nc]

        if self._gm1 is not None:  # drift and IR drop folded into the weights (see _mvm_fast)
            lv = np.multiply(side, cells(self._gm1), dtype=np.float32)
            if msk is not None:
                lv[msk] = 0
            w = w + np.dot(lv.reshape(-1, cw1.size), cw1).reshape(nr, k * n)
        wv = None
        if self._rvar is not None:
            var = cells(self._rvar)
            var = self._level_power(side) * var if self._lvl_pow is not None else var.copy()
            if msk is not None:
                var[msk] = 0
            wv = np.dot(var.reshape(-1, cw2.size), cw2).reshape(nr, k * n)
        sums = None
        if not fastmvm.paired(cfg, layer.wsigned):
            lv = side if msk is None else np.where(msk, np.uint8(0), side)
            sums = np.add.reduceat(lv, np.arange(0, nr, cfg.rows_per_conv), axis=0, dtype=np.int32)
        return w, wv, sums

    def _noisy_groups(self, mv: list, grouped: list) -> list:
        """:meth:`mvm_many`'s values when every MVM's mean and deviation are precomputed: the read stream's normals of
        the whole run at once (MVM by MVM in program order, each ``vectors x outputs`` row-major), then each group's
        noise, rounding and conversion in one pass over its columns."""
        per = [0] * len(mv)
        for idx, mean, *_ in grouped:
            for i in idx:
                per[i] = mean.shape[0] * mv[i].geo.n_out
        starts = np.concatenate([[0], np.cumsum(per)]).tolist()
        z = self._normals((starts[-1],))
        out: list = [None] * len(mv)
        for idx, mean, sd, bound, n in grouped:
            Mv = mean.shape[0]
            if sd is None:
                y = mean.copy()
            else:
                # (in place: sd is this run's own array; each MVM's normals times its columns' deviations)
                y = sd
                for j, i in enumerate(idx):
                    y[:, j * n:(j + 1) * n] *= z[starts[i]:starts[i + 1]].reshape(Mv, n)
                y += mean
            np.rint(y, out=y)
            if bound * (1 + 2 ** -20) + 1 < 1 << 31:
                y, b = y.astype(np.int32), int(bound * (1 + 2 ** -20)) + 1
            else:
                y, b = y.astype(np.int64), None
            for j, i in enumerate(idx):
                out[i] = (y[:, j * n:(j + 1) * n], b)
        return out

    def _bounds(self, layer: Layer, nr: int, cfg: TileConfig) -> tuple[float, float]:
        """Bounds on ``|x @ (W + Wd)|`` and on the read noise of one output, for ``nr`` window rows: every level
        is at most ``max_level`` and every cell's gain at most 1 (drift and IR drop only lose conductance); the
        read stream's normals are at most ``_Z_MAX`` in magnitude."""
        key = (layer.abits, layer.asigned, layer.wbits, layer.wsigned, nr)
        b = self._bound_cache.get(key)
        if b is None:
            cw1, cw2 = self._col_weights(layer, cfg)
            xmax = fastmvm._max_abs_value(layer.abits, layer.asigned)
            mean = xmax * nr * cfg.max_level * float(np.abs(cw1).sum())
            noise = 0.0
            if self._rvar is not None:
                x2max = float(_byte_table(layer.abits, layer.asigned, cfg.dac_bits, 2).max())
                noise = _Z_MAX * math.sqrt(x2max * nr * float(self._rvar.max()) * float(cw2.sum()))
            b = self._bound_cache[key] = (mean, noise)
        return b

    def _level_power(self, levels: np.ndarray) -> np.ndarray:
        """``(level / max_level) ** (2 read_exp)`` of every cell (float32): two cells per lookup for uint8 levels."""
        if self._lvl_pow2 is not None and levels.dtype == np.uint8 and not levels.shape[1] % 2 \
                and levels.strides[1] == 1 and not levels.strides[0] % 2:
            return np.take(self._lvl_pow2, levels.view("<u2"), axis=0).reshape(levels.shape)
        return np.take(self._lvl_pow, levels)

    def _block_inputs(self, t, blk: np.ndarray, m) -> tuple:
        """:meth:`_inputs` of MVM ``m``'s input vectors in feed block ``blk`` (:func:`cimtile.sim.fastrun._inputs`).
        A frozen block (:func:`cimtile.sim.fastrun.freeze`: its values cannot change; a runtime with a device model
        freezes its input blocks) is remembered by the block itself and the place of the vectors in it, which saves
        copying and hashing the bytes; other blocks go by their bytes."""
        from .fastrun import _inputs, frozen

        layer = m.layer
        if not frozen(blk):
            return self._inputs(_inputs(t, blk, m), layer, self.cfg)
        key = (id(blk), m.in_off, m.lanes, m.window[0], m.window[1], t.batch, layer.abits, layer.asigned)
        hit = self._in_frozen.get(key)
        if hit is not None and hit[0]() is blk:
            self._in_frozen.move_to_end(key)
            return hit[1]
        got = self._inputs(_inputs(t, blk, m), layer, self.cfg, keep=False)
        size = sum(x.nbytes for x in got if x is not None)
        # (oldest first: entries of blocks that are gone, a previous image's, then any over the budget)
        while self._in_frozen and (self._in_frozen_bytes + size > _IN_CACHE_BYTES
                                   or next(iter(self._in_frozen.values()))[0]() is None):
            _, old = self._in_frozen.popitem(last=False)
            self._in_frozen_bytes -= sum(x.nbytes for x in old[1] if x is not None)
        self._in_frozen[key] = (weakref.ref(blk), got)
        self._in_frozen_bytes += size
        return got

    def _inputs(self, u8: np.ndarray, layer: Layer, cfg: TileConfig, keep: bool = True) -> tuple:
        """(input values, sum of the squared weighted input slices) of the vectors ``u8``, as float32.

        Remembered by the bytes themselves (a dict keyed by them: hashed once, compared with memcmp on a hit),
        up to ``_IN_CACHE_BYTES``: a layer's column and row tiles run as separate programs that load the same
        input blocks again (ResNet-18: 251 distinct blocks in 5,724 MVMs), far apart, so a short cache misses
        nearly always. A hit costs about a fifth of building the arrays."""
        key = (u8.tobytes(), u8.shape, layer.abits, layer.asigned) if keep else None
        hit = self._in_cache.get(key) if keep else None
        if hit is not None:
            return hit
        x1 = fastmvm._values(u8, layer.abits, layer.asigned, np.float32)
        x2 = None
        if self._rvar is not None:  # (a plain take: input bytes are too varied for the pair table's cache)
            x2 = np.take(_byte_table(layer.abits, layer.asigned, cfg.dac_bits, 2), u8)
        if not keep:
            return x1, x2
        size = u8.size + sum(x.nbytes for x in (x1, x2) if x is not None)
        while self._in_cache and self._in_bytes + size > _IN_CACHE_BYTES:
            k, old = next(iter(self._in_cache.items()))
            del self._in_cache[k]
            self._in_bytes -= len(k[0]) + sum(x.nbytes for x in old if x is not None)
        self._in_cache[key] = hit = (x1, x2)
        self._in_bytes += size
        return hit

    def _normals(self, shape) -> np.ndarray:
        """The next standard normal float32 draws of the read stream, as an array of ``shape``.

        The read stream is one sequence of normals (docs/devices.md, Seeds): each noisy MVM takes the next
        ``vectors x outputs`` of it in row-major order. It is made in blocks of ``_READ_BLOCK`` normals, each from
        the next ``_READ_BLOCK`` float32 uniforms of the generator by the Box-Muller transform (first half of the
        block: radii ``sqrt(-2 ln(1 - u))``, second half: angles ``2 pi u``; cosines, then sines). About twice as
        fast as NumPy's float32 ziggurat; 24-bit uniforms bound ``|z|`` by 5.77."""
        n = math.prod(shape)
        buf, at = self._pool
        if at + n > buf.size:
            rest = buf[at:]
            blocks = -(-(n - rest.size) // _READ_BLOCK)
            new = np.empty(rest.size + blocks * _READ_BLOCK, dtype=np.float32)
            new[:rest.size] = rest
            self._box_muller(blocks, new[rest.size:])  # (made in place: no copy of the new blocks)
            buf, at = new, 0
        self._pool = (buf, at + n)
        return buf[at:at + n].reshape(shape)

    def _box_muller(self, blocks: int, out: np.ndarray | None = None) -> np.ndarray:
        """``blocks`` blocks of the read stream's normals (see :meth:`_normals`), flat; made in ``out`` (float32,
        ``blocks * _READ_BLOCK``) when given. The uniforms are drawn into the result and transformed in place (the
        same float32 operations on the same values as a separate array would take)."""
        h = _READ_BLOCK // 2
        u = np.empty((blocks, _READ_BLOCK), dtype=np.float32) if out is None else out.reshape(blocks, _READ_BLOCK)
        self._read_rng.random(dtype=np.float32, out=u)
        r, th = u[:, :h], u[:, h:]
        np.subtract(np.float32(1), r, out=r)
        np.log(r, out=r)
        r *= np.float32(-2)
        np.sqrt(r, out=r)
        th *= np.float32(2 * math.pi)
        c = np.cos(th)
        np.sin(th, out=th)
        th *= r  # second half: r * sin
        r *= c  # first half: r * cos
        return u.reshape(-1)

    def _mvm_exact(self, origin, raw, levels, masks, layer, geo, cfg) -> np.ndarray:
        """Per-conversion model (the definition, mirroring :func:`cimtile.sim.kernels.mvm_sliced`): each
        conversion's analog sum plus its read noise is rounded to the nearest level sum, shifted and clipped."""
        M = raw.shape[0]
        g, var = self._cells(origin, levels, masks)
        nr = g.shape[0]
        sh = layer.adc_shift
        analog = layer.wsigned and cfg.analog_diff
        lo, hi = encoding.adc_range(cfg, layer.wsigned)
        P = cfg.rows_per_conv
        cw = encoding.column_weights(cfg, layer.wbits, layer.wsigned)
        if analog:
            cw = cw[0::2]
        per_out = cw.shape[0]
        y = np.zeros((M, geo.n_out), dtype=np.int64)
        for v, wk in kernels.input_slices(raw, layer.abits, layer.asigned, cfg.dac_bits):
            vf = v.astype(np.float64)
            for a in range(0, nr, P):
                b = min(a + P, nr)
                S = vf[:, a:b] @ g[a:b]
                if var is not None:
                    sd = np.sqrt((vf[:, a:b] ** 2) @ var[a:b])
                    S += sd * self._read_rng.standard_normal(S.shape)
                if analog:
                    S = S[:, 0::2] - S[:, 1::2]
                code = np.clip(np.floor((S + 0.5) / (1 << sh)), lo, hi).astype(np.int64) << sh
                y += wk * (code.reshape(M, geo.n_out, per_out) * cw).sum(axis=2)
        return y


_tables: dict = {}

#: Folded and variance weights of windows, with copies of their levels and masks (DeviceArray._weights), least
#: recently used first, and the bytes they hold (at most WEIGHTS_BYTES).
_WEIGHTS: OrderedDict = OrderedDict()
_WEIGHTS_BYTES = [0]


def _entry_bytes(e: tuple) -> int:
    """Bytes a _WEIGHTS entry holds: its arrays, or for frozen windows (a tuple first) the blocks it holds."""
    held = sum(b.nbytes for b in e[0][2]) if isinstance(e[0], tuple) else e[0].nbytes
    return held + sum(a.nbytes for a in e[1:] if a is not None)
WEIGHTS_BYTES = 256 << 20
_TOKENS: dict = {}


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


#: Memory the remembered input-derived arrays of one device array may hold (oldest dropped first).
_IN_CACHE_BYTES = 256 << 20
#: Bound on the read stream's normals: Box-Muller radii from 24-bit uniforms are below sqrt(48 ln 2) = 5.77.
_Z_MAX = 5.8
#: Normals drawn at a time from the read stream.
_READ_BLOCK = 1 << 16


def _pair_table(table: np.ndarray) -> np.ndarray:
    """(65536, 2): ``table`` of the low and of the high byte of every uint16, to look up uint8 indices two at a
    time through a little-endian uint16 view (NumPy's take converts every index to intp first, which costs more
    than the lookup itself)."""
    full = np.zeros(256, dtype=table.dtype)
    full[:table.size] = table  # indices past the table never occur (levels <= max_level)
    b = np.arange(1 << 16)
    return np.stack([full[b & 0xFF], full[b >> 8]], axis=1)


def _byte_table(abits: int, asigned: bool, dac_bits: int, power: int) -> np.ndarray:
    """Per input byte: ``sum_k w_k * v_k`` (power 1: the input value) or ``sum_k w_k**2 * v_k**2`` (power 2:
    how the read noise of the slices of one input adds up), over its input slices ``(v_k, w_k)``."""
    key = (abits, asigned, dac_bits, power)
    t = _tables.get(key)
    if t is None:
        sl = kernels.input_slices(np.arange(256), abits, asigned, dac_bits)
        t = sum((w ** power) * v.astype(np.float64) ** power for v, w in sl)
        t = _tables[key] = np.asarray(t, dtype=np.float32)
    return t


def _load_ops(prog, start: int, end: int) -> list[tuple]:
    """(opcode, start field) of every load instruction of ``prog[start:end]`` in execution order (loops
    repeated)."""
    loads = (Opcode.LDW, Opcode.LDM, Opcode.LDIN, Opcode.LDD, Opcode.LDRQ)
    out = []
    pc = start
    while pc < end:
        d = prog[pc]
        if d.op is Opcode.HALT:
            break
        if d.op is Opcode.LOOP:
            b1 = pc + 1 + d.args["body"]
            body = _load_ops(prog, pc + 1, min(b1, end))
            out += body * d.args["count"]
            pc = b1
            continue
        if d.op in loads:
            out.append((d.op, d.args["start"]))
        pc += 1
    return out


# -- fault detection ----------------------------------------------------------------------------------

def find_stuck(cfg: TileConfig, device: DeviceModel | DeviceArray, repeats: int = 3) -> np.ndarray:
    """Stuck cells found as a host would: program every cell to level 0 and to ``max_level`` (LDW), read them
    back (RDW), ``repeats`` times each; a cell that never reads back what was written is stuck.

    Returns ``(rows, cols)`` bool, True at a stuck cell. Programming variation alone rarely flags a cell (it
    would have to miss in every repeat). Runs on the golden model; the program uses only LDW and RDW, which
    are programming-time operations, so the RTL fed :meth:`DeviceArray.program_feed` reads the same.
    """
    from .tile import Tile

    arr = device.array(cfg) if isinstance(device, DeviceModel) else device
    words, feed = [], []
    for level in (0, cfg.max_level):
        for _ in range(repeats):
            words += [isa.encode(Opcode.LDW, start=0, count=cfg.cols), isa.encode(Opcode.RDW, start=0, count=cfg.cols)]
            feed.append(np.full((cfg.rows, cfg.cols), level, dtype=np.int64))
    words.append(isa.encode(Opcode.HALT))
    res = Tile(cfg, device=arr).run(words, feed).check()
    reads = np.stack(res.outputs)  # (2 * repeats, rows, cols)
    low_bad = (reads[:repeats] != 0).all(axis=0)
    high_bad = (reads[repeats:] != cfg.max_level).all(axis=0)
    return low_bad | high_bad
