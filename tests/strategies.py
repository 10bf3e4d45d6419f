"""Hypothesis strategies for the golden-model tests: small TileConfigs, legal-ish programs, random data.

Programs are built as a tree (instructions and loops holding instructions) and flattened to words, so
loops nest and strides apply without the program growing; a few words per program are drawn out of
range on purpose (bad addresses, misaligned windows, illegal words) so that errors are exercised
inside and outside loops. Data is not drawn up front: :class:`RandomFeed` produces one block per load
instruction *as the reference model executes it*, from a seed hypothesis draws, and records the
blocks so that the same feed can be replayed to ``sim.tile.Tile``.
"""

from __future__ import annotations

import numpy as np
from cimtile.hw.isa import Opcode, encode
from cimtile.hw.params import ENCODINGS, TileConfig
from hypothesis import strategies as st

#: Bit widths with both extremes drawn often (hypothesis otherwise favours small values).
BITS_1_8 = st.one_of(st.sampled_from([1, 8]), st.integers(1, 8))


def _pick(draw, lo: int, hi: int, extremes: bool = True) -> int:
    """An integer in lo..hi, with the bounds drawn often."""
    if extremes:
        return draw(st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi)))
    return draw(st.integers(lo, hi))


@st.composite
def configs(draw, *, max_dim: int = 24, adc_bits: int | None = None, encoding: str | None = None) -> TileConfig:
    """Small random TileConfigs covering every bit width, both encodings and small buffer depths."""
    rows = _pick(draw, 2, max_dim)
    cols = _pick(draw, 2, max_dim)
    return TileConfig(
        name="rand",
        rows=rows,
        cols=cols,
        cell_bits=_pick(draw, 1, 4),
        dac_bits=_pick(draw, 1, 4),
        adc_bits=adc_bits if adc_bits is not None else _pick(draw, 2, 14),
        n_adcs=_pick(draw, 1, cols),
        adc_cycles=_pick(draw, 1, 3),
        rows_per_conv=_pick(draw, 1, rows),
        weight_encoding=encoding or draw(st.sampled_from(ENCODINGS)),
        acc_bits=_pick(draw, 16, 40),
        in_depth=_pick(draw, 1, 6),
        acc_depth=_pick(draw, 1, 6),
        out_depth=_pick(draw, 1, 6),
        delta_depth=_pick(draw, 1, 3),
        prog_depth=256,
        loop_depth=_pick(draw, 1, 3),
        rq_lanes=_pick(draw, 1, cols),
        bus_bits=draw(st.sampled_from([64, 128])),
    )


def group_of(cfg: TileConfig, wbits: int, wsigned: bool) -> int:
    """Physical columns per logical output (docs/isa.md, Weight slicing); used only to aim windows."""
    n = -(-(wbits - 1 if wsigned else wbits) // cfg.cell_bits)
    return n * (2 if wsigned else 1)


class _Ctx:
    """What the generator knows while drawing: the CFG last emitted (to aim WIN at whole groups)."""

    def __init__(self, cfg: TileConfig, p_bad: int):
        self.cfg = cfg
        self.p_bad = p_bad  # percent chance that a field is drawn out of range
        self.wbits, self.wsigned = 8, True
        # Largest address offset the enclosing loops add, per space (in, acc, out): addresses are
        # drawn below depth - offset so that strided loops stay in range unless drawn bad.
        self.off = [0, 0, 0]

    def room(self, space: int) -> int:
        c = self.cfg
        return (c.in_depth, c.acc_depth, c.out_depth)[space] - self.off[space]

    def bad(self, draw) -> bool:
        return self.p_bad > 0 and draw(st.integers(0, 99)) < self.p_bad


def _range_args(draw, ctx: _Ctx, size: int, max_count: int | None = None) -> dict:
    """start/count inside a space of ``size`` entries (or, rarely, past its end)."""
    size = max(size, 1)  # no room left after a stride drawn bad: the address is out of range anyway
    if ctx.bad(draw):
        return {"start": draw(st.integers(0, size + 2)), "count": draw(st.integers(1, size + 2))}
    start = draw(st.integers(0, size - 1))
    hi = size - start if max_count is None else min(size - start, max_count)
    return {"start": start, "count": draw(st.integers(1, hi))}


def _addr(draw, ctx: _Ctx, size: int) -> int:
    size = max(size, 1)
    return draw(st.integers(size, size + 3)) if ctx.bad(draw) else draw(st.integers(0, size - 1))


def _vectors(draw, ctx: _Ctx, *spaces: int) -> tuple[int, list[int]]:
    """A multi-vector MVM's or REQ's count (1 half the time) and a first address per space such that each range
    fits (ending at the space's end, too), or, drawn bad, runs just past the end."""
    top = max(1, min(ctx.room(s) for s in spaces))
    n = 1 if draw(st.booleans()) else _pick(draw, 1, top)
    return n, [_addr(draw, ctx, ctx.room(s) - n + 1) for s in spaces]


def _cfg_word(draw, ctx: _Ctx) -> int:
    wbits = draw(BITS_1_8)
    wsigned = draw(st.booleans()) and (wbits >= 2 or ctx.bad(draw))
    shift = draw(st.one_of(st.integers(0, 3), st.integers(0, 15)))
    if not ctx.bad(draw):  # narrow the weights until one logical output fits the array
        while group_of(ctx.cfg, wbits, wsigned) > ctx.cfg.cols:
            wbits -= 1
            wsigned = wsigned and wbits >= 2
    ctx.wbits, ctx.wsigned = wbits, wsigned
    return encode(Opcode.CFG, wbits=wbits, abits=draw(BITS_1_8), wsigned=int(wsigned),
                  asigned=int(draw(st.booleans())), adc_shift=shift)


def _win_word(draw, ctx: _Ctx) -> int:
    c = ctx.cfg
    if ctx.bad(draw):  # outside the array, or not a whole number of groups
        r0, c0 = draw(st.integers(0, c.rows)), draw(st.integers(0, c.cols))
        return encode(Opcode.WIN, row_start=r0, row_count=draw(st.integers(1, c.rows)),
                      col_start=c0, col_count=draw(st.integers(1, c.cols)))
    nr = _pick(draw, 1, c.rows)
    r0 = draw(st.integers(0, c.rows - nr))
    g = group_of(c, ctx.wbits, ctx.wsigned)
    if 0 < g <= c.cols:  # (g is 0 after a CFG drawn bad: signed 1-bit weights)
        nc = g * draw(st.integers(1, c.cols // g))
    else:
        nc = draw(st.integers(1, c.cols))
    c0 = draw(st.integers(0, c.cols - nc))
    return encode(Opcode.WIN, row_start=r0, row_count=nr, col_start=c0, col_count=nc)


def _cfgrq_word(draw, ctx: _Ctx) -> int:
    if ctx.bad(draw):
        lo, hi = draw(st.integers(-256, 255)), draw(st.integers(-256, 255))
    else:
        lo = _pick(draw, -128, 255)
        hi = _pick(draw, lo, 255)
    zp = draw(st.one_of(st.integers(-8, 8), st.integers(-256 if ctx.p_bad else -128, 255)))
    return encode(Opcode.CFGRQ, zero_point=zp, clamp_lo=lo, clamp_hi=hi, relu=int(draw(st.booleans())))


def _cell_word(draw, ctx: _Ctx, op: Opcode) -> int:
    c = ctx.cfg
    top = c.max_level if op is Opcode.WSET else 1
    value = draw(st.integers(top + 1, 15)) if (top < 15 and ctx.bad(draw)) else _pick(draw, 0, top)
    return encode(op, row=_addr(draw, ctx, c.rows), col=_addr(draw, ctx, c.cols), value=value)


def _illegal_word(draw) -> int:
    """An undefined opcode, or a defined one with a reserved bit set (decoded by the model under test)."""
    if draw(st.booleans()):
        return draw(st.integers(22, 31)) | (draw(st.integers(0, (1 << 59) - 1)) << 5)
    # NOP, HALT and VAUR leave most bits reserved; bit 63 is outside every layout.
    op = draw(st.sampled_from([Opcode.NOP, Opcode.HALT, Opcode.VAUR, Opcode.SYNC]))
    return op.value | (1 << draw(st.integers(40, 63)))


OPS = [op for op in Opcode if op not in (Opcode.LOOP, Opcode.HALT)]


def instruction(draw, ctx: _Ctx, op: Opcode) -> int:
    """One word of opcode ``op`` with fields aimed at the configuration in ``ctx``."""
    c = ctx.cfg
    if op in (Opcode.NOP, Opcode.HALT):
        return encode(op)
    if op is Opcode.SYNC:
        return encode(op, tag=_pick(draw, 0, 65535))
    if op is Opcode.CFG:
        return _cfg_word(draw, ctx)
    if op is Opcode.WIN:
        return _win_word(draw, ctx)
    if op is Opcode.CFGRQ:
        return _cfgrq_word(draw, ctx)
    if op in (Opcode.LDW, Opcode.LDM, Opcode.RDW, Opcode.RDM, Opcode.LDRQ):
        return encode(op, **_range_args(draw, ctx, c.cols))
    if op is Opcode.LDIN:
        return encode(op, **_range_args(draw, ctx, ctx.room(0)))
    if op is Opcode.LDD:
        return encode(op, **_range_args(draw, ctx, c.delta_depth))
    if op is Opcode.RDOUT:
        return encode(op, **_range_args(draw, ctx, ctx.room(2)))
    if op is Opcode.RDACC:
        return encode(op, **_range_args(draw, ctx, ctx.room(1)))
    if op is Opcode.MVM:
        n, (ia, aa) = _vectors(draw, ctx, 0, 1)
        return encode(op, in_addr=ia, acc_addr=aa, accumulate=int(draw(st.booleans())), count=n)
    if op is Opcode.REQ:
        n, (aa, oa) = _vectors(draw, ctx, 1, 2)
        return encode(op, acc_addr=aa, out_addr=oa, count=n)
    if op in (Opcode.VAUR, Opcode.VAUC):
        return encode(op, delta_addr=_addr(draw, ctx, c.delta_depth), pair=_pick(draw, 0, 3),
                      only=int(draw(st.booleans())), slice=_pick(draw, 0, 3))
    if op in (Opcode.WSET, Opcode.MSET):
        return _cell_word(draw, ctx, op)
    raise AssertionError(op)


#: Opcode weights: the data path (MVM, REQ, VAU, loads) drawn more than the bookkeeping.
_WEIGHTED = (
    [Opcode.MVM] * 5 + [Opcode.REQ] * 3 + [Opcode.LDIN] * 2 + [Opcode.LDW] * 2 + [Opcode.CFG] * 2
    + [Opcode.WIN] * 2 + [Opcode.RDACC] * 2 + [Opcode.RDOUT] * 2 + [Opcode.VAUR] * 2 + [Opcode.VAUC] * 2
    + [Opcode.LDM, Opcode.LDD, Opcode.LDRQ, Opcode.CFGRQ, Opcode.WSET, Opcode.MSET, Opcode.RDW, Opcode.RDM,
       Opcode.SYNC, Opcode.NOP]
)


def _items(draw, ctx: _Ctx, depth: int, budget: int) -> list:
    """A list of items: words (int) or loops (dict with count, strides and a body of items)."""
    items = []
    for _ in range(draw(st.integers(1, budget))):
        kind = draw(st.integers(0, 99))
        # A loop one level deeper than loop_depth is drawn only when errors are wanted (LOOP_DEPTH).
        if kind < 15 and depth <= ctx.cfg.loop_depth + (1 if ctx.p_bad else 0):
            count = draw(st.integers(1, 3))
            strides = []
            for space in range(3):
                stride = draw(st.integers(0, 2))
                if not ctx.bad(draw):  # keep the last iteration's addresses in range
                    while stride and ctx.room(space) - (count - 1) * stride < 1:
                        stride -= 1
                strides.append(stride)
            saved = list(ctx.off)
            ctx.off = [o + (count - 1) * s for o, s in zip(ctx.off, strides)]
            body = _items(draw, ctx, depth + 1, max(1, budget // 2))
            ctx.off = saved
            items.append({"count": count, "body": body, "stride_in": strides[0], "stride_acc": strides[1],
                          "stride_out": strides[2]})
        elif kind < 17 and ctx.p_bad:
            items.append(_illegal_word(draw))
        else:
            op = draw(st.sampled_from(_WEIGHTED))
            items.append(instruction(draw, ctx, op))
            if op is Opcode.CFG and not ctx.bad(draw):  # re-aim the window at the new weight groups
                items.append(_win_word(draw, ctx))
    return items


def flatten(items: list) -> list[int]:
    """Words of an item tree: each loop becomes a LOOP word followed by its flattened body."""
    words = []
    for it in items:
        if isinstance(it, int):
            words.append(it)
            continue
        body = flatten(it["body"])
        words.append(encode(Opcode.LOOP, count=it["count"], body=len(body), stride_in=it["stride_in"],
                            stride_acc=it["stride_acc"], stride_out=it["stride_out"]))
        words += body
    return words


@st.composite
def programs(draw, cfg: TileConfig, *, errors: bool = True, budget: int = 14) -> list[int]:
    """A random program for ``cfg``: every opcode can appear, loops nest, it usually ends with HALT.

    With ``errors`` a few fields are drawn out of range and a few words are illegal; occasionally the
    HALT is left out (PC_RANGE) or a loop body is stretched past its enclosure (LOOP_NEST).
    """
    ctx = _Ctx(cfg, draw(st.sampled_from([0, 0, 2, 5])) if errors else 0)
    # Usually a prologue sets a layer and a matching window (the reset CFG, signed 8-bit weights,
    # rarely fits a small array in whole groups).
    prologue = [_cfg_word(draw, ctx), _win_word(draw, ctx)] if draw(st.integers(0, 9)) else []
    words = prologue + flatten(_items(draw, ctx, 1, budget))
    if errors and draw(st.integers(0, 19)) == 0:
        # Stretch one loop's body by one word: it then ends past its enclosing body or the program.
        loops = [i for i, w in enumerate(words) if w & 31 == Opcode.LOOP.value]
        if loops:
            i = draw(st.sampled_from(loops))
            words[i] += 1 << 17  # body_m1 is at bit 17 (hw.isa layout "loop")
    if not (errors and draw(st.integers(0, 19)) == 0):
        words.append(encode(Opcode.HALT))
    return words


class RandomFeed:
    """Draws the data-in block of each load instruction as it executes, and records it.

    Called as ``feed(pc, opcode, args)`` by :class:`reference.RefTile`; ``blocks`` then holds the
    blocks in execution order, ready to be replayed to ``sim.tile.Tile.run``.
    """

    def __init__(self, cfg: TileConfig, batch: int, seed: int):
        self.cfg, self.batch = cfg, batch
        self.rng = np.random.default_rng(seed)
        self.blocks: list[np.ndarray] = []

    def _values(self, shape, lo: int, hi: int, zero_frac: float = 0.0) -> np.ndarray:
        """Values in lo..hi: uniform, all at the extremes, or sparse (ReLU-like) -- chosen per block."""
        rng = self.rng
        style = rng.integers(0, 4)
        if style == 0:
            v = rng.integers(lo, hi + 1, size=shape)
        elif style == 1:
            v = np.where(rng.random(shape) < 0.5, lo, hi)
        elif style == 2:
            v = np.full(shape, hi)
        else:
            v = rng.integers(lo, hi + 1, size=shape)
            v[rng.random(shape) < 0.6] = max(lo, 0)
        if zero_frac:
            v[rng.random(shape) < zero_frac] = 0
        return v.astype(np.int64)

    def __call__(self, pc: int, op: Opcode, args: dict) -> np.ndarray:
        c, n, rng = self.cfg, args["count"], self.rng
        if op is Opcode.LDW:
            b = self._values((c.rows, n), 0, c.max_level)
        elif op is Opcode.LDM:
            b = (rng.random((c.rows, n)) < rng.choice([0.0, 0.2, 0.5, 1.0])).astype(np.int64)
        elif op is Opcode.LDIN:
            lo = -128 if rng.integers(0, 2) else 0
            shape = (self.batch, n, c.rows) if (self.batch > 1 and rng.integers(0, 2)) else (n, c.rows)
            b = self._values(shape, lo, 255)
        elif op is Opcode.LDD:
            b = self._values((n, c.delta_len), -128, 127) if rng.integers(0, 3) == 0 else \
                rng.integers(-3, 4, size=(n, c.delta_len))
        elif op is Opcode.LDRQ:
            if rng.integers(0, 4) == 0:  # anywhere in the record's ranges
                b = np.stack([rng.integers(-(1 << 31), 1 << 31, n), rng.integers(0, 1 << 16, n),
                              rng.integers(0, 64, n)], axis=1)
            else:
                b = np.stack([rng.integers(-300, 300, n), rng.integers(0, 300, n), rng.integers(0, 14, n)], axis=1)
        else:
            raise AssertionError(op)
        b = np.asarray(b, dtype=np.int64)
        self.blocks.append(b)
        return b
