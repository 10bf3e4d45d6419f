"""Drivers and monitors of the tile's interfaces (simulator side; imported only under cocotb).

They do not toggle signals cycle by cycle. A driver writes its whole stream to a hex file and
programs the wrapper's gate pattern; the wrapper (tb/wrapper.py) plays it out in the simulator. An
idle or back-pressure pattern is what cocotbext-axi's ``set_pause_generator`` takes, an iterable
of 0/1 that repeats (``itertools.cycle([1, 1, 1, 0])``), given here as a list: 1 = offer/accept in
that cycle, 0 = idle. ``Pattern.random(seed)`` is the wrapper's LFSR gate (high 3 cycles in 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DinDriver", "DoutMonitor", "InstrDriver", "Pattern", "write_hex", "read_hex"]

MAX_PATTERN = 32


@dataclass(frozen=True)
class Pattern:
    """A repeating gate: ``bits`` cycled (like ``itertools.cycle(bits)``), or pseudo-random."""

    bits: tuple[int, ...] = (1,)
    random: bool = False

    @classmethod
    def of(cls, spec: Pattern | Sequence[int] | str | None) -> Pattern:
        """A pattern from a list of 0/1, ``"random"``, ``None`` (always on) or a Pattern."""
        if spec is None:
            return cls()
        if isinstance(spec, Pattern):
            return spec
        if spec == "random":
            return cls((1,), True)
        bits = tuple(int(b) for b in spec)
        if not 1 <= len(bits) <= MAX_PATTERN or any(b not in (0, 1) for b in bits) or 1 not in bits:
            raise ValueError(f"pattern {list(bits)}: need 1..{MAX_PATTERN} entries of 0/1 with at least one 1")
        return cls(bits)

    def register(self) -> tuple[int, int]:
        """(pattern word, length) for the wrapper; length 0 selects the LFSR gate."""
        if self.random:
            return 0, 0
        return sum(b << i for i, b in enumerate(self.bits)), len(self.bits)

    def __str__(self) -> str:
        return "random" if self.random else "".join(map(str, self.bits))


def write_hex(path: Path, words: Sequence[int], bits: int) -> None:
    """One word per line, as ``$readmemh`` reads it."""
    digits = bits // 4
    Path(path).write_text("".join(f"{int(w):0{digits}x}\n" for w in words))


def read_hex(path: Path, count: int) -> list[int]:
    """The first ``count`` words ``$writememh`` wrote (comment lines skipped)."""
    if count == 0:
        return []
    out = []
    for line in Path(path).read_text().split("\n"):
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        out.append(int(line, 16))
        if len(out) == count:
            break
    return out


def _limbs_to_ints(words: np.ndarray) -> list[int]:
    """uint64 limb rows (little-endian limbs) to Python ints, without a per-limb Python loop."""
    words = np.ascontiguousarray(words, dtype="<u8")
    if words.ndim == 1:
        words = words[:, None]
    raw = words.tobytes()
    n = words.shape[1] * 8
    return [int.from_bytes(raw[i:i + n], "little") for i in range(0, len(raw), n)]


class InstrDriver:
    """The instruction stream: the program's words, offered with an idle pattern."""

    def __init__(self, dut, workdir: Path):
        self.dut, self.workdir = dut, Path(workdir)
        self.pattern = Pattern()

    def set_pause(self, pattern) -> None:
        self.pattern = Pattern.of(pattern)

    def stage(self, words: Sequence[int]) -> None:
        write_hex(self.workdir / "prog.hex", words, 64)
        pat, n = self.pattern.register()
        self.dut.prog_len.value = len(words)
        self.dut.instr_pat.value = pat
        self.dut.instr_pat_len.value = n


class DinDriver:
    """The data-in stream: bus words (uint64 limb rows) offered with an idle pattern."""

    def __init__(self, dut, workdir: Path, bus_bits: int):
        self.dut, self.workdir, self.bus_bits = dut, Path(workdir), bus_bits
        self.pattern = Pattern()
        self.staged = 0

    def set_pause(self, pattern) -> None:
        self.pattern = Pattern.of(pattern)

    def stage(self, words: np.ndarray) -> None:
        ints = _limbs_to_ints(words) if len(words) else []
        write_hex(self.workdir / "din.hex", ints, self.bus_bits)
        pat, n = self.pattern.register()
        self.dut.din_len.value = len(ints)
        self.dut.din_pat.value = pat
        self.dut.din_pat_len.value = n
        self.staged = len(ints)

    def used(self) -> int:
        return int(self.dut.din_used.value)


class DoutMonitor:
    """The data-out stream: words the wrapper captured, accepted with a back-pressure pattern."""

    def __init__(self, dut, workdir: Path, bus_bits: int):
        self.dut, self.workdir, self.bus_bits = dut, Path(workdir), bus_bits
        self.pattern = Pattern()

    def set_pause(self, pattern) -> None:
        self.pattern = Pattern.of(pattern)

    def stage(self) -> None:
        pat, n = self.pattern.register()
        self.dut.dout_pat.value = pat
        self.dut.dout_pat_len.value = n
        (self.workdir / "dout.hex").unlink(missing_ok=True)

    def collect(self) -> np.ndarray:
        """Captured words as uint64 limb rows (count x bus_bits/64)."""
        n = int(self.dut.dout_count.value)
        ints = read_hex(self.workdir / "dout.hex", n)
        limbs = self.bus_bits // 64
        raw = b"".join(v.to_bytes(limbs * 8, "little") for v in ints)
        return np.frombuffer(raw, dtype="<u8").reshape(len(ints), limbs).copy()
