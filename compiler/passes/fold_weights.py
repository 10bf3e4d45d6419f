"""Integer weights and biases: subtract weight zero points, choose weight/activation bits, fold the input zero
point into the bias (``sum_k W[k,n] * (x_k - zp) = sum_k W[k,n] * x_k - zp * sum_k W[k,n]``)."""

from __future__ import annotations

import numpy as np

from ..errors import node_error
from ..ir import Model, TileLayer, Weights, bits_of_range


def weight_matrix(L: TileLayer, subtract_zero_point: bool = True) -> np.ndarray:
    """(K, N) integer weights ``codes - zero_point`` (or the codes alone) in im2col order (Conv: K = Cin*kh*kw)."""
    w = L.weight
    codes = w.codes.astype(np.int32)
    zp = w.spec.zero_point.astype(np.int32) if subtract_zero_point else np.int32(0)
    if L.conv is not None:
        zp = zp.reshape(-1, 1, 1, 1) if zp.ndim else zp
        dense = (codes - zp).reshape(codes.shape[0], -1).T.copy()  # (Cin/groups*kh*kw, Cout)
    elif L.groups > 1:  # batched weight (G, K/G, N/G), per-tensor zero point
        return block_diagonal(list(codes - zp))
    else:
        zp = zp.reshape(1, -1) if zp.ndim else zp
        return codes - zp
    if L.groups == 1:
        return dense
    g, ng = L.groups, dense.shape[1] // L.groups
    return block_diagonal([dense[:, i * ng:(i + 1) * ng] for i in range(g)])


def block_diagonal(blocks: list[np.ndarray]) -> np.ndarray:
    """The block-diagonal matrix of equal-shaped blocks (zeros elsewhere): a grouped layer's weight matrix, whose
    row block g (group g's inputs, contiguous in im2col order) feeds only column block g (its outputs)."""
    kg, ng = blocks[0].shape
    out = np.zeros((kg * len(blocks), ng * len(blocks)), dtype=blocks[0].dtype)
    for i, b in enumerate(blocks):
        out[i * kg:(i + 1) * kg, i * ng:(i + 1) * ng] = b
    return out


def per_output(v: np.ndarray, n: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return np.full(n, v[0]) if v.size == 1 else v


class FoldWeights:
    """Makes each layer's :class:`~cimtile.compiler.ir.Weights` (from its graph fields only)."""

    def apply(self, model: Model) -> tuple[Model, bool]:
        for L in model.layers:
            L.weights = fold(L)
        return model, False


def _fits(W: np.ndarray) -> bool:
    """Whether the tile holds ``W`` directly (unsigned up to 255, signed +-127 plus the -128 correction)."""
    lo, hi = int(W.min(initial=0)), int(W.max(initial=0))
    return (lo >= 0 and hi <= 255) or (lo >= -128 and hi <= 127)


def fold(L: TileLayer) -> Weights:
    spec = L.weight.spec
    W = weight_matrix(L)
    zp_w = None
    if np.any(spec.zero_point) and not _fits(W):
        # Asymmetric weights whose ``codes - zp_w`` need 9 bits (uint8 weights with a zero point far from 128):
        # the tile holds the codes and the host adds the zero point's term exactly, as integer inference engines
        # do: sum_k (w_k - zp_w)(x_k - zp) = sum_k w_k (x_k - zp) - zp_w * sum_k (x_k - zp).
        W = weight_matrix(L, subtract_zero_point=False)
        zp_w = np.broadcast_to(spec.zero_point.astype(np.int64).reshape(-1), (W.shape[1],)).copy() \
            if spec.zero_point.size > 1 else np.full(W.shape[1], int(spec.zero_point), dtype=np.int64)
    K, N = W.shape
    w_fix = None
    if W.min(initial=0) >= 0 and not spec.signed:  # (also codes - zp_w >= 0: unsigned holds them exactly)
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
    return Weights(W, w_fix, K, N, wbits, wsigned, spec.bits, ins.bits, ins.lo < 0, rq_bias, s_in * s_w, bias_f, zp_w)
