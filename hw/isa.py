"""The tile's microcode: opcodes, instruction layouts, cycle formulas, assembler; defined once."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from types import MappingProxyType

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from cimtile.errors import CimtileError

from .encoding import column_role, group_size, paired, weight_slices
from .params import ADDR_BITS, TileConfig

__all__ = [
    "ARGS",
    "AsmError",
    "Cause",
    "Decoded",
    "Geometry",
    "INSTR",
    "LOADS",
    "VAU_PAIR_MODES",
    "Opcode",
    "READS",
    "RESET_CFG",
    "RESET_CFGRQ",
    "RESET_LANE",
    "RESET_SYNC_TAG",
    "RQ_RECORD",
    "RQ_RECORD_BITS",
    "RQ_VALUE_RANGE",
    "SPECS",
    "WORD_BITS",
    "adc_bound",
    "assemble",
    "cycles",
    "decode",
    "describe",
    "disassemble",
    "encode",
    "field_range",
    "geometry",
    "render_doc",
    "weight_slices",
    "vau_column_sign",
]

WORD_BITS = 64
OPCODE_BITS = 5


class Opcode(enum.Enum, shape=OPCODE_BITS):
    """Instruction opcodes (the low 5 bits of a word)."""

    NOP = 0
    HALT = 1
    SYNC = 2
    CFG = 3
    WIN = 4
    CFGRQ = 5
    LOOP = 6
    LDW = 7
    LDM = 8
    LDIN = 9
    LDD = 10
    LDRQ = 11
    MVM = 12
    REQ = 13
    VAUR = 14
    VAUC = 15
    WSET = 16
    MSET = 17
    RDOUT = 18
    RDACC = 19
    RDW = 20
    RDM = 21


class Cause(enum.Enum, shape=4):
    """Error cause codes reported by the tile (status ``error_cause``) and the golden model."""

    NONE = 0
    OPCODE = 1  # undefined opcode
    RESERVED = 2  # a bit outside the opcode's fields is set
    ADDR = 3  # buffer address, row or column out of range
    WINDOW = 4  # window outside the array, or not a whole number of weight groups
    CONFIG = 5  # invalid CFG/CFGRQ values (signed 1-bit weights, clamp_lo > clamp_hi, ...)
    VALUE = 6  # WSET level above the highest cell level
    LOOP_DEPTH = 7  # more nested loops than loop_depth
    LOOP_NEST = 8  # a loop body reaches past the end of its enclosing body or of the program
    PC_RANGE = 9  # execution ran past the last loaded word without HALT


A = ADDR_BITS
#: Argument layouts, one per instruction family (the union member name is the key).
ARGS: dict[str, data.StructLayout] = {
    "none": data.StructLayout({}),
    "sync": data.StructLayout({"tag": 16}),
    "cfg": data.StructLayout({"wbits_m1": 3, "abits_m1": 3, "wsigned": 1, "asigned": 1, "adc_shift": 4}),
    "win": data.StructLayout({"row_start": A, "row_count_m1": A, "col_start": A, "col_count_m1": A}),
    "cfgrq": data.StructLayout(
        {"zero_point": signed(9), "clamp_lo": signed(9), "clamp_hi": signed(9), "relu": 1}
    ),
    "loop": data.StructLayout({"count_m1": 12, "body_m1": 8, "stride_in": 8, "stride_acc": 8, "stride_out": 8}),
    "range": data.StructLayout({"start": A, "count_m1": A}),
    "mvm": data.StructLayout({"in_addr": A, "acc_addr": A, "accumulate": 1, "count_m1": A}),
    "req": data.StructLayout({"acc_addr": A, "out_addr": A, "count_m1": A}),
    "vau": data.StructLayout({"delta_addr": A, "pair": 2, "only": 1, "slice": 3}),
    "cell": data.StructLayout({"row": A, "col": A, "value": 4}),
}

#: The instruction word: opcode in the low bits, then the union of argument layouts.
INSTR = data.StructLayout({"opcode": Opcode, "args": data.UnionLayout(ARGS)})
assert INSTR.size <= WORD_BITS

#: One requantisation lane as LDRQ loads it: a record of :data:`RQ_RECORD_BITS` bits (the bits above
#: the layout are zero), ``rq_per_word`` records per bus word, record q in bits ``64*q ..``.
RQ_RECORD = data.StructLayout({"bias": signed(32), "mult": unsigned(16), "shift": unsigned(6)})
RQ_RECORD_BITS = 64
assert RQ_RECORD.size <= RQ_RECORD_BITS  # TileConfig.rq_per_word counts records of this size

#: Range of a requantised output before it is stored as a byte: CFGRQ's zero point and both clamp
#: bounds must lie in it (else CONFIG), so that uint8 (0..255) and int8 (-128..127) outputs both fit.
RQ_VALUE_RANGE = (-128, 255)

#: Instructions that take data from the data-in stream, and those that send data to the data-out stream.
LOADS = frozenset({Opcode.LDW, Opcode.LDM, Opcode.LDIN, Opcode.LDD, Opcode.LDRQ})
READS = frozenset({Opcode.RDOUT, Opcode.RDACC, Opcode.RDW, Opcode.RDM})


def field_range(layout: data.StructLayout, name: str) -> tuple[int, int]:
    """Lowest and highest value field ``name`` of ``layout`` holds (``RQ_RECORD``, an ``ARGS`` family)."""
    shape = layout[name].shape
    shape = shape.as_shape() if isinstance(shape, data.Layout) else shape
    w = shape.width
    return (-(1 << (w - 1)), (1 << (w - 1)) - 1) if shape.signed else (0, (1 << w) - 1)


# -- the tile's power-on state (docs/isa.md, Execution model) ---------------------------------------

#: Reset values of the layer configuration (CFG fields, user values).
RESET_CFG = MappingProxyType({"wbits": 8, "abits": 8, "wsigned": 1, "asigned": 0, "adc_shift": 0})
#: Reset values of the requantisation output parameters (CFGRQ fields).
RESET_CFGRQ = MappingProxyType({"zero_point": 0, "clamp_lo": -128, "clamp_hi": 127, "relu": 0})
#: Reset values of every requantisation lane (:data:`RQ_RECORD` fields).
RESET_LANE = MappingProxyType({"bias": 0, "mult": 1, "shift": 0})
#: Reset value of the status output ``sync_tag``.
RESET_SYNC_TAG = 0


def reset_window(cfg: TileConfig) -> tuple[int, int, int, int]:
    """The reset window, the whole array: ``(row_start, row_count, col_start, col_count)``."""
    return (0, cfg.rows, 0, cfg.cols)

# Latencies the RTL pipeline adds on top of the work itself; part of the cycle formulas.
#: MVM: the pipeline's stages after the last round's cycles (column address; word lines and the column
#: sum's first half) that the formula counts: the column sum's second half (``hw/crossbar.py``,
#: ``SUM_STAGES``) and the ADC's stages, its code and its term (``hw/adc.py``); the shift-and-add's last
#: accumulation runs on into the next instruction (``WRITE_BEHIND``). 1 until the thirteenth session; 2 with
#: its register inside the column sum; 3 since the fourteenth (a second ADC stage, docs/microarchitecture.md).
MVM_LATENCY = 3
#: REQ's: the requantisation lanes' stages after a chunk enters but the one that runs on into the next
#: instruction (``WRITE_BEHIND``): the inputs (since the eighteenth session), the products, their sum ``p``
#: (since the thirteenth), the saturated quotient (``hw/requant.py``). 1 until the thirteenth session, 2
#: until the eighteenth, 3 since (docs/microarchitecture.md).
REQ_LATENCY = 3
#: Cycles of an MVM's or a REQ's pipeline that run on into the next instruction, beyond the cycles their
#: formulas count: the MVM's accumulator vector and REQ's last output chunk are written in the first
#: cycle of the next instruction. Nothing can observe it: the accumulator and output memories' read
#: ports are transparent to those writes (a read in that cycle returns the written data), and no
#: instruction's first cycle writes either memory. So the pipelines are ``MVM_LATENCY + WRITE_BEHIND``
#: and ``REQ_LATENCY + WRITE_BEHIND`` register stages deep (the ADC's code and the requantisation's
#: inputs, products, their sum and its saturated quotient are registered; ``hw/adc.py``, ``hw/requant.py``) at the
#: cycles of the formulas.
WRITE_BEHIND = 1
#: Cycles between an instruction's first cycle and its first read of the accumulator memory: the memory
#: reads registered addresses only (the field plus the loop offset is registered in the first cycle and read
#: in the second; eighteenth session: the adder in front of the memory's address, fanned out to every LUT RAM
#: of its 384-bit words, was the tile's latest path), so REQ's first chunk and RDACC's first word come a
#: cycle later than before. MVM's old accumulator vector, also read in its second cycle, still arrives before
#: its first codes: its formula is unchanged.
ACC_READ_WAIT = 1
VAU_LATENCY = 2
CELL_CYCLES = 3
#: Pulse phases of a VAU update (each ``pulse_cycles`` long, after the sweep): the array applies a VAU step as
#: open-loop pulses on whole rows and columns at once (no verify), but a half-select scheme drives cells of one
#: polarity on a chosen set of rows and columns per phase. VAUC: the cells that rise, then those that fall (a
#: column's change has one sign). VAUR: one phase per (sign of the row's delta, sign of the column) pair, since
#: with ``pair`` diff the rising cells lie in two such blocks, which one phase cannot drive without disturbing
#: the other two.
VAUR_PHASES = 4
VAUC_PHASES = 2
#: Cycles of an instruction that stops the run with an error (it does no work).
ERROR_CYCLES = 1


@dataclass(frozen=True)
class Spec:
    """What one opcode is: its argument family, its meaning and its cycle formula."""

    op: Opcode
    args: str
    summary: str
    semantics: str
    cycles: str
    space: str = ""  # for ``range`` instructions: the memory the range addresses


def _rq_fields_text() -> str:
    names = {"bias": "signed bias", "mult": "unsigned multiplier", "shift": "shift"}
    return "bits " + ", ".join(f"{f.offset}-{f.offset + f.width - 1} {names[n]}" for n, f in RQ_RECORD)


SPECS: dict[Opcode, Spec] = {s.op: s for s in [
    Spec(Opcode.NOP, "none", "no operation", "Does nothing.", "1"),
    Spec(Opcode.HALT, "none", "stop", "Stops execution; status `done` rises. The cycle counter stops after this "
         "instruction.", "1"),
    Spec(Opcode.SYNC, "sync", "synchronise with the host",
         "Sets the status output `sync_tag` to `tag` so the host can follow progress. Every earlier "
         "instruction has completed (the tile does not overlap instructions).", "1"),
    Spec(Opcode.CFG, "cfg", "set the layer configuration",
         "Sets weight bits `wbits` (1..8), activation bits `abits` (1..8), weight and input signedness and the "
         "ADC range shift. Signed weights need `wbits` >= 2 (else CONFIG).", "1"),
    Spec(Opcode.WIN, "win", "set the crossbar window",
         "Sets the row range and physical column range used by MVM, REQ, VAUR and VAUC. The range must lie "
         "inside the array (else WINDOW).", "1"),
    Spec(Opcode.CFGRQ, "cfgrq", "set requantisation output parameters",
         f"Sets the output zero point and clamp bounds (each in {RQ_VALUE_RANGE[0]}..{RQ_VALUE_RANGE[1]}, "
         "`clamp_lo` <= `clamp_hi`, else "
         "CONFIG) and optional ReLU (clamps below at the zero point).", "1"),
    Spec(Opcode.LOOP, "loop", "hardware loop",
         "Executes the next `body` words `count` times. After each iteration the input, accumulator and output "
         "address offsets grow by `stride_in`, `stride_acc` and `stride_out`; when the loop ends they return to "
         "their values before it. Every buffer address of MVM, REQ, LDIN, RDOUT and RDACC adds the current "
         "offset of its space. Loops nest up to `loop_depth` (else LOOP_DEPTH); a body must end inside the "
         "enclosing body and the loaded program (else LOOP_NEST). Iterations add no cycles of their own.", "1"),
    Spec(Opcode.LDW, "range", "load cell levels",
         "Writes the cell levels of `count` columns starting at `start` from the data-in stream, column by "
         "column (`col_words` words each: row r at bits r*cell_bits), then waits `write_cycles` while the array "
         "programs the column (write-and-verify; the tile takes no data meanwhile). Masked cells are written "
         "too; masks are not changed.",
         "1 + count * (col_words + write_cycles)", "col"),
    Spec(Opcode.LDM, "range", "load sparsity masks",
         "Writes the mask bits of `count` columns starting at `start` from the data-in stream (`mask_words` "
         "words each: bit r is row r; 1 = pruned).", "1 + count * mask_words", "col"),
    Spec(Opcode.LDIN, "range", "load input vectors",
         "Writes `count` input vectors (`rows` bytes each, `in_words` words) from the data-in stream to the "
         "input buffer at `start` + input offset.", "1 + count * in_words", "in"),
    Spec(Opcode.LDD, "range", "load VAU delta vectors",
         "Writes `count` delta vectors (`delta_len` signed bytes each, `delta_words` words) from the data-in "
         "stream to the delta buffer at `start`.", "1 + count * delta_words", "delta"),
    Spec(Opcode.LDRQ, "range", "load per-lane requantisation parameters",
         "Writes `count` lanes starting at lane `start` from the data-in stream; each lane is a "
         f"{RQ_RECORD_BITS}-bit record ({_rq_fields_text()}), `rq_per_word` records per word.",
         "1 + ceil(count / rq_per_word)", "lane"),
    Spec(Opcode.MVM, "mvm", "matrix-vector multiply over the window",
         "Multiplies input vector `in_addr` (array row r takes input byte r) by the window's weights, slicing "
         "inputs (`nis` slices, signed inputs "
         "add a negative sign slice) and converting every (input slice, row group, column) with clipping after "
         "the range shift; writes (or adds to, if `accumulate`) lanes 0..n_out-1 of accumulator `acc_addr`. "
         "With `count` > 1 it does so for input vectors `in_addr + v` into accumulators `acc_addr + v`, "
         "v = 0..count-1, each exactly as a single MVM of those addresses (same `accumulate` for all); the "
         "vectors' conversion rounds follow each other with no issue or drain cycles between them (a vector's "
         "last round may be partial; rounds never mix vectors). Both address ranges are checked whole before "
         "any vector is converted: `in_addr + count - 1` (plus the input offset) below `in_depth`, then "
         "`acc_addr + count - 1` (plus the accumulator offset) below `acc_depth` (else ADDR). The assembly "
         "text omits `count` when it is 1.",
         "1 + count * ceil(nis * nrg * nconv / n_adcs) * adc_cycles + MVM_LATENCY"),
    Spec(Opcode.REQ, "req", "requantise and store",
         "For lanes 0..n_out-1 of accumulator `acc_addr`: (acc + bias) * mult, rounded shift right, plus the "
         "zero point, clamped (and ReLU); stores the bytes to output vector `out_addr`. With `count` > 1 it "
         "does so for accumulators `acc_addr + v` into output vectors `out_addr + v`, v = 0..count-1, each as "
         "a single REQ, with no issue or drain cycles between them. Both ranges are checked whole first: the "
         "accumulator range (plus the accumulator offset) below `acc_depth`, then the output range (plus the "
         "output offset) below `out_depth` (else ADDR). The assembly text omits `count` when it is 1.",
         "1 + ACC_READ_WAIT + count * ceil(n_out / rq_lanes) + REQ_LATENCY"),
    Spec(Opcode.VAUR, "vau", "VAU row update",
         "Adds delta[`delta_addr`][r] times the column's VAU sign (see *VAU polarity*) to every unmasked cell of "
         "every window row r in the selected window columns; levels saturate at 0 and max_level. Masked cells "
         "never change. After the sweep the tile waits `VAUR_PHASES` pulses of `pulse_cycles` while the array "
         "applies the update (open loop, every selected cell at once; see *Programming time*).",
         "1 + nc + VAU_LATENCY + VAUR_PHASES * pulse_cycles"),
    Spec(Opcode.VAUC, "vau", "VAU column update",
         "Adds delta[`delta_addr`][c] times the column's VAU sign (see *VAU polarity*) to every unmasked cell of "
         "every selected window column c (window rows only); levels saturate at 0 and max_level. Masked cells "
         "never change. After the sweep the tile waits `VAUC_PHASES` pulses of `pulse_cycles` (see "
         "*Programming time*).",
         "1 + nc + VAU_LATENCY + VAUC_PHASES * pulse_cycles"),
    Spec(Opcode.WSET, "cell", "write one cell level",
         "Sets cell (`row`, `col`) to level `value` (> max_level is VALUE) unless the cell is masked: the exact "
         "per-weight update VAU is compared with. The write is a write-and-verify like LDW's: the tile waits "
         "`write_cycles` after it (for a masked cell too: the cycles depend on no data; see *Programming time*).",
         "CELL_CYCLES + write_cycles"),
    Spec(Opcode.MSET, "cell", "write one mask bit",
         "Sets the mask bit of cell (`row`, `col`) to `value` (0 = active, 1 = pruned; > 1 is VALUE): prune and "
         "regrow, the only indexed operations. The mask bit is a digital storage bit: no analog programming "
         "time.", "CELL_CYCLES"),
    Spec(Opcode.RDOUT, "range", "read output vectors",
         "Sends `count` output vectors (`cols` bytes each) from `start` + output offset to the data-out stream.",
         "1 + count * out_words", "out"),
    Spec(Opcode.RDACC, "range", "read accumulator vectors",
         "Sends `count` accumulator vectors (`cols` lanes of `acc_bits`) from `start` + accumulator offset to "
         "the data-out stream.", "1 + ACC_READ_WAIT + count * acc_words", "acc"),
    Spec(Opcode.RDW, "range", "read cell levels",
         "Sends the cell levels of `count` columns from `start` to the data-out stream (format of LDW).",
         "1 + count * col_words", "col"),
    Spec(Opcode.RDM, "range", "read masks",
         "Sends the mask bits of `count` columns from `start` to the data-out stream (format of LDM).",
         "1 + count * mask_words", "col"),
]}


# -- field tables derived from the layouts -----------------------------------------------------

_ARGS_OFFSET = INSTR["args"].offset


@dataclass(frozen=True)
class _Field:
    name: str  # name in the layout
    user: str  # name in assembly text and in decoded args (``count`` for ``count_m1``)
    offset: int  # bit offset in the word
    width: int
    signed: bool
    bias: int  # user value = field value + bias

    @property
    def lo(self) -> int:
        return (-(1 << (self.width - 1)) if self.signed else 0) + self.bias

    @property
    def hi(self) -> int:
        return ((1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1) + self.bias


def _fields(layout: data.StructLayout) -> tuple[_Field, ...]:
    out = []
    for name, f in layout:
        shape = f.shape if not isinstance(f.shape, data.Layout) else f.shape.as_shape()
        signed = getattr(shape, "signed", False)
        user, bias = (name[:-3], 1) if name.endswith("_m1") else (name, 0)
        out.append(_Field(name, user, _ARGS_OFFSET + f.offset, f.width, signed, bias))
    return tuple(out)


FIELDS: dict[Opcode, tuple[_Field, ...]] = {op: _fields(ARGS[s.args]) for op, s in SPECS.items()}
#: Bits of a word an opcode may set; any other set bit is RESERVED.
USED_MASK: dict[Opcode, int] = {
    op: ((1 << OPCODE_BITS) - 1) | sum(((1 << f.width) - 1) << f.offset for f in fs) for op, fs in FIELDS.items()
}
_BY_VALUE = {op.value: op for op in Opcode}
_BY_NAME = {op.name: op for op in Opcode}


class EncodeError(CimtileError, ValueError):
    """An instruction field value does not fit its field."""


def encode(op: Opcode, **args: int) -> int:
    """Encode one instruction to a word; fields take user values (``count=4``, not ``count_m1=3``)."""
    if not isinstance(op, Opcode):  # e.g. encode(63): a one-line error, not an AttributeError on .value
        raise EncodeError(f"encode({op!r}): expected an Opcode (e.g. Opcode.MVM), got {type(op).__name__}")
    word = op.value
    table = FIELDS[op]
    names = {f.user for f in table}
    for k in args:
        if k not in names:
            raise EncodeError(f"{op.name}: unknown field {k!r} (fields: {', '.join(sorted(names)) or 'none'})")
    for f in table:
        v = args.get(f.user, f.bias)
        try:
            v = operator.index(v)
        except TypeError:
            raise EncodeError(f"{op.name} {f.user}={v!r}: expected an integer") from None
        if not f.lo <= v <= f.hi:
            raise EncodeError(f"{op.name} {f.user}={v}: allowed range is {f.lo}..{f.hi}")
        word |= ((v - f.bias) & ((1 << f.width) - 1)) << f.offset
    return word


def encode_via_layout(op: Opcode, **args: int) -> int:
    """Encode through ``INSTR.const`` (slow; the reference :func:`encode` is tested against)."""
    raw = {}
    for f in FIELDS[op]:
        raw[f.name] = args.get(f.user, f.bias) - f.bias
    return INSTR.const({"opcode": op, "args": {SPECS[op].args: raw}}).as_value().value


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded word: its opcode (None if undefined), user-valued fields and legality."""

    word: int
    op: Opcode | None
    args: dict
    cause: Cause  # Cause.NONE for a legal word

    def __getattr__(self, name):  # convenient field access: d.count
        try:
            return self.args[name]
        except KeyError:
            raise AttributeError(name) from None

    def text(self) -> str:
        return disassemble_one(self)


def decode(word: int) -> Decoded:
    """Decode a word; an undefined opcode or a set reserved bit gives a Decoded with that cause."""
    word = int(word)
    if not 0 <= word < (1 << WORD_BITS):
        raise ValueError(f"instruction word {word:#x} does not fit {WORD_BITS} bits")
    op = _BY_VALUE.get(word & ((1 << OPCODE_BITS) - 1))
    if op is None:
        return Decoded(word, None, {}, Cause.OPCODE)
    args = {}
    for f in FIELDS[op]:
        v = (word >> f.offset) & ((1 << f.width) - 1)
        if f.signed and v >> (f.width - 1):
            v -= 1 << f.width
        args[f.user] = v + f.bias
    cause = Cause.RESERVED if word & ~USED_MASK[op] else Cause.NONE
    return Decoded(word, op, args, cause)


# -- assembler / disassembler -------------------------------------------------------------------


#: Opcodes whose ``count`` the assembly text leaves out when it is 1 (the multi-vector MVM and REQ: their
#: single-vector text is what it was before ``count`` existed).
_COUNT_OPTIONAL = frozenset({Opcode.MVM, Opcode.REQ})


class AsmError(CimtileError, ValueError):
    """A line of assembly text cannot be assembled (message names the line)."""


def disassemble_one(d: Decoded | int) -> str:
    if not isinstance(d, Decoded):
        d = decode(d)
    if d.op is None or d.cause is not Cause.NONE:
        return f".word {d.word:#018x}  ; illegal: {d.cause.name}"
    parts = [d.op.name] + [f"{f.user}={d.args[f.user]}" for f in FIELDS[d.op]
                           if not (f.user == "count" and d.op in _COUNT_OPTIONAL and d.args["count"] == 1)]
    return " ".join(parts)


def disassemble(words, *, addresses: bool = False) -> str:
    lines = []
    for pc, w in enumerate(words):
        text = disassemble_one(int(w))
        lines.append(f"{pc:5d}: {text}" if addresses else text)
    return "\n".join(lines) + ("\n" if lines else "")


_TOKEN = re.compile(r"^([A-Za-z_][A-Za-z_0-9]*)=(-?(?:0x[0-9a-fA-F]+|\d+))$")


def assemble(text: str) -> list[int]:
    """Assemble text (one instruction per line, ``OP field=value ...``; ``;`` or ``#`` comments)."""
    words = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"[;#]", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        mnemonic, *tokens = line.replace(",", " ").split()
        if mnemonic == ".word":
            if len(tokens) != 1:
                raise AsmError(f"line {lineno}: .word takes one value: {raw.strip()!r}")
            try:
                words.append(int(tokens[0], 0) & ((1 << WORD_BITS) - 1))
            except ValueError:
                raise AsmError(f"line {lineno}: bad .word value {tokens[0]!r}") from None
            continue
        op = _BY_NAME.get(mnemonic.upper())
        if op is None:
            raise AsmError(f"line {lineno}: unknown mnemonic {mnemonic!r}")
        args = {}
        for tok in tokens:
            m = _TOKEN.match(tok)
            if not m:
                raise AsmError(f"line {lineno}: {op.name}: expected field=value, got {tok!r}")
            args[m.group(1)] = int(m.group(2), 0)
        try:
            words.append(encode(op, **args))
        except EncodeError as e:
            raise AsmError(f"line {lineno}: {e}") from None
    return words


# -- geometry of an MVM and cycle formulas ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Geometry:
    """How a layer configuration and a window map onto slices, columns and conversions."""

    nis: int  # input slices
    nws: int  # weight slices
    group: int  # physical columns per logical output
    n_out: int  # logical outputs (accumulator lanes)
    nrg: int  # row groups
    nconv: int  # conversions per (input slice, row group)
    nr: int  # window rows
    nc: int  # window columns
    aligned: bool  # nc is a whole number of groups


def input_slices(abits: int, asigned: bool, dac_bits: int) -> int:
    """Input slices: unsigned ceil(a/d); signed ceil((a-1)/d) magnitude slices plus one sign slice."""
    if asigned:
        return math.ceil((abits - 1) / dac_bits) + 1
    return math.ceil(abits / dac_bits)


def geometry(cfg: TileConfig, wbits: int, abits: int, wsigned: bool, asigned: bool, nr: int, nc: int) -> Geometry:
    """How a layer (CFG) and a window of ``nr`` x ``nc`` map onto slices, groups and conversions; the
    weight layout itself is :mod:`cimtile.hw.encoding`'s."""
    nis = input_slices(abits, asigned, cfg.dac_bits)
    nws = weight_slices(wbits, wsigned, cfg.cell_bits)
    group = group_size(cfg, wbits, wsigned)
    aligned = group > 0 and nc % group == 0
    n_out = nc // group if aligned else 0
    nrg = math.ceil(nr / cfg.rows_per_conv)
    nconv = nc // 2 if paired(cfg, wsigned) else nc
    return Geometry(nis, nws, group, n_out, nrg, nconv, nr, nc, aligned)


def adc_bound(cfg: TileConfig, g: Geometry) -> int:
    """The physical limit of one MVM, the ADC work MVM's formula adds its overhead to:
    ``ceil(nis * nrg * nconv / n_adcs) * adc_cycles``."""
    return -(-(g.nis * g.nrg * g.nconv) // cfg.n_adcs) * cfg.adc_cycles


#: VAU ``pair`` modes: how a row or column delta reaches the two columns of a signed weight.
VAU_PAIR_MODES = ("same", "diff", "pos", "neg")


def vau_column_sign(pair: int, only: int, slice_: int, wsigned: bool, group: int, rel_col: int) -> int:
    """The factor (+1, -1 or 0 = column untouched) a VAU applies to window column ``rel_col``.

    The column's place in its weight group (``q = rel_col % group``) says whether it is a negative
    column (signed weights: ``q`` odd) and which weight slice it holds (``q // 2`` signed, ``q``
    unsigned). ``pair``: 0 ``same`` adds the delta to every column (the raw physical update); 1
    ``diff`` adds it to positive and subtracts it from negative columns, so a positive delta raises
    the logical weight; 2 ``pos`` updates positive columns only; 3 ``neg`` subtracts it from negative
    columns only. ``only`` restricts the update to the columns of weight slice ``slice_``.
    Unsigned layers have only positive columns. A window that is not a whole number of groups uses
    the same rule (columns counted from the window's first column).
    """
    sl, neg = column_role(rel_col % group if group else 0, wsigned)
    if only and sl != slice_:
        return 0
    if pair == 0:
        return 1
    if pair == 2:
        return 0 if neg else 1
    if pair == 3:
        return -1 if neg else 0
    return -1 if neg else 1


_CONSTS = {"MVM_LATENCY": MVM_LATENCY, "REQ_LATENCY": REQ_LATENCY, "ACC_READ_WAIT": ACC_READ_WAIT,
           "VAU_LATENCY": VAU_LATENCY,
           "CELL_CYCLES": CELL_CYCLES, "VAUR_PHASES": VAUR_PHASES, "VAUC_PHASES": VAUC_PHASES, "ceil": math.ceil}
_CYCLE_CODE = {op: compile(s.cycles, f"<cycles {op.name}>", "eval") for op, s in SPECS.items()}
_CFG_NAMES = ("rows", "cols", "n_adcs", "adc_cycles", "rq_lanes", "in_words", "col_words", "mask_words",
              "delta_words", "out_words", "acc_words", "rq_per_word", "write_cycles", "pulse_cycles")


def cfg_namespace(cfg: TileConfig) -> dict:
    """The TileConfig quantities the cycle formulas may use."""
    ns = dict(_CONSTS)
    for n in _CFG_NAMES:
        ns[n] = getattr(cfg, n)
    return ns


def cycles(op: Opcode, cfg_ns: dict, args: dict, geo: Geometry | None = None) -> int:
    """Cycles of one instruction by its documented formula.

    ``cfg_ns`` is :func:`cfg_namespace` of the TileConfig; ``geo`` is needed by MVM, REQ, VAUR, VAUC.
    ``args`` are user-valued fields (a :class:`Decoded`'s ``args``); a field left out takes the value
    :func:`encode` gives it by default (``count`` 1 for MVM and REQ).
    """
    local = {f.user: f.bias for f in FIELDS[op]}  # a field not in ``args`` takes encode's default (count 1)
    local.update(args)
    if geo is not None:
        local.update(nis=geo.nis, nrg=geo.nrg, nconv=geo.nconv, n_out=geo.n_out, nr=geo.nr, nc=geo.nc)
    return eval(_CYCLE_CODE[op], cfg_ns, local)  # noqa: S307 - formulas are this module's constants


def describe() -> dict:
    """The ISA as plain data, its one export: word size, opcodes (fields with bit offsets and widths,
    used bits, cycle formula, stream direction), causes, latency constants, the LDRQ record, the
    CFGRQ value range and the reset state.

    Written beside generated Verilog (``tile.json``, key ``isa``, by :func:`cimtile.hw.build.generate`);
    its layout part is snapshotted by the tests.
    """
    return {
        "word_bits": WORD_BITS,
        "opcode_bits": OPCODE_BITS,
        "opcodes": {
            op.name: {
                "value": op.value,
                "args": s.args,
                "fields": [
                    {"name": f.name, "offset": f.offset, "width": f.width, "signed": f.signed, "bias": f.bias}
                    for f in FIELDS[op]
                ],
                "cycles": s.cycles,
                "used_mask": USED_MASK[op],
                "stream": "in" if op in LOADS else "out" if op in READS else None,
            }
            for op, s in SPECS.items()
        },
        "causes": {c.name: c.value for c in Cause},
        "constants": {k: v for k, v in _CONSTS.items() if k != "ceil"},
        "rq_record": {
            "bits": RQ_RECORD_BITS,
            "fields": [{"name": n, "offset": f.offset, "width": f.width, "signed": f.shape.signed}
                       for n, f in RQ_RECORD],
        },
        "rq_value_range": list(RQ_VALUE_RANGE),
        "reset": {"cfg": dict(RESET_CFG), "cfgrq": dict(RESET_CFGRQ), "lane": dict(RESET_LANE),
                  "sync_tag": RESET_SYNC_TAG, "window": "the whole array"},
    }


# -- documentation ------------------------------------------------------------------------------


def render_doc() -> str:
    """Markdown for docs/isa.md (a test checks the file equals this)."""
    from .params import TileConfig as _TC

    out = [
        "# cimtile ISA",
        "",
        "<!-- generated by `python -m cimtile.hw.isa --doc`; do not edit by hand (tests/test_isa.py checks it) -->",
        "",
        f"Instruction words are {WORD_BITS} bits: the opcode in bits 0-{OPCODE_BITS - 1}, the arguments from bit "
        f"{_ARGS_OFFSET}. Every bit outside an opcode's fields must be zero (else `RESERVED`); an undefined "
        f"opcode is `OPCODE`. On an error the tile stops at that instruction, which counts {ERROR_CYCLES} cycle, "
        "and reports the cause and its program counter. Fields named `count` or `body` are stored minus one.",
        "",
        "When one instruction could raise several causes, the first in this order wins: `OPCODE`, `RESERVED`, "
        "then `LOOP_DEPTH` before `LOOP_NEST`, `WINDOW` and `CONFIG` before `ADDR`, `ADDR` before `VALUE`; of "
        "two addresses of one instruction, the field listed first is checked first (MVM `in_addr` before "
        "`acc_addr`, REQ `acc_addr` before `out_addr`; with `count`, each over its whole range). A load that "
        "raises an error consumes no data.",
        "",
        "## Execution model",
        "",
        "The host writes the program into program memory (`prog_depth` words) through the instruction stream, "
        "then starts the tile; it runs from word 0 until `HALT`. Load instructions take their data from the "
        "data-in stream and read instructions send theirs to the data-out stream, both `bus_bits` wide. The "
        "cycle count runs from the first instruction to `HALT` inclusive and leaves out cycles in which the tile "
        "waits for the host (an empty data-in stream, a full data-out stream). Instructions do not overlap: each "
        "costs exactly its formula below.",
        "",
        "State kept across runs: cell levels and masks, all buffers, the layer configuration (`CFG`, `WIN`, "
        "`CFGRQ`) and the requantisation lanes. Reset values: levels, masks and buffers 0; `CFG "
        + " ".join(f"{k}={v}" for k, v in RESET_CFG.items()) + "`; the window is the whole array; `CFGRQ "
        + " ".join(f"{k}={v}" for k, v in RESET_CFGRQ.items()) + "`; every lane bias {bias}, multiplier {mult}, "
        "shift {shift}. Each run starts with the program counter, loop stack and address offsets at 0.".format(
            **RESET_LANE),
        "",
        "## Arithmetic",
        "",
        "- **Input slicing.** An input byte is read as its low `abits` bits (two's complement when signed). "
        "Unsigned inputs give `ceil(abits/dac_bits)` slices of `dac_bits` bits, slice k weighted `2^(k*dac_bits)`. "
        "Signed inputs give `ceil((abits-1)/dac_bits)` slices of the low `abits-1` bits plus one slice holding "
        "the sign bit, weighted `-2^(abits-1)` (the top slice counts negatively).",
        "- **Weight slicing.** Unsigned weights of `wbits` bits use `ceil(wbits/cell_bits)` columns, least "
        "significant slice first. Signed weights (magnitude `wbits-1` bits, range +-(2^(wbits-1)-1)) use a "
        "positive and a negative column per slice, ordered `s0+ s0- s1+ s1- ...`; slice s is weighted "
        "`2^(s*cell_bits)`. Logical output j of a window occupies physical columns `col_start + j*group ..`; "
        "`n_out = window columns / group` (a window that is not a whole number of groups is `WINDOW`).",
        "- **Conversion.** For each input slice, each group of `rows_per_conv` window rows and each column, the "
        "column sum `S = sum(slice value x level)` over unmasked cells is converted: "
        "`code = clip(S >> adc_shift, 0, 2^adc_bits - 1)` and contributes `code << adc_shift`. With "
        "`differential-analog` encoding and signed weights a column pair is converted once: "
        "`clip((S+ - S-) >> adc_shift, -2^(adc_bits-1), 2^(adc_bits-1) - 1)` (`>>` is an arithmetic shift).",
        "- **Shift-and-add.** Each contribution is multiplied by its input-slice weight, its weight-slice weight "
        "and -1 for a negative column, summed with the previous accumulator (when accumulating) and wrapped to "
        "`acc_bits` two's complement.",
        "- **Requantisation.** `v = acc + bias; p = v * mult; r = (p + 2^(shift-1)) >> shift` (no rounding term "
        "when shift is 0; round half up); `q = min(max(r + zero_point, lo), clamp_hi)` with "
        "`lo = max(clamp_lo, zero_point)` under ReLU, else `clamp_lo`; stored as a byte (two's complement).",
        "- **Indexing.** Rows and columns are array indices: MVM applies input byte r to array row r, VAUR and "
        "VAUC take delta entry r (row) or c (column) of the delta vector, lanes count from 0 in every window.",
        "- **VAU polarity.** A VAU step changes cell levels, but training wants to move *logical* weights. "
        "Window column p (counted from `col_start`) sits at place `q = p mod group` of its weight group "
        "(`group` of the current CFG; weight slices least significant first, signed weights `s0+ s0- s1+ s1- "
        "...`): it is a negative column when the weights are signed and q is odd, and it holds weight slice "
        "`q div 2` (signed) or `q` (unsigned). Field `pair` gives each column a sign: 0 `same` +1 on every "
        "column (the raw physical update; with differential columns it moves both cells of a weight alike, "
        "leaving the weight unchanged); 1 `diff` +1 on positive, -1 on negative columns (a positive delta "
        "raises every weight of the row or column by up to twice the delta); 2 `pos` +1 on positive columns "
        "only; 3 `neg` -1 on negative columns only. With `only` = 1 only the columns of weight slice `slice` "
        "change (the others keep their levels), so a delta moves a weight by `2^(slice*cell_bits)` per level. "
        "A cell's new level is `clip(level + sign x delta, 0, max_level)`; columns with sign 0 and masked cells "
        "keep their levels. The cost stays one sweep of the window columns.",
        "- **Masks.** A masked cell contributes 0 to every column sum and is never changed by VAUR, VAUC or "
        "WSET; with differential columns a weight whose cells are all masked is exactly 0.",
        "",
        "## Programming time",
        "",
        "The analog array is programmed in two ways; the cycle formulas charge each its time (TileConfig "
        "`write_cycles` and `pulse_cycles`, cited defaults in docs/tile-config.md). The tile takes no other "
        "instruction meanwhile.",
        "",
        "- **Write-and-verify** (LDW, WSET): program-and-read iterations until every cell holds its level. The "
        "array runs the loop on the cells of one column at once, so LDW waits `write_cycles` per column, and "
        "WSET, which programs one cell, waits the same `write_cycles` (one cell needs as many iterations as a "
        "column's cells). An exact update of many cells of a column is therefore cheaper as one LDW of the "
        "column than as WSETs.",
        "- **Open-loop pulses** (VAUR, VAUC): no verify. After the sweep (the periphery computes every column's "
        "new levels, one column per cycle), the drivers pulse all selected rows and columns at once; a "
        "half-select scheme drives one polarity on a chosen set of rows and columns per phase, so VAUC takes "
        f"`VAUC_PHASES = {VAUC_PHASES}` phases (the cells that rise, those that fall: a column's change has one "
        f"sign) and VAUR `VAUR_PHASES = {VAUR_PHASES}` (the sign of the row's delta times the sign of the "
        "column; with `pair` diff the rising cells lie in two such blocks, which one phase cannot drive without "
        "disturbing the other two), each `pulse_cycles` long. A delta of several levels lands as an exact level "
        "step in one phase: an idealisation, like the exact level steps themselves (a device stepped by "
        "identical pulses needs one pulse per level); for one-level deltas both views agree.",
        "- **Masks** (LDM, MSET) are digital bits beside the cells: no programming time.",
        "",
        "## Cycle formulas",
        "",
        "Names: the instruction's fields; TileConfig fields; `in_words`, `col_words`, `mask_words`, "
        "`delta_words`, `out_words`, `acc_words` (bus words per item), `rq_per_word`; for MVM/REQ/VAU the "
        "geometry of the current CFG and WIN: `nis` input slices, `nrg = ceil(window rows / rows_per_conv)`, "
        "`nconv` conversions per slice and row group (window columns, halved for signed weights with "
        "`differential-analog`), `n_out`, `nc` window columns. Constants: "
        + ", ".join(f"`{k} = {v}`" for k, v in _CONSTS.items() if k != "ceil") + ".",
        "",
        "## Error causes",
        "",
        "| code | name |",
        "| --- | --- |",
    ]
    out += [f"| {c.value} | `{c.name}` |" for c in Cause]
    out += ["", "## Instructions", ""]
    out += ["| opcode | mnemonic | summary | cycles |", "| --- | --- | --- | --- |"]
    out += [f"| {s.op.value} | `{s.op.name}` | {s.summary} | `{s.cycles}` |" for s in SPECS.values()]
    out.append("")
    for s in SPECS.values():
        out += [f"### {s.op.name} ({s.op.value}): {s.summary}", "", s.semantics, ""]
        fs = FIELDS[s.op]
        if fs:
            out += ["| field | bits | range |", "| --- | --- | --- |"]
            for f in fs:
                name = f.user + (" (stored minus one)" if f.bias else "")
                out.append(f"| `{name}` | {f.offset}..{f.offset + f.width - 1} | {f.lo}..{f.hi} |")
            out.append("")
        out += [f"Cycles: `{s.cycles}`", ""]
    out += ["## TileConfig fields", "", "| field | meaning |", "| --- | --- |"]
    out += [f"| `{k}` | {v} |" for k, v in _TC.field_docs().items()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover - exercised by `make docs`
    import sys

    if sys.argv[1:] == ["--doc"]:
        sys.stdout.write(render_doc())
    else:
        sys.stderr.write("usage: python -m cimtile.hw.isa --doc\n")
        sys.exit(2)
