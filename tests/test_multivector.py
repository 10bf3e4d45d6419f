"""The multi-vector MVM and REQ (``count``, docs/isa.md) in the golden model: one MVM/REQ of n vectors equals a
LOOP of n single ones at consecutive addresses in every result and in the final state, costs the documented
formula, checks its whole ranges (ADDR at the range's end, before any vector is converted), and takes the
program-level fast path and the loop vectoriser like the loop it stands for. Every case runs on the fast path,
the instruction path (vectorised and not), in timing mode and on the reference model."""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.isa import Cause, Opcode
from cimtile.hw.params import PRESETS
from cimtile.sim import fastrun
from cimtile.sim.tile import Tile
from helpers import VARIANT, assert_same
from reference import RefTile

E = isa.encode
CFGS = [PRESETS["tiny"], VARIANT, PRESETS["isaac"]]


def _layer(cfg, rng, n: int, *, multi: bool, in_at: int = 0, acc_at: int = 0, out_at: int = 0,
           accumulate: int = 0):
    """A layer over ``n`` vectors: CFG, CFGRQ, LDRQ, LDIN, WIN, LDW, then the MVMs (one of n vectors when ``multi``,
    else a LOOP of single ones), again accumulating, the REQs likewise, RDACC and RDOUT. Returns words and feed."""
    wbits = int(rng.choice([2, 4, 8]))
    wsigned = bool(rng.integers(0, 2))
    abits, asigned = int(rng.choice([3, 8])), bool(rng.integers(0, 2))
    g = isa.geometry(cfg, wbits, abits, wsigned, asigned, cfg.rows, cfg.cols)
    nc = g.group * int(rng.integers(1, cfg.cols // g.group + 1))
    n_out = nc // g.group
    nr = int(rng.integers(1, cfg.rows + 1))
    words = [E(Opcode.CFG, wbits=wbits, abits=abits, wsigned=int(wsigned), asigned=int(asigned),
               adc_shift=int(rng.integers(0, 3))),
             E(Opcode.CFGRQ, zero_point=int(rng.integers(-5, 6)), clamp_lo=-128, clamp_hi=127,
               relu=int(rng.integers(0, 2))),
             E(Opcode.LDRQ, start=0, count=n_out), E(Opcode.LDIN, start=in_at, count=n),
             E(Opcode.WIN, row_start=0, row_count=nr, col_start=0, col_count=nc), E(Opcode.LDW, start=0, count=nc)]
    feed = [np.stack([rng.integers(-1000, 1000, n_out), rng.integers(1, 1 << 10, n_out),
                      rng.integers(2, 12, n_out)], axis=1),
            rng.integers(0, 256, (n, cfg.rows)).astype(np.uint8),
            rng.integers(0, cfg.max_level + 1, (cfg.rows, nc)).astype(np.uint8)]

    def many(op, **a):
        if multi:
            return [E(op, count=n, **a)] if n > 1 or rng.random() < 0.5 else [E(op, **a)]
        st = {"stride_in": 1, "stride_acc": 1, "stride_out": 0} if op is Opcode.MVM else \
            {"stride_in": 0, "stride_acc": 1, "stride_out": 1}
        return [E(Opcode.LOOP, count=n, body=1, **st), E(op, **a)]

    words += many(Opcode.MVM, in_addr=in_at, acc_addr=acc_at, accumulate=accumulate)
    words += many(Opcode.MVM, in_addr=in_at, acc_addr=acc_at, accumulate=1)
    words += many(Opcode.REQ, acc_addr=acc_at, out_addr=out_at)
    words += [E(Opcode.RDACC, start=acc_at, count=n), E(Opcode.RDOUT, start=out_at, count=n), E(Opcode.HALT)]
    return words, feed


def _paths(cfg, words, feed, batch: int = 1, before=None):
    """Run on every path (from the state ``before`` leaves, if given); assert they agree with the reference and
    return the fast path's result, whether the fast path took the program, and the fast tile."""
    ref = RefTile(cfg, batch)
    tiles = {"fast": Tile(cfg, batch), "vectorised": Tile(cfg, batch, fast=False),
             "plain": Tile(cfg, batch, fast=False, vectorize=False)}
    if before is not None:
        prog, blocks = before
        ref.run(prog, list(blocks))
        for t in tiles.values():
            t.run(prog, list(blocks)).check()
    want = ref.run(words, list(feed))
    got = {k: t.run(words, list(feed)) for k, t in tiles.items()}
    for k, res in got.items():
        assert_same(res, want, tiles[k], ref, k)
    timing = Tile(cfg, batch)
    tm = timing.run(words, timing_only=True)
    assert (tm.cycles, tm.cause, tm.pc) == (want.cycles, want.cause, want.pc)
    return got["fast"], fastrun.cached_plan(tiles["fast"]) is not None, tiles["fast"]


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_count_equals_a_loop_of_single_vectors(cfg):
    """Results, reads and final state equal the LOOP form's; cycles are the LOOP form's minus the issue and drain
    cycles of every vector but one (and the LOOP word's cycle), by the formula; the fast path takes both forms."""
    rng = np.random.default_rng(14 + cfg.rows)
    for case in range(4 if cfg.name == "isaac" else 8):
        n = int(rng.choice([1, 2, 3, min(cfg.in_depth, cfg.acc_depth, cfg.out_depth)]))
        in_at = int(rng.integers(0, cfg.in_depth - n + 1))
        acc_at = int(rng.integers(0, cfg.acc_depth - n + 1))
        out_at = int(rng.integers(0, cfg.out_depth - n + 1))
        batch = int(rng.integers(1, 3))
        seed = int(rng.integers(0, 1 << 30))
        args = dict(in_at=in_at, acc_at=acc_at, out_at=out_at, accumulate=int(rng.integers(0, 2)))
        multi, fast_m, tile_m = _paths(cfg, *_layer(cfg, np.random.default_rng(seed), n, multi=True, **args), batch)
        loop, fast_l, tile_l = _paths(cfg, *_layer(cfg, np.random.default_rng(seed), n, multi=False, **args), batch)
        assert fast_m and fast_l, (case, "the fast path took the program")
        assert multi.ok and loop.ok
        for x, y in zip(multi.outputs, loop.outputs):
            assert np.array_equal(x, y), case
        for k, v in tile_l.state().items():
            assert np.array_equal(tile_m.state()[k], v), (case, k)
        # two MVMs and one REQ, each saving the issue and drain cycles of n vectors but one, and the LOOP word
        saved = 2 * (1 + (n - 1) * (1 + isa.MVM_LATENCY)) + 1 + (n - 1) * (1 + isa.ACC_READ_WAIT + isa.REQ_LATENCY)
        assert loop.cycles - multi.cycles == saved, (case, n)
        g = tile_m.geometry()
        ns = isa.cfg_namespace(cfg)
        assert isa.cycles(Opcode.MVM, ns, {"count": n}, g) == 1 + n * isa.adc_bound(cfg, g) + isa.MVM_LATENCY
        req = 1 + isa.ACC_READ_WAIT + n * -(-g.n_out // cfg.rq_lanes) + isa.REQ_LATENCY
        assert isa.cycles(Opcode.REQ, ns, {"count": n}, g) == req


def _addr_case(cfg, op: Opcode, which: str, past: int):
    """A program whose ``op`` of 3 vectors ends at the end of space ``which`` (``past`` = 0) or one past it."""
    n = 3
    g = isa.geometry(cfg, 2, 8, False, False, cfg.rows, cfg.cols)
    nc = g.group
    head = [E(Opcode.CFG, wbits=2, abits=8, wsigned=0, asigned=0, adc_shift=0),
            E(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=nc),
            E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=cfg.in_depth)]
    rng = np.random.default_rng(5)
    feed = [rng.integers(0, cfg.max_level + 1, (cfg.rows, nc)), rng.integers(0, 256, (cfg.in_depth, cfg.rows))]
    depth = {"in": cfg.in_depth, "acc": cfg.acc_depth, "out": cfg.out_depth}
    at = {k: 0 for k in depth}
    at[which] = depth[which] - n + past
    if op is Opcode.MVM:
        word = E(Opcode.MVM, in_addr=at["in"], acc_addr=at["acc"], accumulate=0, count=n)
    else:
        word = E(Opcode.REQ, acc_addr=at["acc"], out_addr=at["out"], count=n)
    # the first MVM fills the accumulators a REQ reads; RDACC shows whether the failing instruction wrote any
    prog = head + [E(Opcode.MVM, in_addr=0, acc_addr=0, count=min(cfg.in_depth, cfg.acc_depth)), word,
                   E(Opcode.RDACC, start=0, count=cfg.acc_depth), E(Opcode.HALT)]
    return prog, feed, len(head) + 1


@pytest.mark.parametrize("cfg", [PRESETS["tiny"], VARIANT], ids=lambda c: c.name)
@pytest.mark.parametrize("op, which", [(Opcode.MVM, "in"), (Opcode.MVM, "acc"), (Opcode.REQ, "acc"),
                                       (Opcode.REQ, "out")])
def test_range_ending_at_the_buffer_end_runs_and_one_past_is_addr(cfg, op, which):
    """The whole range is checked: ending at the last entry runs (fast path too), one past it is ADDR at that
    instruction, on every path, with nothing written (the reads after it never run)."""
    prog, feed, pc = _addr_case(cfg, op, which, 0)
    res, fast, _ = _paths(cfg, prog, feed)
    assert res.ok and fast
    prog, feed, pc = _addr_case(cfg, op, which, 1)
    res, fast, tile = _paths(cfg, prog, feed)
    assert (res.cause, res.pc) == (Cause.ADDR, pc) and not fast
    assert res.outputs == []
    assert "count=3" in res.text
    # nothing of the failing instruction was done: the tile's accumulators and outputs are the first MVM's
    ok, _, ref = _paths(cfg, prog[:pc] + [E(Opcode.RDACC, start=0, count=cfg.acc_depth), E(Opcode.HALT)], feed)
    for k in ("acc", "out"):
        assert np.array_equal(tile.state()[k], ref.state()[k]), k


@pytest.mark.parametrize("op", [Opcode.MVM, Opcode.REQ])
def test_first_range_is_checked_first(op):
    """Both ranges past the end: the message names the first field's space (MVM input, REQ accumulator)."""
    cfg = PRESETS["tiny"]
    n = 2
    if op is Opcode.MVM:
        word = E(op, in_addr=cfg.in_depth - 1, acc_addr=cfg.acc_depth - 1, count=n)
        first = "input vector"
    else:
        word = E(op, acc_addr=cfg.acc_depth - 1, out_addr=cfg.out_depth - 1, count=n)
        first = "accumulator vector"
    prog = [E(Opcode.CFG, wbits=2, abits=8, wsigned=0, asigned=0, adc_shift=0), word, E(Opcode.HALT)]
    for fast in (True, False):
        res = Tile(cfg, fast=fast).run(prog, [])
        assert (res.cause, res.pc) == (Cause.ADDR, 1)
        assert res.detail.startswith(first), res.detail


def test_counts_in_vectorised_loops():
    """A LOOP over MVMs/REQs of several vectors: independent iterations (stride >= count) vectorise, overlapping
    ones (stride < count: later iterations rewrite accumulators) run in order; the strides equal to the count make
    one run of consecutive vectors, which the fast path takes; a loop that runs past the end is ADDR at its last
    iteration, after the others were done."""
    cfg = PRESETS["tiny"]
    rng = np.random.default_rng(8)
    g = isa.geometry(cfg, 4, 8, True, False, cfg.rows, cfg.cols)
    nc = 2 * g.group
    head = [E(Opcode.CFG, wbits=4, abits=8, wsigned=1, asigned=0, adc_shift=1),
            E(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=nc),
            E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=cfg.in_depth),
            E(Opcode.LDRQ, start=0, count=2)]
    feed = [rng.integers(0, cfg.max_level + 1, (cfg.rows, nc)), rng.integers(0, 256, (cfg.in_depth, cfg.rows)),
            np.array([[3, 5, 4], [-7, 9, 3]])]
    tail = [E(Opcode.RDACC, start=0, count=cfg.acc_depth), E(Opcode.RDOUT, start=0, count=cfg.out_depth),
            E(Opcode.HALT)]
    k, n = 3, 4  # vectors per MVM, iterations
    for stride, accumulate in ((k, 0), (k + 1, 1), (1, 1), (2, 0), (0, 1)):
        loop = [E(Opcode.LOOP, count=n, body=2, stride_in=stride, stride_acc=stride, stride_out=stride),
                E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=accumulate, count=k),
                E(Opcode.REQ, acc_addr=0, out_addr=0, count=k)]
        res, _, _ = _paths(cfg, head + loop + tail, feed, batch=2)
        assert res.ok, stride
    # one MVM per iteration, strides = count: the fast path's run of n * k consecutive vectors
    loop = [E(Opcode.LOOP, count=n, body=1, stride_in=k, stride_acc=k), E(Opcode.MVM, in_addr=1, acc_addr=2, count=k)]
    res, fast, _ = _paths(cfg, head + loop + tail, feed)
    assert res.ok and fast
    # past the end in the last iteration only
    last = cfg.in_depth - (n - 1) * k - k + 1
    loop = [E(Opcode.LOOP, count=n, body=1, stride_in=k, stride_acc=0),
            E(Opcode.MVM, in_addr=last, acc_addr=0, count=k)]
    res, fast, _ = _paths(cfg, head + loop + tail, feed)
    assert (res.cause, res.pc) == (Cause.ADDR, len(head) + 1) and not fast


@pytest.mark.parametrize("tile", ["tiny", "isaac"])
def test_compiled_layers_use_counts_and_save_issue_and_drain_cycles(tile, monkeypatch):
    """The compiler emits a chunk's positions as one MVM (REQ) of P vectors: the same outputs as the LOOP form
    (``codegen.MULTI_VECTOR`` off), the report's cycles equal the golden model's, and each program saves exactly
    the LOOP words' cycle and the issue and drain cycles of every vector but the first, per MVM and REQ."""
    import models
    from cimtile.compiler import codegen
    from cimtile.compiler.report import program_cycles

    from cimtile import compiler

    m = models.qlinear_conv(seed=3, cin=3, cout=12, hw=6)
    x = np.random.default_rng(3).integers(0, 256, (2, 3, 6, 6)).astype(np.uint8)
    b = compiler.compile_model(m, tile)
    monkeypatch.setattr(codegen, "MULTI_VECTOR", False)
    b_loop = compiler.compile_model(m, tile)
    monkeypatch.setattr(codegen, "MULTI_VECTOR", True)
    y, st = compiler.run(b, x, stats=True, progress=False)
    y_loop, st_loop = compiler.run(b_loop, x, stats=True, progress=False)
    assert np.array_equal(y, y_loop)
    for bundle, stats in ((b, st), (b_loop, st_loop)):
        assert stats.cycles == compiler.report(bundle, as_json=True, batch=2)["totals"]["cycles"]
    assert st.cycles < st_loop.cycles
    cfg = PRESETS[tile]
    multi = 0
    progs, progs_loop = [[*x.model.programs, *x.model.batch_programs] for x in (b, b_loop)]
    assert len(progs) == len(progs_loop)
    for p, q in zip(progs, progs_loop):
        ds = [isa.decode(w) for w in p.words]
        counted = [d for d in ds if d.op in (Opcode.MVM, Opcode.REQ) and d.count > 1]
        multi += len(counted)
        assert not any(d.op is Opcode.LOOP for d in ds)
        assert len(q.words) - len(p.words) == len(counted)
        drain = {Opcode.MVM: isa.MVM_LATENCY, Opcode.REQ: isa.ACC_READ_WAIT + isa.REQ_LATENCY}
        saved = sum(1 + (d.count - 1) * (1 + drain[d.op]) for d in counted)
        assert program_cycles(cfg, q) - program_cycles(cfg, p) == saved
    assert multi > 0
