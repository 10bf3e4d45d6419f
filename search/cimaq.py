"""CIM-AQ's layer files and latency formula (the paper's reference cost model), and the tile's exact cycles for
the same layer shapes.

A layer file is CIM-AQ's own format: YAML with a ``layer_dimensions`` list; each entry has ``type`` (Conv2D,
Dense or MatMul), ``output_dim`` (m), ``input_dim`` (n), and optionally ``mvm_invocations`` (default 1) and
``repeat_factor`` (default 1). Values may be integers or products such as ``64*3*3`` (read by a small arithmetic
parser: integers, ``+ - * //`` and parentheses; nothing is evaluated as Python).

The formula (arXiv 2601.21737, defaults: 256x256 crossbar, 4-bit cells, 1-bit inputs, differential columns):
``cols = 2 m ceil(w/4)``, ``rows = n``, ``writes = ceil(cols/256) ceil(rows/256)``,
``execs = mvm_invocations writes ceil(a/1)``, ``latency = repeat (writes 56 us + execs 1.4 us)``.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path

from cimtile.errors import CimtileError

__all__ = ["FORMULA", "LayerDim", "LayerFileError", "formula_latency", "load_layers", "parse_int_expr",
           "tile_cost_from_shapes"]

#: CIM-AQ's default hardware for the formula.
FORMULA = {"xbar_rows": 256, "xbar_cols": 256, "cell_bits": 4, "dac_bits": 1, "write_us": 56.0, "mvm_us": 1.4}

LAYER_TYPES = ("Conv2D", "Dense", "MatMul")


class LayerFileError(CimtileError, ValueError):
    """A layer file that cannot be read (not YAML, missing field, bad value)."""


@dataclass(frozen=True)
class LayerDim:
    """One entry of a layer file: an (n x m) weight matrix used ``mvm_invocations`` times, ``repeat`` times."""

    type: str
    output_dim: int  # m
    input_dim: int  # n
    mvm_invocations: int = 1
    repeat_factor: int = 1


_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.FloorDiv: lambda a, b: a // b}


def parse_int_expr(text: str | int, what: str = "value") -> int:
    """An integer or an arithmetic expression of integers (``64*3*3``), walked node by node (never ``eval``)."""
    if isinstance(text, bool):
        raise LayerFileError(f"{what}: expected an integer, got {text!r}")
    if isinstance(text, int):
        return text
    if not isinstance(text, str) or len(text) > 200:
        raise LayerFileError(f"{what}: expected an integer or a product like 64*3*3, got {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise LayerFileError(f"{what}: cannot read {text!r} (integers, + - * // and parentheses only)") from None

    def walk(n):
        if isinstance(n, ast.Expression):
            return walk(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, int) and not isinstance(n.value, bool):
            return n.value
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            a, b = walk(n.left), walk(n.right)
            if isinstance(n.op, ast.FloorDiv) and b == 0:
                raise LayerFileError(f"{what}: division by zero in {text!r}")
            return _OPS[type(n.op)](a, b)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -walk(n.operand)
        raise LayerFileError(f"{what}: cannot read {text!r} (integers, + - * // and parentheses only)")

    return walk(tree)


def load_layers(path: str | Path) -> list[LayerDim]:
    """Read a CIM-AQ layer file (``yaml.safe_load``); every error names the file and the entry."""
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise LayerFileError(f"cannot read {path}: no such file") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise LayerFileError(f"cannot read {path}: not YAML ({type(e).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("layer_dimensions"), list) or not doc["layer_dimensions"]:
        raise LayerFileError(f"{path}: expected a non-empty 'layer_dimensions' list")
    out = []
    for i, e in enumerate(doc["layer_dimensions"]):
        where = f"{p.name}: layer {i}"
        if not isinstance(e, dict):
            raise LayerFileError(f"{where}: expected a mapping with type, output_dim, input_dim")
        t = e.get("type")
        if t not in LAYER_TYPES:
            raise LayerFileError(f"{where}: type {t!r} is not one of {', '.join(LAYER_TYPES)}")
        vals = {}
        for k, default in (("output_dim", None), ("input_dim", None), ("mvm_invocations", 1), ("repeat_factor", 1)):
            if k not in e:
                if default is None:
                    raise LayerFileError(f"{where}: missing {k}")
                vals[k] = default
                continue
            v = parse_int_expr(e[k], f"{where} {k}")
            if v < 1:
                raise LayerFileError(f"{where}: {k} = {v} must be at least 1")
            vals[k] = v
        unknown = set(e) - {"type", "output_dim", "input_dim", "mvm_invocations", "repeat_factor", "name"}
        if unknown:
            raise LayerFileError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        out.append(LayerDim(t, **vals))
    return out


def formula_latency(layers: list[LayerDim], policy) -> list[float]:
    """Per-layer latency in microseconds by CIM-AQ's formula for ``policy`` (``[(w, a), ...]``)."""
    f = FORMULA
    out = []
    for L, (w, a) in zip(layers, policy):
        cols = 2 * L.output_dim * math.ceil(w / f["cell_bits"])
        rows = L.input_dim
        writes = math.ceil(cols / f["xbar_cols"]) * math.ceil(rows / f["xbar_rows"])
        execs = L.mvm_invocations * writes * math.ceil(a / f["dac_bits"])
        out.append(L.repeat_factor * (writes * f["write_us"] + execs * f["mvm_us"]))
    return out


def tile_cost_from_shapes(layers: list[LayerDim], policy, tile) -> list[dict]:
    """The tile's exact cycles for each layer's shape (one image), from shapes alone.

    Each Conv2D/Dense entry becomes a tile layer of K = input_dim rows, N = output_dim outputs and
    ``mvm_invocations`` output positions, compiled by the compiler's own scheduler and code generator
    (:class:`cimtile.compiler.passes.choose_chunks.ChooseChunks`, :class:`cimtile.compiler.codegen.EmitPrograms`,
    :func:`cimtile.compiler.report.build_report`). Assumed, because a shape says nothing else: signed symmetric
    weights all at their largest magnitude (the worst case for rows per crossbar tile, so an upper bound on the
    exact mapping's cycles), unsigned activations, a requantised output for every layer but the last (whose
    accumulators are read back); ``repeat_factor`` multiplies the cycles. MatMul entries (activation x activation
    products) run on the host in cimtile: they get 0 tile cycles and their MACs are reported apart.
    """
    import numpy as np
    from cimtile.compiler.codegen import EmitPrograms
    from cimtile.compiler.ir import Model, QConst, QSpec, Requant, Tensor, TileLayer, Tiling, Weights
    from cimtile.compiler.passes.choose_chunks import ChooseChunks
    from cimtile.compiler.passes.split_tiles import _column_limits, cell_levels, row_height
    from cimtile.compiler.report import build_report
    from cimtile.hw.params import load_config

    from .cost import PolicyError

    try:
        cfg = load_config(tile)
    except CimtileError as e:
        raise PolicyError(str(e)) from None
    last = max(i for i, L in enumerate(layers) if L.type != "MatMul") if any(
        L.type != "MatMul" for L in layers) else -1
    out = []
    for i, (L, (w, a)) in enumerate(zip(layers, policy)):
        if L.type == "MatMul":
            out.append({"cycles": 0, "program_cycles": 0, "adc_conversions": 0, "xbar_tiles": 0,
                        "host_macs": L.repeat_factor * L.mvm_invocations * L.input_dim * L.output_dim})
            continue
        K, N = L.input_dim, L.output_dim
        lim = (1 << (w - 1)) - 1
        h0 = min(K, cfg.rows)
        # every row of a worst-case weight matrix is alike: one output's columns over the tallest tile decide
        levels, group = cell_levels(np.full((h0, 1), lim, np.int32), w, True, cfg)
        if group > cfg.cols:
            raise PolicyError(f"layer {i}: one {w}-bit weight needs {group} columns, the crossbar has {cfg.cols}")
        spec = QSpec(np.float64(1.0), np.int64(0), 0, (1 << a) - 1)
        T = TileLayer(f"layer{i}", "MatMul", "x", "y", QConst(np.zeros((1, 1), np.int32), spec),
                      in_spec=spec, out_spec=None if i == last else QSpec(np.float64(1.0), np.int64(0), 0, 255),
                      relu=i != last, in_shape=(1, L.mvm_invocations, K), out_shape=(1, L.mvm_invocations, N))
        # the stage records the compiler's passes would make for such weights (only what codegen and the report
        # read: bit widths, tiles; the weight matrix itself is never built)
        T.weights = Weights(None, None, K, N, w, True, w, a, False, np.zeros(N, np.int64), np.ones(N), np.zeros(N))
        row_tile = row_height(T, cfg, _column_limits(cfg, group, group, True), levels)
        outs = cfg.cols // group
        T.tiling = Tiling(None, group, row_tile, outs, Tiling.ranges(K, row_tile), Tiling.ranges(N, outs))
        if i != last:
            T.requant = Requant(np.ones(N, np.int64), np.zeros(N, np.int64), 0, (0, 255))
        m = Model({"x": Tensor("x", "codes", T.in_shape, spec), "y": Tensor("y", "codes", T.out_shape)}, [T],
                  ["x"], ["y"])
        m, _ = ChooseChunks(cfg).apply(m)
        m, _ = EmitPrograms(cfg).apply(m)
        row = build_report(m, cfg)["layers"][0]
        out.append({"cycles": L.repeat_factor * row["cycles"],
                    # weight programming as the compiler's report counts it (weights programs and reloads)
                    "program_cycles": L.repeat_factor * row["program_cycles"],
                    "adc_conversions": L.repeat_factor * row["adc_conversions"],
                    "xbar_tiles": row["xbar_tiles"], "host_macs": 0, "_model": m})
        del out[-1]["_model"]
    return out
