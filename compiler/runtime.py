"""Runtime: runs a compiled network layer by layer; tile layers on a backend (golden model or RTL), the
rest on the host (NumPy)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from cimtile.hw import isa
from cimtile.hw.isa import Opcode
from cimtile.sim.fastrun import freeze, frozen
from cimtile.sim.kernels import requantise
from numpy.lib.stride_tricks import sliding_window_view

from cimtile.progress import bar as progress_bar

from .backends import Backend, GoldenBackend, RtlBackend, get_backend
from .codegen import psum_ops
from .errors import CompileError
from .hostops import host_cost, run_host
from .inputs import batch_hint, check_input
from .ir import FaultMaskBlock, InputBlock, LevelBlock, MaskBlock, Model, Program, RqBlock, TileLayer
from .report import stationary_schedule

__all__ = ["Backend", "GoldenBackend", "RtlBackend", "RunStats", "execute", "get_backend", "im2col"]


@dataclass
class RunStats:
    """Cycles the tile took, per layer and in total, for the images of one :func:`execute` call."""

    images: int = 0
    init_cycles: int = 0
    layer_cycles: dict[str, int] = field(default_factory=dict)
    #: of ``layer_cycles``, the weight-programming cycles (weights programs once per batch, and the instructions
    #: that write cells inside run programs, once per run: :data:`cimtile.compiler.report.PROGRAMMING_OPS`)
    program_cycles: dict[str, int] = field(default_factory=dict)
    #: the schedule each tile layer ran on: "single-run" or "stationary" (docs/compiler.md, "Batch schedule")
    schedules: dict[str, str] = field(default_factory=dict)
    host_macs: int = 0
    host_ops: int = 0  # host element operations of tile layers (the weight zero point's correction)
    #: host operations on the partial sums of column tiles of several crossbar tiles (adds, requantisation)
    host_psum_ops: int = 0
    host_elem_ops: int = 0  # element operations of host steps (compiler.hostops.host_cost)

    @property
    def cycles(self) -> int:
        return self.init_cycles + sum(self.layer_cycles.values())

    @property
    def compute_cycles(self) -> int:
        """Cycles other than weight programming (the mask-clearing init program included)."""
        return self.cycles - sum(self.program_cycles.values())


def host_requant(L: TileLayer, acc: np.ndarray, acc_scale: np.ndarray) -> np.ndarray:
    """Requantise accumulators on the host as onnxruntime does (float scale, round half to even, saturate; a
    fused ReLU clamps at the zero point): for layers whose weight zero point the host corrects for."""
    q = L.need("requant", "runtime")
    real = acc.astype(np.float64) * np.asarray(acc_scale, dtype=np.float64)
    v = np.rint(real / float(L.out_spec.scale)) + q.zero_point
    lo = max(q.clamp[0], q.zero_point) if L.relu else q.clamp[0]
    return np.clip(v, lo, q.clamp[1]).astype(np.int64)


def im2col(x: np.ndarray, conv: dict, pad_value: int) -> np.ndarray:
    """(N*OH*OW, C*kh*kw) patches of NCHW codes, padded with the input zero point (so padding adds 0)."""
    kh, kw = conv["kernel"]
    sh, sw = conv["strides"]
    dh, dw = conv["dilations"]
    p = conv["pads"]
    x = np.asarray(x, dtype=np.int16)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=pad_value)
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]
    n, c, oh, ow = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * oh * ow, c * kh * kw), (n, oh, ow)


def freeze_view(a: np.ndarray) -> np.ndarray:
    """``a`` if its values cannot change (a view of frozen levels), else a frozen copy."""
    return a if frozen(a) else freeze(a)


def _im2col_bytes(x: np.ndarray, conv: dict, pad_value: int, P: int) -> tuple[np.ndarray, tuple]:
    """``im2col(x, conv, pad_value)`` as LDIN's bytes (each code's low byte), in ``ceil(M / P) * P`` rows (rows past
    the ``M`` patches hold ``pad_value``'s byte): one byte copy of the patches instead of an int16 copy and a byte
    copy. With many channels the input goes channels-last first and each kernel position is one copy whose inner
    loop runs over the channels (the window view's inner loop runs over a kernel row, 3-7 elements)."""
    kh, kw = conv["kernel"]
    sh, sw = conv["strides"]
    dh, dw = conv["dilations"]
    p = conv["pads"]
    x = np.asarray(x)
    # the low byte of every code, as im2col's int16 copy followed by the byte conversion gives it
    xb = x.astype(np.uint8) if x.dtype.kind in "iu" else np.asarray(x, dtype=np.int16).astype(np.uint8)
    n, c, H, W = xb.shape
    Hp, Wp = H + p[0] + p[2], W + p[1] + p[3]
    oh, ow = (Hp - (kh - 1) * dh - 1) // sh + 1, (Wp - (kw - 1) * dw - 1) // sw + 1
    M, K = n * oh * ow, c * kh * kw
    Ap = np.empty((max(1, math.ceil(M / P)) * P, K), dtype=np.uint8)
    Ap[M:] = pad_value & 0xFF
    dst = Ap[:M].reshape(n, oh, ow, c, kh, kw)
    if c >= 16:
        xh = np.full((n, Hp, Wp, c), pad_value & 0xFF, dtype=np.uint8)
        xh[:, p[0]:p[0] + H, p[1]:p[1] + W, :] = xb.transpose(0, 2, 3, 1)
        for i in range(kh):
            for j in range(kw):
                dst[..., i, j] = xh[:, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw, :]
    else:
        xp = np.pad(xb, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=pad_value & 0xFF)
        win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
        np.copyto(dst, win[:, :, ::sh, ::sw, ::dh, ::dw].transpose(0, 2, 3, 1, 4, 5))
    return Ap, (n, oh, ow)


class _Blocks:
    """Builds the data-in block each typed reference of codegen describes (:mod:`cimtile.compiler.ir`), exactly
    as described; blocks that do not depend on the input (levels, requantisation records) are reused."""

    def __init__(self, bundle):
        self.b = bundle
        # blocks that do not depend on the input, made once per bundle and frozen (sim.fastrun.freeze): the golden
        # model's fast path then skips their checks and the comparison of the cells with its kept analysis
        self._cache = getattr(bundle, "_feed_cache", None)
        if self._cache is None:
            self._cache = {}
        # input blocks frozen too (a copy each): set with a device model on the golden backend, whose read model
        # then remembers their values per block instead of hashing the bytes (sim.device.DeviceArray._block_inputs)
        self.freeze_inputs = False

    def rows(self, li: int, r0: int, n: int):
        """Physical rows of the row tile starting at logical row ``r0`` of layer ``li`` (``n`` rows): the first
        ``n``, or where fault remapping (compiler/faults.py) placed them."""
        r = self.b.row_maps.get((li, r0)) if self.b.row_maps else None
        return slice(0, n) if r is None else r

    def levels(self, li: int, ref: LevelBlock) -> np.ndarray:
        key = (li, ref)
        blk = self._cache.get(key)
        if blk is None:
            blk = self._cache[key] = freeze_view(self._levels(li, ref))
        return blk

    def _levels(self, li: int, ref: LevelBlock) -> np.ndarray:
        lv = self.b.levels_fix[li] if ref.fix else self.b.levels[li]
        if ref.pad_rows == ref.r1 - ref.r0 and lv.dtype == np.uint8 and self.rows(li, ref.r0, ref.pad_rows) == slice(
                0, ref.pad_rows):
            return lv[ref.r0:ref.r1, ref.k0:ref.k1]  # no padding, no remapped rows: LDW copies the view itself
        blk = np.zeros((ref.pad_rows, ref.k1 - ref.k0), dtype=np.uint8)
        blk[self.rows(li, ref.r0, ref.r1 - ref.r0)] = lv[ref.r0:ref.r1, ref.k0:ref.k1]
        return blk

    def rq(self, li: int, ref: RqBlock) -> np.ndarray:
        key = (li, ref)
        blk = self._cache.get(key)
        if blk is None:
            rq = self.b.rq[li]
            blk = self._cache[key] = freeze(np.stack([rq["bias"][ref.lo:ref.hi], rq["mult"][ref.lo:ref.hi],
                                                      rq["shift"][ref.lo:ref.hi]], axis=1).astype(np.int64))
        return blk

    @staticmethod
    def masks(ref: MaskBlock) -> np.ndarray:
        return np.zeros((ref.rows, ref.cols), dtype=np.int64)

    def fault_mask(self, ref: FaultMaskBlock) -> np.ndarray:
        return self.b.fault_mask.astype(np.uint8)

    def feed(self, li: int, L: TileLayer, A3: np.ndarray, pi: int, refs: list, inblk: dict) -> list:
        """The feed blocks of bundle program ``pi`` (``refs``: its feed): the input-independent ones made once per
        bundle, the input blocks from ``inblk`` (one object per distinct block of the layer call, built once)."""
        key = ("feed", li, pi)
        tpl = self._cache.get(key)
        if tpl is None:
            canon = self._cache.setdefault("refs", {})  # equal input references as one object
            tpl = self._cache[key] = (
                [None if isinstance(r, InputBlock) else _feed_block(self, li, L, A3, r, inblk, pi) for r in refs],
                [(j, canon.setdefault(r, r)) for j, r in enumerate(refs) if isinstance(r, InputBlock)])
        blocks, ins = tpl
        blocks = list(blocks)
        for j, r in ins:
            blk = inblk.get(id(r))
            if blk is None:
                blk = self.inputs(li, A3, r)
                blk = inblk[id(r)] = freeze(blk) if self.freeze_inputs else blk
            blocks[j] = blk
        return blocks

    def inputs(self, li: int, A3: np.ndarray, ref: InputBlock) -> np.ndarray:
        """``A3``: the layer's input matrix as (runs, chunk, K) bytes."""
        B, P = A3.shape[0], ref.chunk
        if len(ref.tiles) == 1 and ref.pad_rows == A3.shape[2] and tuple(ref.tiles[0]) == (0, A3.shape[2]) \
                and P == A3.shape[1] and self.rows(li, 0, A3.shape[2]) == slice(0, A3.shape[2]):
            return A3  # (the block is the input matrix itself)
        blk = np.zeros((B, len(ref.tiles), P, ref.pad_rows), dtype=np.uint8)
        for j, (r0, r1) in enumerate(ref.tiles):
            blk[:, j][..., self.rows(li, r0, r1 - r0)] = A3[:, :, r0:r1]
        return blk.reshape(B, len(ref.tiles) * P, ref.pad_rows)


def _run_program(backend: Backend, prog: Program, feed: list, batch: int, what: str, setup=None):
    if setup is None:
        res = backend.run(prog.words, feed, batch)
    else:
        res = backend.run(prog.words, feed, batch, setup=setup)
    cause = getattr(res, "cause", None)
    if cause is not None and getattr(cause, "name", "NONE") != "NONE":
        raise CompileError(f"{what}: the tile stopped with {cause.name} at pc {res.pc} "
                           f"({getattr(res, 'detail', '')})")
    return res


def _run_setup(backend: Backend, words, feed, batch: int, what: str) -> int:
    """Run a weights program before a run program's batch; its cycles (once). A persistent backend keeps the
    levels for the next call of the same batch size; another takes it as the ``setup`` of that call."""
    res = backend.run(words, feed, batch)
    cause = getattr(res, "cause", None)
    if cause is not None and getattr(cause, "name", "NONE") != "NONE":
        raise CompileError(f"{what} (weights program): the tile stopped with {cause.name} at pc {res.pc}")
    return int(res.cycles)


def _run_copies(backend: Backend, prog: Program, feed: list, B: int, what: str, bar=None, setup=None):
    """Run ``B`` copies of a program; with a progress bar shown on the golden backend, in up to 16 slices of
    the batch (copies are independent: same outputs and cycles), so that the bar moves through a long program.

    ``setup``: ``(words, feed)`` of the program's weights program, run once before the copies (on a persistent
    backend before each slice's batch size, counted once). Returns the result and the setup's cycles."""
    # (not with a device model: each slice would program the cells again and draw other noise, so results would
    # depend on whether a bar is shown)
    persistent = getattr(backend, "persistent", False)
    if bar is None or bar.disable or backend.name != "golden" or B < 16 or getattr(backend, "device", None):
        if setup is None:
            res, sc = _run_program(backend, prog, feed, B, what), 0
        elif persistent:
            sc = _run_setup(backend, *setup, B, what)
            res = _run_program(backend, prog, feed, B, what)
        else:
            res = _run_program(backend, prog, feed, B, what, setup=setup)
            sc = int(res.setup_cycles)
        if bar is not None:
            bar.update(B)
        return res, sc
    edges = np.linspace(0, B, min(16, B // 8) + 1).astype(int)
    parts, sc, done = [], 0, set()
    for b0, b1 in zip(edges[:-1], edges[1:]):
        sub = [f[b0:b1] if isinstance(ref, InputBlock) else f for ref, f in zip(prog.feed, feed)]
        if setup is not None and int(b1 - b0) not in done:  # the golden tile of this batch size gets the weights
            done.add(int(b1 - b0))
            c = _run_setup(backend, *setup, int(b1 - b0), what)
            sc = sc or c
        res = _run_program(backend, prog, sub, int(b1 - b0), what)
        parts.append(res.outputs)
        bar.update(int(b1 - b0))
    res.outputs = [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0]))]
    return res, sc


def _program_runs(bundle, images: int, backend: Backend) -> int:
    """Program runs of one :func:`execute` call on ``images`` inputs (the progress bar's total)."""
    total = 0
    for L in bundle.model.layers:
        n = len(L.programs)
        if uses_stationary(L, images) and not _equivalent(backend):
            n = sum(1 for i in L.programs if bundle.programs[i].setup is not None) + len(_fused(bundle, L))
        total += n * max(1, math.ceil(images * L.schedule.positions / L.schedule.chunk))
    return total


def _feed_block(images: _Blocks, li: int, L: TileLayer, A3: np.ndarray, ref, inblk: dict, pi: int):
    if isinstance(ref, InputBlock):
        ref = images._cache.setdefault("refs", {}).setdefault(ref, ref)  # (equal references: one block, see feed)
        blk = inblk.get(id(ref))
        if blk is None:
            blk = images.inputs(li, A3, ref)
            blk = inblk[id(ref)] = freeze(blk) if images.freeze_inputs else blk
        return blk
    if isinstance(ref, LevelBlock):
        return images.levels(li, ref)
    if isinstance(ref, RqBlock):
        return images.rq(li, ref)
    if isinstance(ref, FaultMaskBlock):
        return images.fault_mask(ref)
    raise CompileError(f"layer {L.name!r}: program {pi} loads {ref!r}, which no layer program takes")


_LDW_CYCLES: dict = {}  # (cfg, words) -> programming cycles: decoding every word cost 10% of a ResNet-18 image


def _ldw_cycles(bundle, prog: Program) -> int:
    """Programming cycles of one run of ``prog``: its instructions that write cells
    (:func:`cimtile.compiler.report.write_cycles`, the ISA's formulas)."""
    from .report import write_cycles

    key = (bundle.cfg, tuple(prog.words))
    c = _LDW_CYCLES.get(key)
    if c is None:
        if len(_LDW_CYCLES) > 4096:
            _LDW_CYCLES.clear()
        c = _LDW_CYCLES[key] = write_cycles(bundle.cfg, prog)
    return c


def uses_stationary(L: TileLayer, images: int) -> bool:
    """The batch schedule's choice for layer ``L`` on a batch of ``images`` images (docs/compiler.md, "Batch
    schedule"): the stationary schedule when ``L`` has column tiles of several crossbar tiles (which the
    single-run schedule reprograms every run) and the batch has more than one image or takes more than one run
    (an image with more positions than a chunk); the single-run schedule otherwise (one image in one run, or
    every column tile one crossbar tile, already programmed once per batch). :func:`cimtile.compiler.report.
    batch_terms` applies the same rule to the report."""
    return stationary_schedule(bool(L.batch_programs), images,
                               math.ceil(images * L.schedule.positions / L.schedule.chunk))


def _fused(bundle, L: TileLayer) -> list[tuple[Program, int]]:
    """The stationary schedule of ``L`` as few backend calls: consecutive (weights program, run program) pairs
    joined into one program of at most ``prog_depth`` words (the bodies in order, one HALT), with the number of
    pairs in each. Run on ``B`` copies, such a program does what the pairs do run one after the other, each weights
    program once and each run program ``B`` times: the copies share the cell array (every copy's LDW stores the
    same levels), and each run program sets CFG and WIN, loads its inputs and starts fresh accumulators."""
    cfg = bundle.cfg
    progs = bundle.model.batch_programs
    out, cur, n = [], None, 0
    for pi in L.batch_programs:
        run = progs[pi]
        w = progs[run.setup]
        body = w.words[:-1] + run.words[:-1]
        if cur is not None and len(cur.words) + len(body) + 1 > cfg.prog_depth:
            cur.words.append(E_HALT)
            out.append((cur, n))
            cur = None
        if cur is None:
            cur, n = Program(run.layer, [], [], []), 0
        cur.words += body
        cur.feed += w.feed + run.feed
        cur.reads += run.reads
        n += 1
    if cur is not None:
        cur.words.append(E_HALT)
        out.append((cur, n))
    return out


def _equivalent(backend: Backend) -> bool:
    """True if ``backend`` computes the stationary schedule's outputs with the single-run programs (run_layer)."""
    return isinstance(backend, GoldenBackend) and not backend.run_stationary


_COUNTED: dict = {}  # (cfg, words) -> the golden model's timing-mode count of a stationary group's cycles


def _counted(backend: GoldenBackend, prog: Program, feed: list) -> int:
    key = (backend.cfg, tuple(prog.words))
    c = _COUNTED.get(key)
    if c is None:
        if len(_COUNTED) > 4096:
            _COUNTED.clear()
        c = _COUNTED[key] = backend.count(prog.words, feed)
    return c


E_HALT = isa.encode(Opcode.HALT)


def run_layer(bundle, li: int, L: TileLayer, x: np.ndarray, backend: Backend, images: _Blocks,
              stats: RunStats, bar=None, batch: int | None = None) -> np.ndarray:
    """Run one tile layer on input codes ``x``; returns output codes, or the accumulator's real (or int32) value.
    ``batch``: the images of the batch ``x`` belongs to (default ``stats.images``), which chooses the layer's
    schedule (:func:`uses_stationary`)."""
    K, N = L.weights.K, L.weights.N
    zp_in = int(L.in_spec.zero_point)
    x = np.asarray(x)
    if L.conv is not None:
        kh, kw = L.conv["kernel"]
        if x.ndim != 4 or x.shape[1] * kh * kw != K:
            raise CompileError(f"layer {L.name!r}: input shape {x.shape} does not match the compiled layer: expected "
                               f"NCHW with C = {K // (kh * kw)} channels (C x {kh} x {kw} = {K})")
        if L.weights.host_corrected:  # (the host's correction needs the codes)
            A, (n, oh, ow) = im2col(x, L.conv, zp_in)
        else:
            A = None
            Ap, (n, oh, ow) = _im2col_bytes(x, L.conv, zp_in, L.schedule.chunk)
            M = n * oh * ow
        out_shape = (n, oh, ow, N)
    else:
        if x.ndim == 0 or x.shape[-1] != K:
            raise CompileError(f"layer {L.name!r}: input shape {x.shape} does not match the compiled layer: expected "
                               f"a last axis of {K}")
        A = x.reshape(-1, K)
        out_shape = tuple(x.shape[:-1]) + (N,)
    P = L.schedule.chunk
    if A is not None:
        M = A.shape[0]
        B = max(1, math.ceil(M / P))
        # Bytes as LDIN takes them (a signed code's two's complement byte): the tile then stores them as they are.
        Ap = np.full((B * P, K), zp_in & 0xFF, dtype=np.uint8)
        # (integer to uint8 keeps the low byte; a float array, if a host op ever gave one, goes through int64)
        Ap[:M] = (A if A.dtype.kind in "iu" else A.astype(np.int64)).astype(np.uint8)
    B = max(1, math.ceil(M / P))
    A3 = Ap.reshape(B, P, K)
    inblk: dict = {}
    Y = np.zeros((B * P, N), dtype=np.int64)
    cycles = 0
    program = 0
    stationary = uses_stationary(L, stats.images if batch is None else batch)
    stats.schedules[L.name] = "stationary" if stationary else "single-run"
    psum: set[tuple[int, int]] = set()  # output ranges summed from partial sums on the host
    # the stationary schedule runs the layer's stationary column tiles' programs (those with a weights program) as
    # the single-run schedule does, and its other column tiles crossbar tile by crossbar tile. The golden backend
    # (unless told to run the stationary programs themselves) computes those column tiles' outputs with the
    # single-run schedule's programs, which give the same codes (tested), and counts the stationary programs' cycles
    # in timing mode: its copies share one array, so a single-run program on B copies programs each crossbar tile
    # once too, and it reads back no partial sums.
    equivalent = stationary and _equivalent(backend)
    for pi in L.programs:
        prog = bundle.programs[pi]
        counted = not stationary or prog.setup is not None
        if not (counted or equivalent):
            continue
        feed = images.feed(li, L, A3, pi, prog.feed, inblk)
        setup = None
        if prog.setup is not None:
            wp = bundle.programs[prog.setup]
            setup = (wp.words, images.feed(li, L, A3, prog.setup, wp.feed, inblk))
        res, sc = _run_copies(backend, prog, feed, B, f"layer {L.name!r}", bar, setup)
        if counted:
            cycles += int(res.cycles) * B + sc  # the golden model counts one copy of the batch; copies are runs
            program += sc + B * _ldw_cycles(bundle, prog)
        for ref, blk in zip(prog.reads, res.outputs):
            blk = np.asarray(blk).reshape(B * P, -1)[:, : ref.hi - ref.lo]
            if ref.kind == "out" and ref.signed:
                blk = blk.astype(np.uint8).view(np.int8)
            Y[:, ref.lo:ref.hi] = blk
    if stationary:
        halt = isa.cycles(Opcode.HALT, isa.cfg_namespace(bundle.cfg), {})
        fused = images._cache.get(("fused", li))
        if fused is None:
            fused = images._cache[("fused", li)] = _fused(bundle, L)
        for prog, n in fused:
            feed = None if equivalent and (backend.cfg, tuple(prog.words)) in _COUNTED else \
                [_feed_block(images, li, L, A3, ref, inblk, -1) for ref in prog.feed]  # (a count remembered: none)
            if equivalent:
                c = _counted(backend, prog, feed)
            else:
                res, _ = _run_copies(backend, prog, feed, B, f"layer {L.name!r}", bar)
                c = int(res.cycles)
                for ref, blk in zip(prog.reads, res.outputs):
                    # a crossbar tile's partial sums: the host adds them up, exactly
                    Y[:, ref.lo:ref.hi] += np.asarray(blk).reshape(B * P, -1)[:, : ref.hi - ref.lo]
                    psum.add((ref.lo, ref.hi))
            # one copy ran n weights programs' LDWs and n run programs' bodies, with one HALT: the batch runs each
            # weights program (LDW, HALT) once and each run program (body, HALT) B times
            w = _ldw_cycles(bundle, prog)
            cycles += w + n * halt + B * (c - w - halt + n * halt)
            program += w + n * halt
        stats.host_psum_ops += M * psum_ops(L)
    stats.layer_cycles[L.name] = stats.layer_cycles.get(L.name, 0) + cycles
    stats.program_cycles[L.name] = stats.program_cycles.get(L.name, 0) + program
    Y = Y[:M]
    rq = bundle.rq[li]
    if psum:
        if L.requant_on_tile:
            # the summed column tiles requantise on the host with the tile's own REQ arithmetic (the golden
            # model's kernel), so the codes are those the tile stores in the single-run schedule
            q = L.need("requant", "runtime")
            for lo, hi in sorted(psum):
                Y[:, lo:hi] = requantise(Y[:, lo:hi], rq["bias"][lo:hi], rq["mult"][lo:hi], rq["shift"][lo:hi],
                                         q.zero_point, q.clamp[0], q.clamp[1], L.relu)
    if L.weights.host_corrected:
        # the weight zero point's term, exactly: -zp_w[n] * sum_k (x_k - zp_in) (padding adds 0)
        # (grouped layers: per group, over the group's own inputs only)
        G = L.groups
        S = A.reshape(M, G, K // G).sum(axis=2, dtype=np.int64) - (K // G) * zp_in  # (M, G)
        Y = Y - np.repeat(S, N // G, axis=1) * np.asarray(rq["zp_w"], dtype=np.int64)
        stats.host_ops += M * (K + N)
    if L.requant_on_tile:
        out = Y
    elif L.out_spec is not None:
        out = host_requant(L, Y + rq["bias"], rq["acc_scale"])
    elif L.out_dtype == "int32":
        out = (Y + rq["bias"]).astype(np.int32)
    else:
        out = ((Y + rq["bias"]) * rq["acc_scale"] + rq["bias_f"]).astype(np.float32)
    out = out.reshape(out_shape)
    if L.conv is not None:
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out)


def execute(bundle, x: np.ndarray, backend: Backend | str = "golden", progress: bool | None = None, device=None):
    """Run the network on ``x`` (its first input, as ONNX takes it); returns (outputs by name, RunStats).

    ``device``: a :class:`cimtile.sim.device.DeviceModel` for a backend given by name (None: an ideal tile).
    """
    model: Model = bundle.model
    cfg = bundle.cfg
    # type, values and shape first (one-line errors), then the backend (whose first RTL use builds a model)
    x = check_input(x, model.tensors[model.inputs[0]], model.meta)
    if isinstance(backend, str):
        backend = get_backend(backend, cfg, device)
    stats = RunStats(images=int(x.shape[0]) if x.ndim else 1)
    init = bundle.programs[0]
    res = _run_program(backend, init, [_Blocks.masks(ref) for ref in init.feed], 1, "init")
    stats.init_cycles = int(res.cycles)
    env = {model.inputs[0]: x}
    images = _Blocks(bundle)
    images.freeze_inputs = backend.name == "golden" and getattr(backend, "device", None) is not None
    layer_index = {id(L): i for i, L in enumerate(model.layers)}
    # The bar counts program runs (a layer's programs times its copies), so it moves through a long layer.
    bar = progress_bar(total=_program_runs(bundle, int(x.shape[0]), backend), desc=f"cimtile run ({backend.name})",
                       unit="run", progress=progress)
    for s in model.steps:
        if isinstance(s, TileLayer):
            bar.set_postfix_str(f"layer {s.name}")  # shown at once: a layer can take long
            env[s.output] = run_layer(bundle, layer_index[id(s)], s, env[s.input], backend, images, stats, bar)
        else:
            args = [env[n] if n in env else model.consts[n] for n in s.inputs if n]
            try:
                res = run_host(s, args)
                outs = res if len(s.outputs) > 1 else (res,)  # Split has several
                env.update(zip(s.outputs, outs))
                macs, elem = host_cost(s, [np.shape(a) for a in args], [np.shape(o) for o in outs])
                stats.host_macs += macs
                stats.host_elem_ops += elem
            except ValueError as e:  # e.g. a Reshape to a batch size fixed at export: one line, not a traceback
                raise CompileError(f"host step {s.name!r} ({s.op}): {str(e).splitlines()[0]}"
                                   f"{batch_hint(model.tensors[model.inputs[0]], model.meta, x.shape)}") from None
    bar.close()
    outs = {}
    for o in model.outputs:
        t = model.tensors[o]
        v = env[o]
        if t.kind == "codes":
            v = np.asarray(v).astype(t.dtype)
        elif t.kind == "float":
            v = np.asarray(v, dtype=np.float32)
        outs[o] = v
    return outs, stats
