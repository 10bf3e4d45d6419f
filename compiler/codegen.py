"""Emit microcode: one program (ending in HALT) per group of a layer's column tiles, with multi-vector MVMs and
REQs over the output positions of a run, so a program's size grows with crossbar tiles, not with positions.

A layer with a column tile of several crossbar tiles also gets the programs of the stationary batch schedule
(:func:`batch_programs`; docs/compiler.md, "Batch schedule"), which the runtime uses for batches of more than one
image."""

from __future__ import annotations

import functools

from cimtile.hw import isa
from cimtile.hw.isa import Opcode
from cimtile.hw.params import TileConfig

from .errors import node_error
from .ir import InputBlock, LevelBlock, MaskBlock, Model, OutputSlice, Program, RqBlock, TileLayer

__all__ = ["EmitPrograms", "batch_programs", "init_program", "psum_ops", "stationary"]

#: Emit a run of one MVM (or REQ) over consecutive addresses as one multi-vector instruction (``MVM count=P``,
#: docs/isa.md), else as the LOOP of single ones it equals (the program shape of the ISA before ``count``; the
#: benchmarks compile both to measure what the multi-vector form saves, bench/multivector.py).
MULTI_VECTOR = True


@functools.lru_cache(maxsize=4096)
def _encode(op: Opcode, items: tuple) -> int:
    return isa.encode(op, **dict(items))


def E(op: Opcode, **fields: int) -> int:
    """:func:`cimtile.hw.isa.encode`, memoised: a program repeats a few distinct words many times."""
    return _encode(op, tuple(sorted(fields.items())))


def vectors(op: Opcode, count: int, strides: dict, **fields: int) -> list[int]:
    """``op`` (MVM or REQ) over ``count`` consecutive vectors: one word of ``count`` vectors
    (:data:`MULTI_VECTOR`), or ``LOOP count body=1`` with ``strides`` (1 in each space the instruction addresses)
    and the single-vector word. The same computation, errors and results; the multi-vector word saves every
    vector's issue and drain cycles but the first's (and the LOOP word)."""
    if count == 1:
        return [E(op, **fields)]
    if MULTI_VECTOR:
        return [E(op, count=count, **fields)]
    return [E(Opcode.LOOP, count=count, body=1, **strides), E(op, **fields)]


_MVM_STRIDES = {"stride_in": 1, "stride_acc": 1, "stride_out": 0}
_REQ_STRIDES = {"stride_in": 0, "stride_acc": 1, "stride_out": 1}


def init_program(cfg: TileConfig) -> Program:
    """Clear every mask bit (the compiler never prunes; masks persist across runs, so start from a known state)."""
    words = [E(Opcode.LDM, start=0, count=cfg.cols), E(Opcode.HALT)]
    return Program(-1, words, [MaskBlock(cfg.rows, cfg.cols)], [])


def _header(L: TileLayer) -> list[int]:
    wt = L.weights
    w = [E(Opcode.CFG, wbits=wt.wbits, abits=wt.abits, wsigned=int(wt.wsigned), asigned=int(wt.asigned),
           adc_shift=L.tiling.adc_shift)]
    if L.requant_on_tile:
        rq = L.need("requant", "codegen")
        w.append(E(Opcode.CFGRQ, zero_point=rq.zero_point, clamp_lo=rq.clamp[0], clamp_hi=rq.clamp[1],
                   relu=int(L.relu)))
    return w


def input_groups(L: TileLayer, cfg: TileConfig) -> list[tuple[int, int]]:
    """Row tiles whose input vectors one LDIN loads together (as many as the input buffer holds)."""
    n, per = len(L.tiling.row_tiles), max(1, cfg.in_depth // L.schedule.chunk)
    return [(g, min(g + per, n)) for g in range(0, n, per)]


def stationary(L: TileLayer, ct: int) -> bool:
    """Column tile ``ct`` is one crossbar tile (one row tile on its diagonal, no -128 correction tile): its weights
    stay in the array for a whole batch, so a separate weights program programs them once per batch."""
    ids = L.tiling.rows_of(ct)
    return len(ids) == 1 and (ct, ids[0]) not in set(L.tiling.fix_tiles)


def _col_tile(L: TileLayer, cfg: TileConfig, ct: int, c0: int, c1: int, groups, resident: bool, row_tiles,
              inline_ldw: bool = True):
    """Words, data-in references and read references of one column tile: per row tile (WIN when it changes)
    LDW, then the MVM of the chunk's positions (one multi-vector MVM, :func:`vectors`) accumulating over the row
    tiles; then the REQ of the positions + RDOUT, or RDACC.
    Without ``inline_ldw`` (a stationary column tile) the LDW is left to its weights program."""
    P = L.schedule.chunk
    R = cfg.rows
    group = L.tiling.group
    n_out = c1 - c0
    ncols = n_out * group
    words, feed, reads = [], [], []
    req = L.requant_on_tile
    if req:
        words.append(E(Opcode.LDRQ, start=0, count=n_out))
        feed.append(RqBlock(c0, c1))
    win = None
    fixes = set(L.tiling.fix_tiles)
    ids = L.tiling.rows_of(ct)  # grouped layers: only the row tiles on this column tile's block diagonal
    if resident:  # every row tile's inputs are in the buffer, row tile i at i * P
        batches = [(ids, 0)]
    else:  # as many of this column tile's row tiles as the input buffer holds, per LDIN
        per = max(1, cfg.in_depth // P)
        batches = [(ids[i:i + per], None) for i in range(0, len(ids), per)]
    for batch, base in batches:
        if not resident:
            words.append(E(Opcode.LDIN, start=0, count=P * len(batch)))
            feed.append(InputBlock(tuple(row_tiles[rt] for rt in batch), P, R))
        for j, rt in enumerate(batch):
            slot = rt if base is not None else j  # where this row tile's inputs are in the buffer
            r0, r1 = row_tiles[rt]
            if win != (r1 - r0, ncols):
                win = (r1 - r0, ncols)
                words.append(E(Opcode.WIN, row_start=0, row_count=r1 - r0, col_start=0, col_count=ncols))
            if inline_ldw:
                words.append(E(Opcode.LDW, start=0, count=ncols))
                feed.append(LevelBlock(r0, r1, c0 * group, c1 * group, R))
            words += vectors(Opcode.MVM, P, _MVM_STRIDES, in_addr=slot * P, acc_addr=0,
                             accumulate=int(rt != ids[0]))
            if (ct, rt) in fixes:
                # the -128 correction: a 2-bit signed MVM of the same inputs, accumulated
                words += [E(Opcode.CFG, wbits=2, abits=L.weights.abits, wsigned=1, asigned=int(L.weights.asigned),
                            adc_shift=L.tiling.adc_shift),
                          E(Opcode.WIN, row_start=0, row_count=r1 - r0, col_start=0, col_count=2 * n_out),
                          E(Opcode.LDW, start=0, count=2 * n_out)]
                feed.append(LevelBlock(r0, r1, 2 * c0, 2 * c1, R, fix=True))
                words += vectors(Opcode.MVM, P, _MVM_STRIDES, in_addr=slot * P, acc_addr=0, accumulate=1)
                words.append(_header(L)[0])
                win = None
    if req:
        if win is None:
            # a -128 correction left its own 2-column window: REQ takes its lanes from the window (columns /
            # weight group), so restore the layer's window first or only some outputs would be requantised
            r0, r1 = row_tiles[ids[-1]]
            words.append(E(Opcode.WIN, row_start=0, row_count=r1 - r0, col_start=0, col_count=ncols))
        words += vectors(Opcode.REQ, P, _REQ_STRIDES, acc_addr=0, out_addr=0)
        words.append(E(Opcode.RDOUT, start=0, count=P))
        reads.append(OutputSlice("out", c0, c1, L.out_spec.signed))
    else:
        words.append(E(Opcode.RDACC, start=0, count=P))
        reads.append(OutputSlice("acc", c0, c1))
    return words, feed, reads


class EmitPrograms:
    def __init__(self, cfg: TileConfig):
        self.cfg = cfg

    def apply(self, model: Model) -> tuple[Model, bool]:
        cfg = self.cfg
        model.programs = [init_program(cfg)]
        model.batch_programs = []
        for li, L in enumerate(model.layers):
            for stage in ("weights", "tiling", "schedule"):
                L.need(stage, "codegen")
            groups = input_groups(L, cfg)
            row_tiles = L.tiling.row_tiles
            chunk = L.schedule.chunk
            # all inputs of a run fit the input buffer: load them once per program, reuse for every column tile
            resident = len(groups) == 1
            head = _header(L)
            head_feed = []
            if resident:
                head.append(E(Opcode.LDIN, start=0, count=chunk * len(row_tiles)))
                head_feed.append(InputBlock(row_tiles, chunk, cfg.rows))
            cur = None
            L.programs = []
            for ct, (c0, c1) in enumerate(L.tiling.col_tiles):
                if stationary(L, ct):
                    # Batch schedule (docs/compiler.md): a column tile that is one crossbar tile gets a weights
                    # program (LDW, HALT), run once per batch, and its own compute program, run once per chunk
                    # of positions of the whole batch: programming once per crossbar tile + runs x compute.
                    (r0, r1), = [row_tiles[rt] for rt in L.tiling.rows_of(ct)]
                    g = L.tiling.group
                    wprog = Program(li, [E(Opcode.LDW, start=0, count=(c1 - c0) * g), E(Opcode.HALT)],
                                    [LevelBlock(r0, r1, c0 * g, c1 * g, cfg.rows)], [], role="weights")
                    model.programs.append(wprog)
                    words, feed, reads = _col_tile(L, cfg, ct, c0, c1, groups, resident, row_tiles, False)
                    if len(head) + len(words) + 1 > cfg.prog_depth:
                        raise node_error(L.name, L.op, f"layer cannot fit: one column tile needs "
                                         f"{len(head) + len(words) + 1} program words, prog_depth is "
                                         f"{cfg.prog_depth}")
                    if cur is not None:
                        cur.words.append(E(Opcode.HALT))
                    prog = Program(li, list(head) + words + [E(Opcode.HALT)], list(head_feed) + feed, reads,
                                   setup=len(model.programs) - 1)
                    L.programs.append(len(model.programs))
                    model.programs.append(prog)
                    cur = None
                    continue
                words, feed, reads = _col_tile(L, cfg, ct, c0, c1, groups, resident, row_tiles)
                if len(head) + len(words) + 1 > cfg.prog_depth:
                    raise node_error(L.name, L.op, f"layer cannot fit: one column tile needs "
                                     f"{len(head) + len(words) + 1} program words, prog_depth is {cfg.prog_depth}")
                if cur is None or len(cur.words) + len(words) + 1 > cfg.prog_depth:
                    if cur is not None:
                        cur.words.append(E(Opcode.HALT))
                    cur = Program(li, list(head), list(head_feed), [])
                    L.programs.append(len(model.programs))
                    model.programs.append(cur)
                cur.words += words
                cur.feed += feed
                cur.reads += reads
            if cur is not None:
                cur.words.append(E(Opcode.HALT))
            L.batch_programs = []
            for wprog, prog in batch_programs(L, cfg, li):
                model.batch_programs.append(wprog)
                prog.setup = len(model.batch_programs) - 1
                L.batch_programs.append(len(model.batch_programs))
                model.batch_programs.append(prog)
        return model, False


def _weights_program(L: TileLayer, cfg: TileConfig, li: int, ct: int, rt: int, fix: bool = False) -> Program:
    """``LDW ; HALT`` of crossbar tile (``ct``, ``rt``) (its -128 correction tile when ``fix``: 2-bit signed
    weights, 2 columns per output), run once per batch before the runs of the program that names it as ``setup``."""
    (c0, c1), (r0, r1) = L.tiling.col_tiles[ct], L.tiling.row_tiles[rt]
    g = 2 if fix else L.tiling.group
    return Program(li, [E(Opcode.LDW, start=0, count=(c1 - c0) * g), E(Opcode.HALT)],
                   [LevelBlock(r0, r1, c0 * g, c1 * g, cfg.rows, fix=fix)], [], role="weights")


def _psum_program(L: TileLayer, cfg: TileConfig, li: int, ct: int, rt: int, fix: bool) -> Program:
    """The run program of crossbar tile (``ct``, ``rt``) of a column tile of several crossbar tiles (its -128
    correction tile when ``fix``): the row tile's inputs, the position loop of MVMs into fresh accumulators, and
    RDACC: a partial sum of every output of the column tile, which the host adds up (:func:`psum_ops`)."""
    P = L.schedule.chunk
    (c0, c1), (r0, r1) = L.tiling.col_tiles[ct], L.tiling.row_tiles[rt]
    wt = L.weights
    cfgw = (E(Opcode.CFG, wbits=2, abits=wt.abits, wsigned=1, asigned=int(wt.asigned), adc_shift=L.tiling.adc_shift)
            if fix else _header(L)[0])
    ncols = (c1 - c0) * (2 if fix else L.tiling.group)
    words = [cfgw, E(Opcode.LDIN, start=0, count=P),
             E(Opcode.WIN, row_start=0, row_count=r1 - r0, col_start=0, col_count=ncols)]
    words += vectors(Opcode.MVM, P, _MVM_STRIDES, in_addr=0, acc_addr=0, accumulate=0)
    words += [E(Opcode.RDACC, start=0, count=P), E(Opcode.HALT)]
    return Program(li, words, [InputBlock(((r0, r1),), P, cfg.rows)], [OutputSlice("psum", c0, c1)])


def batch_programs(L: TileLayer, cfg: TileConfig, li: int) -> list[tuple[Program, Program]]:
    """The stationary batch schedule's (weights program, run program) of every crossbar tile of ``L``'s column
    tiles that span several crossbar tiles (none if every column tile is one crossbar tile: those are stationary
    in the single-run schedule already). A batch runs each weights program once and its run program once per
    run; the host adds the partial sums of a column tile (and requantises them with the tile's REQ arithmetic)."""
    fixes = set(L.tiling.fix_tiles)
    out = []
    for ct in range(len(L.tiling.col_tiles)):
        if stationary(L, ct):
            continue
        for rt in L.tiling.rows_of(ct):
            for fix in ((False, True) if (ct, rt) in fixes else (False,)):
                prog = _psum_program(L, cfg, li, ct, rt, fix)
                if len(prog.words) > cfg.prog_depth:  # pragma: no cover - at most 7 words
                    raise node_error(L.name, L.op, f"a crossbar tile's program needs {len(prog.words)} words, "
                                     f"prog_depth is {cfg.prog_depth}")
                out.append((_weights_program(L, cfg, li, ct, rt, fix), prog))
    return out


def psum_ops(L: TileLayer) -> int:
    """Host operations per output position on the partial sums of ``L``'s column tiles of several crossbar tiles in
    the stationary batch schedule: one add per partial sum of every output after the first, plus the
    requantisation of the sum when the layer requantises on the tile (the host does it with the tile's REQ
    arithmetic)."""
    tl = L.need("tiling", "psum_ops")
    fixes = set(tl.fix_tiles)
    ops = 0
    for ct, (c0, c1) in enumerate(tl.col_tiles):
        if stationary(L, ct):
            continue
        parts = sum(1 + ((ct, rt) in fixes) for rt in tl.rows_of(ct))
        ops += (c1 - c0) * (parts - 1 + int(L.requant_on_tile))
    return ops
