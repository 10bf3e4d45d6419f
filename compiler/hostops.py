"""Host-side ops of the runtime (NumPy, float32 like onnxruntime): quantise/dequantise, pooling, residual adds,
reshapes, softmax and activation x activation products."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .ir import HostStep

__all__ = ["HOST", "run_host"]


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
    H, W = x.shape[2:]
    out = []
    for j, n in enumerate((H, W)):
        span = n + p[j] + p[j + 2] - d[j] * (k[j] - 1) - 1
        o = (-(-span // st[j]) if ceil else span // st[j]) + 1
        if ceil and (o - 1) * st[j] >= n + p[j]:
            o -= 1  # the last window must start inside the input or the leading pad
        out.append(o)
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


HOST = {
    "Quantize": _quantize, "Dequantize": _dequantize,
    "ClipCodes": lambda s, x: np.clip(x, s.attrs["lo"], s.attrs["hi"]),
    "Relu": lambda s, x: np.maximum(x, 0).astype(np.asarray(x).dtype),
    "Identity": lambda s, x: x,
    "Clip": _clip,
    "Cast": lambda s, x: np.asarray(x).astype(s.attrs["dtype"]),
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply),
    "Div": _binary(lambda a, b: a / b if a.dtype.kind == "f" else np.floor_divide(a, b)),
    "MaxPool": _maxpool, "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool,
    "Flatten": _flatten, "Reshape": _reshape,
    "Transpose": lambda s, x: np.transpose(x, s.attrs["perm"]),
    "Concat": lambda s, *xs: np.concatenate(xs, axis=s.attrs["axis"]),
    "Softmax": _softmax,
    "HostMatMul": lambda s, a, b: np.matmul(np.asarray(a, np.float32), np.asarray(b, np.float32)),
}


def run_host(step: HostStep, args: list) -> np.ndarray:
    """Execute one host step on its input values."""
    if step.op == "Reshape":
        return _reshape(step, args[0])
    return HOST[step.op](step, *args)
