"""The golden model's fast bit-sliced MVM: the same integers as :func:`cimtile.sim.kernels.mvm_sliced`, much faster.

One GEMM for everything that provably cannot clip, and exact per-conversion corrections only where a cheap
bound says a conversion may clip; the analysis of a programmed window (:class:`_Plan`) is cached.
docs/golden-model.md gives the exactness argument; tests/test_kernels.py checks it against the definition.
"""

from __future__ import annotations

import bisect
import functools
import warnings

import numpy as np

try:  # the clip ufunc itself: np.clip's Python wrapper costs up to 1.6x the ufunc on int32 arrays of this size
    from numpy._core.umath import clip as _uclip
except ImportError:  # NumPy < 2
    from numpy.core.umath import clip as _uclip
from cimtile.hw.encoding import adc_range, column_weights, paired
from cimtile.hw.isa import Geometry
from cimtile.hw.params import TileConfig

from .kernels import F32_EXACT, F64_EXACT, Layer, input_slices, input_values, wrap

__all__ = ["mvm", "mvm_acc"]

#: Vectors per correction chunk: keeps the temporaries of one chunk in the L2 cache.
CHUNK = 512
#: Vectors per chunk of the integer path's corrections: its int32 temporaries (chunk x classes x outputs) stay
#: in the L2 cache (256 was 10% faster than 512 on the clip benchmark, 128 no better).
INT_CHUNK = 256
#: Programmed windows whose analysis (:class:`_Plan`) is kept; a Tile reuses one window for many MVMs.
PLAN_CACHE = 16


def _pow2_above(n: int) -> int:
    """Smallest power of two strictly greater than ``n`` (n >= 0)."""
    return 1 << int(n).bit_length()


#: Smallest ``M * rows * n_out`` (vectors x window rows x logical outputs) for which an MVM goes through the
#: int8 GEMM: below it, the float GEMM's smaller call overhead wins (a ResNet-18 layer's 49 x 128 x 16 MVMs
#: took 4.5 us as int8, 2.4 us as float32; 256 x 128 x 16 took 6.7 and 8.4 us, before the few microseconds
#: of checking that ``W`` fits int8). Tests set it to 0 to force the integer path on small cases.
INT_MIN_MACS = 1 << 20
#: Use the int8 GEMM at all (tests switch it off to compare both paths).
INT_GEMM = True

_i8mm_fn: list = []  # [function or None], set on first use


def _i8mm_probe():
    """PyTorch's int8 x int8 -> int32 GEMM (``torch._int_mm``, VNNI kernels on x86), or None when this PyTorch
    lacks it or it fails a self-check on awkward shapes (odd sizes, one row)."""
    try:
        import torch

        def tensor(x: np.ndarray):
            if x.flags.writeable:
                return torch.from_numpy(x)
            # read-only operands (kept weights): _int_mm only reads them, so PyTorch's warning about writes
            # through a tensor of a read-only array does not apply
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return torch.from_numpy(x)

        def mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            # One thread, as the golden backend pins BLAS: the GEMMs are narrow, and on a shared machine
            # PyTorch's OpenMP threads spin on busy cores (an MVM took 3-7x the CPU time with two).
            n = torch.get_num_threads()
            if n == 1:
                return torch._int_mm(tensor(a), tensor(b)).numpy()
            torch.set_num_threads(1)
            try:
                return torch._int_mm(tensor(a), tensor(b)).numpy()
            finally:
                torch.set_num_threads(n)

        rng = np.random.default_rng(0)
        for m, k, n in ((1, 5, 3), (17, 33, 9), (40, 8, 16)):
            a = rng.integers(-128, 128, (m, k)).astype(np.int8)
            b = rng.integers(-128, 128, (k, n)).astype(np.int8)
            r = mm(a, b)
            if r.dtype != np.int32 or not np.array_equal(r, a.astype(np.int64) @ b.astype(np.int64)):
                return None
        return mm
    except Exception:  # no torch, no _int_mm, or no CPU kernel: the float path serves
        return None


def _i8mm():
    """The int8 GEMM (``a`` m x k int8, ``b`` k x n int8, both C-contiguous -> m x n int32, exact while
    ``k * 128 * 128 < 2**31``), or None."""
    if not _i8mm_fn:
        _i8mm_fn.append(_i8mm_probe())
    return _i8mm_fn[0] if INT_GEMM else None


#: int8 GEMMs of up to this many rows (K) are exact in int32: K * 128 * 128 < 2**31.
I8_MAX_K = (1 << 31) // (128 * 128) - 1


def _bit_field(values: np.ndarray) -> tuple[int, int]:
    """(shift, mask) with ``(byte >> shift) & mask == values[byte]`` for every byte."""
    b = np.arange(256)
    top = int(values.max())
    for sh in range(8):
        if np.array_equal((b >> sh) & top, values):
            return sh, top
    raise AssertionError(f"input slice values {values[:8].tolist()}... are not a bit field of the input byte "
                         "(kernels.input_slices changed)")


class _Group:
    """One row group of the window: conversion columns sorted by how easily they clip."""

    def __init__(self, a: int, b: int, e: np.ndarray, cwc: np.ndarray, n_out: int, maxv: int,
                 lo: int, hi: int, sh: int):
        per_out = cwc.shape[0]
        self.a, self.b, self.rows = a, b, b - a
        ep, en = np.maximum(e, 0), np.maximum(-e, 0)
        if sh == 0:
            # Largest number of active rows (each driven at most maxv) for which no input vector
            # can push a column outside lo..hi: the top-n levels of the column decide.
            top_p = np.cumsum(-np.sort(-ep, axis=0), axis=0) * maxv
            top_n = np.cumsum(-np.sort(-en, axis=0), axis=0) * maxv
            t_col = ((top_p <= hi) & (-top_n >= lo)).sum(axis=0)
        else:
            # A shift drops low bits of every non-zero sum: only an all-zero slice is linear.
            t_col = np.zeros(e.shape[1], dtype=np.int64)
        t_class = t_col.reshape(n_out, per_out).min(axis=0)
        order = np.argsort(t_class, kind="stable")
        self.T = t_class[order]
        self.Tl = self.T.tolist()  # (bisect on a list: np.searchsorted's call costs more than the search)
        self.n_maybe = bisect.bisect_left(self.Tl, self.rows)  # classes that can clip for some input
        self.never = bool(self.T[0] >= self.rows)
        self.always = bool(self.T[-1] == 0)
        # Columns class-major in threshold order, so a prefix of classes is a prefix of columns.
        es = e.reshape(self.rows, n_out, per_out)[:, :, order].transpose(0, 2, 1).reshape(self.rows, -1)
        self.E = np.asfortranarray(es.astype(np.float32))
        # The integer path (:meth:`_Plan.mvm_int`): int8 levels, C-contiguous per class prefix (made on use).
        self.E8 = np.ascontiguousarray(es.astype(np.int8))
        self._E8p: dict[int, np.ndarray] = {}
        self.cwi = [int(c) for c in cwc[order]]
        # Python floats: a NumPy float64 scalar would promote float32 temporaries.
        self.cw = [float(c) for c in cwc[order]]
        self.amax = maxv * int(np.abs(e).sum(axis=0).max(initial=0))
        self.signed = bool(en.any())

    def E8_prefix(self, ncls: int, n_out: int) -> np.ndarray:
        """The first ``ncls`` classes' int8 levels (rows x ncls*n_out), C-contiguous (the int8 GEMM's operand)."""
        e = self._E8p.get(ncls)
        if e is None:
            e = self._E8p[ncls] = np.ascontiguousarray(self.E8[:, :ncls * n_out])
        return e


class _Linear8:
    """``x @ W`` through the int8 GEMM when every ``W`` entry fits int8 (8-bit signed weights in the canonical
    encoding do): input values as int8 directly, or unsigned 8-bit inputs offset by -128 (``x ^ 0x80`` read as
    int8) with ``128 * column sums of W`` added back. Exact in int32: ``|x @ W| < 256 * 128 * K < 2**31``."""

    def __init__(self, W: np.ndarray, layer: Layer):
        self.W8 = None
        if W.size == 0 or W.min() < -128 or W.max() > 127:
            return
        self.W8 = np.ascontiguousarray(W.astype(np.int8))
        self.offset = layer.abits == 8 and not layer.asigned
        self.view = layer.abits == 8 and layer.asigned
        if self.offset:
            self.off = (128 * W.astype(np.int64).sum(axis=0)).astype(np.int32)
        elif not self.view:
            self.table = input_values(np.arange(256), layer.abits, layer.asigned).astype(np.int8)

    def product(self, u8: np.ndarray, mm, _plan=None) -> np.ndarray:
        """``x @ W`` as int32 (M x n_out)."""
        if self.offset:
            xi = np.bitwise_xor(u8, 0x80).view(np.int8)
        elif self.view:
            xi = np.ascontiguousarray(u8).view(np.int8)
        else:
            xi = np.take(self.table, u8)
        y = mm(xi, self.W8)
        if self.offset:
            y += self.off
        return y


class _Plan:
    """Everything :func:`mvm` derives from the programmed window and the layer, computed once."""

    def __init__(self, lv: np.ndarray, layer: Layer, geo: Geometry, cfg: TileConfig):
        analog = paired(cfg, layer.wsigned)
        nr = lv.shape[0]
        n_out = self.n_out = geo.n_out
        self.maxv = maxv = (1 << cfg.dac_bits) - 1
        self.lo, self.hi = lo, hi = adc_range(cfg, layer.wsigned)
        self.sh = sh = layer.adc_shift
        self.abits, self.asigned = layer.abits, layer.asigned
        cw = column_weights(cfg, layer.wbits, layer.wsigned)
        W = (lv.reshape(nr, n_out, geo.group) * cw).sum(axis=2)
        if analog:
            e, cwc = lv[:, 0::2] - lv[:, 1::2], cw[0::2]
        else:
            e, cwc = lv, cw
        self.per_out = cwc.shape[0]

        # Linear part: x @ W, in float32 when every partial sum stays below 2**24.
        byte_vals = input_values(np.arange(256), layer.abits, layer.asigned)
        bound = int(np.abs(byte_vals).max()) * int(np.abs(W).sum(axis=0).max(initial=0))
        if bound >= F64_EXACT:
            raise OverflowError(f"MVM of {layer} on a {nr}-row window: input x weight sums up to {bound} exceed the "
                                f"float64 exact range (below 2**53 = {F64_EXACT})")
        self.lin_bound = bound
        self.lin_dtype = np.float32 if bound < F32_EXACT else np.float64
        self.W = W.astype(self.lin_dtype)
        self.byte_vals = byte_vals.astype(self.lin_dtype)

        P = cfg.rows_per_conv
        self.groups = [_Group(a, min(a + P, nr), e[a:a + P], cwc, n_out, maxv, lo, hi, sh)
                       for a in range(0, nr, P)]
        self.starts = np.array([g.a for g in self.groups])
        self.lossless = all(g.never for g in self.groups)
        # Every non-zero slice must be converted anyway: sum codes directly, skip the linear GEMM.
        self.direct = all(g.always for g in self.groups)

        # Input slices, packed two per float32 GEMM row when the spacing s keeps both exact.
        sl = input_slices(np.arange(256), layer.abits, layer.asigned, cfg.dac_bits)
        amax = max(g.amax for g in self.groups)
        signed = any(g.signed for g in self.groups)
        vmax = P * maxv  # largest sum of one slice over one row group
        s = _pow2_above(max(2 * amax + 1 if signed else amax, vmax))
        pack = len(sl) > 1 and amax + s * amax + s < F32_EXACT and vmax * (s + 1) < F32_EXACT
        self.s = s if pack else 0
        self.units = []
        step = 2 if pack else 1
        # |y| when conversions clip: every code is at most max(-lo, hi) << sh in magnitude.
        self.out_bound = (sum(abs(w) for _, w in sl) * len(self.groups) * int(np.abs(cwc).sum())
                          * (max(-lo, hi) << sh))
        # Every slice of every input format is a bit field of the byte: (byte >> shift) & mask.
        fields = [_bit_field(v) for v, _ in sl]
        for i in range(0, len(sl), step):
            self.units.append(([w for _, w in sl[i:i + step]], fields[i:i + step]))
        vsum = vmax * ((s + 1) if pack else 1)
        self.sum_dtype = np.float32 if vsum < F32_EXACT else np.float64
        # Bound on one row of class-reduced corrections: float32 when it provably stays exact.
        cmax = amax + (max(-lo, hi) << sh) + 1
        rmax = 1 << (cfg.dac_bits + (1 if layer.asigned else 0))
        self.red_dtype = (np.float32 if cmax * (1 + rmax) * int(np.abs(cwc).sum()) < F32_EXACT
                          else np.float64)

        # The integer path (mvm_int): int8 GEMMs of the input slices (values 0..maxv <= 15) and the signed levels
        # (|e| <= 15), int32 sums (a group has at most I8_MAX_K rows). Each slice k and class i adds
        # wk * cw_i * (code - S) with |code - S| <= amax + max code, so corr_bound bounds all corrections.
        self.slices = [(f, w) for f, (_, w) in zip(fields, sl)]
        code_max = max(-lo, hi) << sh
        corr_bound = (sum(abs(w) for _, w in sl) * int(np.abs(cwc).sum())
                      * sum(g.amax + code_max for g in self.groups))
        self.int_bound = self.out_bound if self.direct else bound + corr_bound
        self.int_dtype = np.int32 if self.int_bound < (1 << 31) else np.int64
        self.int_ok = max((g.rows for g in self.groups), default=0) <= I8_MAX_K and nr <= I8_MAX_K
        self.lin8 = _Linear8(W, layer) if self.int_ok else None
        # The min-clip form (_correct_int_min): no shift, codes from 0, no negative sums, every slice weight
        # +-2**(field shift). Slices are read pre-scaled, ``(byte & (mask << fs)) >> base``, in segments of one
        # base each while the scaled values fit int8 (top slice first, the Horner order).
        self.segments = None
        if (sh == 0 and lo == 0 and not self.direct and not any(g.signed for g in self.groups if not g.never)
                and all(abs(w) == 1 << fs for (fs, _), w in self.slices)):
            segs: list = []
            for (fs, fm), w in sorted(self.slices, key=lambda e: e[0][0]):
                if not segs or (fm << (fs - segs[-1][0])) > 127:
                    segs.append((fs, []))
                segs[-1][1].append((fm << fs, fs - segs[-1][0], w))
            self.segments = [(b, list(reversed(sl_))) for b, sl_ in reversed(segs)]

    # -- pieces of mvm ---------------------------------------------------------------------------

    def values(self, u8: np.ndarray) -> np.ndarray:
        """Input values as floats (lin_dtype)."""
        if self.abits == 8:
            return (u8.view(np.int8) if self.asigned else u8).astype(self.lin_dtype)
        return np.take(self.byte_vals, u8)

    def convert(self, D: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Into ``out``: the conversion codes of sums ``D`` (direct), or codes minus ``D`` (corrections)."""
        if self.sh == 0:
            np.clip(D, self.lo, self.hi, out=out)
        else:
            # D * 2**-sh is exact (a power of two), so floor() is the arithmetic shift.
            np.multiply(D, 1.0 / (1 << self.sh), out=out)
            np.floor(out, out=out)
            np.clip(out, self.lo, self.hi, out=out)
            out *= 1 << self.sh
        if not self.direct:
            out -= D
        return out

    def correct(self, u8: np.ndarray, acc: np.ndarray) -> None:
        """Add to ``acc`` (n x n_out, float64) the conversions' codes minus what the linear part counted."""
        n = u8.shape[0]
        s, maxv, per_out = self.s, self.maxv, self.per_out
        many = 0.8 * n  # above this many rows, computing all rows is cheaper than gathering them
        for wks, bits in self.units:
            X = self._slice_rows(u8, bits)
            if len(self.groups) == 1:
                sums = X.sum(axis=1, keepdims=True, dtype=self.sum_dtype)
            else:
                sums = np.add.reduceat(X, self.starts, axis=1, dtype=self.sum_dtype)
            if len(wks) == 2:
                vb = np.floor(sums * (1.0 / s))
                counts = [sums - s * vb, vb]
            else:
                counts = [sums]
            if maxv > 1:
                counts = [np.ceil(c / maxv) for c in counts]
            for gi, g in enumerate(self.groups):
                if g.never:
                    continue
                ell = np.searchsorted(g.T, counts[0][:, gi], side="left")
                for c in counts[1:]:
                    np.maximum(ell, np.searchsorted(g.T, c[:, gi], side="left"), out=ell)
                # Class i (threshold order) is needed by the rows with ell > i: nested row sets.
                need = np.bincount(ell, minlength=per_out + 1)[::-1].cumsum()[::-1]
                Xg = X[:, g.a:g.b]
                i = 0
                while i < per_out and need[i + 1]:
                    j = i + 1
                    if need[i + 1] > many:
                        while j < per_out and need[j + 1] > many:
                            j += 1
                        self._segment(Xg, None, g, i, j, wks, acc)
                    else:
                        while j < per_out and need[j + 1] == need[i + 1]:
                            j += 1
                        self._segment(Xg, np.flatnonzero(ell > i), g, i, j, wks, acc)
                    i = j

    def mvm_int(self, u8: np.ndarray, mm) -> np.ndarray:
        """The MVM through int8 GEMMs (``mm``): (M x n_out) ``int_dtype``, equal to the float path's integers.

        The linear part ``x @ W`` (skipped when direct), then for every chunk of vectors, input slice and row
        group, one int8 GEMM of the slice with the classes that can clip for some vector of the chunk (their
        thresholds ``T`` below the chunk's largest active-row count), converted and weighted in int32.
        """
        M = u8.shape[0]
        if self.direct:
            y = np.zeros((M, self.n_out), dtype=self.int_dtype)
        else:
            y = self.lin8.product(u8, mm, self) if self.lin8.W8 is not None else \
                (self.values(u8) @ self.W).astype(self.int_dtype)
            if y.dtype != self.int_dtype:
                y = y.astype(self.int_dtype)
        if self.lossless:
            return y
        correct = self._correct_int_min if self.segments is not None else self._correct_int
        for i in range(0, M, INT_CHUNK):
            correct(np.ascontiguousarray(u8[i:i + INT_CHUNK]), y[i:i + INT_CHUNK], mm)
        return y

    def _correct_int_min(self, u8: np.ndarray, acc: np.ndarray, mm) -> None:
        """:meth:`_correct_int` when every code is ``min(S, hi)`` (no shift, codes from 0, sums >= 0).

        Slice k's correction is ``w_k * (min(S, hi) - S) = w_k * (hi - max(S, hi))``. Reading the slice scaled
        by ``f = |w_k| / base`` (the int8 GEMM then gives ``f * S``), per class
        ``sum_k corr_k = hi * sum_k w_k - base0 * R`` with ``R = sum_k sign_k * (base_k / base0) * max(f S, f hi)``,
        two passes per slice (max, add) instead of four.
        """
        n_out, maxv, hi = self.n_out, self.maxv, self.hi
        single = len(self.groups) == 1
        xs = []  # (scaled slice, f, w, base) top slice first
        for base, slices in self.segments:
            for m, e, w in slices:
                X = np.bitwise_and(u8, m)
                if base:
                    X >>= base
                xs.append((X.view(np.int8), 1 << e, w, base))
        tmp = np.empty_like(acc)
        for g in self.groups:
            if g.never:
                continue
            R, rcls, bprev = None, 0, None
            K = [0] * len(g.cwi)  # hi * sum of w_k over the slices that computed class i
            full = False
            for X, f, w, base in xs:
                Xg = X if single else np.ascontiguousarray(X[:, g.a:g.b])
                if full:
                    # A higher slice needed every class that can clip: lower slices (denser in practice) are
                    # taken to need them too, without counting; a class that cannot clip adds exactly 0.
                    ncls = g.n_maybe
                else:
                    # (int16 row sums when they cannot overflow: cheaper than int32)
                    top = int(Xg.sum(axis=1, dtype=np.int16 if 127 * g.rows < 32768 else np.int32).max(initial=0))
                    top //= f
                    if maxv > 1:
                        top = -(-top // maxv)
                    ncls = bisect.bisect_left(g.Tl, top)
                    full = ncls == g.n_maybe
                if ncls == 0:
                    continue
                S = mm(Xg, g.E8_prefix(ncls, n_out))
                _uclip(S, f * hi, max(f * g.amax, f * hi), out=S)  # max(S, f hi) (S <= f amax)
                for i in range(ncls):
                    K[i] += hi * w
                if R is None:
                    R = S if S.dtype == acc.dtype else S.astype(acc.dtype)
                    if w < 0:
                        np.negative(R, out=R)
                    rcls = ncls
                else:
                    if base != bprev:
                        R *= (1 << bprev) // (1 << base)
                    if ncls > rcls:
                        R = np.concatenate([R, np.zeros((R.shape[0], (ncls - rcls) * n_out), R.dtype)], axis=1)
                        rcls = ncls
                    if w > 0:
                        R[:, :ncls * n_out] += S
                    else:
                        R[:, :ncls * n_out] -= S
                bprev = base
            if R is None:
                continue
            for i in range(rcls):
                np.multiply(R[:, i * n_out:(i + 1) * n_out], -g.cwi[i] << bprev, out=tmp)
                acc += tmp
            acc += sum(k * c for k, c in zip(K, g.cwi))

    def _correct_int(self, u8: np.ndarray, acc: np.ndarray, mm) -> None:
        """Add to ``acc`` each conversion's code minus its sum (codes when direct), for one chunk of vectors.

        Per row group, the slices' contributions are summed Horner-style from the top slice down
        (``R = R * (w_k+1 / w_k) + C_k``; slice weights are powers of two, each dividing the next, the sign
        slice's negative), then each class is added once with weight ``cw_i * w_0``.
        """
        n_out, maxv, lo, hi, sh = self.n_out, self.maxv, self.lo, self.hi, self.sh
        single = len(self.groups) == 1
        # One chunk of each slice, top slice first (the Horner order).
        xs = []
        for (fs, fm), wk in reversed(self.slices):
            X = np.right_shift(u8, fs)
            X &= fm
            xs.append((X.view(np.int8), wk))
        tmp = np.empty_like(acc)
        for g in self.groups:
            if g.never:
                continue
            R, rcls, wprev, neg = None, 0, None, False
            for X, wk in xs:
                Xg = X if single else np.ascontiguousarray(X[:, g.a:g.b])
                # Classes needed by some vector: thresholds below the chunk's largest active-row count.
                top = int(Xg.sum(axis=1, dtype=np.int32).max(initial=0))
                if maxv > 1:
                    top = -(-top // maxv)
                ncls = bisect.bisect_left(g.Tl, top)
                if ncls == 0:
                    continue
                S = mm(Xg, g.E8_prefix(ncls, n_out))
                if sh == 0 and not self.direct and lo == 0 and not g.signed:
                    # sums are >= 0: code - S = min(S, hi) - S = -max(S - hi, 0)
                    np.subtract(S, hi, out=S)
                    np.maximum(S, 0, out=S)
                    C, neg = S, True
                else:
                    C = np.right_shift(S, sh) if sh else S.copy()
                    _uclip(C, lo, hi, out=C)
                    if sh:
                        C <<= sh
                    if not self.direct:
                        C -= S
                if R is None:
                    R, rcls = (C if C.dtype == acc.dtype else C.astype(acc.dtype)), ncls
                else:
                    R *= wprev // wk
                    if ncls > rcls:  # (classes needed by lower slices only: widen R)
                        R = np.concatenate([R, np.zeros((R.shape[0], (ncls - rcls) * n_out), R.dtype)], axis=1)
                        rcls = ncls
                    R[:, :ncls * n_out] += C
                wprev = wk
            if R is None:
                continue
            for i in range(rcls):
                w = wprev * g.cwi[i]
                np.multiply(R[:, i * n_out:(i + 1) * n_out], -w if neg else w, out=tmp)
                acc += tmp

    def _slice_rows(self, u8: np.ndarray, bits) -> np.ndarray:
        """GEMM input rows ``v_a + s * v_b`` from bit fields of the bytes (cheaper than a table lookup)."""
        (sa, ma) = bits[0]
        a = np.right_shift(u8, sa)
        a &= ma
        if len(bits) == 1:
            return a.astype(np.float32)
        (sb, mb) = bits[1]
        b = np.right_shift(u8, sb)
        b &= mb
        w = b.astype(np.uint32)
        w <<= self.s.bit_length() - 1
        w |= a
        return w.astype(np.float32)

    def _segment(self, Xg, rows, g: _Group, i0: int, i1: int, wks, acc) -> None:
        """Classes i0..i1-1 of group ``g`` for the chunk rows ``rows`` (None: all) of slice unit ``wks``."""
        n_out, s = self.n_out, self.s
        Pm = (Xg if rows is None else Xg[rows]) @ g.E[:, i0 * n_out:i1 * n_out]
        if len(wks) == 2:
            # Unpack P = D_a + s * D_b (signed sums: D_a in -s/2 .. s/2-1).
            if g.signed:
                B = np.add(Pm, s // 2)
                B *= 1.0 / s
            else:
                B = np.multiply(Pm, 1.0 / s)
            np.floor(B, out=B)
            T = np.multiply(B, s)
            Pm -= T
            u = self.convert(Pm, T)
            cb = self.convert(B, Pm)
            cb *= wks[1] / wks[0]
            u += cb
        else:
            u = self.convert(Pm, np.empty_like(Pm))
        if self.red_dtype is np.float64:
            u = u.astype(np.float64)
        wa = wks[0]
        red = np.multiply(u[:, :n_out], g.cw[i0] * wa)
        for p in range(1, i1 - i0):
            red += u[:, p * n_out:(p + 1) * n_out] * (g.cw[i0 + p] * wa)
        if rows is None:
            acc += red
        else:
            acc[rows] += red


_plans: list = []  # most recently used last: (key, levels, masks, plan)


def _plan(levels: np.ndarray, masks: np.ndarray, layer: Layer, geo: Geometry, cfg: TileConfig) -> _Plan:
    """The cached :class:`_Plan` of this window; reused only when levels and masks are equal.

    Several entries may share a layer and geometry (equal-sized windows at different places of
    the array, used in turn by one layer), so every entry is compared, most recent first.
    """
    key = (layer, geo, cfg)
    for i in range(len(_plans) - 1, -1, -1):
        k, lv, mk, plan = _plans[i]
        if k == key and np.array_equal(lv, levels) and np.array_equal(mk, masks):
            _plans.append(_plans.pop(i))
            return plan
    plan = _Plan(np.where(masks, 0, levels).astype(np.int64), layer, geo, cfg)
    _plans.append((key, levels.copy(), masks.copy(), plan))
    if len(_plans) > PLAN_CACHE:
        _plans.pop(0)
    return plan


@functools.lru_cache(maxsize=64)
def _max_abs_value(abits: int, asigned: bool) -> int:
    """Largest ``|value|`` of an input byte."""
    return int(np.abs(input_values(np.arange(256), abits, asigned)).max())


@functools.lru_cache(maxsize=256)
def _linear_consts(layer: Layer, geo: Geometry, cfg: TileConfig) -> tuple:
    """What :func:`_linear` needs that depends only on the layer, the geometry and the configuration.

    ``cw`` (group,): the column weights as floats, so that ``(levels.reshape(-1, group) @ cw)`` is the
    effective weight matrix (one matrix-vector product instead of a multiply and a reduction over the
    short group axis); float32 when ``max_level * sum|cw|``, a bound on every partial sum of a ``W``
    entry, is below 2**24 (the levels are then exact in float32 too), else float64.

    ``bound`` bounds ``|x @ W|`` whenever the window passes the lossless check, from the check itself:
    every row group's column sums are at most ``cap_pos = hi // maxv`` (positive levels) and
    ``cap_neg = -lo // maxv`` (negative parts of analog pair differences), so
    ``sum_r |W[r, j]| <= sum_p |cw_p| * groups * (cap_pos + cap_neg)``, where the sum runs over the
    conversion columns of one output. It is looser than the plan's exact bound, but it only chooses
    float types and whether a wrap is possible: every choice it makes is exact.
    """
    cw = column_weights(cfg, layer.wbits, layer.wsigned)
    cwf = cw.astype(np.float32 if cfg.max_level * int(np.abs(cw).sum()) < F32_EXACT else np.float64)
    lo, hi = adc_range(cfg, layer.wsigned)
    maxv = (1 << cfg.dac_bits) - 1
    analog = paired(cfg, layer.wsigned)
    cap_pos, cap_neg = hi // maxv, (-lo) // maxv
    conv_cw = int(np.abs(cw[0::2] if analog else cw).sum())
    groups = -(-geo.nr // cfg.rows_per_conv)
    bound = _max_abs_value(layer.abits, layer.asigned) * conv_cw * groups * (cap_pos + (cap_neg if analog else 0))
    if bound >= F64_EXACT:
        raise OverflowError(f"MVM of {layer} on a {geo.nr}x{geo.nc} window: sums up to {bound} exceed the float64 "
                            f"exact range (below 2**53 = {F64_EXACT})")
    return cwf, analog, cap_pos, cap_neg, bound, np.float32 if bound < F32_EXACT else np.float64


@functools.lru_cache(maxsize=64)
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    return np.ones(n, dtype=dtype)


_last_consts: list = []  # (layer, geo, cfg, _linear_consts(...)) of the last call, compared by identity


def _linear(levels: np.ndarray, masks: np.ndarray, layer: Layer, geo: Geometry,
            cfg: TileConfig) -> tuple[np.ndarray, int] | None:
    """``(W, bound)`` when no conversion of this window can clip, whatever the inputs, else None.

    The column bound of docs/golden-model.md, without building a :class:`_Plan`: with no ADC shift, if
    ``maxv`` times the sum of the positive (negative) signed levels of every conversion column over
    every row group stays within the code range, the MVM is the linear product ``x @ W``. ``W`` (float32
    or float64, whichever keeps every partial sum exact) and a bound on ``|x @ W|`` are returned.
    This is exactly the ``_Plan.lossless`` condition (a test checks both agree), but costs a few passes
    over the window instead of sorts and cumulative sums, and needs no cache: a compiled network loads
    new weights before nearly every MVM. Levels must be cell levels (``0..cfg.max_level``).
    """
    if layer.adc_shift or levels.shape[0] != geo.nr:
        return None
    last = _last_consts
    if last and last[0] is layer and last[1] is geo and last[2] is cfg:
        consts = last[3]
    else:  # (hashing the three records for the lru_cache cost a quarter of a small MVM's check)
        consts = _linear_consts(layer, geo, cfg)
        _last_consts[:] = (layer, geo, cfg, consts)
    cw, analog, cap_pos, cap_neg, bound, dtype = consts
    # Levels are cell levels (0..max_level, as a Tile guarantees): exact in cw's float type, and every
    # sum below stays exact (a column sum above the ADC range fails the check whatever its rounding).
    lv = np.where(masks, cw.dtype.type(0), levels).astype(cw.dtype, copy=False) if masks.any() \
        else levels.astype(cw.dtype)
    nr = lv.shape[0]
    P = cfg.rows_per_conv
    if analog:
        e = lv[:, 0::2] - lv[:, 1::2]
        ep, en = np.maximum(e, 0), np.maximum(-e, 0)
    elif levels.dtype.kind == "u" or lv.min() >= 0:  # (a Tile's levels are uint8)
        ep, en = lv, None
    else:  # not a level a cell can hold; leave it to the general path
        return None
    for part, cap in ((ep, cap_pos), (en, cap_neg)):
        if part is None:
            continue
        # (one group: a matrix-vector product with ones, a third of the cost of sum(axis=0) on a 128 x 128 window;
        # exact, or above 2**24 and then far above the cap whatever the rounding)
        sums = _ones(nr, part.dtype) @ part if nr <= P else np.add.reduceat(part, np.arange(0, nr, P), axis=0)
        if sums.size and float(sums.max()) > cap:
            return None
    W = (lv.reshape(-1, geo.group) @ cw).reshape(nr, geo.n_out)
    return W.astype(dtype, copy=False), bound


def linear_many(levels: np.ndarray, masks: np.ndarray | None, k: int, layer: Layer, geo: Geometry,
                cfg: TileConfig) -> tuple[np.ndarray, np.ndarray, int] | None:
    """:func:`_linear` of ``k`` windows of one shape at once, side by side: ``levels`` and ``masks`` are
    ``(rows, k * cols)``, window ``i`` in columns ``i * cols ..`` (masks None when no cell is masked). Returns
    ``(W, ok, bound)``: ``W`` the ``(rows, k * n_out)`` effective weights (window ``i``'s outputs in columns
    ``i * n_out ..``), ``ok`` whether each window is lossless (``_linear`` would return its ``W``; one that is
    not must take :func:`mvm`) and ``bound`` the bound on ``|x @ W|`` of one window; or None when no window can
    be lossless (an ADC shift).

    The same check, window by window, as :func:`_linear`, in a few passes over all of them (the fast path of
    :mod:`cimtile.sim.fastrun` checks every window over the same inputs at once). Levels must be cell levels."""
    nr = levels.shape[0]
    if layer.adc_shift or nr != geo.nr:
        return None
    last = _last_consts
    if last and last[0] is layer and last[1] is geo and last[2] is cfg:
        consts = last[3]
    else:
        consts = _linear_consts(layer, geo, cfg)
        _last_consts[:] = (layer, geo, cfg, consts)
    cw, analog, cap_pos, cap_neg, bound, dtype = consts
    if masks is not None:
        levels = np.where(masks, np.uint8(0), levels)
    P = cfg.rows_per_conv
    if analog:  # (pairs never straddle two windows: a window is whole weight groups)
        e = levels[:, 0::2].astype(np.int32) - levels[:, 1::2]
        parts = ((np.maximum(e, 0), cap_pos), (np.maximum(-e, 0), cap_neg))
    else:  # cell levels are never negative
        parts = ((levels, cap_pos),)
    ok = np.ones(k, dtype=bool)
    # Column sums per row group, exact in uint16 for uint8 levels (rows * max_level <= 4096 * 15 < 2**16; several
    # times faster than summing across rows in int32 or float), else int32.
    acc = np.uint16 if levels.dtype == np.uint8 and not analog and nr * cfg.max_level < 1 << 16 else np.int32
    for part, cap in parts:
        sums = part.sum(axis=0, dtype=acc) if nr <= P else np.add.reduceat(part, np.arange(0, nr, P), axis=0, dtype=acc)
        if sums.size:
            ok &= np.moveaxis(sums.reshape(-1, k, sums.shape[-1] // k), 1, 0).reshape(k, -1).max(axis=1) <= cap
    W = levels.reshape(nr, -1, geo.group).astype(cw.dtype) @ cw
    return W.astype(dtype, copy=False), ok, bound


def _values(u8: np.ndarray, abits: int, asigned: bool, dtype) -> np.ndarray:
    """Input values of bytes as floats of ``dtype``."""
    if abits == 8:
        return (u8.view(np.int8) if asigned else u8).astype(dtype)
    return np.take(_byte_values(abits, asigned, np.dtype(dtype)), u8)


@functools.lru_cache(maxsize=64)
def _byte_values(abits: int, asigned: bool, dtype: np.dtype) -> np.ndarray:
    return input_values(np.arange(256), abits, asigned).astype(dtype)


# The float products hold small integers (levels and slice values, within F32_EXACT), which cannot overflow or
# give NaN; yet a BLAS kernel may leave the floating-point "invalid" flag set (seen once in CI: an OpenBLAS sgemm
# of a 4 x 5 by 5 x n product of such integers, tests/test_fastrun.py), which numpy turns into a RuntimeWarning,
# an error under the test suite's filters. The flag is ignored here; the results are checked against the
# instruction path by tests/test_fastrun.py either way.
@np.errstate(invalid="ignore")
def _mvm_float(raw: np.ndarray, levels: np.ndarray, masks: np.ndarray, layer: Layer, geo: Geometry,
               cfg: TileConfig) -> tuple[np.ndarray, int]:
    """The MVM as an integer-valued float array (M x n_out), and a bound on its magnitude."""
    u8 = raw if raw.dtype == np.uint8 else (raw.astype(np.int64) & 0xFF).astype(np.uint8)
    if levels.shape[0] == 0 or geo.n_out == 0:
        return np.zeros((u8.shape[0], geo.n_out), dtype=np.float32), 0
    lin = _linear(levels, masks, layer, geo, cfg)
    if lin is not None:
        W, bound = lin
        return _values(u8, layer.abits, layer.asigned, W.dtype) @ W, bound
    plan = _plan(levels, masks, layer, geo, cfg)
    if plan.lossless:
        return plan.values(u8) @ plan.W, plan.lin_bound
    M = u8.shape[0]
    acc = np.zeros((M, plan.n_out), dtype=np.float64)
    for i in range(0, M, CHUNK):
        plan.correct(u8[i:i + CHUNK], acc[i:i + CHUNK])
    if not plan.direct:
        acc += plan.values(u8) @ plan.W
    return acc, plan.out_bound


def _mvm_int(raw: np.ndarray, levels: np.ndarray, masks: np.ndarray, layer: Layer, geo: Geometry,
             cfg: TileConfig) -> tuple[np.ndarray, int] | None:
    """The MVM through int8 GEMMs as (M x n_out) int32 or int64 and a bound on its magnitude, or None when the
    float path serves (no int8 GEMM, a small MVM, an empty window, or ``x @ W`` not in int8 for a lossless
    window)."""
    mm = _i8mm()
    if mm is None or raw.shape[0] * levels.shape[0] * geo.n_out < INT_MIN_MACS:
        return None
    if levels.shape[0] == 0 or geo.n_out == 0 or levels.shape[0] > I8_MAX_K:
        return None
    u8 = raw if raw.dtype == np.uint8 else (raw.astype(np.int64) & 0xFF).astype(np.uint8)
    lin = _linear(levels, masks, layer, geo, cfg)
    if lin is not None:
        W, bound = lin
        l8 = _Linear8(W, layer)
        if l8.W8 is None:
            return None
        return l8.product(u8, mm), bound
    plan = _plan(levels, masks, layer, geo, cfg)
    if not plan.int_ok or (plan.lossless and plan.lin8.W8 is None):
        return None
    return plan.mvm_int(u8, mm), (plan.lin_bound if plan.lossless else plan.out_bound)


def mvm(raw: np.ndarray, levels: np.ndarray, masks: np.ndarray, layer: Layer, geo: Geometry,
        cfg: TileConfig) -> np.ndarray:
    """Bit-sliced MVM of input bytes ``raw`` (M x window rows) over window cells (rows x cols).

    Equal, integer for integer, to :func:`mvm_sliced` (see docs/golden-model.md).
    Returns (M x n_out) int64, before wrapping to the accumulator width.
    """
    r = _mvm_int(raw, levels, masks, layer, geo, cfg)
    return (r if r is not None else _mvm_float(raw, levels, masks, layer, geo, cfg))[0].astype(np.int64)


def mvm_acc(raw: np.ndarray, levels: np.ndarray, masks: np.ndarray, layer: Layer, geo: Geometry,
            cfg: TileConfig, prev: np.ndarray | None = None) -> np.ndarray:
    """What an MVM writes to the accumulators: :func:`mvm` (plus ``prev`` when accumulating), wrapped
    to ``cfg.acc_bits``.

    An integer array (M x n_out); int32 when a bound proves every value fits and nothing wraps (the
    float-to-int32 conversion is several times cheaper than to int64), else int64. Store it, don't
    compute with it.
    """
    r = _mvm_int(raw, levels, masks, layer, geo, cfg)
    y, bound = r if r is not None else _mvm_float(raw, levels, masks, layer, geo, cfg)
    if prev is None and bound < (1 << (cfg.acc_bits - 1)):
        return y.astype(np.int32 if bound < (1 << 31) else np.int64)
    y = y.astype(np.int64)
    if prev is not None:
        y += prev
    return wrap(y, cfg.acc_bits)
