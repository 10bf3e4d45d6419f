"""Runtime: runs a compiled network layer by layer; tile layers on a backend (golden model or RTL), the
rest on the host (NumPy)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from cimtile.hw.params import TileConfig
from numpy.lib.stride_tricks import sliding_window_view

from cimtile.progress import bar as progress_bar

from .errors import CompileError
from .hostops import run_host
from .inputs import batch_hint, check_input
from .ir import Model, Program, TileLayer

__all__ = ["Backend", "GoldenBackend", "RtlBackend", "RunStats", "execute", "get_backend", "im2col"]


class Backend:
    """Runs one program on the tile: ``run(words, feed, batch)`` returns an object with ``cycles`` (of one
    run), ``outputs`` (blocks of the read instructions, leading axis ``batch``), ``cause``, ``pc``."""

    name = "?"

    def run(self, words: list[int], feed: list, batch: int):  # pragma: no cover - interface
        raise NotImplementedError


_blas = []  # [threadpoolctl controller or None], found once


def _blas_controller():
    """threadpoolctl's controller of the loaded BLAS libraries, or None without threadpoolctl."""
    if not _blas:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # comes with scikit-learn; without it BLAS keeps its default threads
            _blas.append(None)
        else:
            _blas.append(ThreadpoolController())
    return _blas[0]


class GoldenBackend(Backend):
    """The golden model (:class:`cimtile.sim.tile.Tile`), one instance per batch size; loops run vectorised.

    BLAS runs on ``blas_threads`` threads (default 1) while a program runs: the golden model's GEMMs are
    narrow (a crossbar tile's 16-128 outputs) and short, so threads cost more in wake-ups than they save;
    on a loaded machine, multi-threaded OpenBLAS made a ResNet-18 image 3x slower. (Needs threadpoolctl,
    which scikit-learn brings; without it BLAS keeps its default.)
    """

    name = "golden"

    def __init__(self, cfg: TileConfig, blas_threads: int | None = 1, device=None):
        from cimtile.sim.tile import Tile

        self.cfg = cfg
        # one physical array: every per-batch-size Tile shares its stuck cells and noise streams
        self.device = device.array(cfg) if device is not None and not device.off else None
        self._Tile = Tile
        self._tiles: dict[int, object] = {}
        self.blas_threads = blas_threads

    def run(self, words, feed, batch):
        t = self._tiles.get(batch)
        if t is None:
            t = self._tiles[batch] = self._Tile(self.cfg, batch=batch, device=self.device)
        ctl = _blas_controller() if self.blas_threads is not None else None
        if ctl is None:
            return t.run(words, feed)
        with ctl.limit(limits=self.blas_threads, user_api="blas"):
            return t.run(words, feed)


class RtlBackend(Backend):
    """The RTL under cocotb/Verilator, through ``tb.backend.run``."""

    name = "rtl"

    def __init__(self, cfg: TileConfig, device=None):
        try:
            from cimtile.tb import backend as tb_backend
        except ImportError:
            raise CompileError("backend 'rtl' is not available: tb.backend (the RTL co-simulation runner) is "
                               "not installed in this tree") from None
        if device is not None and device.analog:
            raise CompileError(f"device {device.name!r}: read noise, drift and IR drop are golden-model-only; "
                               "use the golden backend, or a device with programming effects only")
        self.cfg = cfg
        self._run = tb_backend.run
        # programming effects (variation, stuck cells) reach the RTL as the levels the cells store
        self.device = device.array(cfg) if device is not None and not device.off else None

    def run(self, words, feed, batch):
        if self.device is not None:
            feed = self.device.program_feed(words, feed)
        try:
            return self._run(self.cfg, words, feed, batch=batch)
        except Exception as e:
            raise CompileError(f"backend 'rtl': {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") \
                from None


def get_backend(name: str, cfg: TileConfig, device=None) -> Backend:
    """A backend by name; ``device`` a :class:`cimtile.sim.device.DeviceModel`, preset name or JSON file, or None
    (an ideal tile)."""
    from cimtile.sim.device import load_device

    device = load_device(device)
    if name == "golden":
        return GoldenBackend(cfg, device=device)
    if name == "rtl":
        return RtlBackend(cfg, device=device)
    raise CompileError(f"unknown backend {name!r} (golden, rtl)")


@dataclass
class RunStats:
    """Cycles the tile took, per layer and in total, for the images of one :func:`execute` call."""

    images: int = 0
    init_cycles: int = 0
    layer_cycles: dict[str, int] = field(default_factory=dict)
    host_macs: int = 0

    @property
    def cycles(self) -> int:
        return self.init_cycles + sum(self.layer_cycles.values())


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


class _Images:
    """Per-program data-in blocks that do not depend on the input (weights, requantisation records)."""

    def __init__(self, bundle):
        self.b = bundle
        self._tiles: dict[int, tuple] = {}

    def tiles(self, L: TileLayer) -> tuple[list, list]:
        """(row tiles, column tiles) of a layer (properties that build a list on every access)."""
        t = self._tiles.get(id(L))
        if t is None:
            t = self._tiles[id(L)] = (L.row_tiles, L.col_tiles)
        return t

    def weights(self, L: TileLayer, li: int, ct: int, rt: int, fix: bool = False) -> np.ndarray:
        cfg = self.b.cfg
        lv, group = (self.b.levels_fix[li], 2) if fix else (self.b.levels[li], L.group)
        row_tiles, col_tiles = self.tiles(L)
        c0, c1 = col_tiles[ct]
        r0, r1 = row_tiles[rt]
        blk = np.zeros((cfg.rows, (c1 - c0) * group), dtype=np.uint8)
        rows = _rows(self.b, li, rt, r1 - r0)
        blk[rows] = lv[r0:r1, c0 * group:c1 * group]
        return blk

    def rq(self, L: TileLayer, li: int, ct: int) -> np.ndarray:
        c0, c1 = self.tiles(L)[1][ct]
        rq = self.b.rq[li]
        return np.stack([rq["bias"][c0:c1], rq["mult"][c0:c1], rq["shift"][c0:c1]], axis=1)


def _rows(bundle, li: int, rt: int, n: int):
    """Physical rows of row tile ``rt`` of layer ``li``: the first ``n``, or the fault remapping's."""
    m = getattr(bundle, "row_maps", None)
    r = m.get((li, rt)) if m else None
    return slice(0, n) if r is None else r


def _run_program(backend: Backend, prog: Program, feed: list, batch: int, what: str):
    res = backend.run(prog.words, feed, batch)
    cause = getattr(res, "cause", None)
    if cause is not None and getattr(cause, "name", "NONE") != "NONE":
        raise CompileError(f"{what}: the tile stopped with {cause.name} at pc {res.pc} "
                           f"({getattr(res, 'detail', '')})")
    return res


def _run_copies(backend: Backend, prog: Program, feed: list, B: int, what: str, bar=None):
    """Run ``B`` copies of a program; with a progress bar shown on the golden backend, in up to 16 slices of
    the batch (copies are independent: same outputs and cycles), so that the bar moves through a long program."""
    # (not with a device model: each slice would program the cells again and draw other noise, so results would
    # depend on whether a bar is shown)
    if bar is None or bar.disable or backend.name != "golden" or B < 16 or getattr(backend, "device", None):
        res = _run_program(backend, prog, feed, B, what)
        if bar is not None:
            bar.update(B)
        return res
    edges = np.linspace(0, B, min(16, B // 8) + 1).astype(int)
    parts = []
    for b0, b1 in zip(edges[:-1], edges[1:]):
        sub = [f[b0:b1] if item[0] == "in" else f for item, f in zip(prog.feed, feed)]
        res = _run_program(backend, prog, sub, int(b1 - b0), what)
        parts.append(res.outputs)
        bar.update(int(b1 - b0))
    res.outputs = [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0]))]
    return res


def _program_runs(model: Model, images: int) -> int:
    """Program runs of one :func:`execute` call on ``images`` inputs (the progress bar's total)."""
    return sum(len(L.programs) * max(1, math.ceil(images * L.positions / L.chunk)) for L in model.layers)


def run_layer(bundle, li: int, L: TileLayer, x: np.ndarray, backend: Backend, images: _Images,
              stats: RunStats, bar=None) -> np.ndarray:
    """Run one tile layer on input codes ``x``; returns output codes, or the accumulator's real (or int32) value."""
    cfg = bundle.cfg
    zp_in = int(L.in_spec.zero_point)
    x = np.asarray(x)
    if L.conv is not None:
        if x.ndim != 4 or x.shape[1] * L.conv["kernel"][0] * L.conv["kernel"][1] != L.K:
            raise CompileError(f"layer {L.name!r}: input shape {x.shape} does not match the compiled layer")
        A, (n, oh, ow) = im2col(x, L.conv, zp_in)
        out_shape = (n, oh, ow, L.N)
    else:
        if x.shape[-1] != L.K:
            raise CompileError(f"layer {L.name!r}: input shape {x.shape} does not match the compiled layer")
        A = x.reshape(-1, L.K)
        out_shape = tuple(x.shape[:-1]) + (L.N,)
    M = A.shape[0]
    P = L.chunk
    B = max(1, math.ceil(M / P))
    # Bytes as LDIN takes them (a signed code's two's complement byte): the tile then stores them as they are.
    Ap = np.full((B * P, L.K), zp_in & 0xFF, dtype=np.uint8)
    # (integer to uint8 keeps the low byte; a float array, if a host op ever gave one, goes through int64)
    Ap[:M] = (A if A.dtype.kind in "iu" else A.astype(np.int64)).astype(np.uint8)
    A3 = Ap.reshape(B, P, L.K)
    inblk = {}
    row_tiles, col_tiles = images.tiles(L)

    def inputs(g0: int, g1: int) -> np.ndarray:
        """LDIN block of row tiles g0..g1-1: (B, P * tiles, rows), row tile major."""
        blk = inblk.get((g0, g1))
        if blk is None:
            blk = np.zeros((B, g1 - g0, P, cfg.rows), dtype=np.uint8)
            for j, (r0, r1) in enumerate(row_tiles[g0:g1]):
                blk[:, j][..., _rows(bundle, li, g0 + j, r1 - r0)] = A3[:, :, r0:r1]
            blk = inblk[(g0, g1)] = blk.reshape(B, (g1 - g0) * P, cfg.rows)
        return blk

    Y = np.zeros((B * P, L.N), dtype=np.int64)
    cycles = 0
    for pi in L.programs:
        prog = bundle.programs[pi]
        feed = []
        for item in prog.feed:
            if item[0] == "in":
                feed.append(inputs(item[1], item[2]))
            elif item[0] in ("w", "wf"):
                feed.append(images.weights(L, li, item[1], item[2], fix=item[0] == "wf"))
            elif item[0] == "fmask":  # the fault mask (compiler/faults.py)
                feed.append(bundle.fault_mask.astype(np.uint8))
            else:
                feed.append(images.rq(L, li, item[1]))
        res = _run_copies(backend, prog, feed, B, f"layer {L.name!r}", bar)
        cycles += int(res.cycles) * B  # the golden model counts one copy of the batch; copies are runs
        for (kind, ct), blk in zip(prog.reads, res.outputs):
            c0, c1 = col_tiles[ct]
            blk = np.asarray(blk).reshape(B * P, -1)[:, : c1 - c0]
            if kind == "out" and L.out_spec.signed:
                blk = blk.astype(np.uint8).view(np.int8)
            Y[:, c0:c1] = blk
    stats.layer_cycles[L.name] = stats.layer_cycles.get(L.name, 0) + cycles
    Y = Y[:M]
    if L.out_spec is not None:
        out = Y
    elif L.out_dtype == "int32":
        out = (Y + bundle.rq[li]["bias"]).astype(np.int32)
    else:
        rq = bundle.rq[li]
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
    res = _run_program(backend, init, [np.zeros((cfg.rows, cfg.cols), dtype=np.int64)], 1, "init")
    stats.init_cycles = int(res.cycles)
    env = {model.inputs[0]: x}
    images = _Images(bundle)
    layer_index = {id(L): i for i, L in enumerate(model.layers)}
    # The bar counts program runs (a layer's programs times its copies), so it moves through a long layer.
    bar = progress_bar(total=_program_runs(model, int(x.shape[0])), desc=f"cimtile run ({backend.name})",
                       unit="run", progress=progress)
    for s in model.steps:
        if isinstance(s, TileLayer):
            bar.set_postfix_str(f"layer {s.name}")  # shown at once: a layer can take long
            env[s.output] = run_layer(bundle, layer_index[id(s)], s, env[s.input], backend, images, stats, bar)
        else:
            args = [env[n] if n in env else model.consts[n] for n in s.inputs if n]
            if s.op == "HostMatMul":
                a, b = args
                stats.host_macs += int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))) * \
                    a.shape[-2] * a.shape[-1] * b.shape[-1]
            try:
                env[s.outputs[0]] = run_host(s, args)
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
