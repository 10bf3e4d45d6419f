"""Test driver for the Amaranth tile in Amaranth's simulator (no Verilator), beside the golden model.

Used by the unit tests of the RTL (tests/test_hw_tile.py) and by the RTL speed figures (bench/perf.py).
Stream words are packed with the co-simulation's own pieces (:mod:`cimtile.tb.scoreboard`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from cimtile.hw import dataformat as df
from cimtile.hw.isa import Cause, Opcode
from cimtile.hw.params import TileConfig

from .scoreboard import RecordingFeed, pack_block

__all__ = ["RtlResult", "din_words", "dout_words", "golden_runs", "run_rtl"]


def din_words(cfg: TileConfig, taken: Sequence[tuple]) -> list[int]:
    """Data-in bus words (Python ints) for the blocks the load instructions took, in order
    (``taken``: a :class:`cimtile.tb.scoreboard.RecordingFeed`'s ``(pc, decoded, block)`` records)."""
    out: list[int] = []
    for _, d, b in taken:
        out += df.words_to_ints(pack_block(cfg, d.op, b))
    return out


def dout_words(cfg: TileConfig, outputs: Sequence[np.ndarray]) -> list[int]:
    """Data-out bus words the golden model's output blocks correspond to (batch 1)."""
    out: list[int] = []
    for b in outputs:
        b = np.asarray(b)
        if b.ndim == 3:  # RDOUT (uint8) or RDACC (int64), batch x count x cols
            op = Opcode.RDOUT if b.dtype == np.uint8 else Opcode.RDACC
        else:  # RDW (levels) or RDM (bool masks), rows x count
            op = Opcode.RDM if b.dtype == bool else Opcode.RDW
        out += df.words_to_ints(pack_block(cfg, op, b[:1] if b.ndim == 3 else b))
    return out


@dataclass
class RtlResult:
    """One run of the RTL: status outputs after ``done`` and the data-out words."""

    cycles: int
    error: bool
    cause: Cause
    pc: int | None
    sync_tag: int
    dout: list[int] = field(default_factory=list)
    clocks: int = 0  # simulated clock cycles from start to done (including stalls)


def golden_runs(cfg: TileConfig, runs: Sequence[tuple[Sequence[int], Sequence]]):
    """Run (program, feed blocks) pairs on one golden tile; return (RunResult, din words, dout words)."""
    from cimtile.sim.tile import Tile

    t = Tile(cfg)
    out = []
    for prog, blocks in runs:
        rec = RecordingFeed(blocks)
        res = t.run(list(prog), rec)
        out.append((res, din_words(cfg, rec.taken), dout_words(cfg, res.outputs)))
    return out


#: Compiled simulators kept for reuse, most recently used last: building and compiling one costs seconds
#: (``variant``: about 5 s, ``isaac``: tens), and a test module runs many programs on one configuration.
#: :meth:`amaranth.sim.Simulator.reset` returns a kept one to the power-on state (every signal and memory
#: to its initial value, the clock and testbench restarted), so a run on it is a run on a new tile.
_SIMULATORS: dict = {}
_KEEP = 3


def _simulator(cfg: TileConfig, mutation: str | None):
    """The (simulator, job) of ``cfg`` and ``mutation``: built on first use, else reset for another run.
    ``job`` is the dictionary the testbench reads its runs from and appends its results to."""
    from amaranth.sim import Simulator
    from cimtile.hw.tile import MUTATIONS, Tile

    key = (cfg, mutation)
    if key in _SIMULATORS:
        sim, job = _SIMULATORS.pop(key)
        sim.reset()
        _SIMULATORS[key] = (sim, job)
        return sim, job
    if mutation is not None and mutation not in MUTATIONS:  # a named mutant of tb/mutants.py
        from .mutants import tile_class

        dut = tile_class(mutation)(cfg)
    else:
        dut = Tile(cfg, mutation=mutation)
    job: dict = {}

    async def bench(ctx):
        runs, rng, max_clocks, results = job["runs"], job["rng"], job["max_clocks"], job["results"]
        for prog, din in runs:
            for w in prog:
                ctx.set(dut.instr.valid, 1)
                ctx.set(dut.instr.payload, int(w))
                assert ctx.get(dut.instr.ready), "tile refused a program word"
                await ctx.tick()
            ctx.set(dut.instr.valid, 0)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            i, dout, clocks = 0, [], 0
            ctx.set(dut.dout.ready, 1)
            while True:
                gate_in = rng is None or rng.random() < 0.7
                gate_out = rng is None or rng.random() < 0.7
                valid = i < len(din) and gate_in
                ctx.set(dut.din.valid, int(valid))
                ctx.set(dut.din.payload, din[i] if i < len(din) else 0)
                ctx.set(dut.dout.ready, int(gate_out))
                if ctx.get(dut.dout.valid) and gate_out:
                    dout.append(ctx.get(dut.dout.payload))
                took = valid and ctx.get(dut.din.ready)
                await ctx.tick()
                clocks += 1
                if took:
                    i += 1
                if ctx.get(dut.done):
                    break
                if clocks > max_clocks:
                    raise RuntimeError(f"RTL did not finish within {max_clocks} clocks")
            ctx.set(dut.din.valid, 0)
            err = bool(ctx.get(dut.error))
            results.append(RtlResult(
                cycles=ctx.get(dut.cycles), error=err,
                cause=Cause(ctx.get(dut.error_cause)) if err else Cause.NONE,
                pc=ctx.get(dut.error_pc) if err else None, sync_tag=ctx.get(dut.sync_tag), dout=dout,
                clocks=clocks))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    while len(_SIMULATORS) >= _KEEP:
        _SIMULATORS.pop(next(iter(_SIMULATORS)))
    _SIMULATORS[key] = (sim, job)
    return sim, job


def run_rtl(cfg: TileConfig, runs: Sequence[tuple[Sequence[int], Sequence[int]]], *, mutation: str | None = None,
            stall_seed: int | None = None, max_clocks: int = 200_000) -> list[RtlResult]:
    """Run (program words, din words) pairs on one simulated tile from power-on, state persisting between runs.

    With ``stall_seed`` the host drops ``din__valid`` and ``dout__ready`` at random (the cycle
    count must not change). The compiled simulator of ``cfg`` (and ``mutation``) is kept and reset for
    the next call (:data:`_SIMULATORS`).
    """
    sim, job = _simulator(cfg, mutation)
    results: list[RtlResult] = []
    job.update(runs=list(runs), rng=np.random.default_rng(stall_seed) if stall_seed is not None else None,
               max_clocks=max_clocks, results=results)
    try:
        sim.run()
    except BaseException:
        _SIMULATORS.pop((cfg, mutation), None)  # stopped part-way: build a new one next time
        raise
    return results
