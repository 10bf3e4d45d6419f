"""A resident tile that Python can train: one layer's weights stay on the tile across calls.

:class:`ResidentTile` programs a layer's logical integer weights once (through the one encoder,
:mod:`cimtile.hw.encoding`), then runs forward MVMs on batches, VAU row and column updates from
logical deltas, exact per-cell writes (WSET), mask writes (prune, regrow) and read-backs, each as a
small microcode program on a backend that keeps its state between programs:

- :class:`GoldenBackend`: the golden model (:class:`cimtile.sim.tile.Tile`);
- :class:`RtlBackend`: the generated RTL under Verilator, one simulator process kept for the whole
  session (:mod:`cimtile.tb.resident_tests` serves program requests until told to stop).

Both backends run the same programs, so outputs, levels, masks and cycles can be compared step for
step (:class:`Journal` records every program of a session for a replay).

The layer occupies rows ``0 .. K-1`` and physical columns ``0 .. N*group-1`` of the tile (one tile per
layer). Forward programs process ``chunk`` vectors each (``min(in_depth, acc_depth)``), padding the
last chunk with zeros, so every backend runs identical programs.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cimtile.hw import encoding, isa
from cimtile.hw.isa import Opcode, encode
from cimtile.hw.params import TileConfig, load_config
from cimtile.sim.tile import RunResult, Tile

from cimtile.errors import CimtileError

__all__ = ["CompareBackend", "GoldenBackend", "Journal", "ReplayMismatch", "ResidentError", "ResidentTile",
           "RtlBackend", "make_backend"]

HALT = encode(Opcode.HALT)


class ResidentError(CimtileError, ValueError):
    """A layer does not fit the tile, or an operation's arguments do not fit the layer."""


# -- backends ---------------------------------------------------------------------------------------


@dataclass
class Journal:
    """Every program a resident tile ran, in order: ``(words, feed, batch)`` and its RunResult."""

    entries: list = field(default_factory=list)

    def add(self, words, feed, batch, res: RunResult) -> None:
        self.entries.append(((list(words), [np.asarray(b) for b in feed], batch), res))


class GoldenBackend:
    """The golden model, state kept in one :class:`Tile`; batched programs share its cell array."""

    name = "golden"

    def __init__(self, cfg: TileConfig, device=None):
        """``device``: a :class:`~cimtile.sim.device.DeviceModel` (None: an ideal array). One physical array: the
        resident tile and its batched copies share its stuck-cell map, drift exponents and random streams."""
        self.cfg = cfg
        self.device = None if device is None or device.off else device.array(cfg)
        self.tile = Tile(cfg, 1, device=self.device)
        self._batched: dict[int, Tile] = {}

    def run(self, words, feed, batch: int = 1) -> RunResult:
        if batch == 1:
            return self.tile.run(words, list(feed)).check()
        t = self._batched.get(batch)
        if t is None:
            self._batched.clear()  # keep one batched tile: its buffers scale with the batch
            t = self._batched[batch] = Tile(self.cfg, batch, device=self.device)
        # The cell array and masks are the resident ones; every forward program sets CFG/WIN itself.
        t.levels, t.masks = self.tile.levels, self.tile.masks
        return t.run(words, list(feed)).check()

    def close(self) -> None:
        pass


class RtlBackend:
    """The RTL under Verilator with resident state: one simulator process serves every request.

    A batched request (forward programs of several chunks) runs its program once per batch element,
    in order; chunks are independent (each loads its inputs), and the cell array is not changed by
    a forward program, so the outputs equal the golden model's batched run and the cycles are the
    sum. The session starts from power-on; close it (or use it as a context manager) to stop the
    simulator.
    """

    name = "rtl"

    def __init__(self, cfg: TileConfig, *, timeout: float = 600.0):
        from cimtile.tb import runner

        self.cfg = cfg
        self.timeout = timeout
        self._build = runner.build(cfg)
        base = self._build.build_dir / "resident"
        base.mkdir(parents=True, exist_ok=True)
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="session-", dir=base))
        self._n = 0
        self._result = None
        self._error = None

        def serve():
            try:
                self._result = runner.run(self._build, "cimtile.tb.resident_tests", test_dir=self.dir,
                                          log_file=self.dir / "sim.log",
                                          extra_env={"CIMTILE_SERVE_DIR": str(self.dir)})
            except BaseException as e:
                self._error = e

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def _request(self, payload: dict) -> dict:
        n = self._n
        self._n += 1
        tmp = self.dir / f"req-{n:06d}.tmp"
        tmp.write_bytes(pickle.dumps(payload))
        os.replace(tmp, self.dir / f"req-{n:06d}.pkl")
        res = self.dir / f"res-{n:06d}.pkl"
        t0 = time.monotonic()
        delay = 0.001
        while not res.exists():
            if not self._thread.is_alive():
                raise ResidentError(f"RTL simulator on {self.cfg.name} stopped (log: {self.dir / 'sim.log'})")
            if time.monotonic() - t0 > self.timeout:
                raise ResidentError(f"RTL request {n} took more than {self.timeout:.0f} s "
                                    f"(log: {self.dir / 'sim.log'})")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        out = pickle.loads(res.read_bytes())
        if "error" in out:
            raise ResidentError(f"RTL request {n}: {out['error']} (log: {self.dir / 'sim.log'})")
        return out

    def run(self, words, feed, batch: int = 1) -> RunResult:
        return self._request({"words": [int(w) for w in words], "feed": [np.asarray(b) for b in feed],
                              "batch": batch})["result"].check()

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._request({"stop": True})
            except ResidentError:
                pass
            self._thread.join(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ReplayMismatch(CimtileError, AssertionError):
    """The RTL and the golden model disagree on a program of a resident session."""


class CompareBackend:
    """Runs every program on the golden model and on the RTL (resident) and checks, program by program,
    that read-outs (outputs, levels, masks) and cycles are equal; the golden result is returned."""

    name = "compare"

    def __init__(self, cfg: TileConfig):
        self.golden = GoldenBackend(cfg)
        self.rtl = RtlBackend(cfg)
        self.programs = 0

    def run(self, words, feed, batch: int = 1) -> RunResult:
        g = self.golden.run(words, feed, batch)
        r = self.rtl.run(words, feed, batch)
        n = self.programs
        self.programs += 1
        if r.cycles != g.cycles:
            raise ReplayMismatch(f"program {n}: RTL took {r.cycles} cycles, golden {g.cycles}")
        if len(r.outputs) != len(g.outputs):
            raise ReplayMismatch(f"program {n}: RTL sent {len(r.outputs)} blocks, golden {len(g.outputs)}")
        for k, (a, b) in enumerate(zip(r.outputs, g.outputs)):
            if not np.array_equal(np.asarray(a), np.asarray(b)):
                raise ReplayMismatch(f"program {n}: read-out {k} differs between RTL and golden")
        return g

    def close(self) -> None:
        self.rtl.close()


def make_backend(cfg: TileConfig, backend: str, device=None):
    """``golden``, ``rtl`` or ``compare`` (both, checked program by program). ``device`` (a DeviceModel, golden
    only: read noise has no RTL counterpart, docs/devices.md) makes the golden array non-ideal."""
    if device is not None and not device.off and backend != "golden":
        raise ResidentError(f"backend {backend!r} with a device model: only the golden backend models devices")
    if backend == "golden":
        return GoldenBackend(cfg, device)
    if backend == "rtl":
        return RtlBackend(cfg)
    if backend == "compare":
        return CompareBackend(cfg)
    raise ResidentError(f"backend {backend!r}: expected golden, rtl or compare")


# -- the resident layer -----------------------------------------------------------------------------


@dataclass
class OpStats:
    """Cycles and calls per operation kind (program, forward, vau, wset, mask, read)."""

    cycles: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)

    def add(self, kind: str, cycles: int) -> None:
        self.cycles[kind] = self.cycles.get(kind, 0) + int(cycles)
        self.calls[kind] = self.calls.get(kind, 0) + 1


class ResidentTile:
    """One layer's integer weights resident on a tile.

    Parameters
    ----------
    cfg : TileConfig or preset name
    backend : ``"golden"``, ``"rtl"`` or a backend object (``run(words, feed, batch)``).
    journal : record every program and result (for a replay on another backend).
    device : a :class:`~cimtile.sim.device.DeviceModel` for the golden backend (None: an ideal array).

    Notes
    -----
    Every public operation returns its cycles on the tile (``stats`` keeps the totals per kind).
    """

    def __init__(self, cfg: TileConfig | str, backend="golden", *, journal: bool = False, device=None):
        self.cfg = load_config(cfg)
        self.backend = make_backend(self.cfg, backend, device) if isinstance(backend, str) else backend
        self.journal = Journal() if journal else None
        self.stats = OpStats()
        self.shape: tuple[int, int] | None = None
        self.layer: dict | None = None

    # -- plumbing ---------------------------------------------------------------------------------

    def _run(self, kind: str, words: list[int], feed: list, batch: int = 1) -> RunResult:
        if len(words) > self.cfg.prog_depth:
            raise ResidentError(f"{kind} program of {len(words)} words exceeds prog_depth {self.cfg.prog_depth}")
        res = self.backend.run(words, feed, batch)
        if self.journal is not None:
            self.journal.add(words, feed, batch, res)
        # A batched program's cycles are those of one element; the elements run one after another.
        self.stats.add(kind, res.cycles * batch)
        return res

    def _head(self) -> list[int]:
        L = self.layer
        return [encode(Opcode.CFG, wbits=L["wbits"], abits=L["abits"], wsigned=int(L["wsigned"]),
                       asigned=int(L["asigned"]), adc_shift=L["adc_shift"]),
                encode(Opcode.WIN, row_start=0, row_count=self.shape[0], col_start=0, col_count=self.ncols)]

    def _need(self) -> None:
        if self.layer is None:
            raise ResidentError("no layer programmed: call program() first")

    @property
    def group(self) -> int:
        self._need()
        return encoding.group_size(self.cfg, self.layer["wbits"], self.layer["wsigned"])

    @property
    def ncols(self) -> int:
        return self.shape[1] * self.group

    @property
    def weight_range(self) -> tuple[int, int]:
        self._need()
        return encoding.weight_range(self.layer["wbits"], self.layer["wsigned"])

    # -- operations -------------------------------------------------------------------------------

    def program(self, W: np.ndarray, *, wbits: int, abits: int = 8, wsigned: bool = True, asigned: bool = False,
                adc_shift: int | None = None, mask: np.ndarray | None = None, balanced: bool = False,
                adc_headroom: int = 0, signed_digits: bool = False) -> int:
        """Write integer weights ``W`` (K inputs x N outputs) and their mask (True = pruned); returns cycles.

        ``adc_shift`` defaults to the smallest shift with which no conversion can clip, plus ``adc_headroom``
        bits (room for the weights to grow under training). ``signed_digits`` programs multi-slice weights
        with a signed digit per slice (room to move both ways under VAU; see :meth:`carry`). ``balanced`` programs
        (and :meth:`write_weights`, :meth:`zero` later write) the balanced encoding of
        :func:`cimtile.hw.encoding.encode_weights`.
        """
        W = np.asarray(W)
        if W.ndim != 2:
            raise ResidentError(f"weights of shape {W.shape}: expected (inputs, outputs)")
        K, N = W.shape
        g = encoding.group_size(self.cfg, wbits, wsigned)
        if K > self.cfg.rows or N * g > self.cfg.cols:
            raise ResidentError(f"layer {K}x{N} needs {K} rows and {N * g} columns; tile {self.cfg.name} has "
                                f"{self.cfg.rows}x{self.cfg.cols}")
        lv = encoding.encode_weights(self.cfg, W, wbits, wsigned, balanced=balanced, signed_digits=signed_digits)
        if adc_shift is None:
            # The largest column sum these levels can give (every input slice at its top value, per row
            # group): the smallest shift under which it cannot clip. Later updates may exceed it; the
            # ADC then clips, as it would on the chip.
            P = self.cfg.rows_per_conv
            sums = [lv[i:i + P].sum(axis=0).max() for i in range(0, K, P)] if lv.size else [0]
            top = int(max(sums)) * ((1 << self.cfg.dac_bits) - 1)
            adc_shift = max(0, math.ceil(math.log2((top + 1) / (self.cfg.adc_max + 1)))) + adc_headroom
        self.layer = dict(wbits=wbits, abits=abits, wsigned=wsigned, asigned=asigned, adc_shift=min(adc_shift, 15),
                          balanced=balanced)
        self.shape = (K, N)
        levels = np.zeros((self.cfg.rows, self.ncols), dtype=np.int64)
        levels[:K] = lv
        masks = np.zeros((self.cfg.rows, self.ncols), dtype=np.int64)
        if mask is not None:
            masks[:K] = encoding.expand_mask(self.cfg, self._mask_arg(mask), wbits, wsigned)
        words = self._head() + [encode(Opcode.LDW, start=0, count=self.ncols),
                                encode(Opcode.LDM, start=0, count=self.ncols), HALT]
        return self._run("program", words, [levels, masks]).cycles

    def _mask_arg(self, mask) -> np.ndarray:
        m = np.asarray(mask, dtype=bool)
        if m.shape != self.shape:
            raise ResidentError(f"mask of shape {m.shape}: expected {self.shape}")
        return m

    @property
    def chunk(self) -> int:
        return min(self.cfg.in_depth, self.cfg.acc_depth, 4096)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Accumulators ``(n, N)`` of input bytes ``X`` ``(n, K)`` (the tile's integer MVM, ADC included)."""
        self._need()
        X = np.asarray(X)
        K, N = self.shape
        if X.ndim != 2 or X.shape[1] != K:
            raise ResidentError(f"inputs of shape {X.shape}: expected (n, {K})")
        n = X.shape[0]
        if n == 0:
            return np.zeros((0, N), dtype=np.int64)
        c = self.chunk
        nb = -(-n // c)
        buf = np.zeros((nb * c, self.cfg.rows), dtype=np.uint8)
        buf[:n, :K] = X.astype(np.int64) & 0xFF
        words = self._head() + [
            encode(Opcode.LDIN, start=0, count=c),
            encode(Opcode.LOOP, count=c, body=1, stride_in=1, stride_acc=1, stride_out=0),
            encode(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0),
            encode(Opcode.RDACC, start=0, count=c), HALT]
        res = self._run("forward", words, [buf.reshape(nb, c, self.cfg.rows)], batch=nb)
        acc = np.asarray(res.outputs[0]).reshape(nb * c, self.cfg.cols)
        return acc[:n, :N].astype(np.int64)

    @property
    def slices(self) -> int:
        """Weight slices of the programmed layer (``ceil((wbits - 1) / cell_bits)`` for signed weights)."""
        self._need()
        return encoding.weight_slices(self.layer["wbits"], self.layer["wsigned"], self.cfg.cell_bits)

    def slice_digits(self, d: np.ndarray) -> list[np.ndarray]:
        """Integer deltas (weight units) as one signed digit per weight slice, least significant first:
        ``d = sum_s digit_s * 2**(s * cell_bits)``, every digit but the top in ``-B/2 .. B/2 - 1``."""
        B, half = 1 << self.cfg.cell_bits, 1 << (self.cfg.cell_bits - 1)
        rest, out = np.asarray(d, dtype=np.int64), []
        for _ in range(self.slices - 1):
            dig = (rest + half) % B - half
            out.append(dig)
            rest = (rest - dig) // B
        return out + [rest]

    def vau(self, row_delta: np.ndarray | None = None, col_delta: np.ndarray | None = None, *, pair: int = 1,
            weight_slice: int | None = None) -> int:
        """VAU row update (one delta per input row) then column update (one per output); returns cycles.

        ``pair`` is the VAU pair mode (1 = ``diff``: a positive delta raises the weights). Deltas are integers
        in -128..127, in weight units. With one weight slice they are the cells' level steps. With several
        slices and ``weight_slice`` None, each delta is cut into one signed digit per slice
        (:meth:`slice_digits`) and every slice with a non-zero digit gets its own VAUR and VAUC (``only=1``,
        ``slice=s``): the cells saturate and never carry (docs/isa.md), see :meth:`carry`.
        ``weight_slice`` restricts the update to that slice with the deltas as its level steps. Row and
        column deltas go in with one LDD.
        """
        self._need()
        K, N = self.shape
        r = None if row_delta is None else self._delta(row_delta, K, "row")
        cd = None if col_delta is None else self._delta(col_delta, N, "column")
        if r is None and cd is None:
            return 0
        if weight_slice is not None or self.slices == 1:
            plan = [(weight_slice, r, cd)]
        else:
            rs = self.slice_digits(r) if r is not None else [None] * self.slices
            cs = self.slice_digits(cd) if cd is not None else [None] * self.slices
            plan = [(s, a, b) for s, (a, b) in enumerate(zip(rs, cs))
                    if (a is not None and a.any()) or (b is not None and b.any())]
        words, feed = self._head(), []
        for sl, a, b in plan:
            fields = dict(pair=pair, only=int(sl is not None), slice=sl or 0)
            dv = np.zeros(((a is not None) + (b is not None), self.cfg.delta_len), dtype=np.int64)
            if a is not None:
                dv[0, :K] = a
            if b is not None:
                dv[-1, :self.ncols] = np.repeat(b, self.group)
            words.append(encode(Opcode.LDD, start=0, count=len(dv)))
            if a is not None:
                words.append(encode(Opcode.VAUR, delta_addr=0, **fields))
            if b is not None:
                words.append(encode(Opcode.VAUC, delta_addr=len(dv) - 1, **fields))
            feed.append(dv)
        if not feed:
            return 0
        return self._run("vau", words + [HALT], feed).cycles

    def carry(self, *, via: str = "cheapest") -> int:
        """The host's carry for multi-slice weights: read every cell level (RDW, RDM), re-encode each unmasked
        weight with signed digits (:func:`cimtile.hw.encoding.encode_weights`, ``signed_digits``: the same
        weight, lower slices back in the middle of their range) and write the cells that change
        (:meth:`_write_levels`: per column WSET of those cells or LDW of the column, whichever the ISA's cycle
        formulas make cheaper; ``via="wset"``: every changed cell by WSET, as in :meth:`write_weights`). Masked
        cells and masks are unchanged. Returns cycles (kind ``carry``).

        A weight whose cells sum beyond the weight range (possible when ``wbits - 1`` is not a multiple of
        ``cell_bits``) is clipped to it.
        """
        self._need()
        if via not in self.WRITE_PATHS:
            raise ResidentError(f"write path {via!r}: expected one of {', '.join(self.WRITE_PATHS)}")
        L = self.layer
        res = self._run("carry", [encode(Opcode.RDW, start=0, count=self.ncols),
                                  encode(Opcode.RDM, start=0, count=self.ncols), HALT], [])
        K = self.shape[0]
        levels = np.asarray(res.outputs[0]).astype(np.int64)
        masks = np.asarray(res.outputs[1]).astype(bool)
        W = encoding.decode_weights(self.cfg, levels[:K], None, L["wbits"], L["wsigned"])
        lo, hi = self.weight_range
        new = encoding.encode_weights(self.cfg, np.clip(W, lo, hi), L["wbits"], L["wsigned"],
                                      signed_digits=True).astype(np.int64)
        return res.cycles + self._write_levels("carry", new, levels, masks, ldw=via == "cheapest")

    def _delta(self, d, n: int, what: str) -> np.ndarray:
        d = np.asarray(d)
        if d.shape != (n,):
            raise ResidentError(f"{what} deltas of shape {d.shape}: expected ({n},)")
        if d.size and (d.min() < -128 or d.max() > 127):
            raise ResidentError(f"{what} deltas outside -128..127")
        return d.astype(np.int64)

    #: How :meth:`write_weights` writes: the cheaper of WSET and LDW per column, or every changed cell by WSET.
    WRITE_PATHS = ("cheapest", "wset")

    def write_weights(self, W: np.ndarray, *, via: str = "cheapest") -> int:
        """Exact per-weight update to the canonical levels of ``W``; returns cycles (kind ``wset``).

        Only the cells whose level differs are written; masked cells are never changed. ``via="cheapest"``
        (:meth:`_write_levels`): per column, WSET of its changed cells or LDW of the whole column
        (write-and-verify of all its cells at once), whichever the ISA's cycle formulas make cheaper: the best
        exact update the tile allows. ``via="wset"``: every changed cell by WSET.
        """
        self._need()
        if via not in self.WRITE_PATHS:
            raise ResidentError(f"write path {via!r}: expected one of {', '.join(self.WRITE_PATHS)}")
        W = np.asarray(W)
        if W.shape != self.shape:
            raise ResidentError(f"weights of shape {W.shape}: expected {self.shape}")
        L = self.layer
        want = encoding.encode_weights(self.cfg, W, L["wbits"], L["wsigned"], balanced=L["balanced"])
        levels, masks = self._read_all("read")
        return self._write_levels("wset", want, levels, masks, ldw=via == "cheapest")

    def _write_levels(self, kind: str, want: np.ndarray, levels: np.ndarray, masks: np.ndarray, *,
                      ldw: bool = True) -> int:
        """Write the layer's cells (rows ``0..K-1``) to levels ``want`` where they differ from ``levels`` (every
        row of the layer's columns, as read back), masked cells unchanged; returns cycles.

        Per column, the changed cells by WSET (one write-and-verify each) or, with ``ldw``, the whole column by
        LDW (one write-and-verify of all its cells; masked and unchanged cells rewritten with their level)
        when the ISA's formulas make that cheaper; adjacent LDW columns share one LDW. Programs of at most
        ``prog_depth`` words.
        """
        K = self.shape[0]
        changed = (want != levels[:K]) & ~masks[:K]
        if not changed.any():
            return 0
        ns = isa.cfg_namespace(self.cfg)
        by_ldw = np.zeros(changed.shape[1], dtype=bool)
        if ldw:
            by_ldw = changed.sum(axis=0) * isa.cycles(Opcode.WSET, ns, {}) > isa.cycles(
                Opcode.LDW, ns, {"start": 0, "count": 1})
        new = levels.copy()
        new[:K] = np.where(masks[:K], levels[:K], want)
        items = []  # (word, LDW data or None)
        cols = np.flatnonzero(by_ldw)
        for run in (np.split(cols, np.flatnonzero(np.diff(cols) != 1) + 1) if cols.size else []):
            s, n = int(run[0]), len(run)
            items.append((encode(Opcode.LDW, start=s, count=n), new[:, s:s + n]))
        rows, cs = np.nonzero(changed & ~by_ldw)
        items += [(encode(Opcode.WSET, row=int(r), col=int(c), value=int(want[r, c])), None) for r, c in zip(rows, cs)]
        total, per = 0, self.cfg.prog_depth - 1
        for i in range(0, len(items), per):
            chunk = items[i:i + per]
            total += self._run(kind, [w for w, _ in chunk] + [HALT], [d for _, d in chunk if d is not None]).cycles
        return total

    def zero(self, sel: np.ndarray) -> int:
        """Set the selected weights (``sel`` K x N, True = clear) to weight 0 in the layer's encoding (WSET,
        indexed: used when regrown weights must start at 0); returns cycles."""
        self._need()
        L = self.layer
        cells = encoding.expand_mask(self.cfg, self._mask_arg(sel), L["wbits"], L["wsigned"])
        zero = encoding.encode_weights(self.cfg, np.zeros(self.shape, dtype=np.int64), L["wbits"], L["wsigned"],
                                       balanced=L["balanced"])
        levels, masks = self._read_all("read")
        K = self.shape[0]
        return self._write_levels("regrow", np.where(cells, zero, levels[:K]), levels, masks)

    def _cells(self, kind: str, words: list[int]) -> int:
        total = 0
        per = self.cfg.prog_depth - 1
        for i in range(0, len(words), per):
            total += self._run(kind, words[i:i + per] + [HALT], []).cycles
        return total

    def write_mask(self, mask: np.ndarray) -> int:
        """Set the per-weight mask (True = pruned): MSET on every cell whose bit changes; returns cycles."""
        self._need()
        L = self.layer
        want = encoding.expand_mask(self.cfg, self._mask_arg(mask), L["wbits"], L["wsigned"])
        _, masks = self.read_cells()
        rows, cols = np.nonzero(want != masks)
        words = [encode(Opcode.MSET, row=int(r), col=int(c), value=int(want[r, c])) for r, c in zip(rows, cols)]
        return self._cells("mask", words)

    def _read_all(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """Cell levels and mask bits of every row of the layer's columns ``(rows, N*group)`` (RDW, RDM)."""
        res = self._run(kind, [encode(Opcode.RDW, start=0, count=self.ncols),
                               encode(Opcode.RDM, start=0, count=self.ncols), HALT], [])
        return np.asarray(res.outputs[0]).astype(np.int64), np.asarray(res.outputs[1]).astype(bool)

    def read_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell levels and mask bits ``(K, N*group)`` of the layer (RDW, RDM)."""
        self._need()
        levels, masks = self._read_all("read")
        K = self.shape[0]
        return levels[:K], masks[:K]

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Logical weights ``(K, N)`` (masked = 0) and the per-weight mask (a weight is pruned when all
        its cells are masked)."""
        levels, masks = self.read_cells()
        L = self.layer
        W = encoding.decode_weights(self.cfg, levels, masks, L["wbits"], L["wsigned"])
        return W, masks.reshape(self.shape[0], self.shape[1], self.group).all(axis=2)

    def close(self) -> None:
        self.backend.close()
