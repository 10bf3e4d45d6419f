"""Progress for long work, shared by every part: a tqdm bar on a terminal, nothing in logs.

Two shapes:

- :func:`bar`: work with a count (programs of a layer, epochs, evaluations): a tqdm bar;
- :func:`status`: work without one (a Verilator build, synthesis, place and route): one line that names
  the current step and shows the time spent so far, ticking while an external tool runs.

Both write to stderr and are shown only when it is a terminal and ``CI`` is not set to a true value
(``CI=true`` is what CI services set); ``progress=True`` / ``False`` forces either way.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["enabled", "bar", "status", "Status"]


def enabled(progress: bool | None = None) -> bool:
    """Whether to show progress: ``progress`` if given, else stderr is a terminal and CI is not set."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
        progress: bool | None = None, leave: bool = False, **kw):
    """A tqdm bar on stderr, disabled (a no-op wrapper) when :func:`enabled` says so."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled(progress), leave=leave,
                file=sys.stderr, dynamic_ncols=True, **kw)


class Status:
    """One status line: ``desc [step 2/3: yosys synth_ecp5] 1:23``, refreshed every ``interval`` seconds.

    Use through :func:`status`; :meth:`step` names the next step (and counts it if ``steps`` was given).
    """

    def __init__(self, desc: str, steps: int | None = None, progress: bool | None = None, interval: float = 1.0):
        self.on = enabled(progress)
        self.desc = desc
        self._bar = None
        self._stop = threading.Event()
        self._thread = None
        self.interval = interval
        if self.on:
            fmt = "{desc} {elapsed}" if steps is None else "{desc} [{n_fmt}/{total_fmt}] {elapsed}"
            self._bar = bar(total=steps, desc=desc, progress=True, bar_format=fmt)
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._bar.refresh()

    def step(self, what: str, advance: bool = True) -> None:
        """Name the step now running (``advance``: count the previous one as done)."""
        if self._bar is None:
            return
        if advance and self._bar.total is not None and self._bar.n < self._bar.total and self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description_str(f"{self.desc}: {what}", refresh=True)

    _started = False

    def close(self, done: bool = True) -> None:
        if self._bar is None:
            return
        self._stop.set()
        self._thread.join()
        if done and self._bar.total is not None:
            self._bar.n = self._bar.total
        self._bar.close()
        self._bar = None


@contextmanager
def status(desc: str, steps: int | None = None, progress: bool | None = None,
           interval: float = 1.0) -> Iterator[Status]:
    """Context manager around a :class:`Status` line (refreshed every ``interval`` s); removed when the block ends."""
    s = Status(desc, steps, progress, interval)
    try:
        yield s
    finally:
        s.close()
