"""A deliberately simple reference model of the tile, written from docs/isa.md and docs/interface.md only.

It is the oracle ``sim.tile.Tile`` is checked against (tests/test_golden.py), so it is independent of
the code it checks: it imports only the word decoder (``hw.isa.decode``, with ``Cause`` and ``Opcode``)
and the configuration (``hw.params.TileConfig``). It deliberately does NOT import the other homes of
hw/ (the latency constants, ``hw.isa.LOADS``, the CFGRQ range, the reset state, ``hw.encoding``, the
program walker of ``hw.program``): it copies those facts from docs/isa.md on purpose, so that a wrong
change to one of them in hw/ is caught here instead of being shared by the oracle.
Everything -- input and weight slicing, the ADC, shift-and-add, requantisation, the VAU, masks, loops
and address offsets, error causes and the cycle formulas -- is re-derived here from the text of
docs/isa.md, with explicit Python loops over batch copies, input slices, row groups and columns and
exact Python integers. It is slow on purpose: clarity is its only job.

Where docs/isa.md pins an order or a detail the code might otherwise choose freely, the place is
marked ``# doc:`` (docs/testing.md lists them); the order follows the doc, not sim/.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from cimtile.hw.isa import Cause, Opcode, decode
from cimtile.hw.params import TileConfig

# Constants of the cycle formulas (docs/isa.md, "Cycle formulas").
# MVM: the RTL overlaps round 0 with the MVM's issue cycle (issue 3); 2 since the column sum has a register
# inside it (issue 14: one more cycle per MVM instruction, not per vector); 3 since the ADC's second stage
MVM_LATENCY = 3
REQ_LATENCY = 3  # the lane's stages a REQ counts: inputs, products, their sum, the quotient less the write
# behind (issue 3: 1; 2 since the thirteenth session's stage for the products' sum, issue 14; 3 since the
# eighteenth's input stage)
# REQ and RDACC: the accumulator memory reads an instruction's first vector in its second cycle (eighteenth
# session), one cycle before REQ's first chunk and RDACC's first word
ACC_READ_WAIT = 1
VAU_LATENCY = 2
CELL_CYCLES = 3
VAUR_PHASES = 4
VAUC_PHASES = 2

LOADS = (Opcode.LDW, Opcode.LDM, Opcode.LDIN, Opcode.LDD, Opcode.LDRQ)


def ceil_div(a: int, b: int) -> int:
    """Exact ``ceil(a / b)`` for non-negative integers."""
    return -(-a // b)


def wrap(value: int, bits: int) -> int:
    """``value`` wrapped to ``bits``-bit two's complement."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class RefStop(Exception):
    """The reference tile stopped with an error cause at ``pc``."""

    def __init__(self, cause: Cause, pc: int):
        super().__init__(f"{cause.name} at pc {pc}")
        self.cause, self.pc = cause, pc


class _RefHalt(Exception):
    pass


@dataclass
class RefResult:
    """What one reference run did (mirrors ``sim.tile.RunResult``)."""

    cycles: int
    instructions: int
    halted: bool
    cause: Cause
    pc: int | None
    outputs: list = field(default_factory=list)
    sync_tag: int = 0


@dataclass
class Layer:
    """The CFG state (reset values from docs/isa.md, Execution model)."""

    wbits: int = 8
    abits: int = 8
    wsigned: bool = True
    asigned: bool = False
    adc_shift: int = 0


class RefTile:
    """Reference model of one tile with ``batch`` copies of the input, accumulator and output buffers.

    Parameters
    ----------
    cfg : TileConfig
        The tile's parameters.
    batch : int
        Independent copies of the input, accumulator and output buffers.
    """

    def __init__(self, cfg: TileConfig, batch: int = 1):
        self.cfg = cfg
        self.batch = batch
        c = cfg
        self.levels = [[0] * c.cols for _ in range(c.rows)]
        self.masks = [[0] * c.cols for _ in range(c.rows)]
        self.inbuf = [[[0] * c.rows for _ in range(c.in_depth)] for _ in range(batch)]
        self.acc = [[[0] * c.cols for _ in range(c.acc_depth)] for _ in range(batch)]
        self.out = [[[0] * c.cols for _ in range(c.out_depth)] for _ in range(batch)]
        self.delta = [[0] * c.delta_len for _ in range(c.delta_depth)]
        self.rq_bias = [0] * c.cols
        self.rq_mult = [1] * c.cols
        self.rq_shift = [0] * c.cols
        self.layer = Layer()
        self.window = (0, c.rows, 0, c.cols)  # row_start, row_count, col_start, col_count
        self.rq = (0, -128, 127, False)  # zero_point, clamp_lo, clamp_hi, relu
        self.sync_tag = 0

    # -- state ----------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """Every memory as an int64 array, keyed like ``sim.tile.Tile.state()``."""
        a = lambda x: np.array(x, dtype=np.int64)
        return {
            "levels": a(self.levels), "masks": a(self.masks), "inbuf": a(self.inbuf), "acc": a(self.acc),
            "out": a(self.out), "delta": a(self.delta), "rq_bias": a(self.rq_bias),
            "rq_mult": a(self.rq_mult), "rq_shift": a(self.rq_shift),
        }

    # -- geometry, written out from docs/isa.md --------------------------------------------------

    def input_slices(self) -> list[tuple[int, int, int]]:
        """(low bit, bit count, weight) of every input slice of the current CFG."""
        L, d = self.layer, self.cfg.dac_bits
        slices = []
        mag_bits = L.abits - 1 if L.asigned else L.abits
        for k in range(ceil_div(mag_bits, d)):
            lo = k * d
            slices.append((lo, min(d, mag_bits - lo), 1 << lo))
        if L.asigned:  # the sign bit alone, counted negatively
            slices.append((L.abits - 1, 1, -(1 << (L.abits - 1))))
        return slices

    def weight_slices(self) -> int:
        L = self.layer
        return ceil_div(L.wbits - 1 if L.wsigned else L.wbits, self.cfg.cell_bits)

    def group(self) -> int:
        """Physical columns per logical output."""
        return self.weight_slices() * (2 if self.layer.wsigned else 1)

    def analog_pairs(self) -> bool:
        return self.layer.wsigned and self.cfg.weight_encoding == "differential-analog"

    def n_out(self, pc: int) -> int:
        """Logical outputs of the window; WINDOW if it is not a whole number of groups."""
        nc, g = self.window[3], self.group()
        if nc % g:
            raise RefStop(Cause.WINDOW, pc)
        return nc // g

    # -- running --------------------------------------------------------------------------------

    def run(self, program: Sequence[int], feed: Callable[[int, Opcode, dict], np.ndarray] | Sequence,
            timing_only: bool = False) -> RefResult:
        """Run ``program`` from word 0 until HALT or an error.

        ``feed`` gives the data-in block of each executed load instruction: either a sequence of
        blocks in execution order, or a callable ``feed(pc, opcode, args)`` returning the next block
        (the tests use it to draw random data exactly for the loads that execute).
        """
        if not callable(feed):
            blocks = list(feed)
            feed = lambda pc, op, args: blocks.pop(0)
        self._feed = feed
        self._timing = timing_only
        self.program = [decode(int(w)) for w in program]
        self.cycles = 0
        self.instructions = 0
        self.outputs = []
        halted, cause, pc = False, Cause.NONE, None
        try:
            self._block(0, len(self.program), [0, 0, 0], 0)
            # Falling off the end of the loaded program without HALT.
            raise RefStop(Cause.PC_RANGE, len(self.program))
        except _RefHalt:
            halted = True
        except RefStop as s:
            cause, pc = s.cause, s.pc
            self.cycles += 1  # the erroring instruction counts one cycle
            self.instructions += 1
        return RefResult(self.cycles, self.instructions, halted, cause, pc, self.outputs, self.sync_tag)

    def _block(self, start: int, end: int, offs: list[int], depth: int) -> None:
        """Execute words ``start .. end-1`` once, with address offsets ``offs`` (in, acc, out)."""
        pc = start
        while pc < end:
            d = self.program[pc]
            if d.cause is not Cause.NONE:  # OPCODE or RESERVED
                raise RefStop(d.cause, pc)
            if d.op is Opcode.LOOP:
                # doc: LOOP_DEPTH is checked before LOOP_NEST.
                if depth + 1 > self.cfg.loop_depth:
                    raise RefStop(Cause.LOOP_DEPTH, pc)
                body_end = pc + 1 + d.args["body"]
                if body_end > end:
                    raise RefStop(Cause.LOOP_NEST, pc)
                self.cycles += 1
                self.instructions += 1
                a = d.args
                for i in range(a["count"]):
                    inner = [offs[0] + i * a["stride_in"], offs[1] + i * a["stride_acc"],
                             offs[2] + i * a["stride_out"]]
                    self._block(pc + 1, body_end, inner, depth + 1)
                pc = body_end
                continue
            cost = self._execute(d, pc, offs)
            self.cycles += cost
            self.instructions += 1
            if d.op is Opcode.HALT:
                raise _RefHalt()
            pc += 1

    def _check(self, ok: bool, cause: Cause, pc: int) -> None:
        if not ok:
            raise RefStop(cause, pc)

    def _execute(self, d, pc: int, offs: list[int]) -> int:
        """Execute one non-LOOP instruction; returns its cycles by the documented formula."""
        c, a, op = self.cfg, d.args, d.op
        if op in (Opcode.NOP, Opcode.HALT):
            return 1
        if op is Opcode.SYNC:
            self.sync_tag = a["tag"]
            return 1
        if op is Opcode.CFG:
            self._check(not (a["wsigned"] and a["wbits"] < 2), Cause.CONFIG, pc)
            self.layer = Layer(a["wbits"], a["abits"], bool(a["wsigned"]), bool(a["asigned"]), a["adc_shift"])
            return 1
        if op is Opcode.WIN:
            ok = a["row_start"] + a["row_count"] <= c.rows and a["col_start"] + a["col_count"] <= c.cols
            self._check(ok, Cause.WINDOW, pc)
            self.window = (a["row_start"], a["row_count"], a["col_start"], a["col_count"])
            return 1
        if op is Opcode.CFGRQ:
            lo, hi = a["clamp_lo"], a["clamp_hi"]
            self._check(-128 <= lo <= hi <= 255, Cause.CONFIG, pc)
            # doc: CFGRQ: the zero point and both clamp bounds each lie in -128..255.
            self._check(-128 <= a["zero_point"] <= 255, Cause.CONFIG, pc)
            self.rq = (a["zero_point"], lo, hi, bool(a["relu"]))
            return 1
        if op in LOADS:
            return self._load(d, pc, offs)
        if op is Opcode.MVM:
            return self._mvm(d, pc, offs)
        if op is Opcode.REQ:
            return self._req(d, pc, offs)
        if op in (Opcode.VAUR, Opcode.VAUC):
            return self._vau(d, pc)
        if op in (Opcode.WSET, Opcode.MSET):
            return self._cell(d, pc)
        return self._read(d, pc, offs)

    # -- loads and reads ------------------------------------------------------------------------

    def _load(self, d, pc: int, offs: list[int]) -> int:
        c, a, op = self.cfg, d.args, d.op
        s, n = a["start"], a["count"]
        if op is Opcode.LDW:
            self._check(s + n <= c.cols, Cause.ADDR, pc)
            if not self._timing:
                block = self._feed(pc, op, a)
                for j in range(n):
                    for r in range(c.rows):
                        self.levels[r][s + j] = int(block[r][j])
            return 1 + n * (c.col_words + c.write_cycles)
        if op is Opcode.LDM:
            self._check(s + n <= c.cols, Cause.ADDR, pc)
            if not self._timing:
                block = self._feed(pc, op, a)
                for j in range(n):
                    for r in range(c.rows):
                        self.masks[r][s + j] = int(block[r][j])
            return 1 + n * c.mask_words
        if op is Opcode.LDIN:
            s += offs[0]
            self._check(s + n <= c.in_depth, Cause.ADDR, pc)
            if not self._timing:
                block = np.asarray(self._feed(pc, op, a))
                for b in range(self.batch):
                    vecs = block if block.ndim == 2 else block[b]
                    for i in range(n):
                        for r in range(c.rows):
                            self.inbuf[b][s + i][r] = int(vecs[i][r]) & 0xFF
            return 1 + n * c.in_words
        if op is Opcode.LDD:
            self._check(s + n <= c.delta_depth, Cause.ADDR, pc)
            if not self._timing:
                block = self._feed(pc, op, a)
                for i in range(n):
                    for e in range(c.delta_len):
                        self.delta[s + i][e] = int(block[i][e])
            return 1 + n * c.delta_words
        # LDRQ: one lane per physical column.
        self._check(s + n <= c.cols, Cause.ADDR, pc)
        if not self._timing:
            block = self._feed(pc, op, a)
            for i in range(n):
                self.rq_bias[s + i] = int(block[i][0])
                self.rq_mult[s + i] = int(block[i][1])
                self.rq_shift[s + i] = int(block[i][2])
        return 1 + ceil_div(n, c.rq_per_word)

    def _read(self, d, pc: int, offs: list[int]) -> int:
        c, a, op = self.cfg, d.args, d.op
        s, n = a["start"], a["count"]
        if op is Opcode.RDOUT:
            s += offs[2]
            self._check(s + n <= c.out_depth, Cause.ADDR, pc)
            block = [[list(self.out[b][s + i]) for i in range(n)] for b in range(self.batch)]
            cost = 1 + n * c.out_words
        elif op is Opcode.RDACC:
            s += offs[1]
            self._check(s + n <= c.acc_depth, Cause.ADDR, pc)
            block = [[list(self.acc[b][s + i]) for i in range(n)] for b in range(self.batch)]
            cost = 1 + ACC_READ_WAIT + n * c.acc_words
        else:
            self._check(s + n <= c.cols, Cause.ADDR, pc)
            src = self.levels if op is Opcode.RDW else self.masks
            block = [[src[r][s + j] for j in range(n)] for r in range(c.rows)]
            cost = 1 + n * (c.col_words if op is Opcode.RDW else c.mask_words)
        if not self._timing:
            self.outputs.append(np.array(block, dtype=np.int64))
        return cost

    # -- compute --------------------------------------------------------------------------------

    def _column_sum(self, b: int, addr: int, lo: int, nbits: int, rows: range, col: int) -> int:
        """Sum over unmasked cells of one column of (input slice value x level)."""
        L = self.layer
        total = 0
        for r in rows:
            x = self.inbuf[b][addr][r] & ((1 << L.abits) - 1)  # the low abits bits of the byte
            xs = (x >> lo) & ((1 << nbits) - 1)
            if not self.masks[r][col]:
                total += xs * self.levels[r][col]
        return total

    def _mvm(self, d, pc: int, offs: list[int]) -> int:
        c, a, L = self.cfg, d.args, self.layer
        ia0, aa0, count = a["in_addr"] + offs[0], a["acc_addr"] + offs[1], a["count"]
        # doc: WINDOW before ADDR; of the two addresses in_addr first (docs/isa.md, order of causes), each
        # range checked whole (count vectors) before any vector is converted.
        n_out = self.n_out(pc)
        self._check(ia0 + count - 1 < c.in_depth, Cause.ADDR, pc)
        self._check(aa0 + count - 1 < c.acc_depth, Cause.ADDR, pc)
        r0, nr, c0, nc = self.window
        nws, g = self.weight_slices(), self.group()
        slices = self.input_slices()
        groups = [range(r0 + k, min(r0 + k + c.rows_per_conv, r0 + nr)) for k in range(0, nr, c.rows_per_conv)]
        sh = L.adc_shift
        for v in range(0 if self._timing else count):  # doc: vector v: in_addr + v -> acc_addr + v
            ia, aa = ia0 + v, aa0 + v
            for b in range(self.batch):
                results = [0] * n_out
                for lo, nbits, in_weight in slices:
                    for rows in groups:
                        for j in range(n_out):
                            for s in range(nws):
                                w_weight = 1 << (s * c.cell_bits)
                                if not L.wsigned:
                                    col = c0 + j * g + s
                                    S = self._column_sum(b, ia, lo, nbits, rows, col)
                                    code = min(max(S >> sh, 0), c.adc_max)
                                    results[j] += (code << sh) * in_weight * w_weight
                                elif self.analog_pairs():
                                    pos, neg = c0 + j * g + 2 * s, c0 + j * g + 2 * s + 1
                                    S = (self._column_sum(b, ia, lo, nbits, rows, pos)
                                         - self._column_sum(b, ia, lo, nbits, rows, neg))
                                    half = 1 << (c.adc_bits - 1)
                                    code = min(max(S >> sh, -half), half - 1)  # >> is arithmetic
                                    results[j] += (code << sh) * in_weight * w_weight
                                else:
                                    for col, sign in ((c0 + j * g + 2 * s, 1), (c0 + j * g + 2 * s + 1, -1)):
                                        S = self._column_sum(b, ia, lo, nbits, rows, col)
                                        code = min(max(S >> sh, 0), c.adc_max)
                                        results[j] += (code << sh) * in_weight * w_weight * sign
                for j in range(n_out):
                    prev = self.acc[b][aa][j] if a["accumulate"] else 0
                    self.acc[b][aa][j] = wrap(prev + results[j], c.acc_bits)
        nis, nrg = len(slices), len(groups)
        nconv = nc // 2 if self.analog_pairs() else nc
        # doc: the vectors' rounds follow each other with no issue or drain cycles between them
        return 1 + count * ceil_div(nis * nrg * nconv, c.n_adcs) * c.adc_cycles + MVM_LATENCY

    def _req(self, d, pc: int, offs: list[int]) -> int:
        c, a = self.cfg, d.args
        aa0, oa0, count = a["acc_addr"] + offs[1], a["out_addr"] + offs[2], a["count"]
        n_out = self.n_out(pc)  # doc: WINDOW before ADDR; acc_addr before out_addr, each range whole
        self._check(aa0 + count - 1 < c.acc_depth, Cause.ADDR, pc)
        self._check(oa0 + count - 1 < c.out_depth, Cause.ADDR, pc)
        zp, clamp_lo, clamp_hi, relu = self.rq
        lo = max(clamp_lo, zp) if relu else clamp_lo
        for v in range(0 if self._timing else count):  # doc: accumulator acc_addr + v -> output out_addr + v
            aa, oa = aa0 + v, oa0 + v
            for b in range(self.batch):
                for j in range(n_out):
                    p = (self.acc[b][aa][j] + self.rq_bias[j]) * self.rq_mult[j]
                    shift = self.rq_shift[j]
                    r = (p + (1 << (shift - 1))) >> shift if shift else p
                    # doc: with ReLU and zero_point > clamp_hi, lo > hi; min(max()) gives clamp_hi.
                    q = min(max(r + zp, lo), clamp_hi)
                    self.out[b][oa][j] = q & 0xFF
        return 1 + ACC_READ_WAIT + count * ceil_div(n_out, c.rq_lanes) + REQ_LATENCY

    def _vau(self, d, pc: int) -> int:
        c, a = self.cfg, d.args
        da = a["delta_addr"]
        self._check(da < c.delta_depth, Cause.ADDR, pc)
        r0, nr, c0, nc = self.window
        if not self._timing:
            for r in range(r0, r0 + nr):
                for col in range(c0, c0 + nc):
                    if self.masks[r][col]:
                        continue
                    # Row updates index the delta vector by row, column updates by column.
                    dv = self.delta[da][r] if d.op is Opcode.VAUR else self.delta[da][col]
                    sign = self._vau_sign(a, col - c0)
                    if sign == 0:
                        continue
                    self.levels[r][col] = min(max(self.levels[r][col] + sign * dv, 0), c.max_level)
        # One window column per cycle, then the pulse phases (docs/isa.md, VAUR/VAUC, Programming time).
        phases = VAUR_PHASES if d.op is Opcode.VAUR else VAUC_PHASES
        return 1 + nc + VAU_LATENCY + phases * c.pulse_cycles

    def _vau_sign(self, a, p: int) -> int:
        """docs/isa.md, VAU polarity: the column's place in its weight group decides its sign."""
        q = p % self.group()
        neg = self.layer.wsigned and q % 2 == 1
        weight_slice = q // 2 if self.layer.wsigned else q
        if a["only"] and weight_slice != a["slice"]:
            return 0
        pair = a["pair"]
        if pair == 0:  # same: every column +delta
            return 1
        if pair == 2:  # pos: positive columns only
            return 0 if neg else 1
        if pair == 3:  # neg: negative columns only, negated
            return -1 if neg else 0
        return -1 if neg else 1  # diff

    def _cell(self, d, pc: int) -> int:
        c, a = self.cfg, d.args
        r, col, v = a["row"], a["col"], a["value"]
        # doc: ADDR is checked before VALUE.
        self._check(r < c.rows and col < c.cols, Cause.ADDR, pc)
        if d.op is Opcode.WSET:
            self._check(v <= c.max_level, Cause.VALUE, pc)
            if not self._timing and not self.masks[r][col]:
                self.levels[r][col] = v
        else:
            self._check(v <= 1, Cause.VALUE, pc)
            if not self._timing:
                self.masks[r][col] = v
            return CELL_CYCLES
        # docs/isa.md, Programming time: WSET is a write-and-verify of one cell.
        return CELL_CYCLES + c.write_cycles


def logical_weights(levels: np.ndarray, masks: np.ndarray, cfg: TileConfig, wbits: int, wsigned: bool,
                    window: tuple[int, int, int, int]) -> np.ndarray:
    """The (window rows x n_out) integer weight matrix a window of cell levels encodes (masked = 0)."""
    r0, nr, c0, nc = window
    nws = ceil_div(wbits - 1 if wsigned else wbits, cfg.cell_bits)
    g = nws * (2 if wsigned else 1)
    eff = np.where(masks, 0, levels).astype(np.int64)
    w = np.zeros((nr, nc // g), dtype=np.int64)
    for j in range(nc // g):
        for s in range(nws):
            scale = 1 << (s * cfg.cell_bits)
            if wsigned:
                w[:, j] += scale * (eff[r0:r0 + nr, c0 + j * g + 2 * s] - eff[r0:r0 + nr, c0 + j * g + 2 * s + 1])
            else:
                w[:, j] += scale * eff[r0:r0 + nr, c0 + j * g + s]
    return w


def input_values(bytes_: np.ndarray, abits: int, asigned: bool) -> np.ndarray:
    """The integers input bytes stand for: their low ``abits`` bits, two's complement when signed."""
    x = np.asarray(bytes_, dtype=np.int64) & ((1 << abits) - 1)
    if asigned:
        x = np.where(x >> (abits - 1), x - (1 << abits), x)
    return x
