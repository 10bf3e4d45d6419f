"""The layer IR: quantisation specs, host steps and tile layers, in execution order."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["QSpec", "QConst", "Tensor", "HostStep", "TileLayer", "Program", "Model", "bits_of_range", "FeedRef",
           "MaskBlock", "RqBlock", "LevelBlock", "InputBlock", "OutputSlice", "ref_to_json", "feed_from_json",
           "read_from_json"]


def bits_of_range(lo: int, hi: int) -> int:
    """Bits of the narrowest integer type (unsigned if ``lo >= 0``, else two's complement) holding lo..hi."""
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return max(int(hi).bit_length(), 1)
    return max(int(hi).bit_length(), int(-lo - 1).bit_length()) + 1


@dataclass
class QSpec:
    """Affine quantisation ``real = (code - zero_point) * scale`` with codes in ``lo..hi``.

    ``scale`` and ``zero_point`` are scalars (per tensor) or 1-D arrays along ``axis`` (per channel).
    """

    scale: np.ndarray
    zero_point: np.ndarray
    lo: int
    hi: int
    axis: int | None = None

    def __post_init__(self):
        self.scale = np.asarray(self.scale, dtype=np.float64)
        self.zero_point = np.asarray(self.zero_point, dtype=np.int64)

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def bits(self) -> int:
        return bits_of_range(self.lo, self.hi)

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1 and self.zero_point.size == 1

    def narrowed(self, lo: int, hi: int) -> QSpec:
        return QSpec(self.scale, self.zero_point, max(self.lo, int(lo)), min(self.hi, int(hi)), self.axis)

    def with_range(self, lo: int, hi: int) -> QSpec:
        return QSpec(self.scale, self.zero_point, int(lo), int(hi), self.axis)

    def to_json(self) -> dict:
        return {"scale": self.scale.reshape(-1).tolist(), "zero_point": self.zero_point.reshape(-1).tolist(),
                "shape": list(self.scale.shape), "lo": self.lo, "hi": self.hi, "axis": self.axis}

    @classmethod
    def from_json(cls, d: dict) -> QSpec:
        shape = tuple(d["shape"])
        return cls(np.array(d["scale"]).reshape(shape), np.array(d["zero_point"]).reshape(shape), d["lo"], d["hi"],
                   d["axis"])


@dataclass
class QConst:
    """A quantised constant (weights or bias): integer codes and their spec."""

    codes: np.ndarray
    spec: QSpec

    def real(self) -> np.ndarray:
        s, z = self.spec.scale, self.spec.zero_point
        if self.spec.axis is not None and s.ndim == 1 and self.codes.ndim > 1:
            shape = [1] * self.codes.ndim
            shape[self.spec.axis] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        return (self.codes.astype(np.float64) - z) * s


@dataclass
class Tensor:
    """A value flowing between steps: ``float`` (real values), ``codes`` (integers with a spec) or ``int``."""

    name: str
    kind: str
    shape: tuple
    spec: QSpec | None = None
    dtype: str = "float32"


@dataclass
class HostStep:
    """An op the runtime executes on the host (NumPy), in float or on integer codes."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


# -- typed data references: what codegen decided each load takes and each read returns -----------------------
#
# Codegen emits one reference per load instruction (in execution order) and one per read instruction; each says
# which data, in which layout. The runtime builds the blocks exactly as described and never re-derives a layout.


@dataclass(frozen=True)
class MaskBlock:
    """LDM's block: every mask bit 0, shape ``(rows, cols)`` (the init program clears all masks)."""

    rows: int
    cols: int
    kind = "mask"


@dataclass(frozen=True)
class RqBlock:
    """LDRQ's block: the layer's requantisation records of outputs ``lo .. hi-1``, shape ``(hi - lo, 3)`` with
    columns (bias, multiplier, shift), record j for lane j."""

    lo: int
    hi: int
    kind = "rq"


@dataclass(frozen=True)
class LevelBlock:
    """LDW's block: rows ``r0 .. r1-1`` and physical columns ``k0 .. k1-1`` of the layer's cell levels (of its
    -128 correction when ``fix``), zero rows appended up to ``pad_rows``: shape ``(pad_rows, k1 - k0)``."""

    r0: int
    r1: int
    k0: int
    k1: int
    pad_rows: int
    fix: bool = False
    kind = "w"


@dataclass(frozen=True)
class InputBlock:
    """LDIN's block: for each row range of ``tiles`` (columns of the layer's input matrix, positions x K), the
    ``chunk`` positions of a run, tile-major, each vector zero-padded to ``pad_rows`` bytes: shape
    ``(batch, len(tiles) * chunk, pad_rows)``."""

    tiles: tuple[tuple[int, int], ...]
    chunk: int
    pad_rows: int
    kind = "in"


@dataclass(frozen=True)
class OutputSlice:
    """What a read instruction returns: vectors of ``chunk`` positions whose lanes ``0 .. hi-lo-1`` are the layer's
    outputs ``lo .. hi-1``; ``kind`` "out" (requantised bytes, two's complement when ``signed``) or "acc"
    (accumulators)."""

    kind: str
    lo: int
    hi: int
    signed: bool = False


FeedRef = MaskBlock | RqBlock | LevelBlock | InputBlock
_FEED_TYPES = {t.kind: t for t in (MaskBlock, RqBlock, LevelBlock, InputBlock)}


def ref_to_json(ref: FeedRef | OutputSlice) -> dict:
    """A reference as plain JSON data (``kind`` plus its fields)."""
    d = {"kind": ref.kind}
    for f in fields(ref):
        v = getattr(ref, f.name)
        d[f.name] = [list(t) for t in v] if f.name == "tiles" else v
    return d


def feed_from_json(d: dict) -> FeedRef:
    t = _FEED_TYPES[d["kind"]]
    kw = {k: v for k, v in d.items() if k != "kind"}
    if "tiles" in kw:
        kw["tiles"] = tuple(tuple(x) for x in kw["tiles"])
    return t(**kw)


def read_from_json(d: dict) -> OutputSlice:
    return OutputSlice(**d)


@dataclass
class Program:
    """One tile program (ends in HALT): its words, the data-in block of every load instruction and the meaning of
    every read instruction's block, in execution order."""

    layer: int
    words: list[int]
    feed: list[FeedRef]
    reads: list[OutputSlice]
    cycles: int = 0  # cycles of one run (golden model, timing_only)


@dataclass
class TileLayer:
    """A matrix product with a constant quantised weight, run on the tile as crossbar MVMs."""

    name: str
    op: str
    input: str
    output: str
    weight: QConst  # codes in ONNX layout: Conv (Cout, Cin, kh, kw); Gemm/MatMul (K, N)
    bias: np.ndarray | None = None  # real-valued bias per output (float), or None
    bias_int: np.ndarray | None = None  # integer bias at scale s_in * s_w (QLinearConv), or None
    conv: dict | None = None  # kernel, strides, pads, dilations for Conv
    in_spec: QSpec | None = None
    out_spec: QSpec | None = None  # None: the accumulator is read back (float or int32 output)
    out_dtype: str = "float32"  # of the output in accumulator mode
    relu: bool = False
    in_shape: tuple = ()
    out_shape: tuple = ()
    # -- filled by the passes --
    w_int: np.ndarray | None = None  # (K, N) integer weights after the zero point
    wbits: int = 0
    wsigned: bool = True
    wbits_declared: int = 0
    abits: int = 0
    asigned: bool = False
    rq_bias: np.ndarray | None = None  # (N,) int
    rq_mult: np.ndarray | None = None
    rq_shift: np.ndarray | None = None
    acc_scale: np.ndarray | None = None  # (N,) float: real value of one accumulator unit (acc mode)
    bias_f: np.ndarray | None = None  # (N,) real bias the host adds in accumulator mode
    zp_out: int = 0
    clamp: tuple = (0, 0)
    levels: np.ndarray | None = None  # (K, N * group) cell levels
    group: int = 0
    row_tile: int = 0  # rows per crossbar tile
    outs_per_tile: int = 0
    positions: int = 0  # MVM positions per image
    chunk: int = 0  # positions per run (P)
    programs: list[int] = field(default_factory=list)
    K: int = 0  # rows of the weight matrix (Cin*kh*kw or in_features)
    w_fix: np.ndarray | None = None  # (K, N) in {-1, 0}: the -128 codes of 8-bit weights, minus their -127
    levels_fix: np.ndarray | None = None  # (K, 2N) cell levels of w_fix as 2-bit signed weights
    fix_tiles: list = field(default_factory=list)  # (ct, rt) crossbar tiles that hold a -128 correction
    N: int = 0  # outputs

    @property
    def row_tiles(self) -> list[tuple[int, int]]:
        h = self.row_tile
        return [(r, min(r + h, self.K)) for r in range(0, self.K, h)]

    @property
    def col_tiles(self) -> list[tuple[int, int]]:
        n = self.outs_per_tile
        return [(c, min(c + n, self.N)) for c in range(0, self.N, n)]


@dataclass
class Model:
    """The whole network: tensors, steps in execution order, graph inputs and outputs, programs."""

    tensors: dict[str, Tensor]
    steps: list  # HostStep | TileLayer
    inputs: list[str]
    outputs: list[str]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    programs: list[Program] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def consumers(self, name: str) -> list:
        out = []
        for s in self.steps:
            ins = [s.input] if isinstance(s, TileLayer) else s.inputs
            if name in ins:
                out.append(s)
        return out

    def producer(self, name: str):
        for s in self.steps:
            outs = [s.output] if isinstance(s, TileLayer) else s.outputs
            if name in outs:
                return s
        return None

    @property
    def layers(self) -> list[TileLayer]:
        return [s for s in self.steps if isinstance(s, TileLayer)]
