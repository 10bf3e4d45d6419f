"""The golden model: executes instruction words on a TileConfig; the living definition of every opcode."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from cimtile.hw import isa
from cimtile.hw.isa import RQ_RECORD, RQ_VALUE_RANGE, Cause, Decoded, Opcode, field_range
from cimtile.hw.params import TileConfig
from cimtile.hw.program import Halted, Walker, WalkStop, decode_program

from cimtile.errors import CimtileError

from . import fastmvm, fastrun, kernels
from .device import DeviceArray
from .kernels import Layer
from .vectorise import Vectoriser

__all__ = ["Feed", "FeedError", "ProgramError", "RunResult", "Tile", "TileError", "HANDLERS", "check_program"]


#: Checked and decoded programs of plain ints: (prog_depth, words) -> decoded words (see Tile.load).
_LOADED: dict = {}

#: Run eligible programs through the program-level fast path (:mod:`cimtile.sim.fastrun`); tests and benches
#: switch it off to compare with the instruction path.
FAST = True


class TileError(CimtileError, RuntimeError):
    """The tile stopped with an error cause (raised by :meth:`RunResult.check`)."""


class FeedError(CimtileError, ValueError):
    """The host's data for a load instruction is missing or malformed."""


class ProgramError(CimtileError, ValueError):
    """A program cannot be loaded (too long for the program memory, word out of range)."""


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
    setup_cycles: int = 0  # cycles of a weights program run before this run (compiler backends' ``setup``)

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


def block_error(b: np.ndarray, shapes: tuple, what: str, lo: int, hi: int) -> str | None:
    """Why a feed block cannot be loaded (not one of ``shapes``, or a value outside lo..hi), or None."""
    if b.shape not in shapes:
        want = " or ".join(str(tuple(x)) for x in shapes)
        return f"expected {what} of shape {want}, got shape {tuple(b.shape)}"
    # Bytes cannot be negative: a uint8 block (the runtime's usual input) skips the lower bound.
    if b.size and ((b.dtype != np.uint8 and b.min() < lo) or b.max() > hi):
        bad = tuple(int(i) for i in np.argwhere((b < lo) | (b > hi))[0])
        return f"{what} outside {lo}..{hi}: {b[bad]} at index {bad}"
    return None


def rq_error(b: np.ndarray) -> str | None:
    """Why an LDRQ block (already of shape ``(n, 3)``, biases in range) holds a bad multiplier or shift, or None."""
    for col, what in ((1, "mult"), (2, "shift")):
        lo, hi = field_range(RQ_RECORD, what)
        if b.size and (b[:, col].min() < lo or b[:, col].max() > hi):
            bad = int(np.flatnonzero((b[:, col] < lo) | (b[:, col] > hi))[0])
            return f"record {bad} has {what} = {int(b[bad, col])}, outside {lo}..{hi}"
    return None


def _take(t: Tile, d: Decoded, pc: int, shapes: tuple, what: str, lo: int, hi: int) -> np.ndarray:
    """The next feed block for a load: one of ``shapes``, every value in lo..hi, else a one-line FeedError."""
    b = t._feed.take(pc, d)
    err = block_error(b, shapes, what, lo, hi)
    if err is not None:
        raise FeedError(f"pc {pc}: {d.text()}: {err}")
    return b


def check_program(cfg: TileConfig, program: Sequence[int]) -> list[int]:
    """The words of a program the tile can load (as ints), else a one-line :class:`ProgramError`: at most
    ``prog_depth`` words, each fitting the instruction word. Every backend makes this check."""
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
    if len(words) > cfg.prog_depth:
        raise ProgramError(f"program of {len(words)} words exceeds prog_depth = {cfg.prog_depth} of tile {cfg.name}")
    for i, w in enumerate(words):
        if not 0 <= w < (1 << isa.WORD_BITS):
            raise ProgramError(f"word {i} = {w:#x} does not fit {isa.WORD_BITS} bits")
    return words


class Tile(Walker):
    """Golden model of one tile, batched: ``batch`` independent copies of the input, accumulator and
    output buffers share the cell array, the masks, the deltas and the configuration.

    Every opcode has one handler in :data:`HANDLERS`; the program is walked by
    :class:`cimtile.hw.program.Walker` (pc, loop stack, offsets). Every cycle count comes from
    :func:`cimtile.hw.isa.cycles`, the documented formulas. Loops whose iterations are provably
    independent (only MVM, REQ, NOP and nested loops in the body, disjoint addresses) run as one
    batched step per body instruction.

    State persists between :meth:`run` calls (cells, buffers, configuration), as on the tile;
    :meth:`reset` returns to the power-on state.

    ``device``: a :class:`~cimtile.sim.device.DeviceModel` or :class:`~cimtile.sim.device.DeviceArray` (cell
    non-idealities, docs/devices.md), or None for an ideal array.

    ``fast``: run eligible programs through the program-level fast path (:mod:`cimtile.sim.fastrun`; same
    results, state and cycles); False runs every program instruction by instruction.
    """

    def __init__(self, cfg: TileConfig, batch: int = 1, *, vectorize: bool = True, device=None, fast: bool = True):
        if batch < 1:
            raise ValueError(f"Tile batch = {batch}: must be >= 1")
        super().__init__([], cfg.loop_depth)
        self.cfg = cfg
        # -- device-model hook (sim/device.py): None, or a DeviceArray whose model is not off. Programming
        # effects change stored levels at LDW/WSET/VAU; read effects (golden-model-only) replace the MVM kernel.
        if device is not None and not isinstance(device, DeviceArray):
            device = device.array(cfg)
        self.device = device if device is not None and not device.model.off else None
        self._analog = self.device if self.device is not None and self.device.model.analog else None
        self.batch = batch
        self.vectorize = vectorize
        self.fast = fast
        self._lanes = 1  # iterations one step stands for (a vectorised loop's lanes)
        self._ns = isa.cfg_namespace(cfg)
        self.program: list[Decoded] = []
        self._loaded = (None, ())
        self._vec = Vectoriser(self)
        self._costs: dict = {}  # (word, geometry) -> cycles (see _cost)
        self.reset()

    # -- state -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Power-on state (see docs/isa.md, Execution model)."""
        c, B = self.cfg, self.batch
        # uint8 (levels are 0..max_level <= 15): LDW copies and the MVM's reads of a window move an eighth of
        # the bytes of int64. Reads (RDW, state) give int64.
        self.levels = np.zeros((c.rows, c.cols), dtype=np.uint8)
        self.masks = np.zeros((c.rows, c.cols), dtype=bool)
        self.inbuf = np.zeros((B, c.in_depth, c.rows), dtype=np.uint8)
        # int32 when every accumulator value fits (acc_bits <= 32, all presets): an MVM's store moves half the
        # bytes, and a large batch's accumulators are written from main memory. Reads (RDACC, state) give int64.
        self.acc = np.zeros((B, c.acc_depth, c.cols), dtype=np.int32 if c.acc_bits <= 32 else np.int64)
        self.out = np.zeros((B, c.out_depth, c.cols), dtype=np.uint8)
        self.delta = np.zeros((c.delta_depth, c.delta_len), dtype=np.int64)
        self.rq_bias = np.full(c.cols, isa.RESET_LANE["bias"], dtype=np.int64)
        self.rq_mult = np.full(c.cols, isa.RESET_LANE["mult"], dtype=np.int64)
        self.rq_shift = np.full(c.cols, isa.RESET_LANE["shift"], dtype=np.int64)
        r = isa.RESET_CFG
        self.layer = Layer(r["wbits"], r["abits"], bool(r["wsigned"]), bool(r["asigned"]), r["adc_shift"])
        self.window = isa.reset_window(c)
        q = isa.RESET_CFGRQ
        self.rq = (q["zero_point"], q["clamp_lo"], q["clamp_hi"], bool(q["relu"]))
        self.sync_tag = isa.RESET_SYNC_TAG
        self._geo_cache = {}

    def state(self) -> dict[str, np.ndarray]:
        """Copies of every memory, for comparison with the RTL."""
        return {
            "levels": self.levels.astype(np.int64), "masks": self.masks.copy(), "inbuf": self.inbuf.copy(),
            "acc": self.acc.astype(np.int64), "out": self.out.copy(), "delta": self.delta.copy(),
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
        words = tuple(program) if isinstance(program, (list, tuple)) else None
        # A program of plain ints was checked and decoded before if it is in _LOADED (the check depends only on the
        # words and prog_depth; bools and other types, which the check treats differently, are never looked up).
        key = (self.cfg.prog_depth, words) if words is not None and set(map(type, words)) <= {int} else None
        d = _LOADED.get(key) if key is not None else None
        if d is None:
            d = tuple(decode_program(check_program(self.cfg, program)))
            if key is not None:
                if len(_LOADED) > 4096:
                    _LOADED.clear()
                _LOADED[key] = d
        self.program = list(d)
        # (the words, for fastrun.cached_plan's key, while this list is the program)
        self._loaded = (self.program, key[1] if key is not None else tuple(x.word for x in d))

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
        self._lanes = 1
        if self.fast and FAST and self.vectorize and not timing_only and type(self._feed).take is Feed.take:
            # The program-level fast path (sim/fastrun.py): the same results, state and cycles, MVMs batched.
            # (Not with a Feed whose take() is overridden, e.g. one recording which load took each block: the fast
            # path reads the blocks without calling it.)
            p = fastrun.cached_plan(self)
            if p is not None and fastrun.run(self, p, self._feed):
                self._cycles, self._instrs = p.cycles, p.instrs
                return RunResult(p.cycles, p.instrs, True, Cause.NONE, None, "", self._outputs, self.sync_tag, "")
        halted, cause, pc, detail, text = False, Cause.NONE, None, "", ""
        try:
            self.walk()
        except Halted:
            halted = True
        except WalkStop as s:
            cause, pc, detail = s.cause, s.pc, s.detail
            self._cycles += isa.ERROR_CYCLES
            self._instrs += 1
            text = self.program[pc].text() if pc < len(self.program) else "(end of program)"
        return RunResult(self._cycles, self._instrs, halted, cause, pc, detail, self._outputs, self.sync_tag, text)

    def step(self, pc: int, d: Decoded, offs) -> None:
        """One instruction: its handler, and its cycles once per lane."""
        lanes = self._lanes
        self._cycles += HANDLERS[d.op](self, d, pc, offs) * lanes
        self._instrs += lanes

    def loop(self, pc: int, d: Decoded, b1: int, offs, depth: int) -> None:
        """A LOOP: in timing mode iterations 1.. are counted from one; independent iterations run as
        one vectorised step per body instruction; otherwise one after the other."""
        self.step(pc, d, offs)
        a = d.args
        b0 = pc + 1
        n = a["count"]
        strides = (a["stride_in"], a["stride_acc"], a["stride_out"])
        if self._timing and n > 2 and self._last_iteration_ok(b0, b1, offs, strides, n, depth):
            # Iteration 0 may differ (it sees the state before the loop); iterations 1.. repeat the
            # same work, and address checks cannot fail because the last iteration's did not.
            self.block(b0, b1, offs, depth + 1)
            c1, i1 = self._cycles, self._instrs
            self.block(b0, b1, tuple(o + s for o, s in zip(offs, strides)), depth + 1)
            self._cycles += (self._cycles - c1) * (n - 2)
            self._instrs += (self._instrs - i1) * (n - 2)
            return
        if self.vectorize and not self._timing and n > 1:
            voffs = self._vec.plan(b0, b1, offs, strides, n, depth + 1)
            if voffs is not None:
                lanes = self._lanes
                self._lanes = lanes * n
                self.block(b0, b1, voffs, depth + 1)
                self._lanes = lanes
                return
        for i in range(n):
            self.block(b0, b1, tuple(o + i * s for o, s in zip(offs, strides)), depth + 1)

    def _last_iteration_ok(self, b0, b1, offs, strides, n, depth) -> bool:
        """Timing mode: run the last iteration as a check (offsets only grow, so addresses that fit in
        the last iteration fit in all); on an error the caller runs the loop iteration by iteration."""
        saved = (self._cycles, self._instrs, self.layer, self.window, self.rq, self.sync_tag)
        try:
            self.block(b0, b1, tuple(o + (n - 1) * s for o, s in zip(offs, strides)), depth + 1)
            ok = True
        except (WalkStop, Halted):
            ok = False
        self._cycles, self._instrs, self.layer, self.window, self.rq, self.sync_tag = saved
        return ok

    # -- helpers -----------------------------------------------------------------------------

    def _addr(self, pc, base, count, depth, what):
        """Check that entries base .. base+count-1 (base an int or array) lie below depth.

        An array is a field plus the lane offsets of vectorised loops, whose last lane is the largest
        (see cimtile.sim.vectorise); those addresses were also checked before vectorising.
        """
        top = (int(base[-1]) if isinstance(base, np.ndarray) else base) + count
        if top > depth:
            raise WalkStop(Cause.ADDR, pc, f"{what} {top - count}..{top - 1} outside 0..{depth - 1}")

    def _aligned_geo(self, pc):
        g = self.geometry()
        if not g.aligned:
            raise WalkStop(Cause.WINDOW, pc, f"window of {g.nc} columns is not a whole number of "
                        f"{g.group}-column weight groups")
        return g


# -- handlers: one per opcode ----------------------------------------------------------------------


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
    """NOP, HALT and LOOP's own step: only their cycles (the walker ends the run after HALT and runs
    LOOP's iterations)."""
    return _cost(t, d)


def _sync(t: Tile, d, pc, offs) -> int:
    t.sync_tag = d.args["tag"]
    return _cost(t, d)


def _cfg(t: Tile, d, pc, offs) -> int:
    a = d.args
    if a["wsigned"] and a["wbits"] < 2:
        raise WalkStop(Cause.CONFIG, pc, f"wbits = {a['wbits']} with wsigned = 1: signed weights need wbits >= 2")
    t.layer = Layer(a["wbits"], a["abits"], bool(a["wsigned"]), bool(a["asigned"]), a["adc_shift"])
    return _cost(t, d)


def _win(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    if a["row_start"] + a["row_count"] > c.rows or a["col_start"] + a["col_count"] > c.cols:
        raise WalkStop(Cause.WINDOW, pc, f"window rows {a['row_start']}+{a['row_count']}, cols "
                    f"{a['col_start']}+{a['col_count']} outside the {c.rows}x{c.cols} array")
    t.window = (a["row_start"], a["row_count"], a["col_start"], a["col_count"])
    return _cost(t, d)


def _cfgrq(t: Tile, d, pc, offs) -> int:
    a = d.args
    zp, lo, hi = a["zero_point"], a["clamp_lo"], a["clamp_hi"]
    vlo, vhi = RQ_VALUE_RANGE
    if not (vlo <= lo <= hi <= vhi and vlo <= zp <= vhi):
        raise WalkStop(Cause.CONFIG, pc, f"zero_point = {zp}, clamp_lo = {lo}, clamp_hi = {hi}: each must lie in "
                       f"{vlo}..{vhi} with clamp_lo <= clamp_hi")
    t.rq = (zp, lo, hi, bool(a["relu"]))
    return _cost(t, d)


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


RQ_WHAT = "requantisation records (bias, multiplier, shift)"


def _ldrq(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    s, n = a["start"], a["count"]
    t._addr(pc, s, n, c.cols, "lanes")
    if not t._timing:
        blo, bhi = field_range(RQ_RECORD, "bias")
        b = _take(t, d, pc, ((n, 3),), RQ_WHAT, blo, bhi).astype(np.int64)
        err = rq_error(b)
        if err is not None:
            raise FeedError(f"pc {pc}: {d.text()}: {err}")
        t.rq_bias[s:s + n], t.rq_mult[s:s + n], t.rq_shift[s:s + n] = b[:, 0], b[:, 1], b[:, 2]
    return _cost(t, d)


def _store_acc(t: Tile, aa, n: int, y: np.ndarray, accumulate: bool) -> None:
    """Write an MVM's wrapped result ``y`` (batch x addresses x n) to accumulator lanes ``aa``, or add it
    (acc = wrap(acc + y), in place when ``aa`` is one address: a view, no gather or scatter)."""
    c = t.cfg
    if not accumulate:
        t.acc[:, aa, :n] = y
    elif not isinstance(aa, np.ndarray):
        # acc = wrap(acc + y) = wrap(acc + wrap(y)); |acc|, |wrap(y)| < 2**(acc_bits-1) <= 2**39, so the int64
        # sum is exact. In int32 storage the sum wraps at 32 bits by itself (NumPy's integer arithmetic is
        # modulo 2**32 there), which is the wrap when acc_bits == 32; below 32 bits it cannot overflow int32.
        view = t.acc[:, aa, :n]
        view += y.reshape(view.shape)
        if c.acc_bits < 8 * view.itemsize:
            w = kernels.wrap(view, c.acc_bits)
            if w is not view:
                view[...] = w
    else:
        t.acc[:, aa, :n] = kernels.wrap(t.acc[:, aa, :n] + y, c.acc_bits)


def _mvm(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    g = t._aligned_geo(pc)
    n = a["count"]  # vectors in_addr + v -> accumulators acc_addr + v, v < n; both ranges checked whole first
    ia, aa = a["in_addr"] + offs[0], a["acc_addr"] + offs[1]
    t._addr(pc, ia, n, c.in_depth, "input vector")
    t._addr(pc, aa, n, c.acc_depth, "accumulator vector")
    if not t._timing:
        r0, nr, c0, nc = t.window
        # (the vectors never interact: each reads its own input and writes its own accumulator, so all at once
        # equals one after the other)
        ia, aa = t._vec.lanes(a["in_addr"], offs[0], n), t._vec.lanes(a["acc_addr"], offs[1], n)
        raw = t.inbuf[:, ia, r0:r0 + nr]
        cells = (t.levels[r0:r0 + nr, c0:c0 + nc], t.masks[r0:r0 + nr, c0:c0 + nc], t.layer, g, c)
        if t._analog is not None:  # device hook: read noise, drift, IR drop (golden-model-only, sim/device.py)
            y = t._analog.mvm_acc((r0, c0), raw.reshape(-1, nr), *cells)
        else:
            y = fastmvm.mvm_acc(raw.reshape(-1, nr), *cells)
        _store_acc(t, aa, g.n_out, y.reshape(raw.shape[:-1] + (g.n_out,)), a["accumulate"])
    return _cost(t, d, g)


def _req(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    g = t._aligned_geo(pc)
    n_vec = a["count"]  # accumulators acc_addr + v -> output vectors out_addr + v, v < count
    aa, oa = a["acc_addr"] + offs[1], a["out_addr"] + offs[2]
    t._addr(pc, aa, n_vec, c.acc_depth, "accumulator vector")
    t._addr(pc, oa, n_vec, c.out_depth, "output vector")
    if not t._timing:
        n = g.n_out
        aa, oa = t._vec.lanes(a["acc_addr"], offs[1], n_vec), t._vec.lanes(a["out_addr"], offs[2], n_vec)
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
        sign = _vau_signs(a["pair"], a["only"], a["slice"], t.layer.wsigned, g.group, nc)
        region = t.levels[r0:r0 + nr, c0:c0 + nc]
        keep = t.masks[r0:r0 + nr, c0:c0 + nc] | (sign == 0)[None, :]
        t.levels[r0:r0 + nr, c0:c0 + nc] = np.where(keep, region,
                                                    np.clip(region + delta * sign[None, :], 0, c.max_level))
        if t.device is not None:  # device hook: stuck cells keep their level
            t.device.hold(t.levels[r0:r0 + nr, c0:c0 + nc], slice(r0, r0 + nr), slice(c0, c0 + nc))
    return _cost(t, d, g)


_SIGNS: dict = {}


def _vau_signs(pair: int, only: int, slice_: int, wsigned: bool, group: int, nc: int) -> np.ndarray:
    """Per window column sign of a VAU (:func:`cimtile.hw.isa.vau_column_sign`), remembered per key."""
    key = (pair, only, slice_, wsigned, group, nc)
    s = _SIGNS.get(key)
    if s is None:
        if len(_SIGNS) > 1024:
            _SIGNS.clear()
        s = _SIGNS[key] = np.array([isa.vau_column_sign(pair, only, slice_, wsigned, group, p)
                                    for p in range(nc)], dtype=np.int64)
    return s


def _cell(t: Tile, d, pc, offs) -> int:
    a, c = d.args, t.cfg
    r, col, v = a["row"], a["col"], a["value"]
    if r >= c.rows or col >= c.cols:
        raise WalkStop(Cause.ADDR, pc, f"cell ({r}, {col}) outside the {c.rows}x{c.cols} array")
    top = c.max_level if d.op is Opcode.WSET else 1
    if v > top:
        raise WalkStop(Cause.VALUE, pc, f"value {v} above {top}")
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
        block = lambda: t.acc[:, s:s + n, :].astype(np.int64)
    elif op is Opcode.RDW:
        t._addr(pc, s, n, c.cols, "columns")
        block = lambda: t.levels[:, s:s + n].astype(np.int64)
    else:
        t._addr(pc, s, n, c.cols, "columns")
        block = lambda: t.masks[:, s:s + n].copy()
    if not t._timing:
        t._outputs.append(block())
    return _cost(t, d)


#: One handler per opcode (tests check the table covers every Opcode).
HANDLERS = {
    Opcode.NOP: _nop, Opcode.HALT: _nop, Opcode.SYNC: _sync, Opcode.CFG: _cfg, Opcode.WIN: _win,
    Opcode.CFGRQ: _cfgrq, Opcode.LOOP: _nop, Opcode.LDW: _ldw, Opcode.LDM: _ldm, Opcode.LDIN: _ldin,
    Opcode.LDD: _ldd, Opcode.LDRQ: _ldrq, Opcode.MVM: _mvm, Opcode.REQ: _req, Opcode.VAUR: _vau,
    Opcode.VAUC: _vau, Opcode.WSET: _cell, Opcode.MSET: _cell, Opcode.RDOUT: _read, Opcode.RDACC: _read,
    Opcode.RDW: _read, Opcode.RDM: _read,
}
