"""TileConfig: the parameters of one crossbar tile, defined once for hw, compiler, sim and tb."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from cimtile.errors import CimtileError

__all__ = [
    "ADDR_BITS",
    "PRESET_CLOCK_MHZ",
    "WRITE_US_PER_XBAR",
    "WRITE_XBAR_COLS",
    "write_cycles_for",
    "PULSE_NS",
    "pulse_cycles_for",
    "MAX_DIM",
    "ConfigError",
    "ENCODINGS",
    "PRESETS",
    "TileConfig",
    "load_config",
]

#: Width of every address, start and count field of the ISA; bounds rows, columns and depths.
ADDR_BITS = 10
#: Largest number of rows, columns or buffer entries the ISA can address.
MAX_DIM = 1 << ADDR_BITS

#: Signed-weight encodings.  Both keep a masked cell at weight zero.
#:
#: ``differential``: a signed weight uses a positive and a negative column per weight slice;
#: the ADC converts each column separately and the digital shift-and-add subtracts.
#: ``differential-analog``: the two columns of a pair are subtracted as currents before one
#: conversion by an ADC with a signed range (half the conversions, a signed clipping range).
ENCODINGS = ("differential", "differential-analog")


class ConfigError(CimtileError, ValueError):
    """A TileConfig field is out of its allowed range (one-line message naming the field)."""


#: CIM-AQ's cost of writing one 256x256 crossbar (write-and-verify), in microseconds: the programming time
#: the presets' ``write_cycles`` come from (CIM-AQ, arXiv 2601.21737: 56 us per crossbar write
#: against 1.4 us per MVM step; search/cimaq.py uses the same figures).
WRITE_US_PER_XBAR = 56.0
#: Columns of the crossbar CIM-AQ's write time is for.
WRITE_XBAR_COLS = 256
#: The clock at which the presets turn that time into cycles (a 1 GHz tile clock, ISAAC's class of clock).
PRESET_CLOCK_MHZ = 1000.0


def write_cycles_for(clock_mhz: float = PRESET_CLOCK_MHZ, us_per_xbar: float = WRITE_US_PER_XBAR,
                     xbar_cols: int = WRITE_XBAR_COLS) -> int:
    """Cycles per programmed column for a crossbar write of ``us_per_xbar`` microseconds over ``xbar_cols``
    columns at ``clock_mhz``: ``round(us * MHz / cols)`` (219 for CIM-AQ's 56 us per 256 columns at 1 GHz).

    Columns are programmed one after another (the write-and-verify loop drives one bitline's cells at a time),
    so a tile that programs only some columns of its array pays only for those."""
    return int(round(us_per_xbar * clock_mhz / xbar_cols))


#: Width of one open-loop programming pulse of an analog cell, in nanoseconds: the pulse a VAU update applies
#: (``pulse_cycles``). NeuroSim's ideal analog synaptic device takes one 10 ns write pulse per conductance level
#: (neurosim/MLP_NeuroSim_V3.0, Cell.cpp, ``IdealDevice``: ``writePulseWidthLTP = writePulseWidthLTD = 10e-9``).
PULSE_NS = 10.0


def pulse_cycles_for(clock_mhz: float = PRESET_CLOCK_MHZ, pulse_ns: float = PULSE_NS) -> int:
    """Cycles of one programming pulse of ``pulse_ns`` nanoseconds at ``clock_mhz``: ``ceil(ns * MHz / 1000)``
    (10 for NeuroSim's 10 ns pulse at 1 GHz). Rounded up: a pulse shorter than a cycle still takes one."""
    return max(1, math.ceil(pulse_ns * clock_mhz / 1000.0 - 1e-9))


def _doc(text: str, lo: int | None = None, hi: int | None = None, **kw):
    return field(metadata={"doc": text, "lo": lo, "hi": hi}, **kw)


@dataclass(frozen=True)
class TileConfig:
    """Parameters of one crossbar tile.

    Every field is validated on construction; an invalid value raises :class:`ConfigError`
    with a one-line message naming the field, the value and the allowed range.

    Attributes
    ----------
    name : str
        Name of the configuration (a preset name, or any identifier).
    rows, cols : int
        Crossbar wordlines (inputs) and bitlines (physical columns).
    cell_bits : int
        Bits stored per cell: levels ``0 .. 2**cell_bits - 1``.
    dac_bits : int
        Bits applied per input slice by the row DACs.
    adc_bits : int
        ADC resolution.
    n_adcs : int
        ADCs shared among the columns (a column multiplexer sequences them).
    adc_cycles : int
        Clock cycles one ADC conversion takes.
    rows_per_conv : int
        Rows active in one conversion; a row range is converted in groups of this many rows.
    weight_encoding : str
        Signed-weight encoding, one of :data:`ENCODINGS`.
    acc_bits : int
        Accumulator width; accumulators wrap modulo ``2**acc_bits``.
    in_depth, acc_depth, out_depth, delta_depth : int
        Entries (vectors) in the input, accumulator, output and VAU delta buffers.
    prog_depth : int
        Instruction words the program memory holds.
    loop_depth : int
        Nesting depth of hardware loops.
    rq_lanes : int
        Accumulator lanes the requantisation unit processes per cycle.
    bus_bits : int
        Width of the data-in and data-out streams (a multiple of 64).
    write_cycles : int
        Cycles the analog array takes to program one column (write-and-verify of its cells), after the
        column's data arrived: an ``LDW`` of ``count`` columns waits ``count * write_cycles`` cycles
        (:data:`WRITE_US_PER_XBAR` and :func:`write_cycles_for` give the cited defaults). A ``WSET`` (one cell,
        exact) runs the same write-and-verify loop and waits ``write_cycles`` too.
    pulse_cycles : int
        Cycles of one open-loop programming pulse of the array (no verify): a ``VAUR`` applies its row deltas in
        ``VAUR_PHASES`` pulse phases, a ``VAUC`` its column deltas in ``VAUC_PHASES`` (:mod:`cimtile.hw.isa`),
        every selected cell of the window at once (:data:`PULSE_NS` and :func:`pulse_cycles_for` give the cited
        default).
    """

    name: str = _doc("name of the configuration", default="custom")
    rows: int = _doc("crossbar rows (wordlines, inputs)", 2, MAX_DIM, default=16)
    cols: int = _doc("crossbar physical columns (bitlines)", 2, MAX_DIM, default=16)
    cell_bits: int = _doc("bits per cell", 1, 4, default=2)
    dac_bits: int = _doc("bits per input slice (DAC resolution)", 1, 4, default=1)
    adc_bits: int = _doc("ADC resolution in bits", 2, 14, default=4)
    n_adcs: int = _doc("number of ADCs shared among the columns", 1, MAX_DIM, default=2)
    adc_cycles: int = _doc("clock cycles per ADC conversion", 1, 16, default=1)
    rows_per_conv: int = _doc("rows active in one conversion", 1, MAX_DIM, default=8)
    weight_encoding: str = field(
        default="differential",
        metadata={"doc": "signed-weight encoding: " + " | ".join(ENCODINGS), "lo": None, "hi": None},
    )
    acc_bits: int = _doc("accumulator width in bits", 16, 40, default=24)
    in_depth: int = _doc("input buffer depth in vectors", 1, MAX_DIM, default=32)
    acc_depth: int = _doc("accumulator buffer depth in vectors", 1, MAX_DIM, default=32)
    out_depth: int = _doc("output buffer depth in vectors", 1, MAX_DIM, default=32)
    delta_depth: int = _doc("VAU delta buffer depth in vectors", 1, MAX_DIM, default=4)
    prog_depth: int = _doc("program memory depth in instruction words", 2, 1 << 16, default=256)
    loop_depth: int = _doc("hardware loop nesting depth", 1, 8, default=3)
    rq_lanes: int = _doc("requantisation lanes per cycle", 1, MAX_DIM, default=2)
    bus_bits: int = _doc("data stream width in bits (multiple of 64)", 64, 4096, default=64)
    # progcost: programming the analog array is part of the cost (issue 10); cited default, see WRITE_US_PER_XBAR
    write_cycles: int = _doc("cycles of write-and-verify per programmed column (LDW waits this per column, WSET "
                             "per cell); default: CIM-AQ's 56 us per 256-column crossbar write at 1 GHz", 0, 1 << 16,
                             default=write_cycles_for())
    # vau-timing (issue 12): a VAU update is open-loop pulses on whole rows/columns, not a write-and-verify
    pulse_cycles: int = _doc("cycles of one open-loop programming pulse of the array (VAUR and VAUC wait one per pulse "
                             "phase, docs/isa.md); default: NeuroSim's 10 ns analog write pulse at 1 GHz", 0, 1 << 12,
                             default=pulse_cycles_for())

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi = f.metadata["lo"], f.metadata["hi"]
            if lo is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"TileConfig.{f.name} = {value!r}: expected an integer in {lo}..{hi}")
            if not lo <= value <= hi:
                raise ConfigError(f"TileConfig.{f.name} = {value}: allowed range is {lo}..{hi}")
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"TileConfig.name = {self.name!r}: expected an identifier (letters, digits, _)")
        if self.weight_encoding not in ENCODINGS:
            raise ConfigError(
                f"TileConfig.weight_encoding = {self.weight_encoding!r}: allowed values are "
                + ", ".join(ENCODINGS)
            )
        if self.n_adcs > self.cols:
            raise ConfigError(f"TileConfig.n_adcs = {self.n_adcs}: allowed range is 1..cols ({self.cols})")
        if self.rows_per_conv > self.rows:
            raise ConfigError(
                f"TileConfig.rows_per_conv = {self.rows_per_conv}: allowed range is 1..rows ({self.rows})"
            )
        if self.rq_lanes > self.cols:
            raise ConfigError(f"TileConfig.rq_lanes = {self.rq_lanes}: allowed range is 1..cols ({self.cols})")
        if self.bus_bits % 64:
            raise ConfigError(f"TileConfig.bus_bits = {self.bus_bits}: must be a multiple of 64")

    # -- derived values -------------------------------------------------------------------------

    @property
    def max_level(self) -> int:
        """Highest cell level."""
        return (1 << self.cell_bits) - 1

    @property
    def analog_diff(self) -> bool:
        """True when differential pairs are subtracted before the ADC."""
        return self.weight_encoding == "differential-analog"

    @property
    def adc_max(self) -> int:
        """Largest single-ended ADC code (:func:`cimtile.hw.encoding.adc_code_range` defines the ranges)."""
        from .encoding import adc_code_range  # encoding imports this module

        return adc_code_range(self.adc_bits, False)[1]

    @property
    def delta_len(self) -> int:
        """Entries in one VAU delta vector (indexed by row for row updates, by column for column updates)."""
        return max(self.rows, self.cols)

    def _words(self, bits: int) -> int:
        return math.ceil(bits / self.bus_bits)

    @property
    def in_words(self) -> int:
        """Bus words per input vector (``rows`` bytes)."""
        return self._words(8 * self.rows)

    @property
    def col_words(self) -> int:
        """Bus words per column of cell levels (``rows`` x ``cell_bits``)."""
        return self._words(self.cell_bits * self.rows)

    @property
    def mask_words(self) -> int:
        """Bus words per column of mask bits (``rows`` bits)."""
        return self._words(self.rows)

    @property
    def delta_words(self) -> int:
        """Bus words per delta vector (``delta_len`` signed bytes)."""
        return self._words(8 * self.delta_len)

    @property
    def out_words(self) -> int:
        """Bus words per output vector (``cols`` bytes)."""
        return self._words(8 * self.cols)

    @property
    def acc_words(self) -> int:
        """Bus words per accumulator vector (``cols`` x ``acc_bits``)."""
        return self._words(self.acc_bits * self.cols)

    @property
    def rq_per_word(self) -> int:
        """Requantisation records (64 bits each) per bus word."""
        return self.bus_bits // 64

    # -- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> TileConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"TileConfig: expected a JSON object, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        d = dict(d)
        base = d.pop("base", None)
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"TileConfig: unknown field {unknown[0]!r} (known: base, {', '.join(known)})")
        if base is not None:
            # Explicit inheritance: the fields not given take the named preset's values (never silently tiny's).
            if not isinstance(base, str) or base not in PRESETS:
                raise ConfigError(f"TileConfig.base = {base!r}: expected a preset name ({', '.join(PRESETS)})")
            if "name" not in d:
                raise ConfigError(f"TileConfig: a config based on {base!r} needs its own \"name\"")
            d = {**PRESETS[base].to_dict(), **d}
        missing = [k for k in known if k not in d]
        if missing:
            raise ConfigError(f"TileConfig: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                              "(give every field, or \"base\": \"<preset>\" to take the others from a preset)")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> TileConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"TileConfig: invalid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TileConfig:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"TileConfig: cannot read {path}: {e.strerror}") from None
        return cls.from_json(text)

    def replace(self, **changes) -> TileConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        return {f.name: f.metadata["doc"] for f in fields(cls)}


PRESETS: dict[str, TileConfig] = {
    # Small enough for fast RTL simulation, with two row groups, two shared ADCs and an ADC
    # narrow enough (4 bits) that clipping is exercised.
    "tiny": TileConfig(
        name="tiny", rows=16, cols=16, cell_bits=2, dac_bits=1, adc_bits=4, n_adcs=2, adc_cycles=1,
        rows_per_conv=8, weight_encoding="differential", acc_bits=24, in_depth=32, acc_depth=32,
        out_depth=32, delta_depth=4, prog_depth=256, loop_depth=3, rq_lanes=2, bus_bits=64,
        # not a physical device: a short wait keeps RTL simulations fast while exercising it
        write_cycles=3, pulse_cycles=2,
    ),
    # ISAAC-like: 128x128 crossbar, 2-bit cells, 1-bit DAC, 8-bit ADC, 8 shared ADCs.
    "isaac": TileConfig(
        name="isaac", rows=128, cols=128, cell_bits=2, dac_bits=1, adc_bits=8, n_adcs=8, adc_cycles=1,
        rows_per_conv=128, weight_encoding="differential", acc_bits=32, in_depth=64, acc_depth=64,
        out_depth=64, delta_depth=4, prog_depth=1024, loop_depth=4, rq_lanes=8, bus_bits=256,
        write_cycles=write_cycles_for(),  # ISAAC charges no programming; the RRAM write time of CIM-AQ per column
        pulse_cycles=pulse_cycles_for(),  # NeuroSim's 10 ns analog write pulse
    ),
    # CIM-AQ-like: 256x256 crossbar, 4-bit cells, 1-bit DAC, differential columns.
    "cimaq": TileConfig(
        name="cimaq", rows=256, cols=256, cell_bits=4, dac_bits=1, adc_bits=8, n_adcs=16, adc_cycles=1,
        rows_per_conv=256, weight_encoding="differential", acc_bits=32, in_depth=64, acc_depth=64,
        out_depth=64, delta_depth=4, prog_depth=1024, loop_depth=4, rq_lanes=16, bus_bits=512,
        write_cycles=write_cycles_for(),  # 56 us per 256-column crossbar at 1 GHz (CIM-AQ)
        pulse_cycles=pulse_cycles_for(),  # NeuroSim's 10 ns analog write pulse
    ),
}


def load_config(spec: str | TileConfig) -> TileConfig:
    """A preset name, a path to a JSON file, or a TileConfig itself."""
    if isinstance(spec, TileConfig):
        return spec
    if spec in PRESETS:
        return PRESETS[spec]
    p = Path(spec)
    if p.suffix == ".json" or p.exists():
        return TileConfig.load(p)
    raise ConfigError(f"tile {spec!r}: not a preset ({', '.join(PRESETS)}) nor a JSON file")
