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

    def error(self, msg: str) -> CompileError:
        return node_error(self.name, self.op, msg)


@dataclass(frozen=True)
class HostOp:
    """A host op: ``infer`` (None for steps the frontend types itself), ``run(step, *inputs)`` and the ONNX
    op type lowered to it (None for steps only the frontend creates)."""

    run: Callable[..., Any]
    infer: Callable[[Typing], None] | None = None
    onnx: str | None = None


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
    return win.max(axis=(-2, -1))


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


def _reshape(s, x, _shape=None):
    target = list(s.attrs["shape"])
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
    target = [int(v) for v in t.const(t.inputs[1], "shape")]
    allowzero = t.attrs.get("allowzero", 0)
    out = [shape[i] if v == 0 and not allowzero else v for i, v in enumerate(target)]
    if -1 in out:
        rest = int(np.prod([v for v in out if v != -1]))
        out[out.index(-1)] = int(np.prod(shape)) // max(rest, 1)
    if int(np.prod(out)) != int(np.prod(shape)):
        raise t.error(f"cannot reshape {shape} to {target}")
    t.shape = tuple(out)
    t.step_attrs = {"shape": target, "allowzero": allowzero}


def _transpose_shape(t: Typing) -> None:
    perm = t.attrs.get("perm", list(range(len(t.shape)))[::-1])
    t.shape = tuple(t.shape[p] for p in perm)
    t.step_attrs = {"perm": list(perm)}


def _concat_shape(t: Typing) -> None:
    ax = t.attrs["axis"] if t.attrs["axis"] >= 0 else t.attrs["axis"] + len(t.shape)
    if len(t.acts) != len([n for n in t.inputs if n]):
        raise t.error("constant inputs to Concat not supported")
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


#: Every host op, by the op name of its :class:`cimtile.compiler.ir.HostStep`.
HOST: dict[str, HostOp] = {
    "Quantize": HostOp(_quantize),
    "Dequantize": HostOp(_dequantize),
    "ClipCodes": HostOp(lambda s, x: np.clip(x, s.attrs["lo"], s.attrs["hi"])),
    "Clip": HostOp(_clip),
    "Relu": HostOp(lambda s, x: np.maximum(x, 0).astype(np.asarray(x).dtype), _same, "Relu"),
    "Identity": HostOp(lambda s, x: x, _same, "Identity"),
    "Softmax": HostOp(_softmax, _same, "Softmax"),
    "Cast": HostOp(lambda s, x: np.asarray(x).astype(s.attrs["dtype"]), _cast, "Cast"),
    "Add": HostOp(_binary(np.add), _arith, "Add"),
    "Sub": HostOp(_binary(np.subtract), _arith, "Sub"),
    "Mul": HostOp(_binary(np.multiply), _arith, "Mul"),
    "Div": HostOp(_binary(lambda a, b: a / b if a.dtype.kind == "f" else np.floor_divide(a, b)), _arith, "Div"),
    "MaxPool": HostOp(_maxpool, _pool, "MaxPool"),
    "AveragePool": HostOp(_avgpool, _pool, "AveragePool"),
    "GlobalAveragePool": HostOp(_global_avgpool, _global_pool, "GlobalAveragePool"),
    "Flatten": HostOp(_flatten, _flatten_shape, "Flatten"),
    "Reshape": HostOp(_reshape, _reshape_shape, "Reshape"),
    "Transpose": HostOp(lambda s, x: np.transpose(x, s.attrs["perm"]), _transpose_shape, "Transpose"),
    "Concat": HostOp(lambda s, *xs: np.concatenate(xs, axis=s.attrs["axis"]), _concat_shape, "Concat"),
    # activation x activation (attention-style) products; MatMul with a constant weight runs on the tile
    "HostMatMul": HostOp(lambda s, a, b: np.matmul(np.asarray(a, np.float32), np.asarray(b, np.float32)),
                         _matmul_shape, "MatMul"),
}


def onnx_host_ops() -> dict[str, str]:
    """ONNX op type -> host step op name, for the ops the frontend lowers to the host."""
    return {h.onnx: name for name, h in HOST.items() if h.onnx}


def run_host(step: HostStep, args: list) -> np.ndarray:
    """Execute one host step on its input values."""
    return HOST[step.op].run(step, *args)
