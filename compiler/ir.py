"""The layer IR: quantisation specs, host steps and tile layers, in execution order."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["QSpec", "QConst", "Tensor", "HostStep", "TileLayer", "Weights", "Requant", "Tiling", "Schedule", "Program",
           "Model", "bits_of_range", "FeedRef",
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
    # compile-time value of an integer tensor of shape arithmetic (computed at the nominal batch size of 1;
    # the runtime computes it again from the real input), None otherwise; not kept in a bundle
    value: np.ndarray | None = None


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
class FaultMaskBlock:
    """LDM's block of a fault-masked bundle (compiler/faults.py): the bundle's fault mask, shape ``(rows, cols)``
    (1 = a stuck cell, masked so that it contributes zero)."""

    rows: int
    cols: int
    kind = "fmask"


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
    outputs ``lo .. hi-1``; ``kind`` "out" (requantised bytes, two's complement when ``signed``), "acc"
    (accumulators) or "psum" (one crossbar tile's accumulators, a partial sum the host adds up: the stationary batch
    schedule)."""

    kind: str
    lo: int
    hi: int
    signed: bool = False


FeedRef = MaskBlock | FaultMaskBlock | RqBlock | LevelBlock | InputBlock
_FEED_TYPES = {t.kind: t for t in (MaskBlock, FaultMaskBlock, RqBlock, LevelBlock, InputBlock)}


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
    #: ``"run"``: a layer program, run once per chunk of positions; ``"weights"``: a weights program (LDW, HALT) a
    #: run program names as its ``setup``, run once per batch before that program's runs (docs/compiler.md)
    role: str = "run"
    setup: int | None = None  # index of this program's weights program in ``Model.programs``, or None


# -- what each middle-end pass hands the next: one frozen record per stage ---------------------------------------


@dataclass(frozen=True, eq=False)
class Weights:
    """FoldWeights' output: the integer weight matrix, the precisions the tile runs the layer at, and the bias
    folded to accumulator units. Arrays are None in a loaded bundle (they are folded into the levels)."""

    w_int: np.ndarray | None  # (K, N) integer weights after the zero point (im2col order for Conv)
    w_fix: np.ndarray | None  # (K, N) in {-1, 0}: the -128 codes of 8-bit weights, minus their -127; or None
    K: int  # rows of the weight matrix (Cin*kh*kw or in_features)
    N: int  # outputs
    wbits: int
    wsigned: bool
    wbits_declared: int  # the bit width the model declares (wbits may be wider: the tile's symmetric range)
    abits: int
    asigned: bool
    rq_bias: np.ndarray  # (N,) int: bias at accumulator scale, input zero point folded in
    acc_scale: np.ndarray  # (N,) float: real value of one accumulator unit
    bias_f: np.ndarray  # (N,) real bias the host adds in accumulator mode
    # (N,) int weight zero points the host corrects for (asymmetric weights whose ``codes - zp`` do not fit the
    # tile: the tile holds the codes, the host adds ``-zp_w[n] * sum_k (x_k - zp_in)``); None: nothing to correct
    zp_w: np.ndarray | None = None

    @property
    def has_fix(self) -> bool:
        return self.w_fix is not None

    @property
    def host_corrected(self) -> bool:
        """True if the host adds the weight zero point's term (the layer reads its accumulator back)."""
        return self.zp_w is not None


@dataclass(frozen=True, eq=False)
class Requant:
    """FoldScales' output, for a layer that requantises on the tile (it has an output quantizer):
    per-output fixed-point multiplier and shift, and CFGRQ's zero point and clamp."""

    mult: np.ndarray  # (N,) int
    shift: np.ndarray  # (N,) int
    zero_point: int
    clamp: tuple[int, int]


@dataclass(frozen=True, eq=False)
class Tiling:
    """SplitTiles' output: the cell levels and how the weight matrix is cut into crossbar tiles.
    ``levels``/``levels_fix`` are None in a loaded bundle (the bundle keeps them apart)."""

    levels: np.ndarray | None  # (K, N * group) cell levels
    group: int  # physical columns per output
    row_tile: int  # rows per crossbar tile
    outs_per_tile: int  # outputs per crossbar tile
    row_tiles: tuple[tuple[int, int], ...]  # row ranges of the crossbar tiles
    col_tiles: tuple[tuple[int, int], ...]  # output ranges of the crossbar tiles
    levels_fix: np.ndarray | None = None  # (K, 2N) cell levels of w_fix as 2-bit signed weights
    fix_tiles: tuple[tuple[int, int], ...] = ()  # (col tile, row tile) crossbar tiles holding a -128 correction
    # per column tile, the row tiles it uses (grouped layers: the others hold only zeros of the block-diagonal
    # matrix and are skipped); () means every row tile for every column tile (dense layers)
    col_rows: tuple[tuple[int, ...], ...] = ()
    #: ``"exact"``: rows per tile chosen so that no conversion can clip; ``"calibrated"``: up to the array's rows,
    #: with the ADC range shift ``adc_shift`` (CFG) chosen from calibration inputs (docs/compiler.md)
    mapping: str = "exact"
    adc_shift: int = 0

    def rows_of(self, ct: int) -> tuple[int, ...]:
        """Indices of the row tiles column tile ``ct`` uses."""
        return self.col_rows[ct] if self.col_rows else tuple(range(len(self.row_tiles)))

    def pairs(self) -> list[tuple[int, int]]:
        """(column tile, row tile) crossbar tiles the layer uses, in execution order."""
        return [(ct, rt) for ct in range(len(self.col_tiles)) for rt in self.rows_of(ct)]

    @staticmethod
    def ranges(total: int, step: int) -> tuple[tuple[int, int], ...]:
        """``(start, end)`` ranges of ``step`` covering ``0 .. total-1``."""
        return tuple((r, min(r + step, total)) for r in range(0, total, step))


@dataclass(frozen=True)
class Schedule:
    """ChooseChunks' output: output positions per image and per run of the layer's programs."""

    positions: int
    chunk: int


@dataclass
class TileLayer:
    """A matrix product with a constant quantised weight, run on the tile as crossbar MVMs.

    The graph fields come from the frontend (the graph passes may rewire ``input``/``output`` and set the
    specs). Each middle-end stage then attaches its record: :class:`Weights` (FoldWeights), :class:`Requant`
    (FoldScales), :class:`Tiling` (SplitTiles), :class:`Schedule` (ChooseChunks), and codegen the
    ``programs``. A stage that needs an earlier one asks for it with :meth:`need`.
    """

    name: str
    op: str
    input: str
    output: str
    weight: QConst | None  # codes in ONNX layout: Conv (Cout, Cin, kh, kw); Gemm/MatMul (K, N); None in a bundle
    bias: np.ndarray | None = None  # real-valued bias per output (float), or None
    bias_int: np.ndarray | None = None  # integer bias at scale s_in * s_w (QLinearConv), or None
    conv: dict | None = None  # kernel, strides, pads, dilations for Conv
    in_spec: QSpec | None = None
    out_spec: QSpec | None = None  # None: the accumulator is read back (float or int32 output)
    out_dtype: str = "float32"  # of the output in accumulator mode
    relu: bool = False
    in_shape: tuple = ()
    out_shape: tuple = ()
    # block-diagonal groups: Conv ``group`` (weight (Cout, Cin/groups, kh, kw)) or a batched constant MatMul
    # weight (groups, K/groups, N/groups); the weight matrix is block-diagonal with ``groups`` blocks
    groups: int = 1
    # -- stage records --
    weights: Weights | None = None
    requant: Requant | None = None
    tiling: Tiling | None = None
    schedule: Schedule | None = None
    programs: list[int] = field(default_factory=list)  # indices into Model.programs (codegen)
    #: the stationary batch schedule's run programs (indices into Model.batch_programs; their ``setup`` indices
    #: too), for column tiles of several crossbar tiles; empty if every column tile is one crossbar tile
    batch_programs: list[int] = field(default_factory=list)

    @property
    def requant_on_tile(self) -> bool:
        """True if the tile requantises this layer's outputs (REQ + RDOUT); False if it reads the accumulator
        back (no output quantizer, or a weight zero point the host corrects for before requantising)."""
        return self.out_spec is not None and not (self.weights is not None and self.weights.host_corrected)

    def need(self, stage: str, who: str):
        """The stage record ``stage`` ("weights", "requant", "tiling", "schedule"), which ``who`` needs; an
        internal CompileError if the pass that makes it has not run."""
        rec = getattr(self, stage)
        if rec is None:
            from .errors import CompileError

            raise CompileError(f"internal: {who} needs the {stage} stage of layer {self.name!r}, which is not there")
        return rec


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
    #: the programs of the stationary batch schedule (docs/compiler.md, "Batch schedule"), apart from ``programs``
    #: (one image's schedule, what ``cimtile disasm`` and ``microcode.npy`` hold)
    batch_programs: list[Program] = field(default_factory=list)

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
