"""The golden model: executes instruction words on a TileConfig; the living definition of every opcode."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from cimtile.hw import isa
from cimtile.hw.isa import Cause, Decoded, Opcode
from cimtile.hw.params import TileConfig

from cimtile.errors import CimtileError

from . import kernels
from .device import DeviceArray
from .kernels import Layer

__all__ = ["Feed", "FeedError", "ProgramError", "RunResult", "Tile", "TileError", "HANDLERS"]


class TileError(CimtileError, RuntimeError):
    """The tile stopped with an error cause (raised by :meth:`RunResult.check`)."""


class FeedError(CimtileError, ValueError):
    """The host's data for a load instruction is missing or malformed."""


class ProgramError(CimtileError, ValueError):
    """A program cannot be loaded (too long for the program memory, word out of range)."""


class _Stop(Exception):
    def __init__(self, cause: Cause, pc: int, detail: str = ""):
        self.cause, self.pc, self.detail = cause, pc, detail


class _Halt(Exception):
    pass


@dataclass
class RunResult:
    """What one run did: cycles, instructions, how it ended, and the blocks the read instructions sent."""

    cycles: int
    instructions: int
    halted: bool
    cause: Cause
    pc: int | None
    detail: str
    outputs: list = field(default_factory=list)
    sync_tag: int = 0
    text: str = ""  # disassembly of the instruction that stopped the run with an error

    @property
    def ok(self) -> bool:
        return self.cause is Cause.NONE and self.halted

    def check(self) -> RunResult:
        if self.cause is not Cause.NONE:
            raise TileError(f"pc {self.pc}: {self.text}: {self.cause.name}: {self.detail}")
        return self


class Feed:
    """The data-in stream as a queue of NumPy blocks, one per load instruction, in program order.

    Block shapes: LDW ``(rows, count)`` levels; LDM ``(rows, count)`` 0/1; LDIN ``(count, rows)`` or
    ``(batch, count, rows)`` bytes (-128..255); LDD ``(count, delta_len)`` -128..127; LDRQ
    ``(count, 3)`` rows of (bias, multiplier, shift).
    """

    def __init__(self, blocks: Iterable | None = None):
        self._blocks = list(blocks or [])
        self._pos = 0

    def append(self, block) -> None:
        self._blocks.append(block)

    def remaining(self) -> int:
        return len(self._blocks) - self._pos

    def take(self, pc: int, d: Decoded) -> np.ndarray:
        if self._pos >= len(self._blocks):
            raise FeedError(f"pc {pc}: {d.text()}: the data-in feed has no block left")
        b = self._blocks[self._pos]
        self._pos += 1
        return np.asarray(b)


def _take(t: Tile, d: Decoded, pc: int, shapes: tuple, what: str, lo: int, hi: int) -> np.ndarray:
    """The next feed block for a load: one of ``shapes``, every value in lo..hi, else a one-line FeedError."""
    b = t._feed.take(pc, d)
    if b.shape not in shapes:
        want = " or ".join(str(tuple(x)) for x in shapes)
        raise FeedError(f"pc {pc}: {d.text()}: expected {what} of shape {want}, got shape {tuple(b.shape)}")
    # Bytes cannot be negative: a uint8 block (the runtime's usual input) skips the lower bound.
    if b.size and ((b.dtype != np.uint8 and b.min() < lo) or b.max() > hi):
        raise FeedError(f"pc {pc}: {d.text()}: {what} outside {lo}..{hi}")
    return b


class Tile:
    """Golden model of one tile, batched: ``batch`` independent copies of the input, accumulator and
    output buffers share the cell array, the masks, the deltas and the configuration.

    Every opcode has one handler in :data:`HANDLERS`. Cycles are counted with :func:`cimtile.hw.isa.cycles`,
    the documented formulas. Loops whose iterations are provably independent (only MVM, REQ, NOP and
    nested loops in the body, disjoint addresses) run as one batched step per body instruction.

    ``device``: a :class:`~cimtile.sim.device.DeviceModel` or :class:`~cimtile.sim.device.DeviceArray` (cell
    non-idealities, docs/devices.md), or None for an ideal array.
    """

    def __init__(self, cfg: TileConfig, batch: int = 1, *, vectorize: bool = True, device=None):
        if batch < 1:
            raise ValueError(f"batch = {batch}: must be >= 1")
        self.cfg = cfg
        # -- device-model hook (sim/device.py): None, or a DeviceArray whose model is not off. Programming
        # effects change stored levels at LDW/WSET/VAU; read effects (golden-model-only) replace the MVM kernel.
        if device is not None and not isinstance(device, DeviceArray):
            device = device.array(cfg)
        self.device = device if device is not None and not device.model.off else None
        self._analog = self.device if self.device is not None and self.device.model.analog else None
        self.batch = batch
        self.vectorize = vectorize
        self._ns = isa.cfg_namespace(cfg)
        self.program: list[Decoded] = []
        self._indep: dict = {}  # loop key -> whether its iterations are independent (see _independent)
        self._voffs: dict = {}  # (offsets, strides, count) -> the offset arrays of a vectorised loop
        self._costs: dict = {}  # (word, geometry) -> cycles (see _cost)
        self._runs: dict = {}  # id(lane offsets) -> (offsets, first lane if consecutive else None) (_lanes)
        self.reset()

    # -- state -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Power-on state (see docs/isa.md, Execution model)."""
        c, B = self.cfg, self.batch
        self.levels = np.zeros((c.rows, c.cols), dtype=np.int64)
        self.masks = np.zeros((c.rows, c.cols), dtype=bool)
        self.inbuf = np.zeros((B, c.in_depth, c.rows), dtype=np.uint8)
        self.acc = np.zeros((B, c.acc_depth, c.cols), dtype=np.int64)
        self.out = np.zeros((B, c.out_depth, c.cols), dtype=np.uint8)
        self.delta = np.zeros((c.delta_depth, c.delta_len), dtype=np.int64)
        self.rq_bias = np.zeros(c.cols, dtype=np.int64)
        self.rq_mult = np.ones(c.cols, dtype=np.int64)
        self.rq_shift = np.zeros(c.cols, dtype=np.int64)
        self.layer = Layer()
        self.window = (0, c.rows, 0, c.cols)
        self.rq = (0, -128, 127, False)
        self.sync_tag = 0
        self._geo_cache = {}

    def state(self) -> dict[str, np.ndarray]:
        """Copies of every memory, for comparison with the RTL."""
        return {
            "levels": self.levels.copy(), "masks": self.masks.copy(), "inbuf": self.inbuf.copy(),
            "acc": self.acc.copy(), "out": self.out.copy(), "delta": self.delta.copy(),
            "rq_bias": self.rq_bias.copy(), "rq_mult": self.rq_mult.copy(), "rq_shift": self.rq_shift.copy(),
        }

    def geometry(self) -> isa.Geometry:
        key = (self.layer, self.window)
        g = self._geo_cache.get(key)
        if g is None:
            L, (_, nr, _, nc) = self.layer, self.window
            g = isa.geometry(self.cfg, L.wbits, L.abits, L.wsigned, L.asigned, nr, nc)
            self._geo_cache[key] = g
        return g

    # -- running -----------------------------------------------------------------------------

    def load(self, program: Sequence[int]) -> None:
        """Write a program into program memory (as the instruction stream does)."""
        words = []
        for i, w in enumerate(program):
            # operator.index, not int(): int(1.5) would silently run word 1
            if isinstance(w, bool):
                raise ProgramError(f"word {i} = {w!r}: expected an integer instruction word")
            try:
                words.append(operator.index(w))
            except TypeError:
                raise ProgramError(f"word {i} = {w!r}: expected an integer instruction word, got "
                                   f"{type(w).__name__}") from None
        if len(words) > self.cfg.prog_depth:
            raise ProgramError(f"program of {len(words)} words exceeds prog_depth = {self.cfg.prog_depth}")
        for i, w in enumerate(words):
            if not 0 <= w < (1 << isa.WORD_BITS):
                raise ProgramError(f"word {i} = {w:#x} does not fit {isa.WORD_BITS} bits")
        # Decoded words are only read, never changed: a program repeats few distinct words, decode each once.
        memo = _DECODED
        if len(memo) > 1 << 16:
            memo.clear()
        prog = []
        for w in words:
            d = memo.get(w)
            if d is None:
                d = memo[w] = isa.decode(w)
            prog.append(d)
        self.program = prog

    def run(self, program: Sequence[int] | None = None, feed: Feed | Iterable | None = None, *,
            timing_only: bool = False) -> RunResult:
        """Run from word 0 until HALT or an error. ``timing_only`` skips all data (for cost models)."""
        if program is not None:
            self.load(program)
        self._feed = feed if isinstance(feed, Feed) else Feed(feed)
        self._timing = timing_only
        self._cycles = 0
        self._instrs = 0
        self._outputs = []
        halted, cause, pc, detail, text = False, Cause.NONE, None, "", ""
        try:
            self._block(0, len(self.program), (0, 0, 0), 0, 1)
            raise _Stop(Cause.PC_RANGE, len(self.program), "execution ran past the last loaded word")
        except _Halt:
            halted = True
        except _Stop as s:
            cause, pc, detail = s.cause, s.pc, s.detail
            self._cycles += 1
            self._instrs += 1
            text = self.program[pc].text() if pc < len(self.program) else "(end of program)"
        return RunResult(self._cycles, self._instrs, halted, cause, pc, detail, self._outputs, self.sync_tag, text)

    def _block(self, start: int, end: int, offs, depth: int, lanes: int) -> None:
        prog = self.program
        pc = start
        while pc < end:
            d = prog[pc]
            if d.cause is not Cause.NONE:
                raise _Stop(d.cause, pc, "illegal word" if d.op is None else "reserved bits set")
            if d.op is Opcode.LOOP:
                self._loop(d, pc, end, offs, depth, lanes)
                pc += 1 + d.args["body"]
                continue
            c = HANDLERS[d.op](self, d, pc, offs)
            self._cycles += c * lanes
            self._instrs += lanes
            pc += 1

    def _loop(self, d: Decoded, pc: int, end: int, offs, depth: int, lanes: int) -> None:
        a = d.args
        b0, b1 = pc + 1, pc + 1 + a["body"]
        if depth + 1 > self.cfg.loop_depth:
            raise _Stop(Cause.LOOP_DEPTH, pc, f"loop nesting exceeds loop_depth = {self.cfg.loop_depth}")
        if b1 > end:
            raise _Stop(Cause.LOOP_NEST, pc, f"body ends at {b1}, enclosing block ends at {end}")
        self._cycles += _cost(self, d) * lanes
        self._instrs += lanes
        n = a["count"]
        strides = (a["stride_in"], a["stride_acc"], a["stride_out"])
        if self._timing and n > 2 and self._last_iteration_ok(b0, b1, offs, strides, n, depth, lanes):
            # Iteration 0 may differ (it sees the state before the loop); iterations 1.. repeat the
            # same work, and address checks cannot fail because the last iteration's did not.
            self._block(b0, b1, offs, depth + 1, lanes)
            c1, i1 = self._cycles, self._instrs
            self._block(b0, b1, tuple(o + s for o, s in zip(offs, strides)), depth + 1, lanes)
            self._cycles += (self._cycles - c1) * (n - 2)
            self._instrs += (self._instrs - i1) * (n - 2)
            return
        if self.vectorize and not self._timing and n > 1:
            okey = (tuple(o if isinstance(o, int) else o.tobytes() for o in offs), strides, n)
            voffs = self._voffs.get(okey)
            if voffs is None:
                if len(self._voffs) > 4096:
                    self._voffs.clear()
                # Inside an already vectorised loop ``o`` is an array of lanes: lane-major outer product.
                # Strides are unsigned, so the last lane of every offset array is its largest (_addr).
                voffs = tuple(np.add.outer(o, np.arange(n, dtype=np.int64) * s).reshape(-1)
                              for o, s in zip(offs, strides))
                for v in voffs:
                    v.flags.writeable = False  # shared by every run of this loop
                self._voffs[okey] = voffs
            if self._independent(b0, b1, voffs, okey, depth + 1):
                self._block(b0, b1, voffs, depth + 1, lanes * n)
                return
        for i in range(n):
            self._block(b0, b1, tuple(o + i * s for o, s in zip(offs, strides)), depth + 1, lanes)

    def _last_iteration_ok(self, b0, b1, offs, strides, n, depth, lanes) -> bool:
        """Timing mode: run the last iteration as a check (offsets only grow, so addresses that fit in
        the last iteration fit in all); on an error the caller runs the loop iteration by iteration."""
        saved = (self._cycles, self._instrs, self.layer, self.window, self.rq, self.sync_tag)
        try:
            self._block(b0, b1, tuple(o + (n - 1) * s for o, s in zip(offs, strides)), depth + 1, lanes)
            ok = True
        except (_Stop, _Halt):
            ok = False
        self._cycles, self._instrs, self.layer, self.window, self.rq, self.sync_tag = saved
        return ok

    # -- loop vectorisation ------------------------------------------------------------------------

    _VECTOR_OPS = frozenset({Opcode.NOP, Opcode.MVM, Opcode.REQ, Opcode.LOOP})

    def _independent(self, b0: int, b1: int, voffs, okey, depth: int) -> bool:
        """True if the iterations (offset arrays ``voffs``) touch disjoint buffer entries and run
        without any error, so that executing them all at once equals executing them in order.

        The answer depends only on the loop's words, the offsets (``okey`` identifies them), the depth,
        the layer and the window (the configuration is fixed per Tile), so it is remembered under exactly
        that key: a compiled layer repeats the same loop for every column tile.
        """
        key = (tuple(d.word for d in self.program[b0 - 1:b1]), okey, depth, self.layer, self.window)
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
        c = self.cfg
        pc = b0
        while pc < b1:
            d = self.program[pc]
            if d.cause is not Cause.NONE or d.op not in self._VECTOR_OPS:
                return False
            a = d.args
            if d.op is Opcode.LOOP:
                e = pc + 1 + a["body"]
                if depth + 1 > c.loop_depth or e > b1:
                    return False
                st = (a["stride_in"], a["stride_acc"], a["stride_out"])
                for i in range(a["count"]):
                    if not self._probe(pc + 1, e, tuple(o + i * s for o, s in zip(offs, st)), depth + 1, acc):
                        return False
                pc = e
                continue
            if d.op is Opcode.MVM:
                if not self.geometry().aligned:
                    return False
                ia, aa = a["in_addr"] + offs[0], a["acc_addr"] + offs[1]
                if ia.max() >= c.in_depth or aa.max() >= c.acc_depth:
                    return False
                acc["in"].append((ia, False))
                if a["accumulate"]:
                    acc["acc"].append((aa, False))
                acc["acc"].append((aa, True))
            elif d.op is Opcode.REQ:
                if not self.geometry().aligned:
                    return False
                aa, oa = a["acc_addr"] + offs[1], a["out_addr"] + offs[2]
                if aa.max() >= c.acc_depth or oa.max() >= c.out_depth:
                    return False
                acc["acc"].append((aa, False))
                acc["out"].append((oa, True))
            pc += 1
        return True

    # -- helpers -----------------------------------------------------------------------------

    def _addr(self, pc, base, count, depth, what):
        """Check that entries base .. base+count-1 (base an int or array) lie below depth.

        An array is a field plus the lane offsets of vectorised loops, whose last lane is the largest
        (see Tile._loop); those addresses were also checked by _probe before vectorising.
        """
        top = (int(base[-1]) if isinstance(base, np.ndarray) else base) + count
        if top > depth:
            raise _Stop(Cause.ADDR, pc, f"{what} {top - count}..{top - 1} outside 0..{depth - 1}")

    def _aligned_geo(self, pc):
        g = self.geometry()
        if not g.aligned:
            raise _Stop(Cause.WINDOW, pc, f"window of {g.nc} columns is not a whole number of "
                        f"{g.group}-column weight groups")
        return g


# -- handlers: one per opcode ----------------------------------------------------------------------


_DECODED: dict[int, Decoded] = {}  # word -> its decoding, shared by every Tile (Decoded is only read)


def _cost(t: Tile, d: Decoded, g: isa.Geometry | None = None) -> int:
    """:func:`cimtile.hw.isa.cycles` of ``d``, remembered per (word, geometry): the formulas are evaluated with
    ``eval``, which costs more than a compiled layer's whole MVM when evaluated per instruction."""
    key = (d.word, g)
    c = t._costs.get(key)
    if c is None:
        if len(t._costs) > 4096:
            t._costs.clear()
        c = t._costs[key] = isa.cycles(d.op, t._ns, d.args, g)
    return c


def _nop(t: Tile, d: Decoded, pc: int, offs) -> int:
    return 1


def _halt(t: Tile, d, pc, offs) -> int:
    t._cycles += 1
    t._instrs += 1
    raise _Halt


def _sync(t: Tile, d, pc, offs) -> int:
    t.sync_tag = d.args["tag"]
    return 1


def _cfg(t: Tile, d, pc, offs) -> int:
    a = d.args
    if a["wsigned"] and a["wbits"] < 2:
        raise _Stop(Cause.CONFIG, pc, "signed weights need wbits >= 2")
    t.layer = Layer(a["wbits"], a["abits"], bool(a["wsigned"]), bool(a["asigned"]), a["adc_shift"])
    return 1


def _win(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    if a["row_start"] + a["row_count"] > c.rows or a["col_start"] + a["col_count"] > c.cols:
        raise _Stop(Cause.WINDOW, pc, f"window rows {a['row_start']}+{a['row_count']}, cols "
                    f"{a['col_start']}+{a['col_count']} outside the {c.rows}x{c.cols} array")
    t.window = (a["row_start"], a["row_count"], a["col_start"], a["col_count"])
    return 1


def _cfgrq(t: Tile, d, pc, offs) -> int:
    a = d.args
    zp, lo, hi = a["zero_point"], a["clamp_lo"], a["clamp_hi"]
    if not (-128 <= lo <= hi <= 255 and -128 <= zp <= 255):
        raise _Stop(Cause.CONFIG, pc, "need -128 <= clamp_lo <= clamp_hi <= 255 and zero_point in -128..255")
    t.rq = (zp, lo, hi, bool(a["relu"]))
    return 1


def _ldw(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    s, n = a["start"], a["count"]
    t._addr(pc, s, n, c.cols, "columns")
    if not t._timing:
        b = _take(t, d, pc, ((c.rows, n),), "cell levels", 0, c.max_level)
        t.levels[:, s:s + n] = b if t.device is None else t.device.program(b, s)  # device hook: stored levels
    return _cost(t, d)


def _ldm(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    s, n = a["start"], a["count"]
    t._addr(pc, s, n, c.cols, "columns")
    if not t._timing:
        t.masks[:, s:s + n] = _take(t, d, pc, ((c.rows, n),), "mask bits", 0, 1).astype(bool)
    return _cost(t, d)


def _ldin(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    s, n = a["start"] + offs[0], a["count"]
    t._addr(pc, s, n, c.in_depth, "input vectors")
    if not t._timing:
        b = _take(t, d, pc, ((n, c.rows), (t.batch, n, c.rows)), "input bytes", -128, 255)
        t.inbuf[:, s:s + n, :] = b if b.dtype == np.uint8 else (b.astype(np.int64) & 0xFF).astype(np.uint8)
    return _cost(t, d)


def _ldd(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    s, n = a["start"], a["count"]
    t._addr(pc, s, n, c.delta_depth, "delta vectors")
    if not t._timing:
        t.delta[s:s + n] = _take(t, d, pc, ((n, c.delta_len),), "deltas", -128, 127)
    return _cost(t, d)


def _ldrq(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    s, n = a["start"], a["count"]
    t._addr(pc, s, n, c.cols, "lanes")
    if not t._timing:
        b = _take(t, d, pc, ((n, 3),), "requantisation records (bias, multiplier, shift)", -(1 << 31),
                  (1 << 31) - 1).astype(np.int64)
        for col, what, lo, hi in ((1, "multipliers", 0, (1 << 16) - 1), (2, "shifts", 0, 63)):
            if b.size and (b[:, col].min() < lo or b[:, col].max() > hi):
                raise FeedError(f"pc {pc}: {d.text()}: {what} outside {lo}..{hi}")
        t.rq_bias[s:s + n], t.rq_mult[s:s + n], t.rq_shift[s:s + n] = b[:, 0], b[:, 1], b[:, 2]
    return _cost(t, d)


def _lanes(t: Tile, base: int, off):
    """Index of the entries ``base + off``: ``off`` is an int, or the lane offsets of a vectorised loop.
    Consecutive lanes (a loop of stride 1, the usual case) become a slice: indexing a buffer with a slice
    is a view, with an array a gather or scatter that cost up to a millisecond per MVM at large batches.
    """
    if not isinstance(off, np.ndarray):
        return base + off
    e = t._runs.get(id(off))
    if e is None or e[0] is not off:  # the entry holds ``off``, so its id cannot be reused meanwhile
        if len(t._runs) > 4096:
            t._runs.clear()
        n = off.size
        first = int(off[0]) if n and bool((off == off[0] + np.arange(n)).all()) else None
        e = t._runs[id(off)] = (off, first)
    if e[1] is None:
        return base + off
    return slice(base + e[1], base + e[1] + off.size)


def _mvm(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    g = t._aligned_geo(pc)
    ia, aa = a["in_addr"] + offs[0], a["acc_addr"] + offs[1]
    t._addr(pc, ia, 1, c.in_depth, "input vector")
    t._addr(pc, aa, 1, c.acc_depth, "accumulator vector")
    if not t._timing:
        r0, nr, c0, nc = t.window
        ia, aa = _lanes(t, a["in_addr"], offs[0]), _lanes(t, a["acc_addr"], offs[1])
        raw = t.inbuf[:, ia, r0:r0 + nr]
        n = g.n_out
        if t._analog is not None:  # device hook: read noise, drift, IR drop (golden-model-only, sim/device.py)
            prev = t.acc[:, aa, :n].reshape(-1, n) if a["accumulate"] else None
            y = t._analog.mvm_acc((r0, c0), raw.reshape(-1, nr), t.levels[r0:r0 + nr, c0:c0 + nc],
                                  t.masks[r0:r0 + nr, c0:c0 + nc], t.layer, g, c, prev)
            t.acc[:, aa, :n] = y.reshape(raw.shape[:-1] + (n,))
        elif a["accumulate"] and not isinstance(aa, np.ndarray):
            # acc = wrap(acc + y) = wrap(acc + wrap(y)): add the wrapped MVM in place (a view: no gather,
            # no scatter); |acc|, |wrap(y)| < 2**(acc_bits-1) <= 2**39, so the int64 sum is exact.
            y = kernels.mvm_acc(raw.reshape(-1, nr), t.levels[r0:r0 + nr, c0:c0 + nc],
                                t.masks[r0:r0 + nr, c0:c0 + nc], t.layer, g, c)
            view = t.acc[:, aa, :n]
            view += y.reshape(view.shape)
            w = kernels.wrap(view, c.acc_bits)
            if w is not view:
                view[...] = w
        else:
            prev = t.acc[:, aa, :n].reshape(-1, n) if a["accumulate"] else None
            y = kernels.mvm_acc(raw.reshape(-1, nr), t.levels[r0:r0 + nr, c0:c0 + nc],
                                t.masks[r0:r0 + nr, c0:c0 + nc], t.layer, g, c, prev)
            t.acc[:, aa, :n] = y.reshape(raw.shape[:-1] + (n,))
    return _cost(t, d, g)


def _req(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    g = t._aligned_geo(pc)
    aa, oa = a["acc_addr"] + offs[1], a["out_addr"] + offs[2]
    t._addr(pc, aa, 1, c.acc_depth, "accumulator vector")
    t._addr(pc, oa, 1, c.out_depth, "output vector")
    if not t._timing:
        n = g.n_out
        aa, oa = _lanes(t, a["acc_addr"], offs[1]), _lanes(t, a["out_addr"], offs[2])
        q = kernels.requantise(t.acc[:, aa, :n], t.rq_bias[:n], t.rq_mult[:n], t.rq_shift[:n], *t.rq)
        t.out[:, oa, :n] = (q & 0xFF).astype(np.uint8)
    return _cost(t, d, g)


def _vau(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    t._addr(pc, a["delta_addr"], 1, c.delta_depth, "delta vector")
    g = t.geometry()
    if not t._timing:
        r0, nr, c0, nc = t.window
        dv = t.delta[a["delta_addr"]]
        delta = dv[r0:r0 + nr, None] if d.op is Opcode.VAUR else dv[None, c0:c0 + nc]
        region = t.levels[r0:r0 + nr, c0:c0 + nc]
        keep = t.masks[r0:r0 + nr, c0:c0 + nc]
        t.levels[r0:r0 + nr, c0:c0 + nc] = np.where(keep, region, np.clip(region + delta, 0, c.max_level))
        if t.device is not None:  # device hook: stuck cells keep their level
            t.device.hold(t.levels[r0:r0 + nr, c0:c0 + nc], slice(r0, r0 + nr), slice(c0, c0 + nc))
    return _cost(t, d, g)


def _cell(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    r, col, v = a["row"], a["col"], a["value"]
    if r >= c.rows or col >= c.cols:
        raise _Stop(Cause.ADDR, pc, f"cell ({r}, {col}) outside the {c.rows}x{c.cols} array")
    top = c.max_level if d.op is Opcode.WSET else 1
    if v > top:
        raise _Stop(Cause.VALUE, pc, f"value {v} above {top}")
    if not t._timing:
        if d.op is Opcode.MSET:
            t.masks[r, col] = bool(v)
        elif not t.masks[r, col]:
            t.levels[r, col] = v
            if t.device is not None:  # device hook: a stuck cell keeps its level
                t.device.hold(t.levels[r:r + 1, col:col + 1], slice(r, r + 1), slice(col, col + 1))
    return _cost(t, d)


def _read(t: Tile, d, pc, offs) -> int:
    a, c, op = d.args, t.cfg, d.op
    s, n = a["start"], a["count"]
    if op is Opcode.RDOUT:
        s += offs[2]
        t._addr(pc, s, n, c.out_depth, "output vectors")
        block = lambda: t.out[:, s:s + n, :].copy()
    elif op is Opcode.RDACC:
        s += offs[1]
        t._addr(pc, s, n, c.acc_depth, "accumulator vectors")
        block = lambda: t.acc[:, s:s + n, :].copy()
    elif op is Opcode.RDW:
        t._addr(pc, s, n, c.cols, "columns")
        block = lambda: t.levels[:, s:s + n].copy()
    else:
        t._addr(pc, s, n, c.cols, "columns")
        block = lambda: t.masks[:, s:s + n].copy()
    if not t._timing:
        t._outputs.append(block())
    return _cost(t, d)


def _loop_marker(t: Tile, d, pc, offs) -> int:  # pragma: no cover - LOOP is handled by Tile._loop
    raise AssertionError("LOOP is executed by Tile._loop")


#: One handler per opcode (tests check the table covers every Opcode).
HANDLERS = {
    Opcode.NOP: _nop, Opcode.HALT: _halt, Opcode.SYNC: _sync, Opcode.CFG: _cfg, Opcode.WIN: _win,
    Opcode.CFGRQ: _cfgrq, Opcode.LOOP: _loop_marker, Opcode.LDW: _ldw, Opcode.LDM: _ldm, Opcode.LDIN: _ldin,
    Opcode.LDD: _ldd, Opcode.LDRQ: _ldrq, Opcode.MVM: _mvm, Opcode.REQ: _req, Opcode.VAUR: _vau,
    Opcode.VAUC: _vau, Opcode.WSET: _cell, Opcode.MSET: _cell, Opcode.RDOUT: _read, Opcode.RDACC: _read,
    Opcode.RDW: _read, Opcode.RDM: _read,
}
