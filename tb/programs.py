"""Programs for verification: a constrained-random generator, directed building blocks, and the
control-flow trace the scoreboard uses. Pure Python (importable by anyone, no simulator needed).

The random generator produces only legal programs (every address, window, loop and value in
range), except where it is asked to inject one illegal word or construct of a given
:class:`cimtile.hw.isa.Cause`. Every program carries its seed; the same seed gives the same words and data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from cimtile.hw import isa
from cimtile.hw.isa import Cause, Decoded, Opcode
from cimtile.hw.params import TileConfig
from cimtile.hw.program import Halted, Walker, WalkStop, decode_program

__all__ = [
    "Program",
    "conv_layer_program",
    "DIRECTED",
    "directed_programs",
    "dump_program",
    "executed",
    "feed_for",
    "random_program",
    "top_level",
    "reset_program",
    "ILLEGAL_CAUSES",
]

E = isa.encode
LOADS, READS = isa.LOADS, isa.READS
#: Causes the generator can inject on purpose.
ILLEGAL_CAUSES = tuple(c for c in Cause if c is not Cause.NONE)


@dataclass
class Program:
    """Instruction words, the data-in blocks they consume (``sim.tile.Feed`` order) and provenance."""

    words: list[int]
    feed: list[np.ndarray] = field(default_factory=list)
    seed: int | None = None
    note: str = ""
    inject: Cause | None = None  # the cause deliberately injected, if any

    def text(self) -> str:
        return isa.disassemble(self.words, addresses=True)

    def __len__(self) -> int:
        return len(self.words)


# -- control flow --------------------------------------------------------------------------------


class _Trace(Walker):
    """Records ``(pc, decoded, offsets)`` of every instruction the walk steps through."""

    def __init__(self, program, loop_depth: int, limit: int):
        super().__init__(program, loop_depth)
        self.trace: list[tuple[int, Decoded, tuple]] = []
        self.left = limit

    def step(self, pc, d, offs) -> None:
        self.left -= 1
        if self.left < 0:
            raise Halted
        self.trace.append((pc, d, offs))


def executed(words: Sequence[int], cfg: TileConfig, limit: int = 50_000_000) -> Iterator[tuple[int, Decoded, tuple]]:
    """Instructions in execution order as ``(pc, decoded, (in, acc, out) offsets)``.

    Control flow in this ISA does not depend on data (loops have fixed counts), so this is the golden
    model's own walk (:class:`cimtile.hw.program.Walker`); it stops at HALT (included), at an illegal
    word or loop error (excluded), at the end of the program and after ``limit`` instructions.
    Data-dependent errors (ADDR, WINDOW, CONFIG, VALUE) are not predicted: callers cut the trace at
    the golden model's error pc.
    """
    t = _Trace(decode_program([int(w) for w in words]), cfg.loop_depth, limit)
    try:
        t.walk()
    except (Halted, WalkStop):
        pass
    return iter(t.trace)


def top_level(words: Sequence[int]) -> list[int]:
    """Program counters of the top-level instructions (a LOOP and its body count as one)."""
    out, pc = [], 0
    while pc < len(words):
        out.append(pc)
        d = isa.decode(int(words[pc]))
        pc += 1 + (d.args["body"] if d.op is Opcode.LOOP and d.cause is Cause.NONE else 0)
    return out


# -- data -----------------------------------------------------------------------------------------


def feed_for(words: Sequence[int], cfg: TileConfig, rng: np.random.Generator, style: str = "mixed",
             hints: dict[int, str] | None = None) -> list:
    """Random data-in blocks for every load the program executes, in execution order.

    ``style`` biases the values: ``"mixed"`` picks per block between dense, sparse and extreme
    values (so that ADC clipping and level saturation both happen), ``"small"`` keeps sums small.
    ``hints`` overrides the style of the loads at given program counters (``"layer"``: weights and
    inputs of a plausible layer, whose conversions mostly stay inside the ADC's range).
    """
    blocks = []
    hints = hints or {}
    for pc, d, _ in executed(words, cfg):
        if d.op not in LOADS:
            continue
        blocks.append(random_block(cfg, d, rng, hints.get(pc, style)))
    return blocks


def _layer_density(cfg: TileConfig) -> float:
    """Fraction of non-zero cells that keeps a conversion's expected sum near a quarter of the ADC's
    range: (rows per conversion) x (mean level) x (mean input slice) x density ~ 2**adc_bits / 4."""
    mean = cfg.rows_per_conv * (cfg.max_level / 2) * (((1 << cfg.dac_bits) - 1) / 2)
    return float(min(1.0, max(0.05, (1 << cfg.adc_bits) / 4 / max(mean, 1e-9))))


def random_block(cfg: TileConfig, d: Decoded, rng: np.random.Generator, style: str = "mixed") -> np.ndarray:
    n = d.args["count"]
    R = cfg.rows
    if style == "layer":
        if d.op is Opcode.LDW:
            p = _layer_density(cfg)
            return np.where(rng.random((R, n)) < p, rng.integers(0, cfg.max_level + 1, (R, n)), 0)
        if d.op is Opcode.LDM:  # a partly pruned array
            return (rng.random((R, n)) < 0.25).astype(np.int64)
        if d.op is Opcode.LDIN:
            return rng.integers(0, 256, (n, R))
        style = "small"
    kind = rng.integers(3) if style == "mixed" else 0
    if d.op is Opcode.LDW:
        if kind == 1:  # sparse: sums stay small, no clipping
            return np.where(rng.random((R, n)) < 0.15, rng.integers(0, cfg.max_level + 1, (R, n)), 0)
        if kind == 2:  # saturated levels: clipping and saturation at the top
            return np.full((R, n), cfg.max_level) - rng.integers(0, 2, (R, n))
        return rng.integers(0, cfg.max_level + 1, (R, n))
    if d.op is Opcode.LDM:
        p = (0.0, 0.2, 0.6)[kind]
        return (rng.random((R, n)) < p).astype(np.int64)
    if d.op is Opcode.LDIN:
        if kind == 1:
            return rng.integers(0, 4, (n, R))
        if kind == 2:
            return rng.choice(np.array([0, 1, 127, 128, 255]), (n, R))
        return rng.integers(0, 256, (n, R))
    if d.op is Opcode.LDD:
        L = cfg.delta_len
        if kind == 2:
            return rng.choice(np.array([-128, -cfg.max_level - 1, cfg.max_level + 1, 127]), (n, L))
        return rng.integers(-cfg.max_level - 1, cfg.max_level + 2, (n, L))
    if d.op is Opcode.LDRQ:
        bias = rng.integers(-(1 << 14), 1 << 14, n)
        if kind == 2:
            bias = rng.choice(np.array([-(1 << 31), (1 << 31) - 1, 0]), n)
        mult = rng.integers(0, 1 << (16 if kind == 2 else 9), n)
        shift = rng.integers(0, 64 if kind == 2 else 16, n)
        return np.stack([bias, mult, shift], axis=1)
    raise ValueError(f"{d.op.name} takes no data-in block")


# -- fixed programs --------------------------------------------------------------------------------


def dump_program(cfg: TileConfig) -> list[int]:
    """Read back every readable memory: all cell levels and masks, accumulators and outputs."""
    return [
        E(Opcode.RDW, start=0, count=cfg.cols),
        E(Opcode.RDM, start=0, count=cfg.cols),
        E(Opcode.RDACC, start=0, count=cfg.acc_depth),
        E(Opcode.RDOUT, start=0, count=cfg.out_depth),
        E(Opcode.HALT),
    ]


def reset_program(cfg: TileConfig) -> Program:
    """A program that returns the tile to its power-on state (docs/isa.md, Execution model).

    Zeros are loaded into levels, masks, inputs and deltas, every lane gets bias 0 / multiplier 1 /
    shift 0; an all-unsigned layer whose weight group is one column then writes zero to every
    lane of every accumulator (MVM of a zero input) and every output byte (REQ of zero); finally
    CFG, WIN, CFGRQ and ``sync_tag`` get their reset values. Memories in RTL are not cleared by the
    reset signal, so this is how a test starts from a known state in a shared simulation.
    """
    R, C = cfg.rows, cfg.cols
    lane = isa.RESET_LANE
    w = [
        E(Opcode.CFG, wbits=cfg.cell_bits, abits=1, wsigned=0, asigned=0, adc_shift=0),
        E(Opcode.WIN, row_start=0, row_count=R, col_start=0, col_count=C),  # also the reset window
        E(Opcode.CFGRQ, **isa.RESET_CFGRQ),
        E(Opcode.LDW, start=0, count=C),
        E(Opcode.LDM, start=0, count=C),
        E(Opcode.LDIN, start=0, count=cfg.in_depth),
        E(Opcode.LDD, start=0, count=cfg.delta_depth),
        E(Opcode.LDRQ, start=0, count=C),
        E(Opcode.LOOP, count=cfg.acc_depth, body=1, stride_in=0, stride_acc=1, stride_out=0),
        E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0),
        E(Opcode.LOOP, count=cfg.out_depth, body=1, stride_in=0, stride_acc=0, stride_out=1),
        E(Opcode.REQ, acc_addr=0, out_addr=0),
        E(Opcode.CFG, **isa.RESET_CFG),
        E(Opcode.SYNC, tag=isa.RESET_SYNC_TAG),
        E(Opcode.HALT),
    ]
    feed = [
        np.zeros((R, C), dtype=np.int64),
        np.zeros((R, C), dtype=np.int64),
        np.zeros((cfg.in_depth, R), dtype=np.int64),
        np.zeros((cfg.delta_depth, cfg.delta_len), dtype=np.int64),
        np.stack([np.full(C, lane[k], np.int64) for k in ("bias", "mult", "shift")], axis=1),
    ]
    return Program(w, feed, None, "reset to the power-on state")


# -- the random generator ----------------------------------------------------------------------------


class _Gen:
    """State of one random program under construction: the layer and window in force, so that
    MVM and REQ are only emitted on a legal (aligned) window."""

    def __init__(self, cfg: TileConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.words: list[int] = []
        r = isa.RESET_CFG
        self.layer = (r["wbits"], r["abits"], r["wsigned"], r["asigned"])  # reset CFG
        self.aligned = self._aligned(self.layer, cfg.cols)
        self.window = (0, cfg.rows, 0, cfg.cols)  # row_start, row_count, col_start, col_count
        self.hints: dict[int, str] = {}  # pc -> data style of that load (feed_for)

    def r(self, lo: int, hi: int) -> int:
        """Uniform integer in lo..hi inclusive."""
        return int(self.rng.integers(lo, hi + 1))

    def _aligned(self, layer, nc) -> bool:
        wbits, abits, ws, as_ = layer
        g = isa.geometry(self.cfg, wbits, abits, bool(ws), bool(as_), self.cfg.rows, nc)
        return g.aligned

    def group(self, layer) -> int:
        wbits, abits, ws, as_ = layer
        return isa.geometry(self.cfg, wbits, abits, bool(ws), bool(as_), 1, 1).group

    # Each emitter appends words and returns nothing; offsets bound addresses inside loops.

    def cfg_win(self, shift: int | None = None) -> None:
        """CFG (every field drawn over its whole legal range) and a window of whole weight groups."""
        c, rng = self.cfg, self.rng
        while True:
            wsigned = self.r(0, 1)
            wbits = self.r(2 if wsigned else 1, 8)
            abits = self.r(1, 8)
            asigned = self.r(0, 1) if abits >= 2 else 0
            layer = (wbits, abits, wsigned, asigned)
            g = self.group(layer)
            if g <= c.cols:
                break
        if shift is None:
            shift = int(rng.choice([0, 0, 0, 1, 2, 3, self.r(0, 15)]))
        self.words.append(E(Opcode.CFG, wbits=wbits, abits=abits, wsigned=wsigned, asigned=asigned,
                            adc_shift=shift))
        self.layer = layer
        self.win(g)

    def win(self, group: int | None = None) -> None:
        c = self.cfg
        g = group or self.group(self.layer)
        n_groups = self.r(1, c.cols // g)
        nc = n_groups * g
        c0 = self.r(0, c.cols - nc)
        nr = self.r(1, c.rows) if self.rng.random() < 0.5 else c.rows
        r0 = self.r(0, c.rows - nr)
        self.words.append(E(Opcode.WIN, row_start=r0, row_count=nr, col_start=c0, col_count=nc))
        self.aligned = True
        self.window = (r0, nr, c0, nc)

    def load(self, op: Opcode, start: int, count: int, style: str | None = None) -> None:
        if style:
            self.hints[len(self.words)] = style
        self.words.append(E(op, start=start, count=count))

    def layer_prologue(self) -> None:
        """What a compiled layer does: CFG, WIN, LDW of the window's columns (sometimes LDM: a partly
        pruned array), LDIN, one to three MVMs (accumulating) over one to all of the loaded vectors (a
        multi-vector MVM, ``count`` > 1, two times in three), RDACC of those accumulators, and often a REQ
        of as many vectors and RDOUT. Ranges often end at the last entry of their buffer.

        The data of these loads is drawn in the ``"layer"`` style, and ``adc_shift`` is mostly small,
        so these MVMs have loaded weights, an aligned window and conversions mostly inside the ADC's
        range: the results depend on every bit of the datapath.
        """
        c = self.cfg
        # Three times in ten, a layer and window whose conversions per vector are not a whole number of rounds of
        # the ADCs (when one can be drawn): a multi-vector MVM's vectors then meet after a partial round.
        partial = c.n_adcs > 1 and self.rng.random() < 0.3
        for _ in range(64):
            at = len(self.words)
            self.cfg_win(shift=int(self.rng.choice([0, 0, 0, 0, 1, 2, self.r(0, 15)])))
            if not partial or self.partial_round():
                break
            del self.words[at:]
        _, _, c0, nc = self.window
        self.load(Opcode.LDW, c0, nc, "layer")
        if self.rng.random() < 0.4:
            self.load(Opcode.LDM, c0, nc, "layer")
        n_in = self.r(1, min(4, c.in_depth))
        s_in = self.end_or_any(c.in_depth - n_in)
        self.load(Opcode.LDIN, s_in, n_in, "layer")
        # vectors per MVM: one a third of the time, else up to every loaded vector (and the buffers' room)
        n = 1 if self.rng.random() < 1 / 3 else self.r(min(2, n_in), min(n_in, c.acc_depth, c.out_depth))
        acc = self.end_or_any(c.acc_depth - n)
        for k in range(self.r(1, 3)):
            self.words.append(E(Opcode.MVM, in_addr=self.r(s_in, s_in + n_in - n), acc_addr=acc,
                                accumulate=int(k > 0 and self.rng.random() < 0.8), count=n))
        self.words.append(E(Opcode.RDACC, start=acc, count=n))
        if self.rng.random() < 0.6:
            if self.rng.random() < 0.5:
                self.cfgrq()
            out = self.end_or_any(c.out_depth - n)
            self.words.append(E(Opcode.REQ, acc_addr=acc, out_addr=out, count=n))
            self.words.append(E(Opcode.RDOUT, start=out, count=n))

    def partial_round(self) -> bool:
        """The current layer and window's conversions per vector are not a whole number of rounds of the ADCs."""
        wbits, abits, ws, as_ = self.layer
        _, nr, _, nc = self.window
        g = isa.geometry(self.cfg, wbits, abits, bool(ws), bool(as_), nr, nc)
        return (g.nis * g.nrg * g.nconv) % self.cfg.n_adcs != 0

    def end_or_any(self, top: int) -> int:
        """A first address in 0..``top``: ``top`` (the range ends at its buffer's last entry) one time in four."""
        return top if self.rng.random() < 0.25 else self.r(0, top)

    def vectors(self, *rooms: int) -> int:
        """The count of a multi-vector MVM or REQ whose ranges have ``rooms`` entries each: 1 half the time, else
        2 up to 8 (at most the room)."""
        top = max(1, min(8, *rooms))
        return 1 if top == 1 or self.rng.random() < 0.5 else self.r(2, top)

    def cfgrq(self) -> None:
        lo = self.r(-128, 100)
        hi = self.r(lo, 255)
        zp = self.r(-128, 255) if self.rng.random() < 0.3 else self.r(-10, 10)
        self.words.append(E(Opcode.CFGRQ, zero_point=zp, clamp_lo=lo, clamp_hi=hi, relu=self.r(0, 1)))

    def range_op(self, op: Opcode, space_depth: int, max_off: int = 0, max_count: int = 4) -> None:
        top = space_depth - max_off
        n = self.r(1, max(1, min(max_count, top)))
        s = self.r(0, top - n)
        self.words.append(E(op, start=s, count=n))

    def addr(self, depth: int, max_off: int) -> int:
        return self.r(0, depth - 1 - max_off)

    def simple(self, offs=(0, 0, 0), in_loop: bool = False) -> None:
        """One random instruction (not LOOP, not HALT)."""
        c = self.cfg
        choices = ["mvm", "mvm", "req", "rdacc", "rdout", "nop", "sync", "vaur", "vauc"]
        if not in_loop:
            choices += ["ldw", "ldm", "ldin", "ldd", "ldrq", "wset", "mset", "rdw", "rdm", "cfg", "win", "cfgrq",
                        "mvm", "req", "ldin"]
        else:
            choices += ["ldin"]
        k = choices[self.r(0, len(choices) - 1)]
        if k == "mvm":
            n = self.vectors(c.in_depth - offs[0], c.acc_depth - offs[1])
            self.words.append(E(Opcode.MVM, in_addr=self.end_or_any(c.in_depth - n - offs[0]),
                                acc_addr=self.end_or_any(c.acc_depth - n - offs[1]), accumulate=self.r(0, 1), count=n))
        elif k == "req":
            n = self.vectors(c.acc_depth - offs[1], c.out_depth - offs[2])
            self.words.append(E(Opcode.REQ, acc_addr=self.end_or_any(c.acc_depth - n - offs[1]),
                                out_addr=self.end_or_any(c.out_depth - n - offs[2]), count=n))
        elif k == "rdacc":
            self.range_op(Opcode.RDACC, c.acc_depth, offs[1], 2)
        elif k == "rdout":
            self.range_op(Opcode.RDOUT, c.out_depth, offs[2], 2)
        elif k == "ldin":
            self.range_op(Opcode.LDIN, c.in_depth, offs[0], 1 if in_loop else 4)
        elif k == "nop":
            self.words.append(E(Opcode.NOP))
        elif k == "sync":
            self.words.append(E(Opcode.SYNC, tag=self.r(0, 65535)))
        elif k in ("vaur", "vauc"):
            self.words.append(E(Opcode.VAUR if k == "vaur" else Opcode.VAUC, delta_addr=self.r(0, c.delta_depth - 1),
                                pair=self.r(0, 3), only=self.r(0, 1), slice=self.r(0, 3)))
        elif k == "ldw":
            self.range_op(Opcode.LDW, c.cols, 0, max(2, c.cols // 2))
        elif k == "ldm":
            self.range_op(Opcode.LDM, c.cols, 0, max(2, c.cols // 4))
        elif k == "ldd":
            self.range_op(Opcode.LDD, c.delta_depth, 0, c.delta_depth)
        elif k == "ldrq":
            self.range_op(Opcode.LDRQ, c.cols, 0, c.cols)
        elif k in ("wset", "mset"):
            top = c.max_level if k == "wset" else 1
            self.words.append(E(Opcode.WSET if k == "wset" else Opcode.MSET, row=self.r(0, c.rows - 1),
                                col=self.r(0, c.cols - 1), value=self.r(0, top)))
        elif k == "rdw":
            self.range_op(Opcode.RDW, c.cols, 0, 4)
        elif k == "rdm":
            self.range_op(Opcode.RDM, c.cols, 0, 4)
        elif k == "cfg":
            self.cfg_win()
        elif k == "win":
            self.win()
        elif k == "cfgrq":
            self.cfgrq()

    def loop(self, offs=(0, 0, 0), depth: int = 1) -> None:
        """A hardware loop whose body keeps every offset address in range."""
        c = self.cfg
        count = self.r(1, 4)
        # Strides small enough that the last iteration stays inside each buffer.
        st = []
        for depth_sp, o in zip((c.in_depth, c.acc_depth, c.out_depth), offs):
            room = depth_sp - 1 - o
            st.append(self.r(0, min(255, room // max(1, count - 1) // 2)) if count > 1 else self.r(0, 3))
        inner = tuple(o + (count - 1) * s for o, s in zip(offs, st))
        at = len(self.words)
        self.words.append(0)  # placeholder
        n_body = self.r(1, 4)
        for _ in range(n_body):
            if depth < c.loop_depth and self.rng.random() < 0.2:
                self.loop(inner, depth + 1)
            else:
                self.simple(inner, in_loop=True)
        body = len(self.words) - at - 1
        self.words[at] = E(Opcode.LOOP, count=count, body=body, stride_in=st[0], stride_acc=st[1], stride_out=st[2])


#: Share of the top-level items of a random program that are realistic layer prologues.
LAYER_SHARE = 0.2


def random_program(cfg: TileConfig, seed: int, *, length: int = 40, inject: Cause | None = None,
                   style: str = "mixed", layer_share: float = LAYER_SHARE) -> Program:
    """A constrained-random program of about ``length`` top-level instructions, with its data.

    The program starts by setting the requantisation output, deltas and lanes, then (for most
    seeds: four in five) a realistic layer prologue (CFG, WIN, LDW, LDIN, MVM, RDACC: see
    :meth:`_Gen.layer_prologue`), or else a random layer, window and weights. It then mixes every
    opcode (loops included) with further layer prologues (``layer_share`` of the top-level items).
    Over many seeds every CFG field takes every legal value. With ``inject``, one illegal word or
    construct of that cause is placed at a random point (for PC_RANGE: the final HALT is left out);
    execution must stop there with that cause.
    """
    rng = np.random.default_rng(seed)
    g = _Gen(cfg, rng)
    c = cfg
    g.cfgrq()
    g.range_op(Opcode.LDD, c.delta_depth, 0, c.delta_depth)
    g.range_op(Opcode.LDRQ, c.cols, 0, c.cols)
    if rng.random() < 0.8:
        g.layer_prologue()
    else:
        g.cfg_win()
        g.words.append(E(Opcode.LDW, start=0, count=c.cols))
        if rng.random() < 0.7:
            g.range_op(Opcode.LDM, c.cols, 0, c.cols)
    g.range_op(Opcode.LDIN, c.in_depth, 0, min(8, c.in_depth))
    g.words.append(E(Opcode.LDIN, start=0, count=1))
    tops = [len(g.words)]  # top-level instruction boundaries (where an injected word may go)
    while len(g.words) < length:
        tops.append(len(g.words))
        u = rng.random()
        if u < layer_share:
            g.layer_prologue()
        elif u < layer_share + 0.15:
            g.loop()
        else:
            g.simple()
        if rng.random() < 0.1:  # read back often, so that a divergence shows near its cause
            g.range_op(Opcode.RDACC, c.acc_depth, 0, 2)
    tops.append(len(g.words))
    at = int(rng.choice(tops)) if inject is not None else None
    if inject is not None and inject is not Cause.PC_RANGE:
        illegal = _illegal(cfg, rng, inject, g, at)
        g.words[at:at] = illegal
        g.hints = {pc + (len(illegal) if pc >= at else 0): h for pc, h in g.hints.items()}
    if inject is not Cause.PC_RANGE:
        g.words.append(E(Opcode.HALT))
    words = g.words
    if len(words) > cfg.prog_depth:
        words = words[: cfg.prog_depth - 1] + [E(Opcode.HALT)]
    feed = feed_for(words, cfg, rng, style, g.hints)
    return Program(words, feed, seed, f"random program (seed {seed})" + (f", injected {inject.name}" if inject else ""),
                   inject)


def _illegal(cfg: TileConfig, rng: np.random.Generator, cause: Cause, g: _Gen, at: int) -> list[int]:
    """Words (inserted at top level) that stop execution with ``cause`` at their first word."""
    c = cfg
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))
    if cause is Cause.OPCODE:
        return [r(len(Opcode), 31) | (r(0, (1 << 59) - 1) << 5)]
    if cause is Cause.RESERVED:
        op = Opcode(r(0, len(Opcode) - 1))
        free = [b for b in range(5, 64) if not (isa.USED_MASK[op] >> b) & 1]
        base = {Opcode.LOOP: E(Opcode.LOOP, count=1, body=1)}.get(op, op.value)
        return [base | (1 << int(rng.choice(free)))]
    if cause is Cause.ADDR:
        options = []
        # multi-vector MVM/REQ: each range, n vectors, ending one entry past its buffer (the other range at 0)
        for op, spaces in ((Opcode.MVM, ("in", "acc")), (Opcode.REQ, ("acc", "out"))):
            for sp in spaces:
                depth = {"in": c.in_depth, "acc": c.acc_depth, "out": c.out_depth}[sp]
                n = r(2, min(8, depth + 1))
                if depth - n + 1 <= 1023:
                    a = {"in": "in_addr", "acc": "acc_addr", "out": "out_addr"}
                    at = {a[x]: (depth - n + 1 if x == sp else 0) for x in spaces}
                    options.append(E(op, count=n, **at))
        if c.in_depth < 1024:
            options.append(E(Opcode.MVM, in_addr=r(c.in_depth, 1023), acc_addr=0))
            options.append(E(Opcode.LDIN, start=r(0, c.in_depth - 1), count=c.in_depth + 1))
        if c.acc_depth < 1024:
            options.append(E(Opcode.RDACC, start=r(c.acc_depth - 1, 1023), count=2))
        if c.out_depth < 1024:
            options.append(E(Opcode.REQ, acc_addr=0, out_addr=r(c.out_depth, 1023)))
        if c.cols < 1024:
            options.append(E(Opcode.RDW, start=r(1, c.cols - 1), count=c.cols))
            options.append(E(Opcode.LDW, start=c.cols - 1, count=2))
            options.append(E(Opcode.WSET, row=0, col=r(c.cols, 1023), value=0))
        if c.rows < 1024:
            options.append(E(Opcode.MSET, row=r(c.rows, 1023), col=0, value=1))
        if c.delta_depth < 1024:
            options.append(E(Opcode.VAUR, delta_addr=r(c.delta_depth, 1023)))
        return [options[r(0, len(options) - 1)]]
    if cause is Cause.WINDOW:
        if rng.random() < 0.5 and c.rows < 1024:
            return [E(Opcode.WIN, row_start=r(1, c.rows - 1), row_count=c.rows, col_start=0, col_count=c.cols)]
        # A legal window that is not a whole number of weight groups, then an MVM on it.
        w = [E(Opcode.CFG, wbits=8, abits=4, wsigned=1, asigned=0, adc_shift=0)]
        grp = isa.geometry(c, 8, 4, True, False, 1, 1).group
        nc = grp + 1 if grp + 1 <= c.cols else grp - 1
        w.append(E(Opcode.WIN, row_start=0, row_count=c.rows, col_start=0, col_count=nc))
        w.append(E(Opcode.MVM, in_addr=0, acc_addr=0) if rng.random() < 0.5 else E(Opcode.REQ, acc_addr=0, out_addr=0))
        return w
    if cause is Cause.CONFIG:
        if rng.random() < 0.5:
            return [E(Opcode.CFG, wbits=1, abits=r(1, 8), wsigned=1, asigned=0, adc_shift=0)]
        lo = r(-127, 255)
        return [E(Opcode.CFGRQ, zero_point=0, clamp_lo=lo, clamp_hi=r(-128, lo - 1), relu=0)]
    if cause is Cause.VALUE:
        if c.max_level < 15 and rng.random() < 0.5:
            return [E(Opcode.WSET, row=r(0, c.rows - 1), col=r(0, c.cols - 1), value=r(c.max_level + 1, 15))]
        return [E(Opcode.MSET, row=r(0, c.rows - 1), col=r(0, c.cols - 1), value=r(2, 15))]
    if cause is Cause.LOOP_DEPTH:
        n = c.loop_depth + 1
        return [E(Opcode.LOOP, count=2, body=n - i) for i in range(n)] + [E(Opcode.NOP)]
    if cause is Cause.LOOP_NEST:
        # An inner body reaching past the end of its enclosing body.
        return [E(Opcode.LOOP, count=2, body=2), E(Opcode.LOOP, count=2, body=3), E(Opcode.NOP), E(Opcode.NOP)]
    raise ValueError(f"cannot inject {cause.name}")


# -- a layer-sized program ----------------------------------------------------------------------------


def conv_layer_program(cfg: TileConfig, seed: int, *, pixels: int | None = None, wbits: int = 4, abits: int = 8,
                       relu: bool = True) -> Program:
    """A convolution layer's worth of MVMs with requantisation, in hardware loops.

    The layer's im2col patches are the crossbar rows (``rows`` = kernel x kernel x input channels),
    its output channels the logical columns. The program loads the weights, masks and lanes once,
    then for each chunk of ``in_depth`` output pixels (an outer LOOP): loads the chunk's patches,
    runs MVM and REQ per pixel (an inner LOOP striding the input, accumulator and output buffers)
    and reads the chunk's outputs back.
    """
    c = cfg
    rng = np.random.default_rng(seed)
    g = isa.geometry(c, wbits, abits, True, False, c.rows, c.cols)
    n_out = c.cols // g.group
    nc = n_out * g.group
    chunk = min(c.in_depth, c.acc_depth, c.out_depth, 256)
    if pixels is None:
        pixels = chunk * 16
    n_chunks = math.ceil(pixels / chunk)
    words = [
        E(Opcode.CFG, wbits=wbits, abits=abits, wsigned=1, asigned=0, adc_shift=0),
        E(Opcode.WIN, row_start=0, row_count=c.rows, col_start=0, col_count=nc),
        E(Opcode.CFGRQ, zero_point=0, clamp_lo=-128, clamp_hi=127, relu=int(relu)),
        E(Opcode.LDW, start=0, count=nc),
        E(Opcode.LDM, start=0, count=nc),
        E(Opcode.LDRQ, start=0, count=n_out),
        E(Opcode.LOOP, count=n_chunks, body=5),
        E(Opcode.LDIN, start=0, count=chunk),
        E(Opcode.LOOP, count=chunk, body=2, stride_in=1, stride_acc=1, stride_out=1),
        E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0),
        E(Opcode.REQ, acc_addr=0, out_addr=0),
        E(Opcode.RDOUT, start=0, count=chunk),
        E(Opcode.HALT),
    ]
    # Signed weights of wbits bits as differential cell pairs, slice by slice (docs/isa.md).
    wmax = (1 << (wbits - 1)) - 1
    W = rng.integers(-wmax, wmax + 1, (c.rows, n_out))
    levels = np.zeros((c.rows, nc), dtype=np.int64)
    mag, sign = np.abs(W), W < 0
    for s in range(g.nws):
        sl = (mag >> (s * c.cell_bits)) & c.max_level
        levels[:, s * 2::g.group] = np.where(sign, 0, sl)
        levels[:, s * 2 + 1::g.group] = np.where(sign, sl, 0)
    pruned = rng.random((c.rows, n_out)) < 0.3
    masks = np.repeat(pruned, g.group, axis=1).astype(np.int64)
    rq = np.stack([rng.integers(-64, 64, n_out), rng.integers(1, 200, n_out), rng.integers(6, 12, n_out)], axis=1)
    feed = [levels, masks, rq]
    for _ in range(n_chunks):
        feed.append(rng.integers(0, 1 << abits, (chunk, c.rows)))
    return Program(words, feed, seed, f"conv layer: {n_chunks * chunk} pixels x {n_out} channels, "
                   f"w{wbits}a{abits} (seed {seed})")


# -- directed programs ----------------------------------------------------------------------------------


def _layer_head(cfg: TileConfig, wbits: int, wsigned: int, abits: int = 8, asigned: int = 0, shift: int = 0,
                max_out: int | None = None) -> tuple[list[int], int, int]:
    """CFG and a full-height window of as many whole weight groups as fit; returns (words, nc, n_out)."""
    g = isa.geometry(cfg, wbits, abits, bool(wsigned), bool(asigned), 1, 1).group
    n_out = cfg.cols // g if max_out is None else min(cfg.cols // g, max_out)
    return ([E(Opcode.CFG, wbits=wbits, abits=abits, wsigned=wsigned, asigned=asigned, adc_shift=shift),
             E(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=n_out * g)], n_out * g, n_out)


def _sparse_levels(cfg: TileConfig, rng: np.random.Generator, shape) -> np.ndarray:
    p = _layer_density(cfg)
    return np.where(rng.random(shape) < p, rng.integers(0, cfg.max_level + 1, shape), 0)


def directed_programs(cfg: TileConfig, seed: int = 0) -> dict[str, Program]:
    """The directed programs of the verification plan (docs/testing.md), by name.

    Each runs from the power-on state on the Amaranth simulator (tests/test_hw_tile.py) and under
    cocotb (``make sim TESTS=directed``), against the golden model:

    - ``vau_partial_mask``: VAUR and VAUC with a partial mask and large deltas (+-(max_level+1),
      -128, 127) on shrinking windows, every level and mask read back with RDW / RDM;
    - ``signed_inputs``: MVM with signed inputs 0x80, 0xFF, 0x7F (and random) for activation widths
      2, 4, 7 and 8, each result read back;
    - ``looped_req``: MVMs then REQ in a LOOP with ``stride_out != stride_acc``, then every output read;
    - ``adc_shift_sweep``: the same MVM under ``adc_shift`` 0..15 (dense weights: large sums), each read;
    - ``masked_mvm``: MVM on a partly masked array (whole rows, whole columns and scattered cells);
    - ``narrow_overwrite``: an MVM on a narrower window without accumulate over an accumulator a wider
      one wrote (lanes >= n_out keep their value).
    """
    c = cfg
    rng = np.random.default_rng(seed)
    R, C = c.rows, c.cols
    out: dict[str, Program] = {}

    # VAU with a partial mask and large deltas.
    L = c.delta_len
    big = c.max_level + 1
    deltas = np.stack([np.full(L, 127), np.full(L, -128), (np.arange(L) % 2 * 2 - 1) * big,
                       rng.choice(np.array([-big, big, -128, 127, 1, -1]), L)])[: c.delta_depth]
    w = [E(Opcode.LDW, start=0, count=C), E(Opcode.LDM, start=0, count=C), E(Opcode.LDD, start=0, count=len(deltas))]
    for k in range(len(deltas)):
        for op in (Opcode.VAUR, Opcode.VAUC):
            r0, c0 = int(rng.integers(0, R // 2 + 1)), int(rng.integers(0, C // 2 + 1))
            w += [E(Opcode.WIN, row_start=r0, row_count=R - r0, col_start=c0, col_count=C - c0), E(op, delta_addr=k),
                  E(Opcode.RDW, start=0, count=C)]
    w += [E(Opcode.RDM, start=0, count=C), E(Opcode.HALT)]
    out["vau_partial_mask"] = Program(w, [rng.integers(0, c.max_level + 1, (R, C)),
                                          (rng.random((R, C)) < 0.4).astype(np.int64), deltas], seed,
                                      "VAU with a partial mask and large deltas")

    # Signed inputs at the extremes, several activation widths.
    head, nc, _ = _layer_head(c, 4, 1)
    ins = np.stack([np.full(R, 0x80), np.full(R, 0xFF), np.full(R, 0x7F), rng.integers(0, 256, R)])
    w = head + [E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=4)]
    for k, abits in enumerate((2, 4, 7, 8)):
        w.append(E(Opcode.CFG, wbits=4, abits=abits, wsigned=1, asigned=1, adc_shift=0))
        for v in range(4):
            w.append(E(Opcode.MVM, in_addr=v, acc_addr=(4 * k + v) % c.acc_depth))
            w.append(E(Opcode.RDACC, start=(4 * k + v) % c.acc_depth, count=1))
    out["signed_inputs"] = Program(w + [E(Opcode.HALT)], [_sparse_levels(c, rng, (R, nc)), ins], seed,
                                   "MVM with signed inputs 0x80, 0xFF, 0x7F for abits 2, 4, 7, 8")

    # A looped REQ whose output stride differs from its accumulator stride, then every output read.
    head, nc, n_out = _layer_head(c, 4, 1)
    n = min(4, c.in_depth, c.acc_depth)
    s_out = 2 if c.out_depth >= 2 * n else 0
    w = head + [E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=n),
                E(Opcode.LDRQ, start=0, count=n_out),
                E(Opcode.CFGRQ, zero_point=5, clamp_lo=-128, clamp_hi=255, relu=0),
                E(Opcode.LOOP, count=n, body=1, stride_in=1, stride_acc=1, stride_out=0),
                E(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0),
                E(Opcode.LOOP, count=n, body=1, stride_in=0, stride_acc=1, stride_out=s_out),
                E(Opcode.REQ, acc_addr=0, out_addr=min(1, c.out_depth - 1 - (n - 1) * s_out)),
                E(Opcode.RDOUT, start=0, count=c.out_depth), E(Opcode.HALT)]
    # Small multipliers and moderate shifts: most results land inside the clamp, so the rounding of
    # every lane shows (large ones would saturate them all).
    rq = np.stack([rng.integers(-50, 50, n_out), rng.integers(1, 4, n_out), rng.integers(3, 9, n_out)], 1)
    out["looped_req"] = Program(w, [_sparse_levels(c, rng, (R, nc)), rng.integers(0, 256, (n, R)), rq], seed,
                                f"looped REQ with stride_acc 1, stride_out {s_out}, every output read")

    # adc_shift 0..15 on dense weights (large sums: every shift clips or truncates differently).
    head, nc, _ = _layer_head(c, 8, 0)
    w = head[1:] + [E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=1)]
    for s in range(16):
        w += [E(Opcode.CFG, wbits=8, abits=8, wsigned=0, asigned=0, adc_shift=s),
              E(Opcode.MVM, in_addr=0, acc_addr=s % c.acc_depth), E(Opcode.RDACC, start=s % c.acc_depth, count=1)]
    out["adc_shift_sweep"] = Program(w + [E(Opcode.HALT)], [rng.integers(0, c.max_level + 1, (R, nc)),
                                                            rng.integers(128, 256, (1, R))], seed,
                                     "the same MVM under adc_shift 0..15")

    # MVM on a partly masked array: masked rows, masked columns and scattered cells.
    head, nc, _ = _layer_head(c, 4, 1)
    mask = (rng.random((R, nc)) < 0.2)
    mask[rng.integers(0, R)] = True
    mask[:, rng.integers(0, nc)] = True
    w = head + [E(Opcode.LDW, start=0, count=nc), E(Opcode.LDM, start=0, count=nc), E(Opcode.LDIN, start=0, count=2),
                E(Opcode.MVM, in_addr=0, acc_addr=0), E(Opcode.MVM, in_addr=1, acc_addr=1),
                E(Opcode.RDACC, start=0, count=2), E(Opcode.HALT)]
    out["masked_mvm"] = Program(w, [rng.integers(0, c.max_level + 1, (R, nc)), mask.astype(np.int64),
                                    rng.integers(0, 256, (2, R))], seed, "MVM on a partly masked array")

    # Overwrite with a narrower window: lanes >= n_out keep what the wider MVM wrote.
    head, nc, _ = _layer_head(c, 2, 1)
    head2, _, _ = _layer_head(c, 2, 1, max_out=max(1, (C // 2) // 2))
    w = head + [E(Opcode.LDW, start=0, count=nc), E(Opcode.LDIN, start=0, count=2),
                E(Opcode.MVM, in_addr=0, acc_addr=0)] + head2 + [
                E(Opcode.MVM, in_addr=1, acc_addr=0, accumulate=0), E(Opcode.RDACC, start=0, count=1), E(Opcode.HALT)]
    out["narrow_overwrite"] = Program(w, [_sparse_levels(c, rng, (R, nc)), rng.integers(0, 256, (2, R))], seed,
                                      "MVM without accumulate on a narrower window")
    return out


#: Names of :func:`directed_programs`.
DIRECTED = ("vau_partial_mask", "signed_inputs", "looped_req", "adc_shift_sweep", "masked_mvm", "narrow_overwrite")
