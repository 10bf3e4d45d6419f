"""The ``TB`` class: clock, reset, drivers, monitors and scoreboard of one simulated tile.

Simulator side (imported only by cocotb test modules). A run is: stage the program and the data
in files, pulse ``go``, await ``tb_done`` once, read the status and the captured words. Nothing
in Python runs per clock cycle.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cimtile.hw.params import TileConfig
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from .drivers import DinDriver, DoutMonitor, InstrDriver, Pattern
from .programs import LOADS, Program, dump_program, reset_program, top_level
from .scoreboard import Expected, Mismatch, RtlResult, Scoreboard, rerun_command

__all__ = ["TB", "TestFailure", "config_from_env", "seed_from_env"]


class _NoBisect(Exception):
    pass


class TestFailure(AssertionError):
    """The RTL disagreed with the golden model (the message is the mismatch report)."""


#: True until the first reset program of this simulator process ran (see TB.power_on_state).
_FRESH = True


def _perf_control():
    """A function sending a command (``enable``/``disable``) to ``perf record --control fifo:ctl[,ack]``
    when ``CIMTILE_PERF_CTL`` is ``ctl[,ack]``, else None: profiles of the speed figure's run alone."""
    spec = os.environ.get("CIMTILE_PERF_CTL")
    if not spec:
        return None
    ctl, _, ack = spec.partition(",")

    def send(cmd: str) -> None:
        with open(ctl, "w") as f:
            f.write(cmd + "\n")
        if ack:
            with open(ack) as f:
                f.readline()

    return send


def config_from_env() -> TileConfig:
    return TileConfig.from_json(os.environ["CIMTILE_CONFIG_JSON"])


def seed_from_env(default: int) -> int:
    """SEED= from the command line, else the test's own default seed."""
    s = os.environ.get("CIMTILE_SEED")
    return int(s) if s not in (None, "") else default


class TB:
    """Owns the clock, the reset, the instruction and data-in drivers, the data-out monitor and the
    scoreboard (golden model) of one ``cimtile_tb`` instance.

    Parameters
    ----------
    dut : cocotb handle of ``cimtile_tb``
    cfg : TileConfig the design was built for
    test : name of the running test, for records and rerun commands
    """

    def __init__(self, dut, cfg: TileConfig | None = None, test: str = "?"):
        self.dut = dut
        self.cfg = cfg or config_from_env()
        self.test = test
        self.label = os.environ.get("CIMTILE_LABEL", self.cfg.name)
        self.workdir = Path.cwd()
        self.log = dut._log
        self.instr = InstrDriver(dut, self.workdir)
        self.din = DinDriver(dut, self.workdir, self.cfg.bus_bits)
        self.dout = DoutMonitor(dut, self.workdir, self.cfg.bus_bits)
        self.sb = Scoreboard(self.cfg)
        self.seed: int | None = None
        self.instructions = 0
        self.sim_cycles = 0
        self.sim_seconds = 0.0
        self.runs = 0
        self.history: list[tuple[int, float, float]] = []  # (clock cycles, wall s, CPU s) of every run
        self.cpu_seconds = 0.0
        self.max_cycles = 50_000_000
        self.expect_failure = False
        self.rerun = ""  # the rerun command of mismatch reports, when not ``make sim TESTS=...`` (regress)
        self._clean = False  # True right after the reset program (a bisection can start there)
        self._t0 = time.perf_counter()
        #: Runs with ``profile`` set (the speed figure's) enable ``perf record --control`` for their
        #: duration when ``CIMTILE_PERF_CTL`` names its control FIFO (``ctl[,ack]``; docs/cosim.md).
        self.profile = False

    # -- clock and reset --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the clock (cocotb's C++ GPI clock) and reset the wrapper and the tile."""
        d = self.dut
        if os.environ.get("CIMTILE_CLOCK", "hdl") == "gpi":
            self.clock = Clock(d.clk_ext, 10, unit="ns")
            self.clock.start()
        else:  # the model toggles its own clock (tb/wrapper.py): nothing to start here
            self.clock = None
        d.go.value = 0
        d.seed.value = 0
        d.max_cycles.value = self.max_cycles
        for name in ("prog_len", "din_len", "instr_pat", "din_pat", "dout_pat"):
            getattr(d, name).value = 0
        for name in ("instr_pat_len", "din_pat_len", "dout_pat_len"):
            getattr(d, name).value = 1
        d.instr_pat.value = 1
        d.din_pat.value = 1
        d.dout_pat.value = 1
        await self.reset()

    async def reset(self) -> None:
        """Pulse the reset. Memories of the tile (cells, buffers) keep their contents, as in hardware."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def set_patterns(self, instr=None, din=None, dout=None, seed: int = 0) -> None:
        """Idle patterns of the instruction and data-in streams and the back-pressure of data-out
        (lists of 0/1 cycled, ``"random"``, or None for always ready)."""
        self.instr.set_pause(instr)
        self.din.set_pause(din)
        self.dout.set_pause(dout)
        self.dut.seed.value = seed & 0xFFFFFFFF

    # -- running ---------------------------------------------------------------------------------------

    async def run_rtl(self, words, din_words) -> RtlResult:
        """Load ``words``, start, stream ``din_words``, wait for done; the RTL's view of the run."""
        d = self.dut
        self.instr.stage(words)
        self.din.stage(din_words)
        self.dout.stage()
        d.max_cycles.value = self.max_cycles
        perf = _perf_control() if self.profile else None
        if perf:
            perf("enable")
        t0, c0 = time.perf_counter(), time.process_time()
        d.go.value = 1
        await RisingEdge(d.clk)
        d.go.value = 0
        await RisingEdge(d.tb_done)
        seconds = time.perf_counter() - t0
        # The model runs in this process: CPU time is the speed on an unloaded machine.
        cpu = time.process_time() - c0
        if perf:
            perf("disable")
        err = bool(d.error.value)
        res = RtlResult(
            cycles=int(d.cycles.value), halted=bool(d.done.value) and not err, error=err,
            cause=int(d.error_cause.value), pc=int(d.error_pc.value), sync_tag=int(d.sync_tag.value),
            dout=self.dout.collect(), din_used=int(d.din_used.value), din_staged=self.din.staged,
            run_cycles=int(d.run_cycles.value), load_cycles=int(d.load_cycles.value),
            timeout=bool(d.tb_timeout.value), protocol=int(d.tb_protocol.value), seconds=seconds,
        )
        self.sim_cycles += res.run_cycles + res.load_cycles + 3
        self.sim_seconds += seconds
        self.runs += 1
        self.history.append((res.run_cycles + res.load_cycles + 3, seconds, cpu))
        self.cpu_seconds += cpu
        return res

    async def execute(self, prog: Program | list[int] | None, feed=None, *, what: str = "",
                      golden_words: list[int] | None = None, locate: bool = True,
                      dump: bool = False) -> tuple[Expected, RtlResult]:
        """Run one program on the golden model and the RTL and compare; raises TestFailure on a mismatch.

        ``prog=None`` starts the previous program again without loading. ``golden_words`` gives the
        golden model a different program than the RTL (only the mismatch-report test does that).
        With ``dump``, all memories are read back and compared after the run. With ``locate`` and
        a run that started from the power-on state, a mismatch is bisected over the program's
        top-level instructions to name the first one that diverges.
        """
        if isinstance(prog, Program):
            words, feed = prog.words, prog.feed if feed is None else feed
        else:
            words, feed = (None if prog is None else list(prog)), list(feed or [])
        clean = self._clean
        exp, rtl, mm = await self._run_compare(words, feed, golden_words)
        if mm is None and dump:
            _, _, mm = await self._run_compare(dump_program(self.cfg), [])
            if mm is not None:
                mm.what += " (in the read-back of all memories after the program)"
                mm.program = "read-back program"
        if mm is not None:
            if locate and clean and words is not None and len(words) > 1:
                await self._locate(mm, words, golden_words or words, feed)
            self.fail(mm, what or (prog.note if isinstance(prog, Program) else ""))
        return exp, rtl

    async def _run_compare(self, words, feed, golden_words=None):
        exp = self.sb.expect(words if golden_words is None else golden_words, feed)
        self.instructions += exp.result.instructions
        # A run exceeds its ISA cycles only through stalls and loading; bound it generously so
        # that a hang fails fast instead of running forever.
        self.max_cycles = 8 * exp.result.cycles + 8 * len(words or ()) + 1000
        rtl = await self.run_rtl([] if words is None else words, exp.din)
        self._clean = False
        return exp, rtl, self.sb.compare(exp, rtl)

    async def _locate(self, mm: Mismatch, words: list[int], golden_words: list[int], feed) -> None:
        """Bisect: the shortest top-level prefix whose run (plus a read-back of all memories)
        differs names the first diverging instruction. Each probe starts from the power-on state."""
        from cimtile.hw.isa import Opcode, disassemble, encode

        tops = top_level(golden_words)
        halt = encode(Opcode.HALT)

        async def diverges(k: int) -> bool:
            end = tops[k + 1] if k + 1 < len(tops) else len(golden_words)
            if not await self._reset_quiet():
                raise _NoBisect
            _, _, m = await self._run_compare(words[:end] + [halt], feed, golden_words[:end] + [halt])
            if m is None:
                _, _, m = await self._run_compare(dump_program(self.cfg), [])
            return m is not None

        try:
            lo, hi = 0, len(tops) - 1
            if not await diverges(hi):
                mm.details.append("(bisection: the prefixes do not reproduce the divergence)")
                return
            while lo < hi:
                mid = (lo + hi) // 2
                if await diverges(mid):
                    hi = mid
                else:
                    lo = mid + 1
        except _NoBisect:  # the reset program itself diverges (its first run in this test did not)
            mm.details.append("(bisection impossible: the reset program diverges after this program)")
            return
        pc = tops[lo]
        end = tops[lo + 1] if lo + 1 < len(tops) else len(golden_words)
        text = disassemble(golden_words[pc:end]).strip().replace("\n", " | ")
        mm.origin = (pc, text)

    async def check_memories(self) -> None:
        """Read back levels, masks, accumulators and outputs on both sides and compare them."""
        exp, rtl, mm = await self._run_compare(dump_program(self.cfg), [])
        if mm is not None:
            mm.program = "read-back program"
            self.fail(mm, "final memories")

    async def power_on_state(self) -> None:
        """Bring RTL and golden model to the power-on state (memories survive the reset signal)."""
        p = reset_program(self.cfg)
        global _FRESH
        if _FRESH:
            # The first reset of the simulator process starts where RTL (memories initialised to
            # zero) and golden model (power-on state) agree: run it instruction by instruction with
            # a read-back of every memory after each, so that a bug that corrupts the reset program
            # is reported there, not blamed on a test's program. Later tests start from whatever
            # the previous test left in the RTL's memories, where this check cannot run.
            _FRESH = False
            mm = await self._locate_in_reset()
            if mm is not None:
                self.fail(mm, "reset program")
        exp, rtl, mm = await self._run_compare(p.words, p.feed)
        if mm is not None:
            mm.program = "reset program"
            self.fail(mm, "reset program")
        self._clean = True

    async def _reset_quiet(self) -> bool:
        """The reset program and a read-back of every memory (a reset that corrupts memories
        shows here, not in the test's program); True when both match the golden model."""
        p = reset_program(self.cfg)
        _, _, mm = await self._run_compare(p.words, p.feed)
        if mm is None:
            _, _, mm = await self._run_compare(dump_program(self.cfg), [])
        self._clean = mm is None
        return mm is None

    async def _locate_in_reset(self) -> Mismatch | None:
        """Runs the reset program's prefixes in increasing length, each followed by a read-back of
        all memories; each starts from a state in which RTL and golden model still agree. Returns
        the first mismatch, its ``origin`` naming the reset program's instruction, or None."""
        from cimtile.hw.isa import Opcode, decode, disassemble, encode

        p = reset_program(self.cfg)
        tops = top_level(p.words)
        for k, pc in enumerate(tops):
            end = tops[k + 1] if k + 1 < len(tops) else len(p.words)
            n_loads = sum(decode(w).op in LOADS for w in p.words[:end])  # no loads inside its loops
            _, _, m = await self._run_compare(p.words[:end] + [encode(Opcode.HALT)], p.feed[:n_loads])
            if m is None:
                _, _, m = await self._run_compare(dump_program(self.cfg), [])
            if m is not None:
                m.origin = (pc, disassemble(p.words[pc:end]).strip().replace("\n", " | "))
                m.origin_program = "reset program (tb.programs.reset_program, run before the test's program)"
                m.program = m.program or "reset program"
                return m
        return None

    def fail(self, mm: Mismatch, what: str = "") -> None:
        rerun = self.rerun or rerun_command(self.test, self.cfg.name, self.seed)
        text = (f"{self.test} on {self.label}" + (f", {what}" if what else "") + "\n" + mm.report(rerun))
        wave = os.environ.get("CIMTILE_WAVES")
        if wave:
            text += f"\n  waves: {wave} (open with: gtkwave {wave})"
        if self.expect_failure:  # a test that provokes a mismatch on purpose judges the report itself
            raise TestFailure(text)
        self.log.error("%s", text)
        self.record("FAIL", text)
        raise TestFailure(text)

    # -- records for the summary table -----------------------------------------------------------------

    def record(self, result: str, report: str = "") -> None:
        path = os.environ.get("CIMTILE_RECORDS")
        if not path or getattr(self, "_recorded", False):
            return
        self._recorded = True
        rec = {
            "test": self.test, "config": self.label, "instructions": self.instructions, "cycles": self.sim_cycles,
            "sim_seconds": self.sim_seconds, "cpu_seconds": self.cpu_seconds,
            "wall_seconds": time.perf_counter() - self._t0, "runs": self.runs,
            "seed": self.seed, "result": result, "report": report,
        }
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def _param_repr(v) -> str:
    from enum import Enum

    return v.name if isinstance(v, Enum) else str(v)


def tile_test(**params):
    """Decorator for cocotb tests taking a started :class:`TB` (and ``params``, as
    ``cocotb.parametrize`` does); records each outcome for the summary table."""

    def deco(fn):
        async def wrapper(dut, **kw):
            name = fn.__name__ + "".join(f"/{k}={_param_repr(v)}" for k, v in kw.items())
            tb = TB(dut, test=name)
            await tb.start()
            try:
                await fn(tb, **kw)
            except TestFailure:
                raise
            except Exception as e:
                tb.record("FAIL", f"{name} on {tb.label}: {type(e).__name__}: {e}")
                raise
            tb.record("PASS")

        wrapper.__name__ = fn.__name__
        wrapper.__qualname__ = fn.__qualname__
        wrapper.__doc__ = fn.__doc__
        wrapper.__module__ = fn.__module__
        t = cocotb.parametrize(**params)(wrapper) if params else wrapper
        return cocotb.test()(t)

    return deco


__all__ += ["Pattern", "tile_test"]
