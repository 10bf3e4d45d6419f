"""The golden model's program-level fast path: a whole run of a straight-line program, its MVMs batched.

:class:`cimtile.sim.tile.Tile` executes one instruction at a time through its handlers, the definition of every
opcode. A compiled layer is hundreds of short, identical steps (LDIN, LDW, a LOOP of one MVM; then a LOOP of one
REQ and RDOUT), and per-instruction Python work, not arithmetic, dominated it (ResNet-18: 5,724 small MVMs per
image). This module runs such a program in three phases; it equals the instruction path in every result, state
and cycle count (``tests/test_fastrun.py`` checks it on random programs and compiled networks):

1. **Trace** (once per program words and starting configuration, cached by the Tile): the handlers themselves
   run in timing mode on a shadow tile, so every error check, configuration change and cycle count is theirs.
   The trace records the loads in feed order, which load last wrote each input vector and each column, and the
   MVM, REQ and read steps with their buffer ranges. A program is *eligible* when it uses only CFG, WIN,
   CFGRQ, SYNC, NOP, HALT, LDW, LDIN, LDRQ, MVM, REQ, RDOUT, RDACC and loops whose body is one MVM, REQ or NOP
   over consecutive addresses (an MVM or REQ of ``count`` vectors is such a loop in one word; in a loop its
   strides must equal its count), runs without an error, and every MVM reads input vectors written by one LDIN of
   the same run and cells written by one LDW of the same run. Anything else (and any feed block the handlers
   would reject) runs on the instruction path, which raises the errors.
2. **MVMs**: an MVM's operands are then slices of feed blocks, known before the run. MVMs over the same input
   block and rows (a layer's column tiles) are checked for clipping together (:func:`fastmvm.linear_many`)
   and their lossless windows computed as one GEMM of the concatenated weight columns; a window that may clip
   takes :func:`fastmvm.mvm`, the same exact kernel as the instruction path.
3. **Replay** in program order: LDRQ, the accumulator updates (a chain of accumulating MVMs into the same
   accumulators is summed first and stored once: wrapping is modular, so ``wrap(wrap(a + y1) + y2) =
   wrap(a + y1 + y2)``), REQ and the reads. Cells and input vectors get their last writer's block at the end,
   as the instruction path leaves them.

With a device model (:mod:`cimtile.sim.device`) LDW programs the cells in load order as the instruction path
does, and MVMs take :meth:`DeviceArray.mvm_many`.
"""

from __future__ import annotations

import operator
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from cimtile.hw.isa import Cause, Opcode
from cimtile.hw.program import Halted, Walker, WalkStop, loop_strides

from . import fastmvm, kernels

if TYPE_CHECKING:  # pragma: no cover
    from .tile import Tile

__all__ = ["FAST_OPS", "Plan", "cached_plan", "freeze", "frozen", "groups", "plan", "run"]

#: Opcodes an eligible program may contain.
FAST_OPS = frozenset({Opcode.NOP, Opcode.HALT, Opcode.SYNC, Opcode.CFG, Opcode.WIN, Opcode.CFGRQ, Opcode.LOOP,
                      Opcode.LDW, Opcode.LDIN, Opcode.LDRQ, Opcode.MVM, Opcode.REQ, Opcode.RDOUT, Opcode.RDACC})
_BODY_OPS = frozenset({Opcode.NOP, Opcode.MVM, Opcode.REQ})
_COUNTED = frozenset({Opcode.MVM, Opcode.REQ})  # opcodes with a vector count (docs/isa.md)


class _Ineligible(Exception):
    pass


def freeze(a) -> np.ndarray:
    """A read-only copy of ``a`` whose values cannot change: its memory is a ``bytes`` object, and NumPy refuses to
    make an array over one writeable (nor any view of it). The fast path trusts such arrays (:func:`frozen`) to hold
    the values it saw before: a runtime that loads the same frozen blocks every run saves their checks and the
    comparison of the cells with the kept analysis."""
    a = np.asarray(a)
    return np.frombuffer(np.ascontiguousarray(a).tobytes(), dtype=a.dtype).reshape(a.shape)


def frozen(a) -> bool:
    """True when ``a``'s values cannot change: ``a`` and every array it is a view of are read-only and its memory is
    a ``bytes`` object (as :func:`freeze` makes; a read-only array over other memory could still change)."""
    b = a
    while isinstance(b, np.ndarray):
        if b.flags.writeable:
            return False
        b = b.base
    return type(b) is bytes


@dataclass(frozen=True)
class _Mvm:
    """One MVM step (``lanes`` iterations of a loop, or one instruction)."""

    in_load: int  # the LDIN whose block holds the input vectors, and the first vector's index in it
    in_off: int
    lanes: int
    window: tuple  # (r0, nr, c0, nc)
    ldw_load: int  # the LDW whose block holds the window's columns, and the window's first column in it
    col_off: int
    layer: object
    geo: object
    acc: int  # first accumulator address
    accumulate: bool


@dataclass
class Plan:
    """What a trace found (see the module docstring): an eligible run's loads, steps, final state and cycles."""

    cycles: int
    instrs: int
    final: tuple  # (layer, window, rq, sync_tag) after the run
    loads: list  # (opcode, start, count) per feed block, in feed order
    mvms: list  # _Mvm
    steps: list  # ("rq", load) | ("chain", chain) | ("req", acc, out, lanes, n_out, rq) | ("rd", op, start, n)
    shapes: list = field(default_factory=list)  # per MVM: what, besides its input block, groups MVMs (see groups)
    final_loads: list = field(default_factory=list)  # loads whose block is (partly) in a buffer after the run
    covered: frozenset = frozenset()  # LDW loads some MVM window covers whole (rows and columns)
    chains: list = field(default_factory=list)  # [mvm indices]: consecutive MVMs into the same accumulators
    chain_of: list = field(default_factory=list)  # per MVM, its chain
    ldw_used: list = field(default_factory=list)  # the LDW loads some MVM reads, in order
    in_used: list = field(default_factory=list)  # the LDIN loads some MVM reads, in order
    memo: dict = field(default_factory=dict)  # groupings by the pattern of identical input blocks (see _grouping)
    #: per load, weak references to the frozen LDW or LDRQ blocks runs of this plan took there after every check
    #: (see _blocks), by id (programs of the same words run on several layers' blocks)
    checked: list = field(default_factory=list)
    static: list = field(default_factory=list)  # the loads other than LDIN
    ldins: list = field(default_factory=list)  # the LDIN loads


class _Tracer(Walker):
    """Walks the program with the handlers in timing mode on a shadow tile, recording an eligible run's steps."""

    def __init__(self, t: Tile, shadow: Tile):
        super().__init__(t.program, t.cfg.loop_depth)
        from .tile import HANDLERS

        self.handlers = HANDLERS
        self.sh, self.cfg = shadow, t.cfg
        self.cycles = self.instrs = 0
        self.loads: list = []
        self.mvms: list = []
        self.steps: list = []
        self.col_writer = np.full(t.cfg.cols, -1, dtype=np.int64)
        self.in_writer = np.full(t.cfg.in_depth, -1, dtype=np.int64)

    def step(self, pc, d, offs) -> None:
        if d.op not in FAST_OPS:
            raise _Ineligible
        self.cycles += self.handlers[d.op](self.sh, d, pc, offs)
        self.instrs += 1
        # (a multi-vector MVM or REQ is recorded as the loop of single ones it equals: count consecutive vectors)
        self._record(d, offs, d.args["count"] if d.op in _COUNTED else 1)

    def loop(self, pc, d, b1, offs, depth) -> None:
        self.step(pc, d, offs)
        n = d.args["count"]
        if n == 0:
            return
        body = self.program[pc + 1]
        if b1 != pc + 2 or depth > 0 or body.cause is not Cause.NONE or body.op not in _BODY_OPS:
            raise _Ineligible
        st = loop_strides(d)
        k = body.args["count"] if body.op in _COUNTED else 1  # vectors per iteration
        if n > 1 and ((body.op is Opcode.MVM and st[:2] != (k, k)) or (body.op is Opcode.REQ and st[1:] != (k, k))):
            raise _Ineligible  # (not consecutive addresses: left to the instruction path)
        # Addresses grow with the iteration, so the last iteration's checks are every iteration's.
        last = tuple(o + (n - 1) * s for o, s in zip(offs, st))
        self.cycles += self.handlers[body.op](self.sh, body, pc + 1, last) * n
        self.instrs += n
        self._record(body, offs, n * k)

    def _record(self, d, offs, n: int) -> None:
        op, a, sh = d.op, d.args, self.sh
        if op in (Opcode.LDW, Opcode.LDIN, Opcode.LDRQ):
            s = a["start"] + (offs[0] if op is Opcode.LDIN else 0)
            k = len(self.loads)
            self.loads.append((op, s, a["count"]))
            if op is Opcode.LDW:
                self.col_writer[s:s + a["count"]] = k
            elif op is Opcode.LDIN:
                self.in_writer[s:s + a["count"]] = k
            else:
                self.steps.append(("rq", k))
        elif op is Opcode.MVM:
            r0, nr, c0, nc = sh.window
            if nr == 0 or nc == 0:
                raise _Ineligible
            ia, aa = a["in_addr"] + offs[0], a["acc_addr"] + offs[1]
            ins, cols = self.in_writer[ia:ia + n], self.col_writer[c0:c0 + nc]
            k, j = int(ins[0]), int(cols[0])
            if k < 0 or j < 0 or (ins != k).any() or (cols != j).any():
                raise _Ineligible  # operands from before this run or from several loads
            self.steps.append(("chain", [len(self.mvms)]))
            self.mvms.append(_Mvm(k, ia - self.loads[k][1], n, sh.window, j, c0 - self.loads[j][1], sh.layer,
                                  sh.geometry(), aa, bool(a["accumulate"])))
        elif op is Opcode.REQ:
            self.steps.append(("req", a["acc_addr"] + offs[1], a["out_addr"] + offs[2], n, sh.geometry().n_out,
                               sh.rq))
        elif op is Opcode.RDOUT:
            self.steps.append(("rd", op, a["start"] + offs[2], a["count"]))
        elif op is Opcode.RDACC:
            self.steps.append(("rd", op, a["start"] + offs[1], a["count"]))


def plan(t: Tile) -> Plan | None:
    """The fast path's plan of running ``t.program`` from ``t``'s configuration, or None when not eligible."""
    from .tile import Tile

    shadow = Tile(t.cfg, 1, fast=False)
    shadow._timing = True
    shadow.layer, shadow.window, shadow.rq, shadow.sync_tag = t.layer, t.window, t.rq, t.sync_tag
    tr = _Tracer(t, shadow)
    try:
        tr.walk()
    except Halted:
        pass
    except (WalkStop, _Ineligible):
        return None
    # Chains: consecutive MVM steps into the same accumulators, all but the first accumulating.
    steps: list = []
    chains: list = []
    for s in tr.steps:
        if s[0] == "chain" and steps and steps[-1][0] == "chain":
            prev, m = tr.mvms[chains[-1][-1]], tr.mvms[s[1][0]]
            if m.accumulate and (m.acc, m.lanes, m.geo.n_out) == (prev.acc, prev.lanes, prev.geo.n_out):
                chains[-1].append(s[1][0])
                continue
        if s[0] == "chain":
            chains.append(list(s[1]))
            s = ("chain", len(chains) - 1)
        steps.append(s)
    chain_of = [0] * len(tr.mvms)
    for c, members in enumerate(chains):
        for i in members:
            chain_of[i] = c
    final = sorted(set(tr.col_writer[tr.col_writer >= 0].tolist()) | set(tr.in_writer[tr.in_writer >= 0].tolist()))
    shapes = [(m.in_off, m.lanes, m.window[0], m.window[1], m.window[3], m.layer, m.geo) for m in tr.mvms]
    covered = frozenset(m.ldw_load for m in tr.mvms if m.window[0] == 0 and m.window[1] == t.cfg.rows
                        and m.col_off == 0 and m.window[3] == tr.loads[m.ldw_load][2])
    return Plan(tr.cycles, tr.instrs, (shadow.layer, shadow.window, shadow.rq, shadow.sync_tag), tr.loads,
                tr.mvms, steps, shapes, final, covered, chains, chain_of,
                sorted({m.ldw_load for m in tr.mvms}), sorted({m.in_load for m in tr.mvms}), {},
                [{} for _ in tr.loads], [k for k, x in enumerate(tr.loads) if x[0] is not Opcode.LDIN],
                [k for k, x in enumerate(tr.loads) if x[0] is Opcode.LDIN])


_PLANS: dict = {}  # (cfg, words, layer, window, rq, sync_tag) -> Plan or None


def cached_plan(t: Tile) -> Plan | None:
    """:func:`plan`, remembered under everything it depends on: the configuration, the program words and the
    starting layer, window, requantisation setting and sync tag (a runtime makes new Tiles for every network run,
    so the cache is shared by all Tiles). Plans are only read; the cache is cleared when it grows past 4,096."""
    prog, words = t._loaded
    key = (t.cfg, words if prog is t.program and len(words) == len(prog) else tuple(d.word for d in t.program),
           t.layer, t.window, t.rq, t.sync_tag)
    p = _PLANS.get(key, False)
    if p is False:
        if len(_PLANS) > 4096:
            _PLANS.clear()
        p = _PLANS[key] = plan(t)
    return p


def _blocks(t: Tile, p: Plan, feed, defer: bool) -> tuple[list, set] | None:
    """The run's feed blocks, checked as the load handlers check them, or None if any would be rejected; and the
    LDW blocks whose level check is left to :func:`_values` (``defer``: uint8 blocks some MVM window covers whole,
    checked there in one pass over the windows' stack)."""
    from cimtile.hw.isa import RQ_RECORD, field_range

    from .tile import RQ_WHAT, block_error, rq_error

    c = t.cfg
    if feed.remaining() < len(p.loads):
        return None
    raw = feed._blocks[feed._pos:feed._pos + len(p.loads)]
    checked = p.checked
    if all(_seen(checked[k], raw[k]) for k in p.static):
        # (the usual case: every LDW and LDRQ block is a frozen block a run checked before, see below)
        todo = p.ldins
        out = list(raw)
    else:
        todo = range(len(p.loads))
        out = [None] * len(p.loads)
    unchecked = set()
    for k in todo:
        (op, _, n), b = p.loads[k], raw[k]
        if op is not Opcode.LDIN and _seen(checked[k], b):
            # a frozen block (its values cannot change) that passed every check at this load before (the weak
            # reference is dead once the block is gone, so another object cannot take its place)
            out[k] = b
            continue
        b = np.asarray(b)
        if op is Opcode.LDW:
            if defer and k in p.covered and b.dtype == np.uint8 and b.shape == (c.rows, n):
                err = None
                unchecked.add(k)
            else:
                err = block_error(b, ((c.rows, n),), "cell levels", 0, c.max_level)
        elif op is Opcode.LDIN:
            if b.shape in ((n, c.rows), (t.batch, n, c.rows)) and b.dtype == np.uint8:
                err = None  # (bytes are in range)
            else:
                err = block_error(b, ((n, c.rows), (t.batch, n, c.rows)), "input bytes", -128, 255)
            if err is None and b.dtype != np.uint8:
                b = (b.astype(np.int64) & 0xFF).astype(np.uint8)
        else:
            err = block_error(b, ((n, 3),), RQ_WHAT, *field_range(RQ_RECORD, "bias"))
            if err is None:
                b = b.astype(np.int64, copy=False)  # (only read)
                err = rq_error(b)
        if err is not None:
            return None
        out[k] = b
    return out, unchecked


def _mark_checked(p: Plan, blocks: list) -> None:
    """After a run's checks all passed (those :func:`_blocks` deferred included): remember its frozen LDW and LDRQ
    blocks, whose checks later runs then skip."""
    for k in p.static:
        b, refs = blocks[k], p.checked[k]
        if not _seen(refs, b) and frozen(b):
            if len(refs) >= 64:
                refs.clear()
            refs[id(b)] = weakref.ref(b)


def _seen(refs: dict, b) -> bool:
    """``b`` is a frozen block of ``refs`` (weak references by id: a dead one cannot stand for another object)."""
    r = refs.get(id(b))
    return r is not None and r() is b


#: REQ's float64 parameters per frozen LDRQ block: (id, lanes, CFGRQ setting) -> (weak reference, parameters).
_RQ: dict = {}


def _rq_params(b: np.ndarray, n: int, rq: tuple) -> tuple | None:
    """:func:`kernels.rq_params` of the first ``n`` records of frozen LDRQ block ``b`` (int64, checked) under CFGRQ
    setting ``rq``, for int32 accumulators; remembered (the block's values cannot change)."""
    key = (id(b), n, rq)
    hit = _RQ.get(key)
    if hit is not None and hit[0]() is b:
        return hit[1]
    P = kernels.rq_params(b[:n, 0], b[:n, 1], b[:n, 2], *rq, 1 << 31)
    if len(_RQ) > 4096:
        _RQ.clear()
    _RQ[key] = (weakref.ref(b), P)
    return P


def _known_frozen(p: Plan, blocks: list, k: int) -> bool:
    return _seen(p.checked[k], blocks[k]) or frozen(blocks[k])


def groups(p: Plan, blocks: list) -> list:
    """The MVMs of a run in groups over the same input vectors and rows, layer and window shape (lists of MVM
    indices in program order). The same input block object (a runtime loads one block for every column tile of a
    layer) is the same input: feed blocks are never written."""
    return [list(g) for g in _grouping(p, blocks)]


def _grouping(p: Plan, blocks: list) -> tuple:
    """:func:`groups` as a tuple of tuples, remembered per plan for each pattern of identical input blocks (which
    of the plan's LDIN loads hold the same object): nothing else of the run decides it."""
    first: dict = {}
    sig = tuple(first.setdefault(id(blocks[k]), i) for i, k in enumerate(p.in_used))
    g = p.memo.get(sig)
    if g is None:
        at = {k: i for i, k in enumerate(p.in_used)}
        d: dict = {}
        for i, (m, shape) in enumerate(zip(p.mvms, p.shapes)):
            d.setdefault((sig[at[m.in_load]], shape), []).append(i)
        if len(p.memo) > 64:
            p.memo.clear()
        g = p.memo[sig] = tuple(map(tuple, d.values()))
    return g


def side_by_side(wins: list) -> np.ndarray:
    """Windows of one shape side by side, ``(rows, k * cols)``: a view when they lie next to each other in one
    array (a runtime's LDW blocks of consecutive column tiles are views of the layer's levels), else a copy."""
    w0 = wins[0]
    if len(wins) == 1:
        return w0
    nc = w0.shape[1]
    base, st = w0.base, w0.strides
    at = w0.__array_interface__["data"][0]
    step = nc * st[1]
    for i, w in enumerate(wins):
        if base is None or w.base is not base or w.strides != st or w.__array_interface__["data"][0] != at + i * step:
            return np.concatenate(wins, axis=1)
    return np.lib.stride_tricks.as_strided(w0, (w0.shape[0], nc * len(wins)), st, writeable=False)


def _inputs(t: Tile, blk: np.ndarray, m: _Mvm) -> np.ndarray:
    """The MVM's input bytes, (batch * lanes) x window rows."""
    r0, nr = m.window[0], m.window[1]
    if blk.ndim == 2:  # one block for every copy of the batch
        x = blk[m.in_off:m.in_off + m.lanes, r0:r0 + nr]
        return np.broadcast_to(x, (t.batch,) + x.shape).reshape(-1, nr)
    return blk[:, m.in_off:m.in_off + m.lanes, r0:r0 + nr].reshape(-1, nr)


@dataclass
class _Part:
    """One product of an analysis: the groups over one vector count (and input format) side by side."""

    key: tuple  # (lanes, abits, asigned)
    groups: list  # group indices, in row order
    col: dict  # chain -> its first column
    W: np.ndarray  # (rows, columns) effective weights, or int8 when ``off`` is not None
    off: np.ndarray | None  # int8 product: ``128 * sum_r W`` for unsigned inputs (zeros for signed)
    top: int  # bound on every column's sum


@dataclass
class _Analysis:
    """Everything :func:`_totals` derives from the cells of one run (not from the inputs), and copies of the
    cells (and masks) it was derived from: a later run of the same plan reuses it when its cells are equal."""

    grouping: tuple
    sides: list  # per group: the windows side by side (a copy)
    masks: list | None
    clip: list  # per group: positions of windows that may clip (the exact kernel, every run)
    parts: list  # _Part
    bounds: list  # per chain: bound on its lossless sum
    nbytes: int = 0


#: Analyses kept for reuse (:func:`_analysis`): (plan id, grouping, where the cells lie) -> (plan, analysis), least
#: recently used first.
_ANALYSES: OrderedDict = OrderedDict()
#: Memory the kept analyses may hold (their copies of the cells and the weights).
ANALYSIS_BYTES = 256 << 20


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """``a == b`` everywhere (same shape), compared eight bytes at a time where the rows allow it."""
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype == np.uint8 and a.ndim == 2 and a.strides[1] == 1 and a.shape[1] % 8 == 0:
        return bool((a.view(np.uint64) == b.view(np.uint64)).all())
    return bool(np.array_equal(a, b))


def _analysis(t: Tile, p: Plan, blocks: list, grp: list, unchecked: set) -> _Analysis | None:
    """The run's analysis: the one kept for this plan if its cells (and masks) equal this run's, else a new one
    (None when an LDW block of ``unchecked`` holds a value that is not a cell level)."""
    cfg = t.cfg
    any_mask = bool(t.masks.any())
    grouping = grp
    fkey = None
    if not any_mask:
        # Frozen LDW blocks (their values cannot change, see freeze) that are the very objects of a kept analysis
        # are its cells: it is reused without looking at them. The entry holds the blocks, so their ids stay theirs.
        ldw = [blocks[k] for k in p.ldw_used]
        key = ("frozen", id(p), grouping, tuple(map(id, ldw)))
        kept = _ANALYSES.get(key)
        if kept is not None and kept[0] is p and all(map(operator.is_, kept[2], ldw)):
            # (the entry's blocks were frozen when it was made, and stay so: NumPy cannot make them writeable)
            _ANALYSES.move_to_end(key)
            return kept[1]
        if all(_known_frozen(p, blocks, k) for k in p.ldw_used):
            fkey = key
    sides, masks = [], [] if any_mask else None
    for idx in grp:
        m0 = p.mvms[idx[0]]
        r0, nr, _, nc = m0.window
        sides.append(side_by_side([blocks[p.mvms[i].ldw_load][r0:r0 + nr, p.mvms[i].col_off:p.mvms[i].col_off + nc]
                                   for i in idx]))
        if any_mask:
            masks.append(side_by_side([t.masks[r0:r0 + nr, p.mvms[i].window[2]:p.mvms[i].window[2] + nc]
                                       for i in idx]))
    # Kept per plan and where the cells lie (layers of one shape run the same program on other cells); reused
    # only when equal, so a changed array, or another at the same address, is analysed anew.
    where = (id(p), grouping, tuple((x.__array_interface__["data"][0], x.strides) for x in sides))
    kept = _ANALYSES.get(where)
    if kept is not None and kept[0] is p and fkey is None:
        a = kept[1]
        if a.grouping == grouping and (a.masks is None) == (masks is None) \
                and all(_equal(x, y) for x, y in zip(sides, a.sides)) \
                and (masks is None or all(_equal(x, y) for x, y in zip(masks, a.masks))):
            _ANALYSES.move_to_end(where)
            return a  # (its cells were checked when it was made, and these are equal)
    chain_of = p.chain_of
    clip, lossless = [], {}
    for g, idx in enumerate(grp):
        m0, side = p.mvms[idx[0]], sides[g]
        if unchecked and any(p.mvms[i].ldw_load in unchecked for i in idx):
            # The level check of LDW blocks these windows cover whole (see _blocks), in one pass over them.
            if side.dtype != np.uint8 or (side.size and side.max() > cfg.max_level):
                return None
            unchecked.difference_update(p.mvms[i].ldw_load for i in idx)
        lin = fastmvm.linear_many(side, None if masks is None else masks[g], len(idx), m0.layer, m0.geo, cfg)
        ok = [False] * len(idx) if lin is None else lin[1].tolist()
        clip.append([j for j, good in enumerate(ok) if not good])
        if any(ok):
            key = (m0.lanes, m0.layer.abits, m0.layer.asigned)  # (vectors: lanes x the Tile's batch)
            lossless.setdefault(key, []).append((g, lin[0], [(i, j) for j, (i, good) in enumerate(zip(idx, ok))
                                                              if good], lin[2]))
    bounds = [0] * len(p.chains)
    parts = []
    mm = fastmvm._i8mm()
    for key, part in lossless.items():
        # Columns: each chain with a lossless MVM in this part, n_out wide; rows: each group's window rows.
        col: dict = {}
        width = 0
        for _, _, members, bound in part:
            for i, _ in members:
                c = chain_of[i]
                if c not in col:
                    col[c] = width
                    width += p.mvms[i].geo.n_out
                bounds[c] += bound
        K = sum(w.shape[0] for _, w, *_ in part)
        W = np.zeros((K, width), dtype=np.float64 if any(w.dtype == np.float64 for _, w, *_ in part) else np.float32)
        r = 0
        for _, w, members, _ in part:
            nr = w.shape[0]
            n = p.mvms[members[0][0]].geo.n_out
            c0, j0 = col[chain_of[members[0][0]]], members[0][1]
            if all(col[chain_of[i]] == c0 + (j - j0) * n and p.mvms[i].geo.n_out == n and j - j0 == q
                   for q, (i, j) in enumerate(members)) and len(set(chain_of[i] for i, _ in members)) == len(members):
                W[r:r + nr, c0:c0 + len(members) * n] = w[:, j0 * n:(j0 + len(members)) * n]  # (the usual case)
            else:  # (a chain that uses the same inputs twice adds its weights)
                for i, j in members:
                    n = p.mvms[i].geo.n_out
                    W[r:r + nr, col[chain_of[i]]:col[chain_of[i]] + n] += w[:, j * n:(j + 1) * n]
            r += nr
        off = None
        if mm is not None and K <= fastmvm.I8_MAX_K and key[1] == 8 and W.size and W.min() >= -128 and W.max() <= 127:
            # The int8 product: unsigned inputs go in as x - 128 (the byte x ^ 0x80 read as int8) and get
            # 128 * sum_r W[r, j] back (as fastmvm._Linear8); column sums are exact in float32 (|sum| <= 128 K < 2**24).
            off = np.zeros(width, dtype=np.int32) if key[2] else \
                (W.sum(axis=0, dtype=np.float32) * 128).astype(np.int32)
            W = W.astype(np.int8)
        parts.append(_Part(key, [g for g, *_ in part], col, W, off, max(bounds[c] for c in col)))
    # (frozen cells are kept as they are: they cannot change)
    a = _Analysis(grouping, sides if fkey is not None else [x.copy() for x in sides],
                  None if masks is None else [x.copy() for x in masks], clip, parts, bounds)
    # (frozen: the blocks it holds instead of copies)
    a.nbytes = sum(x.nbytes for x in (ldw if fkey is not None else a.sides)) + sum(q.W.nbytes for q in parts) + (
        0 if masks is None else sum(x.nbytes for x in a.masks))
    if fkey is not None:
        where = fkey
    _ANALYSES.pop(where, None)
    _ANALYSES[where] = (p, a, None if fkey is None else ldw)
    while len(_ANALYSES) > 1 and sum(e[1].nbytes for e in _ANALYSES.values()) > ANALYSIS_BYTES:
        _ANALYSES.popitem(last=False)
    return a


def _totals(t: Tile, p: Plan, blocks: list, unchecked: set) -> list | None:
    """Every chain's sum of MVM values (an integer array, batch * lanes x n_out, before wrapping) and a bound on its
    magnitude (None: unknown, wrap it), ideal array; None when an LDW block of ``unchecked`` holds a value that is
    not a cell level (nothing is changed before this check).

    MVMs over the same inputs are checked for clipping together (:func:`fastmvm.linear_many`). The lossless ones
    are then one product per vector count: the distinct input blocks side by side times the weights of every
    chain placed at their rows (summed where a chain uses the same inputs twice), so the product's columns are the
    chains' sums: ``sum_m x_m @ W_m``. Windows that may clip take the exact kernel, :func:`fastmvm.mvm`, and are
    added to their chain. The analysis (clipping checks and weights) depends only on the cells: it is kept and
    reused while they are equal (:func:`_analysis`)."""
    cfg = t.cfg
    grp = _grouping(p, blocks)
    a = _analysis(t, p, blocks, grp, unchecked)
    if a is None:
        return None
    u8s = [_inputs(t, blocks[p.mvms[idx[0]].in_load], p.mvms[idx[0]]) for idx in grp]
    sums: list = [[] for _ in p.chains]
    extra: list = [[] for _ in p.chains]  # exact values of the windows that may clip, per chain
    for g, js in enumerate(a.clip):
        if js:
            idx, m0 = grp[g], p.mvms[grp[g][0]]
            nc = m0.window[3]
            for j in js:
                win = a.sides[g][:, j * nc:(j + 1) * nc]
                mw = np.zeros(win.shape, dtype=bool) if a.masks is None else a.masks[g][:, j * nc:(j + 1) * nc]
                extra[p.chain_of[idx[j]]].append(fastmvm.mvm(u8s[g], win, mw, m0.layer, m0.geo, cfg))
    for q in a.parts:
        X = u8s[q.groups[0]] if len(q.groups) == 1 else np.concatenate([u8s[g] for g in q.groups], axis=1)
        _, abits, asigned = q.key
        mm = fastmvm._i8mm()
        if q.off is not None and mm is not None:
            xi = np.ascontiguousarray(X).view(np.int8) if asigned else np.bitwise_xor(X, np.uint8(0x80)).view(np.int8)
            y = mm(xi, q.W)
            y += q.off
        else:
            # exact: every partial sum is an integer below the bound of its column's sum
            dt = np.float32 if q.top < fastmvm.F32_EXACT and q.W.dtype == np.float32 else np.float64
            y = fastmvm._values(X, abits, asigned, dt) @ q.W.astype(dt, copy=False)
            y = y.astype(np.int32 if q.top < 1 << 31 else np.int64)
        for c, at in q.col.items():
            sums[c].append(y[:, at:at + p.mvms[p.chains[c][0]].geo.n_out])
    out = []
    for c in range(len(p.chains)):
        vals = sums[c] + extra[c]
        y = vals[0]
        for v in vals[1:]:
            y = y.astype(np.int64) + v
        out.append((y, None if extra[c] else a.bounds[c]))
    return out


def _check_covered(t: Tile, p: Plan, blocks: list, unchecked: set) -> bool:
    """The level check of the LDW blocks ``_blocks`` left unchecked, one pass per group of windows side by side."""
    for idx in _grouping(p, blocks):
        if any(p.mvms[i].ldw_load in unchecked for i in idx):
            m0 = p.mvms[idx[0]]
            r0, nr, _, nc = m0.window
            side = side_by_side([blocks[p.mvms[i].ldw_load][r0:r0 + nr, p.mvms[i].col_off:p.mvms[i].col_off + nc]
                                 for i in idx])
            if side.size and side.max() > t.cfg.max_level:
                return False
    return True


def _chain_sums(p: Plan, vals: list) -> list:
    """Per chain, the sum of its MVMs' ``(value, bound)`` (bound None: unknown)."""
    out = []
    for members in p.chains:
        y, bound = vals[members[0]]
        for i in members[1:]:
            v, b = vals[i]
            total = None if bound is None or b is None else bound + b
            if total is None or total >= 1 << 31:
                y = y.astype(np.int64)
            y = y + v
            bound = total
        out.append((y, bound))
    return out


def run(t: Tile, p: Plan, feed) -> bool:
    """Run plan ``p`` on ``t`` with ``feed`` (a :class:`cimtile.sim.tile.Feed`): True when done (cycles and
    outputs as the instruction path's: the caller builds the result from ``p``), False (nothing changed, no
    feed block taken) when a feed block would be rejected: the instruction path then raises its error."""
    from .tile import _store_acc

    c = t.cfg
    dev = t.device
    got = _blocks(t, p, feed, True)
    if got is None:
        return False
    blocks, unchecked = got
    if dev is not None and unchecked and not _check_covered(t, p, blocks, unchecked):
        return False  # (checked before programming: the device's streams must not move for a rejected run)
    if dev is None:
        totals = _totals(t, p, blocks, unchecked)  # (reads the blocks only)
        if totals is None:
            return False
    feed._pos += len(p.loads)
    written = list(blocks)
    _mark_checked(p, written)
    ldws = [k for k, (op, _, _) in enumerate(p.loads) if op is Opcode.LDW]
    if dev is None:
        for k in ldws:
            b = blocks[k]
            blocks[k] = b if b.dtype == np.uint8 else b.astype(np.uint8)
    else:  # device hook: programmed in load order, as the cells' uint8 levels (with a record of the cells it moved)
        for k, b in zip(ldws, dev.program_many([(blocks[k], p.loads[k][1]) for k in ldws])):
            blocks[k] = b
    if dev is not None:
        totals = _totals(t, p, blocks, set()) if t._analog is None else \
            _chain_sums(p, t._analog.mvm_many(t, p, blocks, written))
    half = 1 << (c.acc_bits - 1)
    cur = None  # the last LDRQ's (first lane, lanes, block)
    for st in p.steps:
        kind = st[0]
        if kind == "chain":
            m = p.mvms[p.chains[st[1]][0]]
            y, bound = totals[st[1]]
            if bound is None or bound >= half:
                y = kernels.wrap(y.astype(np.int64, copy=False), c.acc_bits)
            n = m.geo.n_out
            _store_acc(t, slice(m.acc, m.acc + m.lanes), n, y.reshape(t.batch, m.lanes, n), m.accumulate)
        elif kind == "req":
            _, aa, oa, lanes, n, rq = st
            acc = t.acc[:, aa:aa + lanes, :n]
            P = None
            if acc.dtype == np.int32:  # (|acc| <= 2**31: see kernels.requantise)
                if cur is not None and cur[0] == 0 and cur[1] >= n and frozen(cur[2]):
                    P = _rq_params(cur[2], n, rq)  # (lanes 0..n-1 hold the last LDRQ's records)
                else:
                    P = kernels.rq_params(t.rq_bias[:n], t.rq_mult[:n], t.rq_shift[:n], *rq, 1 << 31)
            if P is None:
                q = kernels.requantise(acc, t.rq_bias[:n], t.rq_mult[:n], t.rq_shift[:n], *rq)
                t.out[:, oa:oa + lanes, :n] = (q & 0xFF).astype(np.uint8)
            else:
                q = kernels.requantise_float(acc, P)
                q += rq[0]  # (exact: the zero point; every value lies in -128..255, an int16, whose low byte is stored)
                np.copyto(t.out[:, oa:oa + lanes, :n], q.astype(np.int16), casting="unsafe")
        elif kind == "rq":
            _, s, n = p.loads[st[1]]
            b = blocks[st[1]]
            t.rq_bias[s:s + n], t.rq_mult[s:s + n], t.rq_shift[s:s + n] = b[:, 0], b[:, 1], b[:, 2]
            cur = (s, n, b)
        else:
            _, op, s, n = st
            t._outputs.append(t.out[:, s:s + n, :].copy() if op is Opcode.RDOUT
                              else t.acc[:, s:s + n, :].astype(np.int64))
    for k in p.final_loads:  # the buffers as the instruction path leaves them (later loads overwrite earlier)
        op, s, n = p.loads[k]
        if op is Opcode.LDW:
            t.levels[:, s:s + n] = blocks[k]
        elif op is Opcode.LDIN:
            t.inbuf[:, s:s + n, :] = blocks[k]
    t.layer, t.window, t.rq, t.sync_tag = p.final
    return True
