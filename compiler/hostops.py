"""Host-side ops (NumPy, float32 like onnxruntime): quantise/dequantise, pooling, residual adds, reshapes,
softmax and activation x activation products.

One entry of :data:`HOST` per op holds both halves of it: ``infer``, the frontend's shape and type inference
(with its checks, raising a :class:`CompileError` naming the node), and ``run``, the runtime's execution. Ops
the frontend creates itself (Quantize, Dequantize, ClipCodes, Clip) are typed where they are created and have
no ``infer``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view

from . import ort_kernels
from .errors import CompileError, node_error
from .ir import HostStep, QSpec, Tensor

__all__ = ["HOST", "HostOp", "Typing", "onnx_host_ops", "pool_out_size", "run_host"]


@dataclass
class Typing:
    """One host node as shape inference sees it; ``infer`` updates the output fields in place.

    The output fields start as the first activation input's (``shape``, ``kind``, ``spec``, ``dtype``) and
    ``step_attrs`` as the node's ONNX attributes.
    """

    name: str
    op: str  # the ONNX op type
    attrs: dict  # ONNX attributes
    inputs: list[str]
    outputs: list[str]
    acts: list[Tensor]  # the activation inputs
    shape_of: Callable[[str], tuple]  # shape of any input (activation or constant)
    const: Callable[[str, str], np.ndarray]  # a constant input (name, what it is), else a CompileError
    shape: tuple = ()
    kind: str = "float"
    spec: QSpec | None = None
    dtype: str = "float32"
    step_attrs: dict = field(default_factory=dict)
    # compile-time value of an integer tensor (shape arithmetic), None if unknown: ``value_of(name)``
    value_of: Callable[[str], np.ndarray | None] = lambda n: None
    value: np.ndarray | None = None  # the output's compile-time value (integer outputs of shape arithmetic)
    step_inputs: list[str] | None = None  # the step's inputs if not all the node's (QLinear ops: the codes)
    out_shapes: list[tuple] | None = None  # one shape per output (Split)

    def error(self, msg: str) -> CompileError:
        return node_error(self.name, self.op, msg)

    def known(self, name: str, what: str) -> np.ndarray:
        """A constant input, or the compile-time value of an integer tensor (a shape computed from the input's
        shape); else a CompileError naming the input."""
        v = self.value_of(name)
        return v if v is not None else self.const(name, what)


@dataclass(frozen=True)
class HostOp:
    """A host op: ``infer`` (None for steps the frontend types itself), ``run(step, *inputs)`` and the ONNX
    op type lowered to it (None for steps only the frontend creates)."""

    run: Callable[..., Any]
    infer: Callable[[Typing], None] | None = None
    onnx: str | None = None
    domain: str = ""  # the ONNX domain of ``onnx`` ("com.microsoft": onnxruntime's contrib operators)
    # host element operations per element (of the output; of the input for reductions, ``per_input``), as the
    # report counts them: 0 for ops that only move data
    ops: int = 0
    per_input: bool = False


def pool_out_size(n: int, k: int, s: int, p0: int, p1: int, d: int, ceil: bool) -> int:
    """Output size of one pooled axis (ONNX): with ``ceil_mode`` the last window must still start inside the
    input or the leading pad (a window starting in the trailing pad is dropped), as onnxruntime does."""
    span = n + p0 + p1 - d * (k - 1) - 1
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + p0:
        o -= 1
    return o


def _quantize(s: HostStep, x):
    spec = s.attrs["spec"]
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(spec.scale)) + int(spec.zero_point)
    return np.clip(q, spec.lo, spec.hi).astype(np.int64)


def _dequantize(s: HostStep, q):
    spec = s.attrs["spec"]
    return (np.asarray(q, dtype=np.int64) - int(spec.zero_point)).astype(np.float32) * np.float32(spec.scale)


def _pool_windows(x, a, fill):
    k = tuple(a["kernel_shape"])
    st = tuple(a.get("strides", (1, 1)))
    p = tuple(a.get("pads", (0, 0, 0, 0)))
    d = tuple(a.get("dilations", (1, 1)))
    ceil = a.get("ceil_mode", 0)
    out = [pool_out_size(x.shape[2 + j], k[j], st[j], p[j], p[j + 2], d[j], ceil) for j in range(2)]
    extra = [max(0, (out[j] - 1) * st[j] + d[j] * (k[j] - 1) + 1 - (x.shape[2 + j] + p[j] + p[j + 2]))
             for j in range(2)]
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2] + extra[0]), (p[1], p[3] + extra[1])), constant_values=fill)
    ek = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    win = sliding_window_view(xp, ek, axis=(2, 3))[:, :, ::st[0], ::st[1], ::d[0], ::d[1]]
    return win[:, :, :out[0], :out[1]], p, extra, out


def _maxpool(s, x):
    x = np.asarray(x)
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(np.int64).min
    win, *_ = _pool_windows(x.astype(np.float32) if x.dtype.kind == "f" else x.astype(np.int64), s.attrs, fill)
    # one element-wise maximum per kernel position: the same values as win.max(axis=(-2, -1)), whose reduction over
    # two short strided axes was 6x slower (a ResNet-18 image's max pool took a tenth of its golden-model time)
    out = win[..., 0, 0].copy()
    for i in range(win.shape[-2]):
        for j in range(win.shape[-1]):
            if i or j:
                np.maximum(out, win[..., i, j], out=out)
    return out


def _avgpool(s, x):
    x = np.asarray(x, dtype=np.float32)
    win, p, extra, out = _pool_windows(x, s.attrs, 0.0)
    total = _window_sum(win, tuple(s.attrs.get("strides", (1, 1)))[1])
    if s.attrs.get("count_include_pad", 0):
        ones = np.ones((1, 1) + x.shape[2:], dtype=np.float32)
        # padding counts, the ceil-mode overhang does not
        onesp = np.pad(ones, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=1.0)
        onesp = np.pad(onesp, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])), constant_values=0.0)
    else:
        ones = np.ones((1, 1) + x.shape[2:], dtype=np.float32)
        onesp = np.pad(ones, ((0, 0), (0, 0), (p[0], p[2] + extra[0]), (p[1], p[3] + extra[1])))
    a = s.attrs
    k, st, d = tuple(a["kernel_shape"]), tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
    ek = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    cnt = sliding_window_view(onesp, ek, axis=(2, 3))[:, :, ::st[0], ::st[1], ::d[0], ::d[1]]
    cnt = cnt[:, :, :out[0], :out[1]].sum(axis=(-2, -1))
    return (total / cnt).astype(np.float32)


def _window_sum(win: np.ndarray, stride_w: int) -> np.ndarray:
    """float32 sums of pooling windows ``(..., kh, kw)`` in onnxruntime's order (its x86-64 MLAS kernels), so that
    a QuantizeLinear after the pool sees bit-identical averages: with a window stride of 1 or 2 along the width
    (MLAS's vector kernel) each window column is summed over the rows first, then the column sums left to right;
    otherwise (the scalar kernel) the elements row by row. Padding adds exact zeros."""
    kh, kw = win.shape[-2:]
    if stride_w <= 2:
        cols = win[..., 0, :]
        for i in range(1, kh):
            cols = cols + win[..., i, :]
        total = cols[..., 0]
        for j in range(1, kw):
            total = total + cols[..., j]
        return total
    total = win[..., 0, 0]
    for i in range(kh):
        for j in range(kw):
            if i or j:
                total = total + win[..., i, j]
    return total


def _global_avgpool(s, x):
    """Mean over H x W in onnxruntime's order (MLAS: four float32 lanes over the flattened plane, the lanes
    reduced pairwise ((0+2) + (1+3)), the remaining elements added in order, then divided by H*W)."""
    x = np.asarray(x, dtype=np.float32)
    n, c = x.shape[:2]
    f = x.reshape(n, c, -1)
    size = f.shape[-1]
    m = size - size % 4
    lanes = f[..., :m].reshape(n, c, -1, 4)
    acc = np.zeros((n, c, 4), dtype=np.float32)
    for i in range(lanes.shape[2]):
        acc = acc + lanes[:, :, i]
    total = (acc[..., 0] + acc[..., 2]) + (acc[..., 1] + acc[..., 3])
    for i in range(m, size):
        total = total + f[..., i]
    return (total / np.float32(size)).astype(np.float32).reshape(n, c, *([1] * (x.ndim - 2)))


def _softmax(s, x):
    ax = s.attrs.get("axis", -1)
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=ax, keepdims=True))
    return (e / e.sum(axis=ax, keepdims=True)).astype(np.float32)


def _reshape(s, x, shape=None):
    # the shape input as computed at run time (a dynamic batch's shape arithmetic), else the constant one
    target = list(s.attrs["shape"]) if shape is None else [int(v) for v in np.asarray(shape).reshape(-1)]
    if not s.attrs.get("allowzero", 0):
        target = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
    return np.reshape(x, target)


def _clip(s, x):
    lo, hi = s.attrs.get("lo"), s.attrs.get("hi")
    return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi).astype(np.asarray(x).dtype)


def _flatten(s, x):
    ax = s.attrs.get("axis", 1)
    ax = ax if ax >= 0 else ax + x.ndim
    return x.reshape(int(np.prod(x.shape[:ax])), -1)


def _binary(fn):
    def run(s, a, b):
        a, b = np.asarray(a), np.asarray(b)
        dt = np.result_type(a.dtype, b.dtype)
        if dt.kind == "f":
            dt = np.float32
        return fn(a.astype(dt), b.astype(dt)).astype(dt)
    return run


# -- shape inference ----------------------------------------------------------------------------------------

def _same(t: Typing) -> None:
    """Output typed like the first activation input."""


def _cast(t: Typing) -> None:
    to = t.attrs["to"]
    t.kind = "float" if to in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE) else "int"
    dtype = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64",
             onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64"}.get(to)
    if dtype is None:
        raise t.error(f"cast to {onnx.TensorProto.DataType.Name(to)} not supported")
    t.dtype, t.step_attrs, t.spec = dtype, {"dtype": dtype}, None
    v = t.value_of(t.inputs[0])
    if v is not None and t.kind == "int":
        t.value = np.asarray(v).astype(dtype)


def _arith(t: Typing) -> None:
    shapes = [t.shape_of(n) for n in t.inputs]
    try:
        t.shape = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise t.error(f"shapes {shapes} do not broadcast") from None
    if any(a.kind == "codes" for a in t.acts):
        raise t.error("arithmetic on quantized codes (dequantize first)")


def _pool(t: Typing) -> None:
    if len(t.outputs) > 1 and t.outputs[1]:
        raise t.error("the Indices output is not supported")
    a = t.attrs
    k = tuple(a["kernel_shape"])
    s = tuple(a.get("strides", (1,) * len(k)))
    p = tuple(a.get("pads", (0,) * 2 * len(k)))
    d = tuple(a.get("dilations", (1,) * len(k)))
    ap = a.get("auto_pad", b"NOTSET")
    ap = ap.decode() if isinstance(ap, bytes) else ap
    if ap not in ("NOTSET", "VALID") or len(k) != 2 or len(t.shape) != 4:
        raise t.error("only 2-D pooling with explicit pads is supported")
    ceil = bool(a.get("ceil_mode", 0))
    t.shape = (t.shape[0], t.shape[1],
               *(pool_out_size(t.shape[2 + j], k[j], s[j], p[j], p[j + 2], d[j], ceil) for j in range(2)))
    if t.op == "AveragePool" and t.kind == "codes":
        raise t.error("average of quantized codes (dequantize first)")


def _global_pool(t: Typing) -> None:
    if len(t.shape) != 4:
        raise t.error(f"expects NCHW input, got shape {t.shape}")
    t.shape = (t.shape[0], t.shape[1], 1, 1)
    if t.kind == "codes":
        raise t.error("average of quantized codes (dequantize first)")


def _flatten_shape(t: Typing) -> None:
    ax = t.attrs.get("axis", 1)
    ax = ax if ax >= 0 else ax + len(t.shape)
    t.shape = (int(np.prod(t.shape[:ax])), int(np.prod(t.shape[ax:])))


def _reshape_shape(t: Typing) -> None:
    shape = t.shape
    target = [int(v) for v in np.asarray(t.known(t.inputs[1], "shape")).reshape(-1)]
    allowzero = t.attrs.get("allowzero", 0)
    out = [shape[i] if v == 0 and not allowzero else v for i, v in enumerate(target)]
    if -1 in out:
        rest = int(np.prod([v for v in out if v != -1]))
        out[out.index(-1)] = int(np.prod(shape)) // max(rest, 1)
    if int(np.prod(out)) != int(np.prod(shape)):
        raise t.error(f"cannot reshape {shape} to {target}")
    t.shape = tuple(out)
    t.step_attrs = {"shape": target, "allowzero": allowzero}
    v = t.value_of(t.inputs[0])
    if v is not None:
        t.value = np.reshape(v, t.shape)


def _transpose_shape(t: Typing) -> None:
    perm = t.attrs.get("perm", list(range(len(t.shape)))[::-1])
    t.shape = tuple(t.shape[p] for p in perm)
    t.step_attrs = {"perm": list(perm)}


def _concat_shape(t: Typing) -> None:
    ax = t.attrs["axis"] if t.attrs["axis"] >= 0 else t.attrs["axis"] + len(t.shape)
    if all(a.kind == "int" for a in t.acts):  # shape arithmetic: constants allowed, the value follows
        vals = [t.known(n, "input") for n in t.inputs if n]
        t.value = np.concatenate([np.asarray(v, np.int64).reshape(-1) if np.ndim(v) <= 1 else v for v in vals],
                                 axis=ax)
        t.shape = t.value.shape
        t.step_attrs = {"axis": ax}
        return
    if len(t.acts) != len([n for n in t.inputs if n]):
        if t.kind != "float":
            raise t.error("constant inputs to Concat of quantized codes not supported")
        shapes = [tuple(t.shape_of(n)) for n in t.inputs if n]
        t.shape = tuple(sum(sh[ax] for sh in shapes) if i == ax else v for i, v in enumerate(t.shape))
        t.step_attrs = {"axis": ax}
        return
    if any(a.kind != t.kind for a in t.acts):
        raise t.error("mixes quantized codes and float values")
    if t.kind == "codes" and any(a.spec.to_json() != t.spec.to_json() for a in t.acts):
        raise t.error("concatenates codes with different quantization")
    t.shape = tuple(sum(a.shape[ax] for a in t.acts) if i == ax else v for i, v in enumerate(t.shape))
    t.step_attrs = {"axis": ax}


def _matmul_shape(t: Typing) -> None:
    if any(a.kind != "float" for a in t.acts):
        raise t.error("activation x activation product of quantized codes (dequantize first)")
    s1, s2 = t.acts[0].shape, t.acts[1].shape
    t.shape = tuple(np.broadcast_shapes(s1[:-2], s2[:-2])) + (s1[-2], s2[-1])


# -- transformer ops: normalisation, activations, reductions (float32 like onnxruntime) -------------------------

def _axes(t: Typing, ndim: int, default_all: bool = True) -> list[int] | None:
    """Axes from the ``axes`` attribute (opset < 13/18) or the second input (constant or known)."""
    if "axes" in t.attrs:
        ax = list(t.attrs["axes"])
    elif len(t.inputs) > 1 and t.inputs[1]:
        ax = [int(v) for v in np.asarray(t.known(t.inputs[1], "axes")).reshape(-1)]
    else:
        return None if default_all else []
    return sorted(a + ndim if a < 0 else a for a in ax)


def _layernorm_shape(t: Typing) -> None:
    if len(t.outputs) > 1 and any(t.outputs[1:]):
        raise t.error("only the first output (Y) is supported")
    ax = t.attrs.get("axis", -1)
    ax = ax + len(t.shape) if ax < 0 else ax
    norm = t.shape[ax:]
    for n, what in ((t.inputs[1], "scale"), (t.inputs[2] if len(t.inputs) > 2 else "", "bias")):
        if n and tuple(np.shape(t.const(n, what))) not in (tuple(norm), tuple(norm[-1:]) if len(norm) == 1 else ()):
            if np.broadcast_shapes(np.shape(t.const(n, what)), norm) != tuple(norm):
                raise t.error(f"{what} shape {np.shape(t.const(n, what))} does not match normalised shape {norm}")
    if t.kind != "float":
        raise t.error("LayerNormalization of quantized codes (dequantize first)")
    t.step_attrs = {"axis": ax, "epsilon": float(t.attrs.get("epsilon", 1e-5))}


def _layernorm(s, x, scale, bias=None):
    """LayerNormalization: ``(x - mean) / sqrt(mean(x^2) - mean^2 + eps) * scale + bias`` as onnxruntime writes
    it (layer_norm_impl.cc), evaluated in double and rounded to float32 once. onnxruntime's float32 build
    (its accumulation order, vectorised) differs by an ulp or so on some elements: these host ops agree with it
    to float rounding, not bit for bit (docs/compiler.md)."""
    x = np.asarray(x, np.float32)
    axes = tuple(range(s.attrs["axis"], x.ndim))
    xd = x.astype(np.float64)
    mean = xd.mean(axis=axes, keepdims=True)
    msq = np.sqrt((xd * xd).mean(axis=axes, keepdims=True) - mean * mean + s.attrs["epsilon"])
    y = (xd - mean) / msq * np.asarray(scale, np.float32).astype(np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float32).astype(np.float64)
    return y.astype(np.float32)


def _float_only(t: Typing) -> None:
    if t.kind == "codes":
        raise t.error("on quantized codes (dequantize first)")


def _erf(s, x):
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(np.asarray(x, np.float64)).astype(np.float32)


def _gelu_shape(t: Typing) -> None:
    _float_only(t)
    ap = t.attrs.get("approximate", b"none")
    t.step_attrs = {"approximate": ap.decode() if isinstance(ap, bytes) else ap}


def _gelu(s, x):
    x = np.asarray(x, np.float32)
    if s.attrs.get("approximate", "none") == "tanh":
        xd = x.astype(np.float64)
        return (0.5 * xd * (1 + np.tanh(np.sqrt(2 / np.pi) * (xd + 0.044715 * xd ** 3)))).astype(np.float32)
    return (x.astype(np.float64) * 0.5 * (1 + _erf(s, x.astype(np.float64) / np.sqrt(2)))).astype(np.float32)


def _reduce_shape(t: Typing) -> None:
    _float_only(t)
    ax = _axes(t, len(t.shape))
    if ax is None:
        if t.attrs.get("noop_with_empty_axes", 0):
            ax = []
        else:
            ax = list(range(len(t.shape)))
    keep = t.attrs.get("keepdims", 1)
    t.shape = tuple(1 if i in ax else d for i, d in enumerate(t.shape) if keep or i not in ax)
    t.step_attrs = {"axes": ax, "keepdims": keep}
    t.step_inputs = t.inputs[:1]


def _reduce_mean(s, x):
    x = np.asarray(x, np.float32)
    if not s.attrs["axes"]:
        return x
    return np.mean(x, axis=tuple(s.attrs["axes"]), keepdims=bool(s.attrs["keepdims"]), dtype=np.float32)


def _split_shape(t: Typing) -> None:
    ax = t.attrs.get("axis", 0)
    ax = ax + len(t.shape) if ax < 0 else ax
    n = len(t.outputs)
    if "split" in t.attrs:
        parts = [int(v) for v in t.attrs["split"]]
    elif len(t.inputs) > 1 and t.inputs[1]:
        parts = [int(v) for v in np.asarray(t.known(t.inputs[1], "split")).reshape(-1)]
    else:
        d = t.shape[ax]
        size = -(-d // n)
        parts = [min(size, d - i * size) for i in range(n)]
    if sum(parts) != t.shape[ax] or len(parts) != n:
        raise t.error(f"split {parts} does not divide axis {ax} of size {t.shape[ax]} into {n} outputs")
    t.out_shapes = [tuple(p if i == ax else v for i, v in enumerate(t.shape)) for p in parts]
    t.shape = t.out_shapes[0]
    t.step_attrs = {"axis": ax, "split": parts}
    t.step_inputs = t.inputs[:1]


def _split(s, x):
    edges = np.cumsum(s.attrs["split"])[:-1]
    return tuple(np.split(np.asarray(x), edges, axis=s.attrs["axis"]))


def _gather_shape(t: Typing) -> None:
    idx = np.asarray(t.known(t.inputs[1], "indices")).astype(np.int64)
    data = t.inputs[0]
    dshape = tuple(t.shape_of(data))
    ax = t.attrs.get("axis", 0)
    ax = ax + len(dshape) if ax < 0 else ax
    t.shape = dshape[:ax] + idx.shape + dshape[ax + 1:]
    t.step_attrs = {"axis": ax, "indices": idx.tolist(), "ishape": list(idx.shape)}
    t.step_inputs = [data]
    if data in [a.name for a in t.acts]:
        a = next(a for a in t.acts if a.name == data)
        t.kind, t.spec, t.dtype = a.kind, a.spec, a.dtype
        v = t.value_of(data)
        if v is not None:
            t.value = np.take(v, idx, axis=ax)
    else:
        raise t.error("gathers from a constant with computed indices (only constant indices are supported)")


def _gather(s, x):
    idx = np.asarray(s.attrs["indices"], dtype=np.int64).reshape(s.attrs["ishape"])
    x = np.asarray(x)
    idx = np.where(idx < 0, idx + x.shape[s.attrs["axis"]], idx)
    return np.take(x, idx, axis=s.attrs["axis"])


def _slice_shape(t: Typing) -> None:
    ins = t.inputs
    n = len(t.shape)

    def get(i, what):
        return [int(v) for v in np.asarray(t.known(ins[i], what)).reshape(-1)] if len(ins) > i and ins[i] else None

    starts, ends = get(1, "starts"), get(2, "ends")
    if starts is None:  # opset < 10: attributes
        starts, ends = list(t.attrs["starts"]), list(t.attrs["ends"])
        axes = list(t.attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        axes = get(3, "axes") or list(range(len(starts)))
        steps = get(4, "steps") or [1] * len(starts)
    axes = [a + n if a < 0 else a for a in axes]
    sl = [slice(None)] * n
    for a, b, e, st in zip(axes, starts, ends, steps):
        sl[a] = slice(*slice(b, e, st).indices(t.shape[a])) if st > 0 else slice(b, e if e >= -t.shape[a] else None, st)
    probe = np.empty(t.shape, dtype=np.bool_)[tuple(sl)]
    t.shape = probe.shape
    t.step_attrs = {"axes": axes, "starts": starts, "ends": ends, "steps": steps}
    t.step_inputs = ins[:1]
    v = t.value_of(ins[0])
    if v is not None:
        t.value = _slice(HostStep("", "Slice", [], [], t.step_attrs), v)


def _slice(s, x):
    x = np.asarray(x)
    sl = [slice(None)] * x.ndim
    for a, b, e, st in zip(s.attrs["axes"], s.attrs["starts"], s.attrs["ends"], s.attrs["steps"]):
        big = np.iinfo(np.int64).max // 2
        e = None if (st < 0 and e < -x.shape[a]) else max(min(e, big), -big)
        sl[a] = slice(b, e, st)
    return x[tuple(sl)]


def _unsqueeze_shape(t: Typing) -> None:
    ax = list(t.attrs["axes"]) if "axes" in t.attrs else [
        int(v) for v in np.asarray(t.known(t.inputs[1], "axes")).reshape(-1)]
    n = len(t.shape) + len(ax)
    ax = sorted(a + n if a < 0 else a for a in ax)
    shape = list(t.shape)
    for a in ax:
        shape.insert(a, 1)
    t.shape = tuple(shape)
    _axes_step(t, ax)


def _axes_step(t: Typing, ax: list[int]) -> None:
    """The step of an Unsqueeze/Squeeze to ``t.shape`` (its axes normalised; a known value reshaped along)."""
    t.step_attrs = {"axes": ax}
    t.step_inputs = t.inputs[:1]
    v = t.value_of(t.inputs[0])
    if v is not None:
        t.value = np.reshape(v, t.shape)


def _squeeze_shape(t: Typing) -> None:
    ax = _axes(t, len(t.shape))
    if ax is None:
        ax = [i for i, d in enumerate(t.shape) if d == 1 and i > 0]  # never the (dynamic) batch
    if any(t.shape[a] != 1 for a in ax):
        raise t.error(f"cannot squeeze axes {ax} of shape {t.shape}")
    t.shape = tuple(d for i, d in enumerate(t.shape) if i not in ax)
    _axes_step(t, ax)


def _expand_shape(t: Typing) -> None:
    data, shp = t.inputs[0], t.inputs[1]
    target = [int(v) for v in np.asarray(t.known(shp, "shape")).reshape(-1)]
    dshape = tuple(t.shape_of(data))
    try:
        t.shape = tuple(np.broadcast_shapes(dshape, tuple(target)))
    except ValueError:
        raise t.error(f"cannot expand {dshape} to {target}") from None
    src = next((a for a in t.acts if a.name == data), None)
    if src is not None:
        t.kind, t.spec, t.dtype = src.kind, src.spec, src.dtype
    else:
        t.kind, t.spec, t.dtype = "float", None, "float32"
        if np.asarray(t.const(data, "data")).dtype.kind != "f":
            raise t.error("expands an integer constant (only float data is supported)")
    t.step_attrs = {"shape": target}


def _expand(s, x, shape=None):
    target = [int(v) for v in (s.attrs["shape"] if shape is None else np.asarray(shape).reshape(-1))]
    x = np.asarray(x)
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(target))).copy()


def _shape_shape(t: Typing) -> None:
    start, end = t.attrs.get("start", 0), t.attrs.get("end", None)
    dims = list(t.shape)[start:end]
    t.shape = (len(dims),)
    t.kind, t.spec, t.dtype = "int", None, "int64"
    t.value = np.asarray(dims, dtype=np.int64)
    t.step_attrs = {"start": start, "end": end}


def _shape(s, x):
    return np.asarray(np.shape(x)[s.attrs.get("start", 0):s.attrs.get("end", None)], dtype=np.int64)


def _const_of_shape_shape(t: Typing) -> None:
    shape = [int(v) for v in np.asarray(t.known(t.inputs[0], "shape")).reshape(-1)]
    val = t.attrs.get("value")
    arr = onnx.numpy_helper.to_array(val) if val is not None else np.zeros(1, np.float32)
    t.shape = tuple(shape)
    kind = "float" if arr.dtype.kind == "f" else "int"
    t.kind, t.spec, t.dtype = kind, None, str(arr.dtype)
    t.step_attrs = {"value": arr.reshape(-1)[0].item(), "dtype": str(arr.dtype)}
    if kind == "int":
        t.value = np.full(shape, arr.reshape(-1)[0], dtype=arr.dtype)


def _const_of_shape(s, shape):
    return np.full([int(v) for v in np.asarray(shape).reshape(-1)], s.attrs["value"], dtype=s.attrs["dtype"])


def _int_arith(t: Typing) -> None:
    """Arithmetic: on float activations, or on integer shape values (their compile-time value follows)."""
    _arith(t)
    if all(a.kind == "int" for a in t.acts):
        vals = [t.known(n, "operand") for n in t.inputs]
        fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
              "Div": lambda a, b: np.floor_divide(a, b)}.get(t.op)
        if fn is not None and all(v is not None for v in vals):
            t.value = np.asarray(fn(*[np.asarray(v, np.int64) for v in vals]), dtype=np.int64)
        t.kind, t.dtype = "int", "int64"


def _int_values(t: Typing, fn) -> None:
    """An op on integer shape values (Equal, Where): typed "int", its compile-time value computed."""
    shapes = [tuple(t.shape_of(n)) for n in t.inputs]
    try:
        t.shape = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise t.error(f"shapes {shapes} do not broadcast") from None
    if any(a.kind != "int" for a in t.acts):
        raise t.error("only on integer shape values (not on activations)")
    vals = [t.value_of(n) if t.value_of(n) is not None else np.asarray(t.const(n, "operand")) for n in t.inputs]
    t.value = np.asarray(fn(*vals))
    t.kind, t.spec, t.dtype = "int", None, str(t.value.dtype)


def _equal_shape(t: Typing) -> None:
    _int_values(t, np.equal)


def _where_shape(t: Typing) -> None:
    _int_values(t, np.where)


def _pow_shape(t: Typing) -> None:
    _arith(t)


def _qspec(t: Typing, scale: str, zp: str, like) -> QSpec:
    s = np.asarray(t.const(scale, "scale"), dtype=np.float64).reshape(-1)
    z = np.asarray(t.const(zp, "zero point")).reshape(-1) if zp else np.zeros(1, np.int64)
    if s.size != 1 or z.size != 1:
        raise t.error("per-channel quantization of an activation is not supported")
    if like is None:
        lo, hi = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}[np.asarray(t.const(zp, "zp")).dtype]
    else:
        lo, hi = like
    return QSpec(float(s[0]), int(z[0]), lo, hi)


def _codes_in(t: Typing, name: str) -> Tensor:
    a = next((a for a in t.acts if a.name == name), None)
    if a is None or a.kind != "codes":
        raise t.error(f"input {name!r} is not quantized codes")
    return a


def _set_codes_out(t: Typing, spec: QSpec, shape, inputs: list[str], attrs: dict) -> None:
    t.shape, t.kind, t.spec = tuple(shape), "codes", spec
    t.dtype = "uint8" if spec.lo >= 0 else "int8"
    t.step_inputs, t.step_attrs = inputs, attrs


def _ql_add_shape(t: Typing) -> None:
    i = t.inputs
    a, b = _codes_in(t, i[0]), _codes_in(t, i[3])
    sa = _qspec(t, i[1], i[2], (a.spec.lo, a.spec.hi))
    sb = _qspec(t, i[4], i[5], (b.spec.lo, b.spec.hi))
    sy = _qspec(t, i[6], i[7] if len(i) > 7 else "", (a.spec.lo, a.spec.hi))
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise t.error(f"shapes {a.shape} and {b.shape} do not broadcast") from None
    _set_codes_out(t, sy, shape, [i[0], i[3]], {"a": sa, "b": sb, "y": sy})


def _ql_add(s, a, b):
    A, B, Y = s.attrs["a"], s.attrs["b"], s.attrs["y"]
    return ort_kernels.qlinear_add(a, A.scale, A.zero_point, b, B.scale, B.zero_point, Y.scale, Y.zero_point,
                                   Y.lo, Y.hi)


def _ql_pool_specs(t: Typing):
    i = t.inputs
    x = _codes_in(t, i[0])
    if t.attrs.get("channels_last", 0):
        raise t.error("channels_last = 1 is not supported")
    sx = _qspec(t, i[1], i[2], (x.spec.lo, x.spec.hi))
    sy = _qspec(t, i[3], i[4] if len(i) > 4 else "", (x.spec.lo, x.spec.hi))
    return x, sx, sy


def _ql_avgpool_shape(t: Typing) -> None:
    x, sx, sy = _ql_pool_specs(t)
    a = t.attrs
    k = tuple(a["kernel_shape"])
    st = tuple(a.get("strides", (1,) * len(k)))
    p = tuple(a.get("pads", (0,) * 2 * len(k)))
    ap = a.get("auto_pad", b"NOTSET")
    ap = ap.decode() if isinstance(ap, bytes) else ap
    if ap not in ("NOTSET", "VALID") or len(k) != 2 or len(x.shape) != 4:
        raise t.error("only 2-D pooling with explicit pads is supported")
    if any(d != 1 for d in a.get("dilations", (1, 1))):
        raise t.error("dilations are not supported by onnxruntime's QLinearAveragePool")
    ceil = bool(a.get("ceil_mode", 0))
    out = [pool_out_size(x.shape[2 + j], k[j], st[j], p[j], p[j + 2], 1, ceil) for j in range(2)]
    _set_codes_out(t, sy, (x.shape[0], x.shape[1], *out), [x.name],
                   {"x": sx, "y": sy, "kernel": list(k), "strides": list(st), "pads": list(p), "ceil_mode": int(ceil),
                    "count_include_pad": int(a.get("count_include_pad", 0))})


def _ql_avgpool(s, x):
    a, X, Y = s.attrs, s.attrs["x"], s.attrs["y"]
    k, st, p = a["kernel"], a["strides"], a["pads"]
    x = np.asarray(x)
    out = [pool_out_size(x.shape[2 + j], k[j], st[j], p[j], p[j + 2], 1, bool(a["ceil_mode"])) for j in range(2)]
    return ort_kernels.qlinear_avgpool(x, X.scale, X.zero_point, Y.scale, Y.zero_point, Y.lo, Y.hi, k, st, p, out,
                                       bool(a["count_include_pad"]))


def _ql_gap_shape(t: Typing) -> None:
    x, sx, sy = _ql_pool_specs(t)
    if len(x.shape) < 3:
        raise t.error(f"expects NCHW input, got shape {x.shape}")
    _set_codes_out(t, sy, (*x.shape[:2], *([1] * (len(x.shape) - 2))), [x.name], {"x": sx, "y": sy})


def _ql_gap(s, x):
    X, Y = s.attrs["x"], s.attrs["y"]
    return ort_kernels.qlinear_global_avgpool(x, X.scale, X.zero_point, Y.scale, Y.zero_point, Y.lo, Y.hi)


def _ql_concat_shape(t: Typing) -> None:
    i = t.inputs
    if len(i) < 5 or (len(i) - 2) % 3:
        raise t.error("expects (y_scale, y_zero_point, then (x, scale, zero point) per input)")
    xs = [_codes_in(t, i[j]) for j in range(2, len(i), 3)]
    sy = _qspec(t, i[0], i[1], (xs[0].spec.lo, xs[0].spec.hi))
    tables = []
    for j, x in zip(range(2, len(i), 3), xs):
        sx = _qspec(t, i[j + 1], i[j + 2], (x.spec.lo, x.spec.hi))
        same = float(sx.scale) == float(sy.scale) and int(sx.zero_point) == int(sy.zero_point)
        tables.append(None if same else ort_kernels.lookup_table(None, sx.scale, sx.zero_point, sy.scale,
                                                                  sy.zero_point, sy.lo, sy.hi))
    ax = t.attrs["axis"]
    ax = ax + len(xs[0].shape) if ax < 0 else ax
    shape = tuple(sum(x.shape[ax] for x in xs) if d == ax else v for d, v in enumerate(xs[0].shape))
    _set_codes_out(t, sy, shape, [x.name for x in xs], {"axis": ax, "tables": tables, "lo": sy.lo})


def _ql_concat(s, *xs):
    parts = [np.asarray(x, np.int64) if tb is None else ort_kernels.apply_table(x, tb, s.attrs["lo"])
             for x, tb in zip(xs, s.attrs["tables"])]
    return np.concatenate(parts, axis=s.attrs["axis"])


def _ql_lut_shape(fn_of):
    def infer(t: Typing) -> None:
        i = t.inputs
        x = _codes_in(t, i[0])
        sx = _qspec(t, i[1], i[2] if len(i) > 2 else "", (x.spec.lo, x.spec.hi))
        sy = _qspec(t, i[3], i[4] if len(i) > 4 else "", (x.spec.lo, x.spec.hi))
        table = ort_kernels.lookup_table(fn_of(t.attrs), sx.scale, sx.zero_point, sy.scale, sy.zero_point,
                                         sy.lo, sy.hi)
        _set_codes_out(t, sy, x.shape, [x.name], {"table": table, "lo": sy.lo})
    return infer


def _lut(s, x):
    return ort_kernels.apply_table(x, s.attrs["table"], s.attrs["lo"])


#: Every host op, by the op name of its :class:`cimtile.compiler.ir.HostStep`; ``ops``: element operations per
#: element the report counts (see :func:`host_cost`).
HOST: dict[str, HostOp] = {
    "Quantize": HostOp(_quantize, ops=1),
    "Dequantize": HostOp(_dequantize, ops=1),
    "ClipCodes": HostOp(lambda s, x: np.clip(x, s.attrs["lo"], s.attrs["hi"]), ops=1),
    "Clip": HostOp(_clip, ops=1),
    "Relu": HostOp(lambda s, x: np.maximum(x, 0).astype(np.asarray(x).dtype), _same, "Relu", ops=1),
    "Identity": HostOp(lambda s, x: x, _same, "Identity"),
    "Softmax": HostOp(_softmax, _same, "Softmax", ops=5, per_input=True),
    "Cast": HostOp(lambda s, x: np.asarray(x).astype(s.attrs["dtype"]), _cast, "Cast"),
    "Add": HostOp(_binary(np.add), _int_arith, "Add", ops=1),
    "Sub": HostOp(_binary(np.subtract), _int_arith, "Sub", ops=1),
    "Mul": HostOp(_binary(np.multiply), _int_arith, "Mul", ops=1),
    "Div": HostOp(_binary(lambda a, b: a / b if a.dtype.kind == "f" else np.floor_divide(a, b)), _int_arith, "Div",
                  ops=1),
    "Pow": HostOp(_binary(np.power), _pow_shape, "Pow", ops=1),
    "Sqrt": HostOp(lambda s, x: np.sqrt(np.asarray(x, np.float32)), _float_only, "Sqrt", ops=1),
    "Erf": HostOp(_erf, _float_only, "Erf", ops=1),
    "Tanh": HostOp(lambda s, x: np.tanh(np.asarray(x, np.float32)), _float_only, "Tanh", ops=1),
    "Sigmoid": HostOp(lambda s, x: (1 / (1 + np.exp(-np.asarray(x, np.float64)))).astype(np.float32), _float_only,
                      "Sigmoid", ops=1),
    "Gelu": HostOp(_gelu, _gelu_shape, "Gelu", ops=8),
    "LayerNormalization": HostOp(_layernorm, _layernorm_shape, "LayerNormalization", ops=8, per_input=True),
    "ReduceMean": HostOp(_reduce_mean, _reduce_shape, "ReduceMean", ops=1, per_input=True),
    "MaxPool": HostOp(_maxpool, _pool, "MaxPool", ops=1),
    "AveragePool": HostOp(_avgpool, _pool, "AveragePool", ops=1),
    "GlobalAveragePool": HostOp(_global_avgpool, _global_pool, "GlobalAveragePool", ops=1, per_input=True),
    "Flatten": HostOp(_flatten, _flatten_shape, "Flatten"),
    "Reshape": HostOp(_reshape, _reshape_shape, "Reshape"),
    "Transpose": HostOp(lambda s, x: np.transpose(x, s.attrs["perm"]), _transpose_shape, "Transpose"),
    "Concat": HostOp(lambda s, *xs: np.concatenate([np.asarray(x) for x in xs], axis=s.attrs["axis"]),
                     _concat_shape, "Concat"),
    "Split": HostOp(_split, _split_shape, "Split"),
    "Gather": HostOp(_gather, _gather_shape, "Gather"),
    "Slice": HostOp(_slice, _slice_shape, "Slice"),
    "Unsqueeze": HostOp(lambda s, x: np.expand_dims(x, tuple(s.attrs["axes"])), _unsqueeze_shape, "Unsqueeze"),
    "Squeeze": HostOp(lambda s, x: np.squeeze(x, tuple(s.attrs["axes"])), _squeeze_shape, "Squeeze"),
    "Expand": HostOp(_expand, _expand_shape, "Expand"),
    "Shape": HostOp(_shape, _shape_shape, "Shape"),
    "Equal": HostOp(lambda s, a, b: np.equal(a, b), _equal_shape, "Equal"),
    "Where": HostOp(lambda s, c, a, b: np.where(c, a, b), _where_shape, "Where"),
    "ConstantOfShape": HostOp(_const_of_shape, _const_of_shape_shape, "ConstantOfShape"),
    # activation x activation (attention-style) products; MatMul with a constant weight runs on the tile
    "HostMatMul": HostOp(lambda s, a, b: np.matmul(np.asarray(a, np.float32), np.asarray(b, np.float32)),
                         _matmul_shape, "MatMul"),
    # onnxruntime's contrib operators of its QOperator format (their arithmetic: compiler/ort_kernels.py)
    "QLinearAdd": HostOp(_ql_add, _ql_add_shape, "QLinearAdd", "com.microsoft", ops=1),
    "QLinearAveragePool": HostOp(_ql_avgpool, _ql_avgpool_shape, "QLinearAveragePool", "com.microsoft", ops=1,
                                 per_input=True),
    "QLinearGlobalAveragePool": HostOp(_ql_gap, _ql_gap_shape, "QLinearGlobalAveragePool", "com.microsoft", ops=1,
                                       per_input=True),
    "QLinearConcat": HostOp(_ql_concat, _ql_concat_shape, "QLinearConcat", "com.microsoft", ops=1),
    "QLinearSigmoid": HostOp(_lut, _ql_lut_shape(lambda a: ort_kernels.mlas_logistic), "QLinearSigmoid",
                             "com.microsoft", ops=1),
    "QLinearLeakyRelu": HostOp(_lut, _ql_lut_shape(lambda a: ort_kernels.leaky_relu(a.get("alpha", 0.01))),
                               "QLinearLeakyRelu", "com.microsoft", ops=1),
}


def onnx_host_ops() -> dict[str, str]:
    """ONNX op type -> host step op name, for the ops the frontend lowers to the host."""
    return {h.onnx: name for name, h in HOST.items() if h.onnx}


def onnx_host_domains() -> dict[str, str]:
    """ONNX op type -> its domain ("" for the standard operators)."""
    return {h.onnx: h.domain for h in HOST.values() if h.onnx}


def host_cost(step: HostStep, in_shapes: list[tuple], out_shapes: list[tuple]) -> tuple[int, int]:
    """(MACs, element operations) of one host step: MACs of an activation x activation product; element
    operations ``HostOp.ops`` per output element (per input element for reductions, LayerNorm and Softmax)."""
    if step.op == "HostMatMul":
        a, b = in_shapes[:2]
        return int(np.prod(np.broadcast_shapes(a[:-2], b[:-2]))) * a[-2] * a[-1] * b[-1], 0
    h = HOST[step.op]
    n = int(np.prod(in_shapes[0])) if h.per_input and in_shapes else sum(int(np.prod(o)) for o in out_shapes)
    return 0, h.ops * n


def run_host(step: HostStep, args: list) -> np.ndarray:
    """Execute one host step on its input values."""
    return HOST[step.op].run(step, *args)
