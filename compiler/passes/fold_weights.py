"""Integer weights and biases: subtract weight zero points, choose weight/activation bits, fold the input zero
point into the bias (``sum_k W[k,n] * (x_k - zp) = sum_k W[k,n] * x_k - zp * sum_k W[k,n]``)."""

from __future__ import annotations

import numpy as np

from ..errors import node_error
from ..ir import Model, TileLayer, Weights, bits_of_range


def weight_matrix(L: TileLayer) -> np.ndarray:
    """(K, N) integer weights ``codes - zero_point`` in im2col order (Conv: K = Cin*kh*kw)."""
    w = L.weight
    codes = w.codes.astype(np.int32)
    zp = w.spec.zero_point.astype(np.int32)
    if L.conv is not None:
        zp = zp.reshape(-1, 1, 1, 1) if zp.ndim else zp
        return (codes - zp).reshape(codes.shape[0], -1).T.copy()
    zp = zp.reshape(1, -1) if zp.ndim else zp
    return codes - zp


def per_output(v: np.ndarray, n: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return np.full(n, v[0]) if v.size == 1 else v


class FoldWeights:
    """Makes each layer's :class:`~cimtile.compiler.ir.Weights` (from its graph fields only)."""

    def apply(self, model: Model) -> tuple[Model, bool]:
        for L in model.layers:
            L.weights = fold(L)
        return model, False


def fold(L: TileLayer) -> Weights:
    W = weight_matrix(L)
    K, N = W.shape
    spec = L.weight.spec
    w_fix = None
    if W.min(initial=0) >= 0 and not spec.signed and not np.any(spec.zero_point):
        wsigned = False
        wbits = max(spec.bits, bits_of_range(0, int(W.max(initial=0))))
    else:
        # the tile's signed weights are symmetric (+-(2^(w-1)-1)): -2^(w-1) needs one more bit
        wsigned = True
        need = int(np.abs(W).max(initial=0)).bit_length() + 1
        wbits = max(spec.bits, need, 2)
    if wbits == 9 and int(W.max(initial=0)) <= 127 and int(W.min(initial=0)) == -128:
        # -128 is not a symmetric 8-bit weight: store -127 and add the missing -1 x input with a second,
        # 2-bit signed MVM on the same inputs into the same accumulator (exact, a few extra tiles)
        w_fix = (W == -128).astype(np.int32) * -1
        W = np.maximum(W, -127)
        wbits = 8
    if wbits > 8:
        v = int(W.min()) if W.min() < -127 else int(W.max())
        raise node_error(L.name, L.op, f"weight value {v} needs {wbits}-bit signed weights; the tile's "
                         "signed weights are symmetric (+-127) and at most 8 bits")
    ins = L.in_spec
    zp_in = int(ins.zero_point)
    s_w = per_output(spec.scale, N)
    s_in = float(ins.scale)
    bias_f = np.zeros(N)
    if L.bias_int is not None:
        b = L.bias_int.astype(np.int64).reshape(-1)
    elif L.bias is not None and L.out_spec is None:
        # the accumulator is read back: the host adds the real bias exactly
        b = np.zeros(N, dtype=np.int64)
        bias_f = per_output(L.bias, N)
    elif L.bias is not None:
        b = np.round(per_output(L.bias, N) / (s_in * s_w)).astype(np.int64)
    else:
        b = np.zeros(N, dtype=np.int64)
    if b.size != N:
        raise node_error(L.name, L.op, f"bias has {b.size} values for {N} outputs")
    colsum = W.sum(axis=0, dtype=np.int64)
    if w_fix is not None:
        colsum = colsum + w_fix.sum(axis=0, dtype=np.int64)
    rq_bias = b - zp_in * colsum
    if np.abs(rq_bias).max(initial=0) >= 1 << 31:
        bad = int(np.argmax(np.abs(rq_bias)))
        raise node_error(L.name, L.op, f"folded bias {int(rq_bias[bad])} of output {bad} does not fit the 32-bit "
                         "requantisation bias")
    return Weights(W, w_fix, K, N, wbits, wsigned, spec.bits, ins.bits, ins.lo < 0, rq_bias, s_in * s_w, bias_f)
