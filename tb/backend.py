"""The RTL backend: run instruction words on the generated tile under Verilator, from plain Python.

``tb.backend.run(cfg, words, feed_blocks, batch)`` returns a :class:`cimtile.sim.tile.RunResult` just as
``sim.tile.Tile(cfg, batch).run(words, feed_blocks)`` does, so the compiler's runtime can swap the
golden model for the RTL (``cimtile run --backend rtl``).

Each call starts one simulator process (about 1-2 s of overhead) on the configuration's cached
build (built on first use: about a minute for ``tiny``, several for large presets). The simulation
starts from the power-on state. A batch of B runs the program B times, once per batch element,
returning the tile to the power-on state in between (with :func:`cimtile.tb.programs.reset_program`), so
shared state (levels, masks, deltas) evolves exactly as in the golden model's batched run;
read-outs of per-batch buffers are stacked along the batch axis. Simulated speed is roughly
0.5-1 M cycles/s on ``tiny`` and several times less on 128x128 presets.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from cimtile.hw.isa import Cause
from cimtile.hw.params import TileConfig, load_config
from cimtile.sim.tile import RunResult, check_program

from cimtile.errors import CimtileError

from . import runner

__all__ = ["BackendError", "run"]


class BackendError(CimtileError, RuntimeError):
    """The RTL simulation could not run the program (the message names the log to read)."""


def run(cfg: TileConfig | str, words: Sequence[int], feed_blocks: Sequence | None = None, batch: int = 1, *,
        keep: bool = False, setup: tuple | None = None) -> RunResult:
    """Run ``words`` with the data-in blocks ``feed_blocks`` on the RTL; the result of the last element
    of the batch, with the outputs of all elements.

    Parameters
    ----------
    cfg : TileConfig or preset name
    words : instruction words
    feed_blocks : one block per executed load instruction (``sim.tile.Feed`` shapes); LDIN blocks
        may carry a leading batch axis ``(batch, count, rows)``.
    batch : number of batch elements.
    keep : keep the job directory (for debugging) instead of deleting it.
    setup : ``(words, feed_blocks)`` of a program run before ``words`` in every element (a compiled layer's
        weights program); its cycles (the first element's) are ``RunResult.setup_cycles``.

    Returns
    -------
    sim.tile.RunResult
        cycles (of one element: every element takes the same), instructions, halted, cause, pc,
        outputs (RDOUT/RDACC blocks ``(batch, n, cols)``, RDW/RDM blocks ``(rows, n)``), sync_tag.
    """
    cfg = load_config(cfg)
    if batch < 1:
        raise ValueError(f"RTL backend batch = {batch}: must be >= 1")  # as the golden Tile
    words = check_program(cfg, words)  # the golden model's own check: ProgramError
    if setup is not None:
        setup = (check_program(cfg, setup[0]), [np.asarray(x) for x in (setup[1] or [])])
    b = runner.build(cfg)
    jobs = b.build_dir / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="job-", dir=jobs))
    try:
        job = {"words": words, "feed": [np.asarray(x) for x in (feed_blocks or [])], "batch": batch,
               "setup": setup}
        (d / "job.pkl").write_bytes(pickle.dumps(job))
        sr = runner.run(b, "cimtile.tb.backend_tests", test_dir=d, log_file=d / "sim.log",
                        extra_env={"CIMTILE_JOB": str(d / "job.pkl")})
        out = d / "result.pkl"
        if not out.exists() or sr.failed:
            keep = True
            why = (sr.failed[0]["report"] if sr.failed else "").strip() or "no result written"
            why = why.splitlines()[0][:300]
            raise BackendError(f"RTL backend on {cfg.name} failed: {why} (log: {d / 'sim.log'})")
        res = pickle.loads(out.read_bytes())
    finally:
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
    return res


def _cause(v: int) -> Cause:
    try:
        return Cause(v)
    except ValueError:
        return Cause.NONE


def split_feed(cfg: TileConfig, words: list[int], feed: list, batch: int, element: int) -> list:
    """The feed of one batch element: LDIN blocks with a batch axis give their ``element`` slice."""
    out = []
    for blk in feed:
        a = np.asarray(blk)
        if a.ndim == 3:
            if a.shape[0] != batch:
                raise BackendError(f"LDIN block of shape {a.shape}: its leading axis must be the batch ({batch})")
            a = a[element]
        out.append(a)
    return out


def merge(results: list[RunResult]) -> RunResult:
    """One RunResult for a batch: per-batch read-outs stacked, shared ones from the first element."""
    first = results[0]
    outs = []
    for k, blk in enumerate(first.outputs):
        if blk.ndim == 3:
            outs.append(np.concatenate([r.outputs[k] for r in results if k < len(r.outputs)], axis=0))
        else:
            outs.append(blk)
    last = results[-1]
    return RunResult(last.cycles, last.instructions, last.halted, last.cause, last.pc, last.detail, outs,
                     last.sync_tag, last.text)


