"""Exact tile cost of a mixed-precision policy, without compiling the whole network per query.

A :class:`CostModel` is prepared once from a quantised ONNX model (its layer table: the compiler's IR after the
middle end) and a TileConfig. A query takes a policy (one ``(weight bits, activation bits)`` pair per tile layer,
in execution order) and returns per-layer and total cycles, weight-programming cycles (the LDW loads and their
write-and-verify time, as the compiler's report and the tile count them), ADC conversions and crossbar
tiles. Each layer is compiled alone by the compiler's own
middle end, code generator and report (:func:`cimtile.compiler.passes.pipeline`,
:class:`cimtile.compiler.codegen.EmitPrograms`, :func:`cimtile.compiler.report.build_report`) on a one-layer model
with the policy's bits, so the figures are those of the whole compiled network, layer by layer, and equal what the
golden model counts when the compiled program runs (``tests/test_search_cost.py`` checks this).

Which weights: rows per crossbar tile depend on the weight values when an ADC conversion could clip (the exact
mapping picks the tallest tile whose column sums provably fit). A query therefore states its weights:

- ``"reference"`` (default): the reference model's real weights requantised per output channel, symmetric,
  narrow range, scale = max |w| / (2^(b-1) - 1): :func:`quantize_weights`, what :func:`apply_policy` writes;
- ``"worst"``: every weight at its largest magnitude (cost from shapes alone, an upper bound on rows);
- a list of integer ``(K, N)`` matrices (one per layer, ``None`` for the reference), e.g. the fine-tuned weights
  of the policy being evaluated.

Results are memoised per (layer, weight bits, activation bits, rows per tile); the reference and worst-case row
heights per (layer, weight bits).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from cimtile.hw.params import ConfigError, TileConfig, load_config

from cimtile.errors import CimtileError

__all__ = ["CostModel", "CostResult", "LayerCost", "PolicyError", "apply_policy", "load_policy", "quantize_weights"]

BITS = range(2, 9)


class PolicyError(CimtileError, ValueError):
    """A policy that does not fit the model (wrong length, bits outside 2..8, unreadable file)."""


@dataclass(frozen=True)
class LayerCost:
    """One tile layer's cost for one image."""

    name: str
    wbits: int
    abits: int
    cycles: int  # all cycles of the layer's programs (compute and weight loads)
    program_cycles: int  # of which LDW (weight programming) cycles
    adc_conversions: int
    xbar_tiles: int
    rows_per_tile: int
    # the report's per-batch terms (compiler/report.py, batch_terms): the single-run schedule's (cycles of N images
    # = prog_once + ceil(N*positions/chunk) x run_cycles) and, for a layer with column tiles of several crossbar
    # tiles, the stationary schedule's (batch_*; None without), which the runtime uses for more than one image
    prog_once: int = 0
    run_cycles: int = 0
    reload_cycles: int = 0
    positions: int = 1
    chunk: int = 1
    batch_prog_once: int | None = None
    batch_run_cycles: int | None = None
    batch_reload_cycles: int | None = None

    def batch_cycles(self, images: int) -> tuple[int, int]:
        """(cycles, programming cycles) of ``images`` images, as the runtime schedules a batch
        (:func:`cimtile.compiler.report.batch_terms`)."""
        from cimtile.compiler.report import batch_terms

        t = batch_terms(self.__dict__, images)
        return t["cycles"], t["program_cycles"]

    def stationary(self, images: int) -> bool:
        """True if a batch of ``images`` images programs every crossbar tile of the layer once (the runtime's
        stationary schedule, or one run of the single-run schedule, or no reloads in it); False if the single-run
        schedule programs some crossbar tiles once per run."""
        from cimtile.compiler.report import batch_terms

        return (batch_terms(self.__dict__, images)["schedule"] == "stationary" or self.reload_cycles == 0
                or math.ceil(images * self.positions / self.chunk) == 1)

    @property
    def compute_cycles(self) -> int:
        return self.cycles - self.program_cycles


@dataclass
class CostResult:
    """Cost of a policy for one image: per layer and totals. ``init_cycles`` is the mask-clear program."""

    layers: list[LayerCost]
    init_cycles: int
    weights: str
    totals: dict = field(init=False)

    def __post_init__(self):
        cyc = sum(x.cycles for x in self.layers) + self.init_cycles
        prog = sum(x.program_cycles for x in self.layers)
        self.totals = {"cycles": cyc, "program_cycles": prog, "compute_cycles": cyc - prog,
                       "adc_conversions": sum(x.adc_conversions for x in self.layers),
                       "xbar_tiles": sum(x.xbar_tiles for x in self.layers)}

    def cost(self, kind: str = "compute", batch: int = 1000) -> int:
        """The scalar a search minimises: ``compute`` (cycles without weight programming), ``total`` (one image,
        weights programmed as the compiled programs do), or ``batch`` (``batch`` images as the runtime schedules a
        batch, docs/compiler.md "Batch schedule": for more than one image every crossbar tile programmed once per
        batch; the mask-clear init once)."""
        t = self.totals
        if kind == "compute":
            return t["compute_cycles"]
        if kind == "total":
            return t["cycles"]
        if kind == "batch":
            return self.init_cycles + sum(x.batch_cycles(batch)[0] for x in self.layers)
        raise PolicyError(f"cost kind {kind!r}: expected compute, total or batch")

    def to_json(self) -> dict:
        return {"weights": self.weights, "init_cycles": self.init_cycles, "totals": dict(self.totals),
                "layers": [{**x.__dict__, "compute_cycles": x.compute_cycles} for x in self.layers]}


def quantize_weights(w_real: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric narrow-range quantisation of real weights ``(K, N)``: (codes, scale per N)."""
    lim = (1 << (bits - 1)) - 1
    amax = np.abs(w_real).max(axis=0)
    scale = np.maximum(amax, 1e-12) / lim
    codes = np.clip(np.round(w_real / scale), -lim, lim).astype(np.int32)
    return codes, scale


def _check_policy(policy, n: int) -> list[tuple[int, int]]:
    try:
        arr = np.asarray(policy)
    except Exception:
        raise PolicyError("policy: expected a list of [w_bits, a_bits] pairs") from None
    if arr.dtype.kind not in "iuf" or arr.ndim != 2 or arr.shape[1] != 2:
        raise PolicyError(f"policy: expected a list of [w_bits, a_bits] pairs, got an array of shape {arr.shape}")
    if arr.shape[0] != n:
        raise PolicyError(f"policy has {arr.shape[0]} layers, the model has {n} tile layers")
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise PolicyError("policy: bit widths must be whole numbers")
    arr = arr.astype(np.int64)
    bad = np.argwhere((arr < 2) | (arr > 8))
    if len(bad):
        i, j = bad[0]
        raise PolicyError(f"policy layer {i}: {'weight' if j == 0 else 'activation'} bits {arr[i, j]} outside 2..8")
    return [(int(w), int(a)) for w, a in arr]


def load_policy(path: str | Path) -> list[tuple[int, int]]:
    """Read a policy file: ``.npy`` (loaded without pickles) or JSON, a list of ``[w_bits, a_bits]`` per layer."""
    import json

    p = Path(path)
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            arr = json.loads(p.read_text())
            if isinstance(arr, dict) and "policy" in arr:
                arr = arr["policy"]
    except FileNotFoundError:
        raise PolicyError(f"cannot read policy {path}: no such file") from None
    except (ValueError, OSError) as e:
        raise PolicyError(f"cannot read policy {path}: {type(e).__name__}: {str(e)[:80]}") from None
    if not isinstance(arr, np.ndarray):
        if not isinstance(arr, list) or not all(isinstance(r, list) and len(r) == 2 and
                                                all(isinstance(v, int) and not isinstance(v, bool) for v in r)
                                                for r in arr):
            raise PolicyError(f"policy {path}: expected a list of [w_bits, a_bits] integer pairs")
    return _check_policy(arr, len(arr))


def _act_range(spec, a: int) -> tuple[int, int]:
    return (-(1 << (a - 1)), (1 << (a - 1)) - 1) if spec.lo < 0 else (0, (1 << a) - 1)


class CostModel:
    """Per-layer exact tile cost of policies for one model and one tile.

    Parameters
    ----------
    model : path, onnx.ModelProto
        A quantised ONNX model the compiler accepts (its bit widths do not matter: the policy sets them).
    tile : str or TileConfig
        Preset name, JSON path or TileConfig.
    mapping : {"exact", "calibrated"}
        The compiler's mapping mode (:func:`cimtile.compiler.compile_model`): ``calibrated`` uses the array's rows
        per crossbar tile whatever the weights (its cycles do not depend on the ADC shifts calibration picks).

    Attributes
    ----------
    names : list of str
        Tile layers in execution order (the policy's order).
    shared_inputs : list of list of int
        Groups of layers that read the same activation tensor (they must share activation bits in a real model;
        :meth:`harmonise` copies the first one's to the others).
    """

    def __init__(self, model: str | Path | onnx.ModelProto, tile: str | TileConfig = "isaac",
                 mapping: str = "exact"):
        from cimtile.compiler.codegen import init_program
        from cimtile.compiler.frontend import import_model, load_onnx
        from cimtile.compiler.passes import pipeline
        from cimtile.compiler.report import program_cycles

        try:
            self.cfg = load_config(tile)
        except ConfigError as e:
            raise PolicyError(str(e)) from None
        if mapping not in ("exact", "calibrated"):
            raise PolicyError(f"mapping {mapping!r}: expected exact or calibrated")
        self.mapping = mapping
        proto = load_onnx(model) if not isinstance(model, onnx.ModelProto) else model
        ir = pipeline(import_model(proto), self.cfg)
        self._templates = []
        self._w_real = []
        for L in ir.layers:
            wt = L.weights
            w = wt.w_int.astype(np.float64)
            if wt.w_fix is not None:
                w = w + wt.w_fix
            s = np.asarray(L.weight.spec.scale, dtype=np.float64).reshape(-1)
            self._w_real.append(w * (s if s.size == w.shape[1] else s[0]))
            self._templates.append(L)
        self.names = [L.name for L in ir.layers]
        self.init_cycles = program_cycles(self.cfg, init_program(self.cfg))
        by_input: dict[str, list[int]] = {}
        for i, L in enumerate(ir.layers):
            by_input.setdefault(L.input, []).append(i)
        self.shared_inputs = [g for g in by_input.values() if len(g) > 1]
        self._rows: dict[tuple, int] = {}
        self._memo: dict[tuple, LayerCost] = {}

    def __len__(self) -> int:
        return len(self.names)

    # -- layer description ------------------------------------------------------------------------------

    def layer_table(self) -> list[dict]:
        """The layer table (HAQ-style features of each tile layer) the search's state is built from."""
        out = []
        for i, L in enumerate(self._templates):
            k = L.conv["kernel"][0] if L.conv is not None and "kernel" in L.conv else 1
            st = L.conv["strides"][0] if L.conv is not None and "strides" in L.conv else 1
            cin = L.weights.K // (k * k)
            K, N = L.weights.K, L.weights.N
            out.append({"index": i, "name": L.name, "op": L.op, "conv": L.conv is not None, "cin": cin, "cout": N,
                        "kernel": k, "stride": st, "params": K * N, "positions": L.schedule.positions, "K": K, "N": N})
        return out

    def harmonise(self, policy) -> list[tuple[int, int]]:
        """``policy`` with every group of layers reading one tensor given its first layer's activation bits."""
        pol = _check_policy(policy, len(self))
        for g in self.shared_inputs:
            for j in g[1:]:
                pol[j] = (pol[j][0], pol[g[0]][1])
        return pol

    # -- one layer --------------------------------------------------------------------------------------

    def _layer_model(self, i: int, w_codes: np.ndarray, w_scale: np.ndarray, wb: int, ab: int):
        """A one-layer IR model of layer ``i`` with the given integer weights and bit widths, before the passes."""
        from cimtile.compiler.ir import Model, QConst, QSpec, Tensor, TileLayer

        T = self._templates[i]
        lim = (1 << (wb - 1)) - 1
        # codes in ONNX layout, as the frontend stores them (Conv: Cout, Cin, kh, kw; Gemm/MatMul: K, N)
        if T.conv is not None:
            codes = w_codes.T.reshape(T.weight.codes.shape)
            wspec = QSpec(w_scale.astype(np.float64), np.zeros(len(w_scale), np.int64), -lim, lim, 0)
        else:
            codes = w_codes
            wspec = QSpec(w_scale.astype(np.float64), np.zeros(len(w_scale), np.int64), -lim, lim, 1)
        s_in = T.in_spec
        lo, hi = _act_range(s_in, ab)
        real_span = float((s_in.hi - s_in.lo) * np.asarray(s_in.scale).reshape(-1)[0])
        zp = int(np.clip(np.round(float(s_in.zero_point.reshape(-1)[0]) * (hi - lo) / max(s_in.hi - s_in.lo, 1)),
                         lo, hi))
        in_spec = QSpec(np.float64(real_span / (hi - lo)), np.int64(zp), lo, hi)
        L = TileLayer(T.name, T.op, T.input, T.output, QConst(codes.astype(np.int32), wspec), bias=T.bias,
                      bias_int=None if T.bias_int is None else T.bias_int, conv=copy.deepcopy(T.conv),
                      in_spec=in_spec, out_spec=T.out_spec, out_dtype=T.out_dtype, relu=T.relu,
                      in_shape=T.in_shape, out_shape=T.out_shape)
        if T.bias_int is not None:
            # an integer bias is at scale s_in * s_w; keep its real value under the new scales
            bi = np.asarray(T.bias_int, dtype=np.float64).reshape(-1)
            s_old = np.asarray(T.weights.acc_scale, dtype=np.float64).reshape(-1)
            L.bias_int = None
            L.bias = bi * s_old
        tensors = {T.input: Tensor(T.input, "codes", T.in_shape, in_spec, "int64"),
                   T.output: Tensor(T.output, "codes" if T.out_spec is not None else "float", T.out_shape,
                                    T.out_spec)}
        return Model(tensors, [L], [T.input], [T.output])

    def _weights(self, i: int, wb: int, weights) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(weights, str) and weights == "worst":
            K, N = self._w_real[i].shape
            lim = (1 << (wb - 1)) - 1
            return np.full((K, N), lim, np.int32), np.ones(N)
        if isinstance(weights, str):
            return quantize_weights(self._w_real[i], wb)
        W = np.asarray(weights[i])
        lim = (1 << (wb - 1)) - 1
        if W.shape != self._w_real[i].shape or W.dtype.kind not in "iu" or np.abs(W).max(initial=0) > lim:
            raise PolicyError(f"layer {self.names[i]!r}: weights must be integers of shape {self._w_real[i].shape} "
                              f"within +-{lim} for {wb} bits")
        return W.astype(np.int32), np.ones(W.shape[1])

    def _rows_per_tile(self, i: int, W: np.ndarray, wb: int) -> int:
        from cimtile.compiler.passes.split_tiles import _column_limits, cell_levels, row_height

        cfg = self.cfg
        if self.mapping == "calibrated":
            return min(cfg.rows, W.shape[0])
        levels, group = cell_levels(W, wb, True, cfg)
        lim = _column_limits(cfg, group, levels.shape[1], True)
        return row_height(self._templates[i], cfg, lim, levels)

    def layer_cost(self, i: int, wb: int, ab: int, weights="reference") -> LayerCost:
        """Cost of layer ``i`` at ``wb``/``ab`` bits for one image (see the module doc for ``weights``)."""
        from cimtile.compiler.codegen import EmitPrograms
        from cimtile.compiler.passes import pipeline
        from cimtile.compiler.report import build_report

        named = isinstance(weights, str)
        rkey = (i, wb, weights) if named else None
        if named and rkey in self._rows:
            rows = self._rows[rkey]
            W = None
        else:
            W, scale = self._weights(i, wb, weights)
            rows = self._rows_per_tile(i, W, wb)
            if named:
                self._rows[rkey] = rows
        key = (i, wb, ab, rows)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        if W is None:
            W, scale = self._weights(i, wb, weights)
        m = pipeline(self._layer_model(i, W, scale, wb, ab), self.cfg, self.mapping)
        L = m.layers[0]
        wt, tl, sch = L.weights, L.tiling, L.schedule
        if tl.row_tile != rows or wt.wbits != wb or wt.abits != ab:  # pragma: no cover - a compiler change broke it
            raise AssertionError(f"layer {L.name}: compiled as w{wt.wbits}a{wt.abits} rows {tl.row_tile}, "
                                 f"expected w{wb}a{ab} rows {rows}")
        m, _ = EmitPrograms(self.cfg).apply(m)
        row = build_report(m, self.cfg)["layers"][0]
        opt = {k: (int(row[k]) if k in row else None)
               for k in ("batch_prog_once", "batch_run_cycles", "batch_reload_cycles")}
        lc = LayerCost(L.name, wb, ab, int(row["cycles"]), int(row["program_cycles"]), int(row["adc_conversions"]),
                       int(row["xbar_tiles"]), int(tl.row_tile), int(row["prog_once"]), int(row["run_cycles"]),
                       int(row["reload_cycles"]), int(sch.positions), int(sch.chunk), **opt)
        self._memo[key] = lc
        return lc

    # -- policies ---------------------------------------------------------------------------------------

    def prepare(self, weights: str = "reference", progress: bool | None = None) -> None:
        """Fill the memo for every layer and every (w, a) in 2..8 (the one-time preparation)."""
        from cimtile.progress import bar

        for i in bar(range(len(self)), desc="cost tables", unit="layer", progress=progress):
            for wb in BITS:
                for ab in BITS:
                    self.layer_cost(i, wb, ab, weights)

    def query(self, policy, weights: str | Sequence = "reference") -> CostResult:
        """Cost of ``policy`` (``[(w, a), ...]`` per tile layer) for one image."""
        pol = _check_policy(policy, len(self))
        if not isinstance(weights, str):
            if len(weights) != len(self):
                raise PolicyError(f"weights: {len(weights)} matrices for {len(self)} layers")
            layers = [self.layer_cost(i, w, a, "reference" if weights[i] is None else weights)
                      for i, (w, a) in enumerate(pol)]
            desc = "given"
        else:
            if weights not in ("reference", "worst"):
                raise PolicyError(f"weights {weights!r}: expected 'reference', 'worst' or a list of matrices")
            layers = [self.layer_cost(i, w, a, weights) for i, (w, a) in enumerate(pol)]
            desc = weights
        return CostResult(layers, self.init_cycles, desc)

    def uniform(self, bits: int = 8, weights: str = "reference") -> CostResult:
        """Cost of every layer at ``bits``/``bits`` (W8A8 by default: the speedup baseline)."""
        return self.query([(bits, bits)] * len(self), weights)


# -- a policy written into a QDQ / QCDQ model ----------------------------------------------------------------

def apply_policy(model: onnx.ModelProto, policy, cost: CostModel | None = None) -> onnx.ModelProto:
    """A copy of a QDQ/QCDQ model with each tile layer's weights requantised to its policy's weight bits
    (:func:`quantize_weights`, a Clip giving the bit width) and its input activation quantiser narrowed to the
    policy's activation bits (same real range, a Clip to the ``a``-bit range).

    Handles the forms onnxruntime's quantizer and :func:`cimtile.zoo.digits.mixed_cnn` write: constant weight
    codes (optionally through Clip) into DequantizeLinear, and QuantizeLinear [-> Clip] -> DequantizeLinear before
    each layer. A tensor read by several layers gets the first one's activation bits (:meth:`CostModel.harmonise`).
    """
    from onnx import helper, numpy_helper

    m = copy.deepcopy(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cm = cost if cost is not None else CostModel(model, "isaac")
    pol = cm.harmonise(policy)
    uid = [0]

    def new_init(arr, base):
        uid[0] += 1
        name = f"{base}__pol{uid[0]}"
        g.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def arr(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    layer_nodes = [n for n in g.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    by_name = {n.name: n for n in layer_nodes}
    done_act = set()
    for i, name in enumerate(cm.names):
        node = by_name.get(name)
        if node is None:
            raise PolicyError(f"apply_policy: tile layer {name!r} is not a named Conv/Gemm/MatMul node")
        wb, ab = pol[i]
        # weights: DequantizeLinear(codes [-> Clip], scale, zp)
        dq = prod.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            raise PolicyError(f"apply_policy: weight of {name!r} is not a DequantizeLinear of constant codes")
        w_real = cm._w_real[i]
        codes, scale = quantize_weights(w_real, wb)
        T = cm._templates[i]
        lim = (1 << (wb - 1)) - 1
        if T.conv is not None:
            onnx_codes, axis = codes.T.reshape(T.weight.codes.shape).astype(np.int8), 0
        elif node.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in node.attribute):
            onnx_codes, axis = codes.T.astype(np.int8).copy(), 0
        else:
            onnx_codes, axis = codes.astype(np.int8), 1
        c = new_init(onnx_codes, name + ".wq")
        lo, hi = new_init(np.int8(-lim), name + ".wlo"), new_init(np.int8(lim), name + ".whi")
        clip_out = name + f".wclip{wb}"
        g.node.append(helper.make_node("Clip", [c, lo, hi], [clip_out], name=clip_out))
        dq_out = name + f".wdq{wb}"
        g.node.append(helper.make_node("DequantizeLinear", [clip_out, new_init(scale.astype(np.float32), name + ".ws"),
                                                            new_init(np.zeros(len(scale), np.int8), name + ".wz")],
                                       [dq_out], name=dq_out, axis=axis))
        node.input[1] = dq_out
        # activations: the DequantizeLinear feeding the layer, back to its QuantizeLinear
        dqa = prod.get(node.input[0])
        if dqa is None or dqa.op_type != "DequantizeLinear" or dqa.output[0] in done_act:
            continue
        src = prod.get(dqa.input[0])
        clipa = None
        if src is not None and src.op_type == "Clip":
            clipa, src = src, prod.get(src.input[0])
        if src is None or src.op_type != "QuantizeLinear":
            continue  # integer input codes (no quantiser to narrow): the model's own input keeps its bits
        done_act.add(dqa.output[0])
        s_old = float(arr(src.input[1]))
        z_old = arr(src.input[2]) if len(src.input) > 2 and src.input[2] else np.uint8(0)
        zdt = z_old.dtype
        qlo, qhi = (int(np.iinfo(zdt).min), int(np.iinfo(zdt).max))
        if clipa is not None:
            qlo, qhi = int(arr(clipa.input[1])), int(arr(clipa.input[2]))
        span = (qhi - qlo) * s_old
        nlo, nhi = (-(1 << (ab - 1)), (1 << (ab - 1)) - 1) if qlo < 0 else (0, (1 << ab) - 1)
        s_new = np.float32(span / (nhi - nlo))
        z_new = np.asarray(np.clip(np.round((int(z_old) - qlo) * (nhi - nlo) / (qhi - qlo)) + nlo, nlo, nhi), zdt)
        s_name, z_name = new_init(s_new, name + ".as"), new_init(z_new, name + ".az")
        src.input[1], src.input[2] = s_name, z_name
        cname = name + f".aclip{ab}"
        g.node.append(helper.make_node("Clip", [src.output[0], new_init(np.asarray(nlo, zdt), name + ".alo"),
                                                new_init(np.asarray(nhi, zdt), name + ".ahi")], [cname], name=cname))
        dqa.input[0], dqa.input[1], dqa.input[2] = cname, s_name, z_name
    _prune(g)
    _toposort(g)
    return m


def _prune(g) -> None:
    """Drop nodes nothing reads any more (the replaced weight and activation quantisers)."""
    while True:
        used = {x for n in g.node for x in n.input} | {o.name for o in g.output}
        keep = [n for n in g.node if any(o in used for o in n.output)]
        if len(keep) == len(g.node):
            return
        del g.node[:]
        g.node.extend(keep)


def _toposort(g) -> None:
    """Reorder ``g.node`` topologically (appended nodes go before their consumers)."""
    from cimtile.compiler.frontend import sort_nodes

    if not sort_nodes(g):
        raise PolicyError("apply_policy: the graph has a cycle or a dangling input")
