"""The golden model's loop vectoriser: runs a loop's iterations as one batched step per body instruction
when they provably do not interact.

The opcode handlers in :mod:`cimtile.sim.tile` are the definition of every instruction; this module only
decides when a loop of them may run all at once and prepares the lane offsets they then index with. A loop
qualifies when its body holds only NOP, MVM, REQ and nested loops, no iteration can raise an error, and no
buffer entry written by one iteration is read or written by another: then executing all iterations at once
equals executing them in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from cimtile.hw.isa import Opcode
from cimtile.hw.program import Halted, Walker, WalkStop

if TYPE_CHECKING:  # pragma: no cover
    from .tile import Tile

__all__ = ["VECTOR_OPS", "Vectoriser"]

#: Opcodes a vectorised loop body may contain.
VECTOR_OPS = frozenset({Opcode.NOP, Opcode.MVM, Opcode.REQ, Opcode.LOOP})


class _NotVector(Exception):
    pass


class _Probe(Walker):
    """The accesses of a loop body's instructions, for :meth:`Vectoriser._probe`."""

    def __init__(self, tile: Tile, acc: dict):
        super().__init__(tile.program, tile.cfg.loop_depth)
        self.t, self.acc = tile, acc

    def step(self, pc, d, offs) -> None:
        if d.op not in VECTOR_OPS:
            raise _NotVector
        c, a, acc = self.t.cfg, d.args, self.acc
        if d.op is Opcode.MVM:
            if not self.t.geometry().aligned:
                raise _NotVector
            ia, aa = a["in_addr"] + offs[0], a["acc_addr"] + offs[1]
            k = a["count"]
            if ia.max() + k > c.in_depth or aa.max() + k > c.acc_depth:
                raise _NotVector
            ia, it = _spread(ia, k)
            aa, _ = _spread(aa, k)
            acc["in"].append((ia, it, False))
            if a["accumulate"]:
                acc["acc"].append((aa, it, False))
            acc["acc"].append((aa, it, True))
        elif d.op is Opcode.REQ:
            if not self.t.geometry().aligned:
                raise _NotVector
            aa, oa = a["acc_addr"] + offs[1], a["out_addr"] + offs[2]
            k = a["count"]
            if aa.max() + k > c.acc_depth or oa.max() + k > c.out_depth:
                raise _NotVector
            aa, it = _spread(aa, k)
            oa, _ = _spread(oa, k)
            acc["acc"].append((aa, it, False))
            acc["out"].append((oa, it, True))


def _spread(addrs: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The entries an MVM/REQ of ``count`` vectors touches at lane addresses ``addrs`` (``addrs[i] + v``, v < count,
    lane-major), and the iteration (lane) of each."""
    it = np.arange(addrs.size)
    if count == 1:
        return addrs, it
    return (addrs[:, None] + np.arange(count)).reshape(-1), np.repeat(it, count)


class Vectoriser:
    """Loop vectorisation for one :class:`cimtile.sim.tile.Tile`, with its caches."""

    def __init__(self, tile: Tile):
        self.t = tile
        self._indep: dict = {}  # loop key -> whether its iterations are independent (see independent)
        self._voffs: dict = {}  # (offsets, strides, count) -> the offset arrays of a vectorised loop
        # (id(lane offsets), count) -> (offsets, first entry if consecutive else None, entries) (see lanes)
        self._runs: dict = {}

    def plan(self, b0: int, b1: int, offs, strides, n: int, depth: int):
        """The lane offset arrays for running the ``n`` iterations of body ``b0 .. b1 - 1`` at once, or None
        when they are not independent. ``depth`` is the body's loop nesting."""
        okey = (tuple(o if isinstance(o, int) else o.tobytes() for o in offs), strides, n)
        voffs = self._voffs.get(okey)
        if voffs is None:
            if len(self._voffs) > 4096:
                self._voffs.clear()
            # Inside an already vectorised loop ``o`` is an array of lanes: lane-major outer product.
            # Strides are unsigned, so the last lane of every offset array is its largest (Tile._addr).
            voffs = tuple(np.add.outer(o, np.arange(n, dtype=np.int64) * s).reshape(-1)
                          for o, s in zip(offs, strides))
            for v in voffs:
                v.flags.writeable = False  # shared by every run of this loop
            self._voffs[okey] = voffs
        return voffs if self.independent(b0, b1, voffs, okey, depth) else None

    def independent(self, b0: int, b1: int, voffs, okey, depth: int) -> bool:
        """True if the iterations (offset arrays ``voffs``) touch disjoint buffer entries and run
        without any error, so that executing them all at once equals executing them in order.

        The answer depends only on the loop's words, the offsets (``okey`` identifies them), the depth,
        the layer and the window (the configuration is fixed per Tile), so it is remembered under exactly
        that key: a compiled layer repeats the same loop for every column tile.
        """
        key = (tuple(d.word for d in self.t.program[b0 - 1:b1]), okey, depth, self.t.layer, self.t.window)
        hit = self._indep.get(key)
        if hit is None:
            if len(self._indep) > 4096:
                self._indep.clear()
            hit = self._indep[key] = self._independent_uncached(b0, b1, voffs, depth)
        return hit

    def _independent_uncached(self, b0: int, b1: int, voffs, depth: int) -> bool:
        acc: dict[str, list] = {"in": [], "acc": [], "out": []}
        if not self._probe(b0, b1, voffs, depth, acc):
            return False
        for recs in acc.values():
            writes = [(addrs, it) for addrs, it, is_write in recs if is_write]
            if not writes:
                continue
            # Vectorised (a Python dict per address dominated loops of small MVMs): record one writer
            # per address; any address whose recorded writer differs from one of its writers has two.
            wa, wi = np.concatenate([w for w, _ in writes]), np.concatenate([i for _, i in writes])
            if wa.min() < 0:
                return False
            writer = np.full(int(wa.max()) + 1, -1, dtype=np.int64)
            writer[wa] = wi
            if (writer[wa] != wi).any():
                return False
            for addrs, it, is_write in recs:
                if is_write:
                    continue
                inside = (addrs >= 0) & (addrs < writer.size)
                w = writer[addrs[inside]]
                if ((w >= 0) & (w != it[inside])).any():
                    return False
        return True

    def _probe(self, b0, b1, offs, depth, acc) -> bool:
        """Walk the body (the one walk, :class:`cimtile.hw.program.Walker`) recording the buffer entries each
        MVM and REQ reads and writes into ``acc``; False if any instruction is not vectorisable or could fail."""
        try:
            _Probe(self.t, acc).block(b0, b1, offs, depth)
        except (WalkStop, Halted, _NotVector):
            return False
        return True

    def lanes(self, base: int, off, count: int = 1):
        """Index of the entries ``base + off + v``, v < ``count`` (a multi-vector MVM or REQ), lane-major: ``off``
        is an int, or the lane offsets of a vectorised loop. Consecutive entries (a loop of stride 1, the usual
        case, or one instruction's ``count`` vectors) become a slice: indexing a buffer with a slice is a view,
        with an array a gather or scatter that cost up to a millisecond per MVM at large batches. A single entry
        (``count`` 1 outside vectorised loops) is an int.
        """
        if not isinstance(off, np.ndarray):
            return base + off if count == 1 else slice(base + off, base + off + count)
        key = (id(off), count)
        e = self._runs.get(key)
        if e is None or e[0] is not off:  # the entry holds ``off``, so its id cannot be reused meanwhile
            if len(self._runs) > 4096:
                self._runs.clear()
            rel = _spread(off, count)[0]
            n = rel.size
            first = int(rel[0]) if n and bool((rel == rel[0] + np.arange(n)).all()) else None
            e = self._runs[key] = (off, first, rel)
        if e[1] is None:
            return base + e[2]
        return slice(base + e[1], base + e[1] + e[2].size)
