"""The Amaranth tile against the golden model on random programs (Amaranth's simulator)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cimtile.hw.isa import Opcode, decode, encode
from cimtile.hw.params import TileConfig
from cimtile.tb.amaranth_sim import golden_runs, run_rtl
from cimtile.tb.programs import DIRECTED, directed_programs, random_program
from helpers import CI, TINY, VARIANT, ci_size
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from reference import RefTile
from strategies import RandomFeed, programs

CONFIGS = {"tiny": TINY, "variant": VARIANT}
SCALE = int(os.environ.get("RTL_SCALE", "1"))
#: No shrinking: each example costs seconds of RTL simulation; a failure prints the drawn program.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


def dump_program(cfg: TileConfig) -> list[int]:
    """Reads every readable memory: the final cell levels, masks, accumulators and outputs."""
    return [
        encode(Opcode.RDW, start=0, count=cfg.cols), encode(Opcode.RDM, start=0, count=cfg.cols),
        encode(Opcode.RDACC, start=0, count=cfg.acc_depth), encode(Opcode.RDOUT, start=0, count=cfg.out_depth),
        encode(Opcode.HALT),
    ]


#: ``make mutate`` runs this module on a named mutant of the RTL (tb/mutants.py) through this variable.
MUTANT = os.environ.get("CIMTILE_MUTANT") or None


def compare(cfg: TileConfig, program: list[int], blocks: list, *, stall_seed=None, mutation=None) -> None:
    """Run ``program`` then a dump of the state on the golden model and on the RTL; all must agree."""
    mutation = mutation or MUTANT
    runs = [(program, blocks), (dump_program(cfg), [])]
    gold = golden_runs(cfg, runs)
    rtl = run_rtl(cfg, [(p, din) for (p, _), (_, din, _) in zip(runs, gold)], stall_seed=stall_seed,
                  mutation=mutation)
    for n, ((res, _, dout), r) in enumerate(zip(gold, rtl)):
        what = f"run {n} ({'program' if n == 0 else 'state dump'})"
        assert (r.cause, r.pc) == (res.cause, res.pc), f"{what}: RTL stopped with {r.cause.name} at pc {r.pc}, " \
            f"golden {res.cause.name} at {res.pc} ({res.text} {res.detail})"
        assert r.cycles == res.cycles, f"{what}: RTL took {r.cycles} cycles, golden {res.cycles}"
        assert r.sync_tag == res.sync_tag, f"{what}: sync_tag {r.sync_tag}, golden {res.sync_tag}"
        assert len(r.dout) == len(dout), f"{what}: RTL sent {len(r.dout)} words, golden {len(dout)}"
        bad = [i for i, (a, b) in enumerate(zip(r.dout, dout)) if a != b]
        assert not bad, f"{what}: data-out words {bad[:8]} differ: RTL {r.dout[bad[0]]:#x}, golden {dout[bad[0]]:#x}"


def random_case(data, cfg: TileConfig, errors: bool):
    program = data.draw(programs(cfg, errors=errors, budget=10), "program")
    seed = data.draw(st.integers(0, 2**32 - 1), "seed")
    feed = RandomFeed(cfg, 1, seed)
    RefTile(cfg, 1).run(program, feed)
    return program, feed.blocks


@pytest.mark.parametrize("name", CONFIGS)
@settings(max_examples=ci_size(12, 6) * SCALE, deadline=None, phases=PHASES)
@given(data=st.data())
def test_random_programs_match_golden(name, data):
    cfg = CONFIGS[name]
    program, blocks = random_case(data, cfg, errors=True)
    compare(cfg, program, blocks)


@pytest.mark.parametrize("name", CONFIGS)
@settings(max_examples=ci_size(8, 4) * SCALE, deadline=None, phases=PHASES)
@given(data=st.data())
def test_legal_programs_match_golden_with_stalls(name, data):
    """Legal programs with the host dropping din valid / dout ready at random: same cycle count."""
    cfg = CONFIGS[name]
    program, blocks = random_case(data, cfg, errors=False)
    compare(cfg, program, blocks, stall_seed=data.draw(st.integers(0, 1000), "stall_seed"))


@pytest.mark.parametrize("name", CONFIGS)
def test_generated_programs_match_golden(name):
    """tb.programs' generator (the co-simulation's and ``make regress``'s): layer prologues make MVMs
    with loaded weights, aligned windows and unclipped conversions common, which the hypothesis
    programs above rarely produce."""
    cfg = CONFIGS[name]
    for seed in range(ci_size(4, 2) * SCALE):
        p = random_program(cfg, 9000 + seed, length=16)
        compare(cfg, p.words, p.feed)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.slow
@pytest.mark.parametrize("which", DIRECTED)
def test_directed_programs_match_golden(name, which):
    """The directed programs (VAU with a partial mask, signed inputs at the extremes, a looped REQ,
    the adc_shift sweep, a masked MVM, a narrower overwrite), then a read-back of every memory.
    CI-sized runs take ``variant``'s from the Verilator co-simulation (tests/test_cosim.py::test_cosim_variant
    runs the same programs and read-backs against the golden model)."""
    if CI and name == "variant":
        pytest.skip("CI size: variant's directed programs run under Verilator (test_cosim.py::test_cosim_variant)")
    cfg = CONFIGS[name]
    p = directed_programs(cfg)[which]
    compare(cfg, p.words, p.feed)


@pytest.mark.parametrize("ending", ["halt", "error"])
def test_write_behind_is_invisible(ending):
    """The MVM's accumulator write and REQ's last output write land in the next instruction's first
    cycle (hw.isa.WRITE_BEHIND): an instruction right after reading that vector (MVM accumulating
    onto it, REQ, RDACC, RDOUT), and HALT or an error right after, see what the golden model sees."""
    cfg = TINY
    mvm = [encode(Opcode.MVM, in_addr=i, acc_addr=0, accumulate=int(i > 0)) for i in range(3)]
    prog = [encode(Opcode.CFG, wbits=4, abits=8, wsigned=1, asigned=0, adc_shift=1),
            encode(Opcode.WIN, row_start=0, row_count=16, col_start=0, col_count=16),
            encode(Opcode.CFGRQ, zero_point=3, clamp_lo=-100, clamp_hi=100, relu=0),
            encode(Opcode.LDW, start=0, count=16), encode(Opcode.LDIN, start=0, count=3),
            *mvm,  # back to back onto the same accumulator vector
            encode(Opcode.RDACC, start=0, count=1),
            encode(Opcode.MVM, in_addr=1, acc_addr=1), encode(Opcode.REQ, acc_addr=1, out_addr=2),
            encode(Opcode.RDOUT, start=2, count=1),
            encode(Opcode.MVM, in_addr=2, acc_addr=1, accumulate=1), encode(Opcode.REQ, acc_addr=1, out_addr=3),
            encode(Opcode.REQ, acc_addr=0, out_addr=3),
            encode(Opcode.MVM, in_addr=0, acc_addr=2)]
    prog.append(encode(Opcode.HALT) if ending == "halt" else encode(Opcode.RDACC, start=cfg.acc_depth - 1, count=2))
    rng = np.random.default_rng(11)
    compare(cfg, prog, [rng.integers(0, 4, (16, 16)), rng.integers(0, 256, (3, 16))])


@pytest.mark.parametrize("outer", [1, 3], ids=["pops", "wraps"])
def test_loop_at_a_body_end_fails_its_nesting_check(outer):
    """A LOOP as the last word of an enclosing body (whose level wraps or pops there) fails LOOP_NEST at its
    own pc, with the golden model's cycles: the loop stack's next pc and the fetch's taken branch are not
    gated by LOOP's push (hw.loop_stack), so there the fetch points at the body's start, which must not
    matter."""
    cfg = TINY
    program = [encode(Opcode.SYNC, tag=1),
               encode(Opcode.LOOP, count=outer, body=2),
               encode(Opcode.SYNC, tag=2), encode(Opcode.LOOP, count=2, body=1),
               encode(Opcode.SYNC, tag=3), encode(Opcode.HALT)]
    gold = golden_runs(cfg, [(program, [])])
    assert (gold[0][0].cause.name, gold[0][0].pc) == ("LOOP_NEST", 3)
    compare(cfg, program, [])


def test_shift_add_mutation_is_caught():
    """The test-only mutation (a wrong shift in the shift-and-add) changes MVM results."""
    cfg = TINY
    prog = [encode(Opcode.CFG, wbits=4, abits=8, wsigned=1, asigned=0, adc_shift=0),
            encode(Opcode.WIN, row_start=0, row_count=16, col_start=0, col_count=16),
            encode(Opcode.LDW, start=0, count=16), encode(Opcode.LDIN, start=0, count=1),
            encode(Opcode.MVM, in_addr=0, acc_addr=0), encode(Opcode.RDACC, start=0, count=1),
            encode(Opcode.HALT)]
    rng = np.random.default_rng(7)
    (res, din, dout), = golden_runs(cfg, [(prog, [rng.integers(0, 4, (16, 16)), rng.integers(0, 256, (1, 16))])])
    good, = run_rtl(cfg, [(prog, din)])
    bad, = run_rtl(cfg, [(prog, din)], mutation="shift_add")
    assert good.dout == dout
    assert bad.dout != dout and bad.cycles == res.cycles


def test_unknown_mutation_is_refused():
    from cimtile.hw.tile import Tile

    with pytest.raises(ValueError, match="mutation"):
        Tile(TINY, mutation="nope")


@pytest.mark.parametrize("case", ["ldin", "rdout", "rdacc", "req", "mvm_window", "static_and_late"])
def test_late_check_errors_are_invisible(case):
    """The run-time checks (loop offsets, window alignment) of MVM, REQ, LDIN, RDOUT and RDACC stop the
    run in the instruction's second cycle (``late_err``, uncounted): same cause, pc and cycles as the
    golden model, no bus word taken or sent, no output written; and a word whose static cause stops
    the run in its first cycle while a run-time check also fails leaves no error for the next run
    (the state dump that ``compare`` runs after the program)."""
    from cimtile.hw.isa import USED_MASK

    cfg = TINY
    setup = [encode(Opcode.CFG, wbits=4, abits=8, wsigned=1, asigned=0, adc_shift=1),
             encode(Opcode.WIN, row_start=0, row_count=16, col_start=0, col_count=16),
             encode(Opcode.LDW, start=0, count=16), encode(Opcode.LDIN, start=0, count=1),
             encode(Opcode.MVM, in_addr=0, acc_addr=0), encode(Opcode.REQ, acc_addr=0, out_addr=0)]
    reserved = next(b for b in range(64) if not (USED_MASK[Opcode.MVM] >> b) & 1)
    failing = {
        "ldin": [encode(Opcode.LDIN, start=cfg.in_depth - 1, count=2)],
        "rdout": [encode(Opcode.RDOUT, start=cfg.out_depth - 1, count=2)],
        "rdacc": [encode(Opcode.RDACC, start=cfg.acc_depth - 1, count=2)],
        "req": [encode(Opcode.REQ, acc_addr=0, out_addr=cfg.out_depth)],
        "mvm_window": [encode(Opcode.WIN, row_start=0, row_count=16, col_start=0, col_count=5),
                       encode(Opcode.MVM, in_addr=0, acc_addr=1)],
        "static_and_late": [encode(Opcode.MVM, in_addr=0, acc_addr=cfg.acc_depth) | (1 << reserved)],
    }[case]
    rng = np.random.default_rng(5)
    blocks = [rng.integers(0, 4, (16, 16)), rng.integers(0, 256, (1, 16))]
    if case == "ldin":
        blocks.append(rng.integers(0, 256, (2, 16)))
    compare(cfg, setup + failing + [encode(Opcode.HALT)], blocks)


def test_start_without_loading_runs_the_last_program():
    """``start`` with no word loaded since the last one runs the last program again (docs/interface.md):
    the run's length is a register kept while loading, which the start cycle copies. A first start
    with nothing loaded is PC_RANGE at 0; a shorter program loaded after a longer one runs past its
    own end (PC_RANGE at its length), not into the longer one's words; loops reach the same length."""
    from cimtile.sim.tile import Tile as GoldenTile

    cfg = TINY
    longer = [encode(Opcode.SYNC, tag=7), encode(Opcode.LOOP, count=3, body=2), encode(Opcode.NOP),
              encode(Opcode.SYNC, tag=9), encode(Opcode.NOP), encode(Opcode.HALT)]
    shorter = [encode(Opcode.SYNC, tag=5), encode(Opcode.LOOP, count=2, body=1), encode(Opcode.NOP)]
    # (program words loaded before the start; None: none)
    runs = [None, longer, None, shorter, None, None, longer, None]
    golden = GoldenTile(cfg)
    want = [golden.run(None if p is None else list(p)) for p in runs]
    got = run_rtl(cfg, [(p or [], []) for p in runs])
    for n, (res, r) in enumerate(zip(want, got)):
        assert (r.cause, r.pc, r.cycles, r.sync_tag) == (res.cause, res.pc, res.cycles, res.sync_tag), f"run {n}"
    assert [r.pc for r in got] == [0, None, None, 3, 3, 3, None, None]


def test_error_status_shows_only_after_an_error():
    """``error_cause`` and ``error_pc`` are taken in every running cycle and shown only with ``error``:
    the failing instruction's after an error run (held while idle and loading), NONE and 0 during a
    run and after a halted one."""
    from amaranth.sim import Simulator
    from cimtile.hw.isa import Cause
    from cimtile.hw.tile import Tile

    failing = [encode(Opcode.NOP), encode(Opcode.SYNC, tag=3), encode(Opcode.LOOP, count=2, body=4), encode(Opcode.NOP)]
    halting = [encode(Opcode.NOP), encode(Opcode.NOP), encode(Opcode.HALT)]
    dut = Tile(TINY)
    seen = {}  # (program, phase) -> the (error, error_cause, error_pc) seen in each cycle

    async def bench(ctx):
        def status(key):
            seen.setdefault(key, []).append((ctx.get(dut.error), ctx.get(dut.error_cause), ctx.get(dut.error_pc)))

        for n, prog in enumerate((failing, halting)):
            for w in prog:
                ctx.set(dut.instr.valid, 1)
                ctx.set(dut.instr.payload, w)
                await ctx.tick()
                status((n, "loading"))
            ctx.set(dut.instr.valid, 0)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            while not ctx.get(dut.done):
                status((n, "running"))
                await ctx.tick()
            status((n, "done"))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    nest = (1, Cause.LOOP_NEST.value, 2)
    assert seen[0, "done"] == [nest] and seen[1, "done"] == [(0, 0, 0)]
    assert set(seen[1, "loading"]) == {nest}
    assert set(seen[0, "loading"] + seen[0, "running"] + seen[1, "running"]) == {(0, 0, 0)}


#: RDOUT items of three bus words, output chunks of five columns, two of them across a word boundary (each
#: chunk's reads follow the words its bytes fall in: Tile._read_enables)
STRADDLE = TINY.replace(name="straddle", cols=24, rq_lanes=5)


@pytest.mark.parametrize("stall_seed", [None, 3, 17])
@pytest.mark.parametrize("cfg", [TINY, STRADDLE], ids=lambda c: c.name)
def test_held_read_data_with_ports_reading_in_other_cycles(cfg, stall_seed):
    """The accumulator and output memories read in every cycle but where REQ, RDACC or RDOUT hold an
    earlier read's data (Tile._read_enables): multi-vector MVM, REQ (several chunks per vector, n_out
    below the columns so that the old output bytes are kept) and multi-item RDACC/RDOUT, back to back,
    with the host dropping dout ready at random, return what the golden model returns; on tiny (RDOUT
    items of two bus words) and on a config whose output chunks straddle the words of three-word items."""
    prog = [encode(Opcode.CFG, wbits=4, abits=8, wsigned=1, asigned=0, adc_shift=1),
            encode(Opcode.WIN, row_start=0, row_count=16, col_start=0, col_count=16),
            encode(Opcode.CFGRQ, zero_point=-5, clamp_lo=-120, clamp_hi=110, relu=0),
            encode(Opcode.LDW, start=0, count=16), encode(Opcode.LDIN, start=0, count=4),
            encode(Opcode.MVM, in_addr=0, acc_addr=3, count=4),
            encode(Opcode.REQ, acc_addr=3, out_addr=5, count=4),
            encode(Opcode.RDACC, start=2, count=5), encode(Opcode.RDOUT, start=4, count=6),
            # a narrower window: REQ keeps the old bytes of the columns at and above n_out
            encode(Opcode.WIN, row_start=0, row_count=16, col_start=0, col_count=12),
            encode(Opcode.MVM, in_addr=1, acc_addr=4, accumulate=1, count=2),
            encode(Opcode.RDACC, start=4, count=2),
            encode(Opcode.REQ, acc_addr=4, out_addr=6, count=2), encode(Opcode.RDOUT, start=5, count=3),
            encode(Opcode.HALT)]
    rng = np.random.default_rng(5)
    compare(cfg, prog, [rng.integers(0, 4, (16, 16)), rng.integers(0, 4, (4, 16))], stall_seed=stall_seed)


def test_kept_simulator_runs_from_power_on():
    """run_rtl keeps each configuration's compiled simulator and resets it for the next call: a call after a
    program that loaded weights, masks and inputs and computed outputs sees the power-on state (its read-back
    of every memory equals a new golden tile's), and the same program gives the same result again."""
    from cimtile.tb import amaranth_sim

    cfg = TINY
    p = random_program(cfg, 9003, length=16)
    (_, din, _), = golden_runs(cfg, [(p.words, p.feed)])
    first, = run_rtl(cfg, [(p.words, din)], stall_seed=5)
    kept = amaranth_sim._SIMULATORS[(cfg, None)][0]
    (dump_gold, _, dump_words), = golden_runs(cfg, [(dump_program(cfg), [])])
    _, (_, _, after_words) = golden_runs(cfg, [(p.words, p.feed), (dump_program(cfg), [])])
    assert after_words != dump_words, "the program leaves the power-on state: the check below can fail"
    dump, = run_rtl(cfg, [(dump_program(cfg), [])])
    assert amaranth_sim._SIMULATORS[(cfg, None)][0] is kept, "the simulator was built again"
    assert (dump.cycles, dump.dout) == (dump_gold.cycles, dump_words), "state left over from the previous call"
    again, = run_rtl(cfg, [(p.words, din)], stall_seed=5)
    assert again == first


#: tiny with programming waits of one cycle and no pulse phases: LDW, WSET, VAUR and VAUC keep their own fin term
SHORT_WAITS = TINY.replace(name="short_waits", write_cycles=1, pulse_cycles=0)


@pytest.mark.parametrize("name", ["tiny", "variant", "short-waits"])
def test_ends_next_is_each_opcodes_own_end_a_cycle_ahead(name):
    """The counter-ended opcodes' fin is the register ends_next (Tile._ends_next), and the stream opcodes' a
    register per bus ANDed with the bus's handshake (Tile._stream_end: armed_din & din's valid, armed_dout &
    dout's ready), each set a cycle ahead from their statements read one cycle early; their own fin_<op>
    statements stay as the definition. In every cycle of constrained-random programs (every opcode, loops,
    errors) and with host stalls, the two agree. With waits too short to predict (short-waits), the waiting
    opcodes keep their own term (an LDW with no wait ends on din: its armed term), and the programs match the
    golden model."""
    from amaranth.sim import Simulator
    from cimtile.hw.tile import Tile

    cfg = {**CONFIGS, "short-waits": SHORT_WAITS}[name]
    # programs of the first seeds that bring an opcode not met yet, until every counter-ended one is in
    wanted = {Opcode.MVM, Opcode.REQ, Opcode.LDW, Opcode.VAUR, Opcode.VAUC, Opcode.WSET, Opcode.MSET, Opcode.LDM,
              Opcode.LDIN, Opcode.LDD, Opcode.LDRQ, Opcode.RDOUT, Opcode.RDACC, Opcode.RDW, Opcode.RDM}
    progs = []
    for seed in range(500):
        prog = random_program(cfg, seed, length=30)
        ops = {decode(w).op for w in prog.words}
        if ops & wanted:
            progs.append(prog)
            wanted -= ops
        if not wanted:
            break
    runs = golden_runs(cfg, [(p.words, p.feed) for p in progs])
    dut = Tile(cfg)
    sim = Simulator(dut)
    checked = {op: 0 for op in Opcode}
    bad = []

    async def bench(ctx):
        probe = dut.fin_probe
        predicted = {op: (bit, fin, kind) for op, (bit, fin, kind) in probe["ops"].items() if kind}
        waits = {Opcode.LDW, Opcode.WSET, Opcode.VAUR, Opcode.VAUC}
        assert {op for op, (_, _, kind) in predicted.items() if kind == "ahead"} == \
            {Opcode.MVM, Opcode.REQ, Opcode.MSET} | (set() if cfg is SHORT_WAITS else waits)
        assert {op for op, (_, _, kind) in predicted.items() if kind == "din"} == \
            {Opcode.LDM, Opcode.LDIN, Opcode.LDD, Opcode.LDRQ} | ({Opcode.LDW} if cfg.write_cycles == 0 else set())
        assert {op for op, (_, _, kind) in predicted.items() if kind == "dout"} == \
            {Opcode.RDOUT, Opcode.RDACC, Opcode.RDW, Opcode.RDM}
        rng = np.random.default_rng(7)
        for (prog, _), (_, din, _) in zip(((p.words, p.feed) for p in progs), runs):
            for w in prog:
                ctx.set(dut.instr.valid, 1)
                ctx.set(dut.instr.payload, int(w))
                await ctx.tick()
            ctx.set(dut.instr.valid, 0)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            i = 0
            for _ in range(200_000):
                valid = i < len(din) and rng.random() < 0.7
                ctx.set(dut.din.valid, int(valid))
                ctx.set(dut.din.payload, din[i] if i < len(din) else 0)
                ctx.set(dut.dout.ready, int(rng.random() < 0.7))
                if ctx.get(probe["go"]):
                    handshake = {"din": int(valid), "dout": ctx.get(dut.dout.ready)}
                    for op, (bit, fin, kind) in predicted.items():
                        if ctx.get(bit):
                            checked[op] += 1
                            got = ctx.get(probe["ends_next"]) if kind == "ahead" else \
                                ctx.get(probe["armed"][kind]) & handshake[kind]
                            if ctx.get(fin) != got:
                                bad.append((op.name, ctx.get(fin), got))
                took = valid and ctx.get(dut.din.ready)
                await ctx.tick()
                i += took
                if ctx.get(dut.done):
                    break

    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, bad[:5]
    # the programs ran each predicted opcode
    ran = {op for op, n in checked.items() if n}
    assert ran == {op for op, (_, _, kind) in dut.fin_probe["ops"].items() if kind}, ran
    if cfg is SHORT_WAITS:  # the opcodes' own terms: the runs match the golden model
        for prog in progs:
            compare(cfg, prog.words, prog.feed)
