"""onnxruntime's arithmetic for its ``com.microsoft`` quantized operators (QOperator format), in NumPy.

Each function computes what onnxruntime's CPU kernel computes on x86-64 (the MLAS kernels with AVX2/FMA3,
which is what ``quantize_static(..., quant_format=QOperator)`` models run on there), operation by operation in
float32 or int32, so that the host side of the runtime gives the same codes:

- QLinearAdd (MLAS ``QLinearBinaryOpKernelAvx2``): ``a' = float(a - za) * sa``, ``b'`` alike,
  ``c = rint((a' + b') / sc)`` clamped to the code range minus ``zc``, plus ``zc``.
- QLinearAveragePool (contrib ``qlinear_pool.cc``): dequantised to float32, each window summed row by row
  in float32 over the part inside the input (padding and the ceil-mode overhang skipped), divided by the
  count (the whole kernel with ``count_include_pad``), then ``rint(avg / sy + zy)``; a kernel covering the
  whole image without padding falls back to the global pool, as onnxruntime does.
- QLinearGlobalAveragePool (MLAS ``MlasQLinearGlobalAveragePoolNchw``): the integer sum minus
  ``zx * size``, times the float32 factor ``sx / (sy * size)``, rounded half to even, plus ``zy``.
- QLinearConcat, QLinearSigmoid, QLinearLeakyRelu (contrib ``qlinear_lookup_table.cc``): a 256-entry table
  per input: each code dequantised in float32, the function applied (sigmoid: MLAS's rational approximation
  ``MlasLogisticKernelFma3`` with its fused multiply-adds; leaky ReLU: ``v`` or ``alpha * v``; Concat: the
  identity, or a plain copy when scale and zero point equal the output's), then quantised like
  ``MlasQuantizeLinear`` (``rint(v / sy) + zy``, saturated).

The tests compare every one of these with onnxruntime code for code (tests/test_qoperator.py).
"""

from __future__ import annotations

import numpy as np

__all__ = ["qlinear_add", "qlinear_avgpool", "qlinear_global_avgpool", "lookup_table", "apply_table",
           "mlas_logistic", "leaky_relu"]

_F = np.float32


def _dq(q, scale, zp) -> np.ndarray:
    """``scale * (q - zp)`` in float32, as the kernels dequantise."""
    return (np.asarray(q, dtype=np.int32) - np.int32(zp)).astype(_F) * _F(scale)


def _saturate(r, zp: int, lo: int, hi: int) -> np.ndarray:
    return (np.clip(r, lo - zp, hi - zp) + zp).astype(np.int64)


def qlinear_add(a, sa, za, b, sb, zb, sc, zc, lo: int, hi: int) -> np.ndarray:
    """QLinearAdd of two code tensors (numpy broadcasting, as onnxruntime's broadcast looper)."""
    v = (_dq(a, sa, za) + _dq(b, sb, zb)) / _F(sc)
    return _saturate(np.rint(v), int(zc), lo, hi)


def qlinear_avgpool(x, sx, zx, sy, zy, lo: int, hi: int, kernel, strides, pads, out_hw,
                    count_include_pad: bool) -> np.ndarray:
    """QLinearAveragePool (2-D, NCHW) on codes ``x``, output size ``out_hw`` (onnxruntime's, with ceil_mode)."""
    x = np.asarray(x)
    n, c, H, W = x.shape
    kh, kw = kernel
    if (kh, kw) == (H, W) and not any(pads):
        return qlinear_global_avgpool(x, sx, zx, sy, zy, lo, hi)
    sh, sw = strides
    oh, ow = out_hw
    xf = _dq(x, sx, zx)
    out = np.empty((n, c, oh, ow), dtype=_F)
    for ph in range(oh):
        h0 = ph * sh - pads[0]
        h1 = min(h0 + kh, H)
        h0 = max(h0, 0)
        for pw in range(ow):
            w0 = pw * sw - pads[1]
            w1 = min(w0 + kw, W)
            w0 = max(w0, 0)
            acc = np.zeros((n, c), dtype=_F)
            for h in range(h0, h1):  # float32, in the kernel's order
                for w in range(w0, w1):
                    acc = acc + xf[:, :, h, w]
            cnt = kh * kw if count_include_pad else (h1 - h0) * (w1 - w0)
            out[:, :, ph, pw] = acc / _F(cnt)
    r = np.rint(out / _F(sy) + _F(zy))  # onnxruntime adds the zero point before rounding here
    return np.clip(r, lo, hi).astype(np.int64)


def qlinear_global_avgpool(x, sx, zx, sy, zy, lo: int, hi: int) -> np.ndarray:
    """QLinearGlobalAveragePool (NCHW) on codes ``x``: output (N, C, 1, 1)."""
    x = np.asarray(x)
    size = int(np.prod(x.shape[2:]))
    acc = x.reshape(x.shape[0], x.shape[1], size).astype(np.int64).sum(axis=2) - int(zx) * size
    scale = _F(sx) / (_F(sy) * _F(size))
    r = np.rint(acc.astype(_F) * scale)
    return _saturate(r, int(zy), lo, hi).reshape(x.shape[0], x.shape[1], *([1] * (x.ndim - 2)))


def _fma(a, b, c) -> np.ndarray:
    """float32 fused multiply-add: the product is exact in float64 (24 + 24 bits), one rounding to float32
    after the add (through float64; the two roundings agree except in ties, checked on all 256 codes)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(_F)


_LOGISTIC = dict(lower=-18.0, upper=18.0,
                 alpha=(4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03,
                        2.48287947061529e-01),
                 beta=(6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03,
                       1.16817656904453e-01, 9.93151921023180e-01))


def mlas_logistic(v) -> np.ndarray:
    """MLAS's logistic function (Eigen's rational approximation, FMA3 kernel) on float32 values."""
    x = np.minimum(_F(_LOGISTIC["upper"]), np.maximum(_F(_LOGISTIC["lower"]), np.asarray(v, _F)))
    x2 = (x * x).astype(_F)
    al, be = [_F(a) for a in _LOGISTIC["alpha"]], [_F(b) for b in _LOGISTIC["beta"]]
    p = _fma(x2, al[0], al[1])
    for a in al[2:]:
        p = _fma(x2, p, a)
    q = _fma(x2, be[0], be[1])
    for b in be[2:]:
        q = _fma(x2, q, b)
    p = (x * p).astype(_F)
    return np.maximum(_F(0), (p / q).astype(_F) + _F(0.5)).astype(_F)


def leaky_relu(alpha: float):
    """The leaky ReLU onnxruntime's QLinearLeakyRelu tabulates: ``v`` if ``v >= 0`` else ``alpha * v``."""
    a = _F(alpha)
    return lambda v: np.where(v >= 0, v, (a * v).astype(_F)).astype(_F)


def lookup_table(fn, sx, zx, sy, zy, lo: int, hi: int) -> np.ndarray:
    """The table of a lookup-table kernel: entry ``code - lo`` for every code ``lo..hi`` of the input type."""
    codes = np.arange(lo, hi + 1)
    v = fn(_dq(codes, sx, zx)) if fn is not None else _dq(codes, sx, zx)
    r = np.rint(np.asarray(v, _F) / _F(sy))
    return _saturate(r, int(zy), lo, hi)


def apply_table(x, table: np.ndarray, lo: int) -> np.ndarray:
    return np.asarray(table)[np.asarray(x, dtype=np.int64) - lo]
