"""The backends a compiled network's tile programs run on, behind one small declared interface.

A :class:`Backend` runs one tile program at a time: ``run(words, feed, batch)`` with the data-in blocks of
every load instruction (:class:`cimtile.sim.tile.Feed` shapes; LDIN blocks carry a leading batch axis) and
returns a :class:`cimtile.sim.tile.RunResult` (``cycles`` of one batch element, ``outputs`` of the read
instructions with the batch axis leading, ``cause``, ``pc``, ``detail``).

What persists between calls is part of the interface, :attr:`Backend.persistent`:

- :class:`GoldenBackend` (``persistent = True``): one golden tile per batch size keeps its whole state
  (cell levels, masks, buffers, CFG/WIN/CFGRQ, lanes) from one call to the next, as the real tile does between
  runs; a new batch size starts a new tile from the power-on state.
- :class:`RtlBackend` (``persistent = False``): every call starts a fresh simulation from the power-on state
  (and returns the tile to it between the elements of a batch).

A layer program either loads what it uses, or names a weights program (``Program.setup``, the batch schedule of
docs/compiler.md) that programs its crossbar tile once per batch. The runtime gives a persistent backend the weights
program as a call of its own before the layer program's batch (same batch size: the same tile); any other backend
gets it as ``run(words, feed, batch, setup=(weights_words, weights_feed))``, runs it before the program (for the
RTL: before every element of the batch, each of which starts from the power-on state) and reports its cycles once
in ``RunResult.setup_cycles``. So both
run the same. A backend that keeps state (for example an RTL simulation kept resident across calls
for on-tile training) declares ``persistent = True`` and is added with :func:`register_backend`; it may
release resources in :meth:`Backend.close`.

Errors: a backend raises its own :class:`cimtile.errors.CimtileError` subclass (the RTL's
:class:`cimtile.tb.backend.BackendError`, the golden model's ``FeedError``/``ProgramError``), never
:class:`~cimtile.compiler.errors.CompileError`; an error cause the program itself reaches is returned in the
result, not raised.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from cimtile.hw.params import TileConfig

from cimtile.errors import CimtileError

from .errors import CompileError

__all__ = ["BACKENDS", "Backend", "GoldenBackend", "RtlBackend", "get_backend", "register_backend"]


class Backend(ABC):
    """Runs tile programs for one :class:`~cimtile.hw.params.TileConfig` (see the module docstring).

    Attributes
    ----------
    name : str
        The name :func:`get_backend` knows it by.
    persistent : bool
        True if tile state (levels, masks, buffers, configuration registers) persists from one :meth:`run`
        call to the next (for the same batch size); False if every call starts from the power-on state.
    cfg : TileConfig
    """

    name: str = "?"
    persistent: bool = False

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg

    @abstractmethod
    def run(self, words: Sequence[int], feed: Sequence, batch: int):
        """Run ``words`` (ending in HALT) on ``batch`` copies of the per-vector buffers; returns a
        :class:`cimtile.sim.tile.RunResult`. A non-persistent backend also takes ``setup=(words, feed)``: a
        weights program run first, its cycles in ``RunResult.setup_cycles``."""

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release what the backend holds (simulator processes, tiles). The default holds nothing."""


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
    State persists between calls of the same batch size.

    BLAS runs on ``blas_threads`` threads (default 1) while a program runs: the golden model's GEMMs are
    narrow (a crossbar tile's 16-128 outputs) and short, so threads cost more in wake-ups than they save;
    on a loaded machine, multi-threaded OpenBLAS made a ResNet-18 image 3x slower. (Needs threadpoolctl,
    which scikit-learn brings; without it BLAS keeps its default.)
    """

    name = "golden"
    persistent = True

    def __init__(self, cfg: TileConfig, blas_threads: int | None = 1, device=None, run_stationary: bool = False):
        from cimtile.sim.tile import Tile

        super().__init__(cfg)
        # one physical array: every per-batch-size Tile shares its stuck cells and noise streams
        self.device = device.array(cfg) if device is not None and not device.off else None
        self._Tile = Tile
        self._tiles: dict[int, object] = {}
        self.blas_threads = blas_threads
        #: run the stationary batch schedule's programs themselves; by default the runtime computes the outputs of
        #: those column tiles with the single-run schedule's programs (the same codes, faster on the golden model)
        #: and counts the stationary programs' cycles with :meth:`count` (docs/compiler.md, "Batch schedule")
        self.run_stationary = run_stationary

    def run(self, words, feed, batch, setup=None):
        t = self._tiles.get(batch)
        if t is None:
            t = self._tiles[batch] = self._Tile(self.cfg, batch=batch, device=self.device)
        ctl = _blas_controller() if self.blas_threads is not None else None
        if ctl is None:
            return self._run(t, words, feed, setup)
        with ctl.limit(limits=self.blas_threads, user_api="blas"):
            return self._run(t, words, feed, setup)

    @staticmethod
    def _run(t, words, feed, setup):
        sc = 0
        if setup is not None:
            s = t.run(*setup)
            if not s.ok:
                return s
            sc = s.cycles
        res = t.run(words, feed)
        res.setup_cycles = sc
        return res

    def count(self, words, feed) -> int:
        """Cycles of one run of ``words`` counted by the golden model without its data (``timing_only``, on a tile
        of its own, so the state of the batch's tiles is untouched)."""
        t = self._tiles.get("timing")
        if t is None:
            t = self._tiles["timing"] = self._Tile(self.cfg, batch=1)
        res = t.run(words, feed, timing_only=True)
        if not res.ok:
            raise CompileError(f"internal: {res.cause.name} at pc {res.pc} counting a program's cycles: {res.detail}")
        return int(res.cycles)

    def close(self) -> None:
        self._tiles.clear()


class RtlBackend(Backend):
    """The generated RTL under cocotb/Verilator, through :func:`cimtile.tb.backend.run`; every call starts
    from the power-on state. Errors are :class:`cimtile.tb.backend.BackendError` (or the golden model's
    ``ProgramError`` for a program the tile cannot load)."""

    name = "rtl"
    persistent = False

    def __init__(self, cfg: TileConfig, device=None):
        try:
            from cimtile.tb import backend as tb_backend
        except ImportError as e:
            raise CompileError(f"backend 'rtl' is not available: {e} (install the 'sim' extra)") from None
        if device is not None and device.analog:
            raise CompileError(f"device {device.name!r}: read noise, drift and IR drop are golden-model-only; "
                               "use the golden backend, or a device with programming effects only")
        super().__init__(cfg)
        self._tb = tb_backend
        # programming effects (variation, stuck cells) reach the RTL as the levels the cells store
        self.device = device.array(cfg) if device is not None and not device.off else None

    def run(self, words, feed, batch, setup=None):
        if self.device is not None:
            feed = self.device.program_feed(words, feed)
            if setup is not None:
                setup = (setup[0], self.device.program_feed(*setup))
        try:
            return self._tb.run(self.cfg, words, feed, batch=batch, setup=setup)
        except CimtileError:
            raise
        except Exception as e:  # a failure inside the simulation machinery: still a one-line backend error
            first = str(e).splitlines()[0] if str(e) else ""
            raise self._tb.BackendError(f"RTL backend on {self.cfg.name}: {type(e).__name__}: {first}") from None


#: Backend factories by name: ``BACKENDS[name](cfg, device=None) -> Backend``.
BACKENDS: dict[str, Callable[..., Backend]] = {"golden": GoldenBackend, "rtl": RtlBackend}


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    """Make ``factory`` (called as ``factory(cfg, device=None)``) available as backend ``name``
    (``cimtile run --backend name``, :func:`get_backend`)."""
    BACKENDS[name] = factory


def get_backend(name: str, cfg: TileConfig, device=None) -> Backend:
    """A new backend ``name`` for ``cfg`` (one-line :class:`CompileError` naming the known ones otherwise);
    ``device`` a :class:`cimtile.sim.device.DeviceModel`, preset name or JSON file, or None (an ideal tile)."""
    from cimtile.sim.device import load_device

    factory = BACKENDS.get(name)
    if factory is None:
        raise CompileError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    device = load_device(device)
    return factory(cfg) if device is None else factory(cfg, device=device)
