"""cocotb module behind :func:`cimtile.tb.backend.run`: runs one job file and writes its RunResult."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cocotb
import numpy as np
from cimtile.hw import dataformat, isa
from cimtile.hw.isa import Cause, Opcode
from cimtile.sim.tile import RunResult
from cimtile.sim.tile import Tile as GoldenTile

from .backend import _cause, merge, split_feed
from .programs import executed, reset_program
from .scoreboard import pack_block, unpack_block
from .testbench import TB


def _din(cfg, words, feed) -> np.ndarray:
    """Data-in words: the k-th executed load instruction takes the k-th block."""
    loads = [d for _, d, _ in executed(words, cfg) if d.op in isa.LOADS]
    parts = [pack_block(cfg, d.op, b) for d, b in zip(loads, feed)]
    return np.concatenate(parts) if parts else np.zeros((0, cfg.bus_bits // 64), dtype=np.uint64)


async def _run_one(tb: TB, words, feed) -> RunResult:
    cfg = tb.cfg
    din = _din(cfg, words, feed)
    # Bound the run by the ISA's cycle count (the golden model without data, which is fast), so
    # that a program waiting for data that the feed does not have fails instead of hanging.
    expected = GoldenTile(cfg).run(words, timing_only=True).cycles
    tb.max_cycles = 8 * expected + 8 * len(words) + 10_000
    rtl = await tb.run_rtl(words, din)
    if rtl.timeout:
        raise RuntimeError(f"the RTL did not finish within {tb.max_cycles} cycles (it consumed {rtl.din_used} of "
                           f"{len(din)} data words: does the feed hold a block for every load instruction?)")
    trace = list(executed(words, cfg))
    cause = _cause(rtl.cause) if rtl.error else Cause.NONE
    if rtl.error:
        # Instructions up to the erroring one (the trace cannot cut at data-dependent errors
        # inside loops precisely; this counts up to the first execution of that pc).
        n_instr = next((i + 1 for i, (pc, _, _) in enumerate(trace) if pc == rtl.pc), len(trace) + 1)
    else:
        n_instr = len(trace)
    outs, pos = [], 0
    fmt = dataformat.formats(cfg)
    for _, d, _ in trace:
        if d.op not in isa.READS:
            continue
        n = d.args["count"] * fmt[d.op].words
        if pos + n > len(rtl.dout):
            break
        blk = unpack_block(cfg, d.op, rtl.dout[pos:pos + n], d.args["count"])
        if d.op is Opcode.RDOUT:
            blk = blk.astype(np.uint8)
        elif d.op is Opcode.RDM:
            blk = blk.astype(bool)
        outs.append(blk)
        pos += n
    pc = rtl.pc if rtl.error else None
    text = isa.decode(words[pc]).text() if pc is not None and pc < len(words) else ""
    return RunResult(rtl.cycles, n_instr, not rtl.error, cause, pc, "", outs, rtl.sync_tag, text)


@cocotb.test()
async def job(dut):
    """Run the job named by CIMTILE_JOB (one program, batch elements in turn) and pickle the result."""
    path = Path(os.environ["CIMTILE_JOB"])
    spec = pickle.loads(path.read_bytes())
    tb = TB(dut, test="backend")
    await tb.start()
    words, feed, batch = spec["words"], spec["feed"], spec["batch"]
    setup = spec.get("setup")
    results = []
    setup_cycles = 0
    reset = reset_program(tb.cfg)
    for e in range(batch):
        if e:
            await _run_one(tb, reset.words, reset.feed)
        if setup is not None:  # a compiled layer's weights program (issue 10's batch schedule)
            s = await _run_one(tb, *setup)
            if s.cause is not Cause.NONE:
                results.append(s)
                break
            setup_cycles = setup_cycles or s.cycles
        results.append(await _run_one(tb, words, split_feed(tb.cfg, words, feed, batch, e)))
    res = merge(results)
    res.setup_cycles = setup_cycles
    (path.parent / "result.pkl").write_bytes(pickle.dumps(res))
    tb.record("PASS")
