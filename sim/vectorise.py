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
            if ia.max() >= c.in_depth or aa.max() >= c.acc_depth:
                raise _NotVector
            acc["in"].append((ia, False))
            if a["accumulate"]:
                acc["acc"].append((aa, False))
            acc["acc"].append((aa, True))
        elif d.op is Opcode.REQ:
            if not self.t.geometry().aligned:
                raise _NotVector
            aa, oa = a["acc_addr"] + offs[1], a["out_addr"] + offs[2]
            if aa.max() >= c.acc_depth or oa.max() >= c.out_depth:
                raise _NotVector
            acc["acc"].append((aa, False))
            acc["out"].append((oa, True))


class Vectoriser:
    """Loop vectorisation for one :class:`cimtile.sim.tile.Tile`, with its caches."""

    def __init__(self, tile: Tile):
        self.t = tile
        self._indep: dict = {}  # loop key -> whether its iterations are independent (see independent)
        self._voffs: dict = {}  # (offsets, strides, count) -> the offset arrays of a vectorised loop
        self._runs: dict = {}  # id(lane offsets) -> (offsets, first lane if consecutive else None) (lanes)

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
        n = len(voffs[0])
        it = np.arange(n)
        for recs in acc.values():
            writes = [addrs for addrs, is_write in recs if is_write]
            if not writes:
                continue
            # Vectorised (a Python dict per address dominated loops of small MVMs): record one writer
            # per address; any address whose recorded writer differs from one of its writers has two.
            wa, wi = np.concatenate(writes), np.tile(it, len(writes))
            if wa.min() < 0:
                return False
            writer = np.full(int(wa.max()) + 1, -1, dtype=np.int64)
            writer[wa] = wi
            if (writer[wa] != wi).any():
                return False
            for addrs, is_write in recs:
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

    def lanes(self, base: int, off):
        """Index of the entries ``base + off``: ``off`` is an int, or the lane offsets of a vectorised loop.
        Consecutive lanes (a loop of stride 1, the usual case) become a slice: indexing a buffer with a slice
        is a view, with an array a gather or scatter that cost up to a millisecond per MVM at large batches.
        """
        if not isinstance(off, np.ndarray):
            return base + off
        e = self._runs.get(id(off))
        if e is None or e[0] is not off:  # the entry holds ``off``, so its id cannot be reused meanwhile
            if len(self._runs) > 4096:
                self._runs.clear()
            n = off.size
            first = int(off[0]) if n and bool((off == off[0] + np.arange(n)).all()) else None
            e = self._runs[id(off)] = (off, first)
        if e[1] is None:
            return base + off
        return slice(base + e[1], base + e[1] + off.size)
