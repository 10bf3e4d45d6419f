"""cocotb tests of the generated tile against the golden model (run by ``python -m cimtile.tb`` / ``make sim``).

Every test gets a started :class:`cimtile.tb.testbench.TB`; every run is checked by the scoreboard
(outputs, cause and pc, cycles, din consumption, sync_tag, stream protocol) and most tests end by
reading back all memories. Random tests print their seed; ``SEED=N`` reproduces them.
"""

from __future__ import annotations

import numpy as np
from cimtile.hw import isa
from cimtile.hw.isa import Cause, Opcode
from cimtile.tb.programs import (
    DIRECTED,
    ILLEGAL_CAUSES,
    Program,
    conv_layer_program,
    directed_programs,
    dump_program,
    random_program,
    top_level,
)
from cimtile.tb.testbench import TB, TestFailure, seed_from_env, tile_test

E = isa.encode

#: Stream patterns the random tests rotate through (1 = offer/accept that cycle).
PATTERNS = [
    (None, None, None),
    ([1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0]),
    ([1, 0], [0, 1], [1, 0, 0]),
    ("random", "random", "random"),
    (None, [0, 0, 0, 1], [0, 1]),
]


def _n_programs(tb: TB, tiny: int, big: int) -> int:
    """Fewer programs on large configurations (each MVM costs ~8x more cycles there)."""
    return tiny if tb.cfg.rows * tb.cfg.cols <= 64 * 64 else big


def _full_window(tb: TB, wbits: int, wsigned: int, abits: int = 8, asigned: int = 0, shift: int = 0):
    c = tb.cfg
    g = isa.geometry(c, wbits, abits, bool(wsigned), bool(asigned), c.rows, c.cols)
    nc = (c.cols // g.group) * g.group
    return [
        E(Opcode.CFG, wbits=wbits, abits=abits, wsigned=wsigned, asigned=asigned, adc_shift=shift),
        E(Opcode.WIN, row_start=0, row_count=c.rows, col_start=0, col_count=nc),
    ], nc, nc // g.group


# -- smoke and control --------------------------------------------------------------------------------


@tile_test()
async def smoke(tb: TB):
    """NOP, SYNC, CFG, WIN, HALT; running past the end; re-running the previous program."""
    c = tb.cfg
    await tb.execute([E(Opcode.NOP), E(Opcode.SYNC, tag=0xBEEF), E(Opcode.HALT)])
    await tb.execute([E(Opcode.CFG, wbits=4, abits=3, wsigned=1, asigned=1, adc_shift=2),
                      E(Opcode.WIN, row_start=1, row_count=c.rows - 1, col_start=0, col_count=c.cols),
                      E(Opcode.SYNC, tag=7), E(Opcode.NOP), E(Opcode.HALT)])
    await tb.execute([E(Opcode.NOP), E(Opcode.SYNC, tag=3)], what="no HALT: PC_RANGE")
    await tb.execute([E(Opcode.SYNC, tag=11), E(Opcode.HALT)])
    await tb.execute(None, what="start with nothing loaded runs the previous program")
    await tb.check_memories()


# -- constrained random ---------------------------------------------------------------------------------


@tile_test(style=["mixed", "small"])
async def random_programs(tb: TB, style: str):
    """Constrained-random legal programs covering every opcode, under idle and back-pressure patterns."""
    base = seed_from_env(1000 if style == "mixed" else 2000)
    tb.seed = base
    n = _n_programs(tb, 10, 4)
    tb.log.info("random_programs style=%s: seed %d (reproduce: SEED=%d), %d programs", style, base, base, n)
    seen: set[Opcode] = set()
    for i in range(n):
        p = random_program(tb.cfg, base + i, length=36, style=style)
        seen |= {isa.decode(w).op for w in p.words}
        instr, din, dout = PATTERNS[(base + i) % len(PATTERNS)]
        tb.set_patterns(instr, din, dout, seed=base + i)
        await tb.power_on_state()
        await tb.execute(p, what=f"program seed {base + i}", dump=True)
    tb.set_patterns()
    missing = [op.name for op in Opcode if op not in seen]
    tb.log.info("opcodes not generated in this test: %s", missing or "none")


@tile_test(cause=list(ILLEGAL_CAUSES))
async def illegal_programs(tb: TB, cause: Cause):
    """Each error cause injected into random programs: the RTL's cause and pc must be the golden model's."""
    base = seed_from_env(3000 + cause.value * 10)
    tb.seed = base
    tb.log.info("illegal_programs cause=%s: seed %d (reproduce: SEED=%d)", cause.name, base, base)
    for i in range(2):
        p = random_program(tb.cfg, base + i, length=14, inject=cause)
        tb.set_patterns(*PATTERNS[(base + i) % len(PATTERNS)], seed=base + i)
        await tb.power_on_state()
        exp, rtl = await tb.execute(p, what=f"program seed {base + i}", dump=True)
        if exp.result.cause is not cause:
            raise AssertionError(f"generator bug: seed {base + i} injected {cause.name}, golden model says "
                                 f"{exp.result.cause.name}")


@tile_test()
async def stalls_not_counted(tb: TB):
    """The same program under several idle/back-pressure patterns: equal cycle counts, more clock cycles."""
    base = seed_from_env(4000)
    tb.seed = base
    tb.log.info("stalls_not_counted: seed %d (reproduce: SEED=%d)", base, base)
    p = random_program(tb.cfg, base, length=24)
    counts, clocks = [], []
    for k, pats in enumerate(PATTERNS):
        tb.set_patterns(*pats, seed=base + k)
        await tb.power_on_state()
        exp, rtl = await tb.execute(p, what=f"patterns {pats}")
        counts.append(rtl.cycles)
        clocks.append(rtl.run_cycles)
    tb.log.info("cycles %s, clock cycles incl. stalls %s", counts, clocks)
    if len(set(counts)) != 1:
        raise AssertionError(f"cycle counts depend on stalls: {counts}")
    if not max(clocks) > clocks[0]:
        raise AssertionError(f"the patterns produced no stall at all (clock cycles {clocks}); the test is void")


# -- directed edge cases -----------------------------------------------------------------------------------


@tile_test()
async def adc_clipping(tb: TB):
    """Full-scale inputs on full-level columns: every conversion clips, at every ADC range shift."""
    c = tb.cfg
    await tb.power_on_state()
    head, nc, n_out = _full_window(tb, wbits=c.cell_bits, wsigned=0)
    full = np.full((c.rows, nc), c.max_level)
    prog = head + [E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=2)]
    feed = [full, np.stack([np.full(c.rows, 255), np.arange(c.rows) * 37 % 256])]
    for shift in range(0, 16, 3):
        prog += [E(Opcode.CFG, wbits=c.cell_bits, abits=8, wsigned=0, asigned=0, adc_shift=shift),
                 E(Opcode.MVM, in_addr=0, acc_addr=shift, accumulate=0),
                 E(Opcode.MVM, in_addr=1, acc_addr=shift + 1, accumulate=0),
                 E(Opcode.RDACC, start=shift, count=2)]
    # Signed weights: the positive and the negative column of a pair clip independently.
    head2, nc2, _ = _full_window(tb, wbits=8, wsigned=1)
    prog += head2 + [E(Opcode.MVM, in_addr=0, acc_addr=20 % c.acc_depth), E(Opcode.RDACC, start=20 % c.acc_depth,
                                                                             count=1)]
    await tb.execute(prog + [E(Opcode.HALT)], feed, dump=True)


@tile_test(which=list(DIRECTED))
async def directed(tb: TB, which: str):
    """The directed programs of tb.programs.directed_programs, each from the power-on state, then
    a read-back of every memory."""
    await tb.power_on_state()
    await tb.execute(directed_programs(tb.cfg)[which], dump=True)


@tile_test()
async def signed_inputs(tb: TB):
    """Signed inputs: the top slice counts negatively (bytes with the sign bit set, every abits)."""
    c = tb.cfg
    rng = np.random.default_rng(seed_from_env(5000))
    await tb.power_on_state()
    head, nc, _ = _full_window(tb, wbits=4, wsigned=1)
    prog = head + [E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=4)]
    feed = [rng.integers(0, 2, (c.rows, nc)),  # small levels: no clipping, exact sums
            np.stack([np.full(c.rows, 0x80), np.full(c.rows, 0xFF), rng.integers(0, 256, c.rows),
                      np.full(c.rows, 0x7F)])]
    for abits in range(1, 9):
        prog += [E(Opcode.CFG, wbits=4, abits=abits, wsigned=1, asigned=1, adc_shift=0)]
        for v in range(4):
            prog.append(E(Opcode.MVM, in_addr=v, acc_addr=v))
        prog.append(E(Opcode.RDACC, start=0, count=4))
    await tb.execute(prog + [E(Opcode.HALT)], feed)


@tile_test()
async def level_saturation(tb: TB):
    """VAU row and column updates saturate at 0 and max_level and skip masked cells."""
    c = tb.cfg
    rng = np.random.default_rng(seed_from_env(6000))
    await tb.power_on_state()
    L = c.delta_len
    deltas = np.stack([np.full(L, 127), np.full(L, -128), rng.integers(-c.max_level - 1, c.max_level + 2, L),
                       (np.arange(L) % 3 - 1) * (c.max_level + 1)])[: c.delta_depth]
    prog = [E(Opcode.LDW, start=0, count=c.cols), E(Opcode.LDM, start=0, count=c.cols),
            E(Opcode.LDD, start=0, count=len(deltas))]
    feed = [rng.integers(0, c.max_level + 1, (c.rows, c.cols)), (rng.random((c.rows, c.cols)) < 0.3).astype(int),
            deltas]
    for k in range(len(deltas)):
        for op in (Opcode.VAUR, Opcode.VAUC):
            r0, c0 = int(rng.integers(0, c.rows // 2)), int(rng.integers(0, c.cols // 2))
            prog += [E(Opcode.WIN, row_start=r0, row_count=c.rows - r0, col_start=c0, col_count=c.cols - c0),
                     E(op, delta_addr=k), E(Opcode.RDW, start=0, count=min(c.cols, 8))]
    prog += [E(Opcode.WSET, row=0, col=0, value=c.max_level), E(Opcode.MSET, row=0, col=0, value=1),
             E(Opcode.WSET, row=0, col=0, value=0), E(Opcode.RDW, start=0, count=1), E(Opcode.RDM, start=0, count=1)]
    await tb.execute(prog + [E(Opcode.HALT)], feed, dump=True)


@tile_test()
async def vau_polarity(tb: TB):
    """VAU pair modes and slice selection on signed and unsigned, sliced weights, in shifted windows."""
    c = tb.cfg
    rng = np.random.default_rng(seed_from_env(6100))
    await tb.power_on_state()
    L = c.delta_len
    deltas = np.stack([rng.integers(-c.max_level - 1, c.max_level + 2, L) for _ in range(c.delta_depth)])
    prog = [E(Opcode.LDW, start=0, count=c.cols), E(Opcode.LDM, start=0, count=c.cols),
            E(Opcode.LDD, start=0, count=len(deltas))]
    feed = [rng.integers(0, c.max_level + 1, (c.rows, c.cols)), (rng.random((c.rows, c.cols)) < 0.2).astype(int),
            deltas]
    for wbits, wsigned in ((2, 1), (5, 1), (8, 1), (3, 0), (8, 0)):
        prog.append(E(Opcode.CFG, wbits=wbits, abits=8, wsigned=wsigned, asigned=0, adc_shift=0))
        for pair in range(4):
            only = int(rng.integers(0, 2))
            c0 = int(rng.integers(0, c.cols // 2))
            prog += [E(Opcode.WIN, row_start=int(rng.integers(0, c.rows // 2)), row_count=c.rows // 2,
                       col_start=c0, col_count=c.cols - c0),
                     E(Opcode.VAUR if pair % 2 else Opcode.VAUC, delta_addr=int(rng.integers(0, len(deltas))),
                       pair=pair, only=only, slice=int(rng.integers(0, 3))),
                     E(Opcode.RDW, start=0, count=c.cols)]
    await tb.execute(prog + [E(Opcode.HALT)], feed, dump=True)


@tile_test()
async def accumulate_vs_overwrite(tb: TB):
    """MVM accumulate=0 overwrites, accumulate=1 adds; repeated accumulation wraps at acc_bits."""
    c = tb.cfg
    await tb.power_on_state()
    head, nc, n_out = _full_window(tb, wbits=8, wsigned=0)
    # Largest per-MVM result: full levels, inputs 255. Enough accumulations to pass 2**(acc_bits-1).
    levels = np.full((c.rows, nc), c.max_level)
    g = isa.geometry(c, 8, 8, False, False, c.rows, nc)
    W = int(sum(c.max_level << (s * c.cell_bits) for s in range(g.nws)))
    per = max(1, min(255 * W * c.rows, 255 * c.adc_max * g.nrg * sum(1 << (s * c.cell_bits) for s in range(g.nws))))
    reps = min(4096, (1 << (c.acc_bits - 1)) // per + 2)
    prog = head + [
        E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=1),
        E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0),
        E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0), E(Opcode.RDACC, start=0, count=1),
        E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=1), E(Opcode.RDACC, start=0, count=1),
        E(Opcode.LOOP, count=reps, body=1), E(Opcode.MVM, in_addr=0, acc_addr=1, accumulate=1),
        E(Opcode.RDACC, start=1, count=1),
        E(Opcode.MVM, in_addr=0, acc_addr=1, accumulate=0), E(Opcode.RDACC, start=1, count=1), E(Opcode.HALT)]
    exp, _ = await tb.execute(prog, [levels, np.full((1, c.rows), 255)])
    tb.log.info("accumulated %d MVMs of up to %d each (acc_bits %d)", reps, per, c.acc_bits)


@tile_test(widths=["narrow", "wide"])
async def bit_widths(tb: TB, widths: str):
    """The smallest and largest weight and activation widths, signed and unsigned, with REQ."""
    c = tb.cfg
    rng = np.random.default_rng(seed_from_env(7000))
    await tb.power_on_state()
    combos = ([(1, 0, 1, 0), (2, 1, 1, 0), (2, 0, 2, 1), (1, 0, 8, 1)] if widths == "narrow" else
              [(8, 1, 8, 0), (8, 0, 8, 1), (8, 1, 8, 1), (7, 1, 5, 1)])
    prog = [E(Opcode.LDW, start=0, count=c.cols), E(Opcode.LDIN, start=0, count=2),
            E(Opcode.LDRQ, start=0, count=c.cols),
            E(Opcode.CFGRQ, zero_point=3, clamp_lo=-100, clamp_hi=200, relu=1)]
    feed = [rng.integers(0, c.max_level + 1, (c.rows, c.cols)), rng.integers(0, 256, (2, c.rows)),
            np.stack([rng.integers(-500, 500, c.cols), rng.integers(1, 3000, c.cols), rng.integers(0, 14, c.cols)], 1)]
    for k, (wbits, ws, abits, as_) in enumerate(combos):
        head, nc, _ = _full_window(tb, wbits, ws, abits, as_, shift=k % 2)
        prog += head + [E(Opcode.MVM, in_addr=0, acc_addr=k), E(Opcode.MVM, in_addr=1, acc_addr=k, accumulate=1),
                        E(Opcode.REQ, acc_addr=k, out_addr=k), E(Opcode.RDACC, start=k, count=1),
                        E(Opcode.RDOUT, start=k, count=1)]
    await tb.execute(prog + [E(Opcode.HALT)], feed)


@tile_test()
async def nested_loops(tb: TB):
    """Loops nested to loop_depth with strides on all three buffers; offsets restored after each loop."""
    c = tb.cfg
    rng = np.random.default_rng(seed_from_env(8000))
    await tb.power_on_state()
    head, nc, _ = _full_window(tb, wbits=2, wsigned=1, abits=2)
    d = c.loop_depth
    prog = head + [E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=min(8, c.in_depth))]
    feed = [rng.integers(0, c.max_level + 1, (c.rows, nc)), rng.integers(0, 4, (min(8, c.in_depth), c.rows))]
    body = 3 + 2 * (d - 1)
    for k in range(d):
        prog.append(E(Opcode.LOOP, count=2, body=body - 2 * k, stride_in=1, stride_acc=1 << k, stride_out=1))
        prog.append(E(Opcode.SYNC, tag=k))
    prog += [E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=1), E(Opcode.REQ, acc_addr=0, out_addr=0),
             E(Opcode.RDOUT, start=0, count=1)]
    prog += [E(Opcode.RDACC, start=0, count=min(c.acc_depth, 1 << d)), E(Opcode.HALT)]
    await tb.execute(prog, feed, dump=True)


# -- layer-sized program -----------------------------------------------------------------------------------


@tile_test()
async def layer_conv(tb: TB):
    """A convolution layer's worth of MVMs with requantisation in hardware loops (the speed figure)."""
    base = seed_from_env(9000)
    tb.seed = base
    p = conv_layer_program(tb.cfg, base)
    tb.log.info("layer_conv: %s, %d words", p.note, len(p))
    await tb.power_on_state()
    k = len(tb.history)
    tb.profile = True
    try:
        exp, rtl = await tb.execute(p)
    finally:  # the speed figure stands even when the comparison fails
        tb.profile = False
        if len(tb.history) > k:
            clocks, secs, cpu = tb.history[k]
            tb.log.info("layer_conv: %d clock cycles in %.3f s (%.3f s CPU): %.0f simulated cycles/s "
                        "(%.0f per CPU second)", clocks, secs, cpu, clocks / secs, clocks / max(cpu, 1e-9))
            _write_metric(tb, "layer_cycles_per_s", clocks / secs)
            _write_metric(tb, "layer_cycles_per_cpu_s", clocks / max(cpu, 1e-9))


def _write_metric(tb: TB, name: str, value: float) -> None:
    import json
    import os

    path = os.environ.get("CIMTILE_RECORDS")
    if path:
        with open(path + ".metrics", "a") as f:
            f.write(json.dumps({"config": tb.label, "name": name, "value": value}) + "\n")


# -- the mismatch report -----------------------------------------------------------------------------------


@tile_test()
async def mismatch_report(tb: TB):
    """A golden model that runs a program differing in one instruction: the report must name it.

    The generator's random program runs unchanged on the RTL; the golden model runs a copy whose
    instruction at a chosen pc is altered (a WSET/LDW/MVM field). The scoreboard must fail, and
    its bisection must name exactly that pc, with expected/actual values and the rerun command.
    """
    from cimtile.sim.tile import Tile as Golden

    base = seed_from_env(9500)
    tb.seed = base
    c = tb.cfg
    for k in range(60):
        p = random_program(c, base + k, length=24)
        tops = top_level(p.words)
        cands = [pc for pc in tops if isa.decode(p.words[pc]).op in (Opcode.MVM, Opcode.WSET, Opcode.MSET)]
        site, alt = None, None
        for pc in cands:
            d = isa.decode(p.words[pc])
            a = dict(d.args)
            if d.op is Opcode.MVM:
                a["accumulate"] ^= 1
            elif d.op is Opcode.MSET:
                a["value"] ^= 1
            else:
                a["value"] = (a["value"] + 1) % (c.max_level + 1)
            w2 = list(p.words)
            w2[pc] = E(d.op, **a)
            # Keep a site whose effect is visible right after it and at the end (golden vs golden).
            if _visible(c, p, w2, pc, Golden):
                site, alt = pc, w2
                break
        if site is not None:
            break
    else:
        raise AssertionError("no program with a visible one-instruction change in 60 seeds")
    tb.log.info("mismatch_report: seed %d, golden model runs pc %d as %s", base + k, site, isa.decode(alt[site]).text())
    await tb.power_on_state()
    tb.expect_failure = True
    try:
        await tb.execute(p, golden_words=alt, what="deliberately altered golden program", dump=True)
    except TestFailure as e:
        report = str(e)
    else:
        raise AssertionError("the scoreboard accepted a run against an altered golden program")
    tb.expect_failure = False
    want = f"first diverging instruction: pc {site}: {isa.decode(alt[site]).text()}"
    for needle in (want, "expected:", "actual:", "make sim TESTS=mismatch_report", "WAVES=1"):
        if needle not in report:
            raise AssertionError(f"mismatch report lacks {needle!r}:\n{report}")
    tb.log.info("report as expected:\n%s", report)


def _visible(cfg, p: Program, alt: list[int], pc: int, Golden) -> bool:
    """True if the golden model, run on ``p`` and on ``alt``, differs on every top-level prefix that
    includes ``pc`` (prefix + read-back of all memories), so that a bisection must find ``pc``."""
    halt = E(Opcode.HALT)

    def outs(words):
        t = Golden(cfg)
        r1 = t.run(words + [halt], p.feed)
        r2 = t.run(dump_program(cfg))
        return [r1.cycles], r1.outputs + r2.outputs

    tops = top_level(p.words) + [len(p.words)]
    for cut in (t for t in tops if t > pc):
        (ca, oa), (cb, ob) = outs(p.words[:cut]), outs(alt[:cut])
        if ca == cb and len(oa) == len(ob) and all(np.array_equal(x, y) for x, y in zip(oa, ob)):
            return False
    return True
