"""Scoreboard: runs the golden model on the same words and data and compares the RTL's results.

Pure Python and NumPy (no simulator), so its report formatting is unit-tested without Verilator.
What it compares, per run: the words sent on ``dout`` (block by block, unpacked with
:mod:`cimtile.hw.dataformat` for the report), the ``din`` words consumed, how the run ended (HALT, or the
error cause and pc), the cycle count, the ``sync_tag``, and stream protocol violations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cimtile.hw import dataformat, isa
from cimtile.hw.isa import Cause, Opcode
from cimtile.hw.params import TileConfig
from cimtile.sim.tile import Feed, RunResult
from cimtile.sim.tile import Tile as GoldenTile

from .programs import executed

__all__ = ["Expected", "Mismatch", "RecordingFeed", "RtlResult", "Scoreboard", "pack_block", "rerun_command"]

@dataclass
class RtlResult:
    """What the RTL did in one run (read from the wrapper after ``tb_done``)."""

    cycles: int
    halted: bool
    error: bool
    cause: int
    pc: int
    sync_tag: int
    dout: np.ndarray  # uint64 limb rows
    din_used: int
    din_staged: int
    run_cycles: int  # clock cycles from start to done, stalls included
    load_cycles: int
    timeout: bool
    protocol: int  # dout words dropped or changed before being accepted
    seconds: float  # wall time of the simulated run


class RecordingFeed(Feed):
    """A Feed that remembers which load instruction took each block (for packing din words)."""

    def __init__(self, blocks):
        super().__init__(blocks)
        self.taken: list[tuple[int, isa.Decoded, np.ndarray]] = []

    def take(self, pc, d):
        b = super().take(pc, d)
        self.taken.append((pc, d, b))
        return b


def pack_block(cfg: TileConfig, op: Opcode, block: np.ndarray) -> np.ndarray:
    """Bus words (uint64 limb rows) the host sends (loads) or the tile sends (reads) for one block.

    Block shapes are those of :class:`cimtile.sim.tile.Feed` and of ``RunResult.outputs`` with batch 1.
    """
    fm = dataformat.formats(cfg)
    b = np.asarray(block)
    if op is Opcode.LDRQ:
        b = b.astype(np.int64)
        return dataformat.pack_rq(b[:, 0], b[:, 1], b[:, 2], cfg)
    f = fm[op]
    if op in (Opcode.LDW, Opcode.LDM, Opcode.RDW, Opcode.RDM):
        items = b.astype(np.int64).T  # (rows, count) -> one item per column
    elif op in (Opcode.LDIN, Opcode.RDOUT, Opcode.RDACC):
        items = b.reshape(-1, b.shape[-1]).astype(np.int64)
    else:  # LDD
        items = b.astype(np.int64)
    if items.shape[0] == 0:
        return np.zeros((0, cfg.bus_bits // 64), dtype=np.uint64)
    return dataformat.pack(items, f.bits, f.words, cfg.bus_bits)


def unpack_block(cfg: TileConfig, op: Opcode, words: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`pack_block` for read instructions: the block the golden model would report."""
    f = dataformat.formats(cfg)[op]
    v = dataformat.unpack(words, count, f.elems, f.bits, f.signed, cfg.bus_bits)
    if op in (Opcode.RDW, Opcode.RDM):
        return v.T
    return v[None]


@dataclass
class Expected:
    """The golden model's run and the words it implies on both streams."""

    result: RunResult
    din: np.ndarray  # words the host must send, in order
    reads: list[tuple[int, isa.Decoded, np.ndarray]]  # (pc, read instruction, expected words)
    seconds: float = 0.0


@dataclass
class Mismatch:
    """The first difference between the RTL and the golden model in one run."""

    what: str
    pc: int | None
    instruction: str
    expected: str
    actual: str
    details: list[str] = field(default_factory=list)
    origin: tuple[int, str] | None = None  # (pc, disassembly) found by bisection, if it ran
    program: str = ""  # which program ``pc`` belongs to, when not the test's own (e.g. the read-back)
    origin_program: str = ""  # which program ``origin`` belongs to, when not the test's own (the reset program)

    def report(self, rerun: str = "") -> str:
        lines = [f"MISMATCH: {self.what}"]
        if self.origin is not None:
            oof = f" of the {self.origin_program}" if self.origin_program else ""
            lines.append(f"  first diverging instruction: pc {self.origin[0]}{oof}: {self.origin[1]}")
            if self.pc is not None and (self.pc != self.origin[0] or self.program or self.origin_program):
                of = f" of the {self.program}" if self.program else ""
                lines.append(f"  (first observed at pc {self.pc}{of}: {self.instruction})")
        elif self.pc is not None:
            of = f" of the {self.program}" if self.program else ""
            lines.append(f"  first diverging instruction: pc {self.pc}{of}: {self.instruction}")
        lines += [f"  expected: {self.expected}", f"  actual:   {self.actual}"]
        lines += [f"  {d}" for d in self.details]
        if rerun:
            lines.append(f"  rerun with waves: {rerun}")
        return "\n".join(lines)


def rerun_command(test: str, config: str, seed: int | None) -> str:
    """The exact command that reruns one test with waves."""
    parts = ["make sim", f"TESTS={test}", f"CONFIG={config}"]
    if seed is not None:
        parts.append(f"SEED={seed}")
    parts.append("WAVES=1")
    return " ".join(parts)


class Scoreboard:
    """Keeps the golden model in step with the RTL and compares every run.

    The golden tile persists across runs exactly as the RTL's state does (docs/isa.md, Execution
    model), so a sequence of runs is checked as a whole.
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        self.golden = GoldenTile(cfg)

    def expect(self, words, feed=()) -> Expected:
        """Run the golden model; returns its result and the stream words it implies.

        ``words=None`` runs the previously loaded program again (``start`` with nothing loaded).
        """
        import time

        t0 = time.perf_counter()
        rf = RecordingFeed(list(feed))
        if words is None:
            res = self.golden.run(None, rf)
            words = [d.word for d in self.golden.program]
        else:
            words = [int(w) for w in words]
            res = self.golden.run(words, rf)
        limbs = self.cfg.bus_bits // 64
        din = [pack_block(self.cfg, d.op, b) for _, d, b in rf.taken]
        din_words = np.concatenate(din) if din else np.zeros((0, limbs), dtype=np.uint64)
        read_pcs = [(pc, d) for pc, d, _ in executed(words, self.cfg) if d.op in isa.READS]
        reads = []
        for (pc, d), block in zip(read_pcs, res.outputs):
            reads.append((pc, d, pack_block(self.cfg, d.op, block)))
        if len(reads) != len(res.outputs):
            raise AssertionError("tb.programs.executed disagrees with the golden model on the reads")
        return Expected(res, din_words, reads, time.perf_counter() - t0)

    def compare(self, exp: Expected, rtl: RtlResult) -> Mismatch | None:
        """The first difference between ``rtl`` and ``exp``, or None."""
        res = exp.result
        prog_text = lambda pc: (
            self.golden.program[pc].text() if pc is not None and pc < len(self.golden.program) else "(past the end)"
        )
        if rtl.timeout:
            det = [f"din words consumed {rtl.din_used} of {rtl.din_staged}; dout words sent {len(rtl.dout)} of "
                   f"{sum(len(w) for *_, w in exp.reads)}; RTL cycles counter {rtl.cycles}"]
            pc, text = self._first_read_divergence(exp, rtl)
            return Mismatch("the RTL did not finish (timeout)", pc, text,
                            f"end after {res.cycles} cycles ({self._end(res)})",
                            f"still running after {rtl.run_cycles} clock cycles", det)
        # Streams first: the first wrong word usually explains everything after it.
        got = rtl.dout
        pos = 0
        for pc, d, words in exp.reads:
            n = len(words)
            chunk = got[pos:pos + n]
            if len(chunk) < n or not np.array_equal(chunk, words):
                return self._read_mismatch(pc, d, words, chunk)
            pos += n
        if pos != len(got):
            return Mismatch("the RTL sent more dout words than the golden model", None, "",
                            f"{pos} words", f"{len(got)} words")
        exp_cause = res.cause.value
        rtl_cause = rtl.cause if rtl.error else 0
        if exp_cause != rtl_cause or (exp_cause and res.pc != rtl.pc) or (not exp_cause and not rtl.halted):
            return Mismatch("how the run ended", res.pc if exp_cause else rtl.pc if rtl.error else None,
                            prog_text(res.pc if exp_cause else rtl.pc), self._end(res),
                            self._rtl_end(rtl))
        if rtl.din_used != len(exp.din):
            return Mismatch("din words consumed", None, "", f"{len(exp.din)}", f"{rtl.din_used}")
        if rtl.cycles != res.cycles:
            return Mismatch("cycle count", None, "", f"{res.cycles} cycles", f"{rtl.cycles} cycles",
                            [f"(clock cycles incl. stalls: {rtl.run_cycles})"])
        if rtl.sync_tag != res.sync_tag:
            return Mismatch("sync_tag", None, "", str(res.sync_tag), str(rtl.sync_tag))
        if rtl.protocol:
            return Mismatch("dout stream protocol", None, "", "valid held and payload stable until accepted",
                            f"{rtl.protocol} violations")
        return None

    @staticmethod
    def _end(res: RunResult) -> str:
        if res.cause is Cause.NONE:
            return "HALT"
        return f"error {res.cause.name} at pc {res.pc}"

    @staticmethod
    def _rtl_end(rtl: RtlResult) -> str:
        if rtl.error:
            try:
                name = Cause(rtl.cause).name
            except ValueError:
                name = f"cause {rtl.cause}"
            return f"error {name} at pc {rtl.pc}"
        return "HALT" if rtl.halted else "neither HALT nor error"

    def _first_read_divergence(self, exp: Expected, rtl: RtlResult):
        pos = 0
        for pc, d, words in exp.reads:
            n = len(words)
            chunk = rtl.dout[pos:pos + n]
            if len(chunk) < n or not np.array_equal(chunk, words):
                return pc, d.text()
            pos += n
        return None, ""

    def _read_mismatch(self, pc: int, d: isa.Decoded, words: np.ndarray, chunk: np.ndarray) -> Mismatch:
        cfg, op = self.cfg, d.op
        count = d.args["count"]
        if len(chunk) < len(words):
            return Mismatch(f"{op.name} sent too few dout words", pc, d.text(), f"{len(words)} words",
                            f"{len(chunk)} words")
        exp_v = unpack_block(cfg, op, words, count)
        got_v = unpack_block(cfg, op, chunk, count)
        diff = np.argwhere(exp_v != got_v)
        details = []
        names = {Opcode.RDOUT: ("output vector", "lane"), Opcode.RDACC: ("accumulator vector", "lane"),
                 Opcode.RDW: ("row", "column"), Opcode.RDM: ("row", "column")}[op]
        start = d.args["start"]
        for idx in diff[:8]:
            if op in (Opcode.RDW, Opcode.RDM):
                r, c = int(idx[0]), int(idx[1])
                where = f"{names[0]} {r}, {names[1]} {start + c}"
                e, a = exp_v[r, c], got_v[r, c]
            else:
                _, v, lane = (int(i) for i in idx)
                where = f"{names[0]} {start}+{v} (read item {v}), {names[1]} {lane}"
                e, a = exp_v[0, v, lane], got_v[0, v, lane]
            details.append(f"{where}: expected {e}, actual {a}")
        if len(diff) > 8:
            details.append(f"... {len(diff)} differing values in all")
        if not details:
            return Mismatch(f"{op.name} data", pc, d.text(), "(words differ in padding bits)", "")
        where, rest = details[0].split(": ", 1)
        e_txt, a_txt = rest.split(", actual ")
        return Mismatch(f"{op.name} data", pc, d.text(), f"{e_txt.removeprefix('expected ')} at {where}", a_txt,
                        details[1:])
