"""How a weight is stored in cells, and what a conversion can return: the one home of both.

A logical weight of ``wbits`` bits occupies a *group* of physical columns in every row of its
window (docs/isa.md, Arithmetic):

- **unsigned** weights (``0 .. 2**wbits - 1``) are cut into ``ceil(wbits / cell_bits)`` slices of
  ``cell_bits`` bits, least significant slice first, one column per slice;
- **signed** weights (``-(2**(wbits-1) - 1) .. 2**(wbits-1) - 1``: magnitude of ``wbits - 1``
  bits, no most negative code) use a *positive* and a *negative* column per slice, in the
  order ``s0+ s0- s1+ s1- ...``: the magnitude's slice goes to the positive column of a
  positive weight, to the negative column of a negative weight, and the other column holds 0.

Column ``c`` of a group therefore weighs ``+-2**(slice * cell_bits)`` (:func:`column_weights`), and
the weight a window represents is the weighted sum of its unmasked cells (:func:`decode_weights`).
Both encodings of :data:`cimtile.hw.params.ENCODINGS` store exactly these levels; they differ
only in how a conversion reads them: ``differential`` converts every column on its own
(codes ``0 .. 2**adc_bits - 1``), ``differential-analog`` converts a signed column pair once, as
the difference of its currents (codes ``-2**(adc_bits-1) .. 2**(adc_bits-1) - 1``); see
:func:`adc_range` and :func:`conversion_weights`.

This module is the only place that knows this layout: the compiler's weight splitting, the golden
model's MVM, the performance figures and the tests all call it. All functions are vectorised NumPy
and raise :class:`EncodingError` (a ``ValueError``; a one-line message naming the value) on a weight outside its range.

Examples
--------
>>> from cimtile.hw.params import PRESETS
>>> cfg = PRESETS["tiny"]                      # 2-bit cells
>>> lv = encode_weights(cfg, [[5, -3]], wbits=4, wsigned=True)
>>> lv.tolist()                                # s0+ s0- s1+ s1- for 5, then for -3
[[1, 0, 1, 0, 0, 3, 0, 0]]
>>> decode_weights(cfg, lv, None, wbits=4, wsigned=True).tolist()
[[5, -3]]
"""

from __future__ import annotations

import numpy as np

from cimtile.errors import CimtileError

from .params import TileConfig

__all__ = [
    "EncodingError",
    "expand_mask",
    "adc_code_range",
    "adc_range",
    "column_role",
    "column_weights",
    "conversion_weights",
    "decode_weights",
    "encode_weights",
    "group_size",
    "paired",
    "weight_range",
    "weight_slices",
]


class EncodingError(CimtileError, ValueError):
    """Weights outside the range of their bits, or levels that are not a whole number of groups."""


def weight_slices(wbits: int, wsigned: bool, cell_bits: int) -> int:
    """Weight slices: unsigned ``ceil(wbits / cell_bits)``; signed (magnitude ``wbits - 1`` bits)
    ``ceil((wbits - 1) / cell_bits)``."""
    return -(-(wbits - 1 if wsigned else wbits) // cell_bits)


def weight_range(wbits: int, wsigned: bool) -> tuple[int, int]:
    """Lowest and highest logical weight of ``wbits`` bits (signed: symmetric, no ``-2**(wbits-1)``)."""
    if wsigned:
        if wbits < 2:
            raise EncodingError(f"wbits = {wbits}: signed weights need at least 2 bits")
        top = (1 << (wbits - 1)) - 1
        return -top, top
    if wbits < 1:
        raise EncodingError(f"wbits = {wbits}: weights need at least 1 bit")
    return 0, (1 << wbits) - 1


def group_size(cfg: TileConfig, wbits: int, wsigned: bool) -> int:
    """Physical columns one logical weight (one output) occupies."""
    return weight_slices(wbits, wsigned, cfg.cell_bits) * (2 if wsigned else 1)


def paired(cfg: TileConfig, wsigned: bool) -> bool:
    """True when a signed column pair is converted once (``differential-analog`` with signed weights)."""
    return bool(wsigned) and cfg.analog_diff


def column_role(q: int, wsigned: bool) -> tuple[int, bool]:
    """``(weight slice, negative column)`` of column ``q`` of a group: signed ``(q // 2, q odd)``
    (``s0+ s0- s1+ s1- ...``), unsigned ``(q, False)``."""
    return (q >> 1, bool(q & 1)) if wsigned else (q, False)


def column_weights(cfg: TileConfig, wbits: int, wsigned: bool) -> np.ndarray:
    """Signed weight of each physical column of a group, shape ``(group,)`` int64.

    Signed: ``[+1, -1, +2**cb, -2**cb, ...]`` (``cb = cell_bits``); unsigned: ``[1, 2**cb, ...]``.
    """
    nws = weight_slices(wbits, wsigned, cfg.cell_bits)
    mag = np.left_shift(np.int64(1), np.arange(nws, dtype=np.int64) * cfg.cell_bits)
    if wsigned:
        return np.stack([mag, -mag], axis=1).reshape(-1)
    return mag


def conversion_weights(cfg: TileConfig, wbits: int, wsigned: bool) -> np.ndarray:
    """Weight of each conversion of a group: :func:`column_weights`, or one per pair (the positive
    column's weight) when the pair is converted once (:func:`paired`)."""
    cw = column_weights(cfg, wbits, wsigned)
    return cw[0::2] if paired(cfg, wsigned) else cw


def adc_code_range(adc_bits: int, pair: bool) -> tuple[int, int]:
    """Lowest and highest ADC code: single-ended ``0 .. 2**adc_bits - 1``; a pair converted once
    (``pair``) gives the signed range ``-2**(adc_bits-1) .. 2**(adc_bits-1) - 1``."""
    if pair:
        return -(1 << (adc_bits - 1)), (1 << (adc_bits - 1)) - 1
    return 0, (1 << adc_bits) - 1


def adc_range(cfg: TileConfig, wsigned: bool) -> tuple[int, int]:
    """Lowest and highest code of one conversion for weights of this signedness (:func:`adc_code_range`
    of ``cfg.adc_bits``, paired when :func:`paired`)."""
    return adc_code_range(cfg.adc_bits, paired(cfg, wsigned))


def encode_weights(cfg: TileConfig, w, wbits: int, wsigned: bool, *, balanced: bool = False,
                   signed_digits: bool = False) -> np.ndarray:
    """Cell levels of logical weights.

    Parameters
    ----------
    cfg : TileConfig
        Only ``cell_bits`` matters (both encodings store the same levels).
    w : array_like of int, shape (..., N)
        Logical weights, each in :func:`weight_range` ``(wbits, wsigned)``.
    wbits : int
        Weight precision (1..8 unsigned, 2..8 signed, as CFG allows).
    wsigned : bool
    balanced : bool
        Canonical (default): one cell of a signed pair is 0. ``balanced`` (signed one-slice weights only,
        ``wbits <= cell_bits + 1``): both cells sit around the middle level, ``L+ = ceil((max_level + w) / 2)``,
        ``L- = L+ - w``, so a VAU ``diff`` delta (docs/isa.md, VAU polarity) moves every weight by twice the
        delta in both directions until a cell saturates. Decodes to the same weights.
    signed_digits : bool
        Signed multi-slice weights only: every slice but the top holds a *signed digit* in
        ``-B/2 .. B/2 - 1`` (``B = 2**cell_bits``; a negative digit in the slice's negative column), the top
        slice the rest; a weight whose rest does not fit the top slice keeps its canonical levels. Such
        levels leave every lower slice room to move both ways under VAU (``only``/``slice``, docs/isa.md):
        the cells themselves saturate and never carry, so training re-encodes them this way from time to
        time (the host's carry). Decodes to the same weights.

    Returns
    -------
    numpy.ndarray of uint8, shape (..., N * group)
        Output ``j`` occupies columns ``j*group .. (j+1)*group - 1`` (:func:`group_size`).

    Raises
    ------
    ValueError
        A weight outside its range (the message names the first one and its index).
    """
    w = np.asarray(w)
    lo, hi = weight_range(wbits, wsigned)
    if w.size and (w.min() < lo or w.max() > hi):
        bad = np.argwhere((w < lo) | (w > hi))[0]
        raise EncodingError(f"weight {int(w[tuple(bad)])} at index {tuple(int(i) for i in bad)} is outside "
                         f"{lo}..{hi} ({'signed' if wsigned else 'unsigned'} {wbits}-bit)")
    nws = weight_slices(wbits, wsigned, cfg.cell_bits)
    cell_bits, max_level = cfg.cell_bits, cfg.max_level
    lead = w.shape
    if balanced:
        if not wsigned or nws != 1:
            raise EncodingError(f"balanced encoding needs signed one-slice weights (wbits <= cell_bits + 1 = "
                                f"{cell_bits + 1}), got {'signed' if wsigned else 'unsigned'} {wbits}-bit")
        signed_w = w.astype(np.int64)
        pos = (max_level + signed_w + 1) // 2
        return np.stack([pos, pos - signed_w], axis=-1).astype(np.uint8).reshape(
            lead[:-1] + (lead[-1] * 2,) if lead else (-1,))
    if signed_digits and wsigned and nws > 1:
        radix, half = 1 << cell_bits, 1 << (cell_bits - 1)
        rest = w.astype(np.int64)
        digits = np.empty(lead + (nws,), dtype=np.int64)
        for s in range(nws - 1):
            digits[..., s] = (rest + half) % radix - half
            rest = (rest - digits[..., s]) // radix
        digits[..., nws - 1] = rest
        pair_levels = np.stack([np.maximum(digits, 0), np.maximum(-digits, 0)], axis=-1).astype(np.uint8)
        canon = encode_weights(cfg, w, wbits, wsigned).reshape(lead + (nws, 2))
        fits = (np.abs(rest) <= max_level)[..., None, None]
        out = np.where(fits, pair_levels, canon)
        return out.reshape(lead[:-1] + (lead[-1] * 2 * nws,)) if lead else out.reshape(-1)
    mag = np.abs(w).astype(np.uint8)  # |w| <= 255 (at most 8 bits)
    if wsigned:
        out = np.empty(lead + (nws, 2), dtype=np.uint8)
        pos, neg = (w > 0).view(np.uint8), (w < 0).view(np.uint8)
        for s in range(nws):
            slice_levels = (mag >> (s * cell_bits)) & max_level
            np.multiply(slice_levels, pos, out=out[..., s, 0])
            np.multiply(slice_levels, neg, out=out[..., s, 1])
    else:
        out = np.empty(lead + (nws,), dtype=np.uint8)
        for s in range(nws):
            np.bitwise_and(mag >> (s * cell_bits), max_level, out=out[..., s])
    return out.reshape(lead[:-1] + (lead[-1] * group_size(cfg, wbits, wsigned),)) if lead else out.reshape(-1)


def decode_weights(cfg: TileConfig, levels, masks, wbits: int, wsigned: bool) -> np.ndarray:
    """The logical weights cell levels represent (the inverse of :func:`encode_weights`).

    Parameters
    ----------
    cfg : TileConfig
    levels : array_like of int, shape (..., N * group)
        Cell levels ``0 .. cfg.max_level``; the last axis must be a whole number of groups.
    masks : array_like of bool, same shape as ``levels``, or None
        Masked (pruned) cells count 0.
    wbits : int
    wsigned : bool

    Returns
    -------
    numpy.ndarray of int64, shape (..., N)
        ``sum(level * column weight)`` over each group. Levels that :func:`encode_weights` cannot
        produce (both columns of a pair set, a slice above its bits) still decode to this sum:
        this is what the tile computes with them.
    """
    cell_levels = np.asarray(levels).astype(np.int64)
    if masks is not None:
        cell_levels = np.where(np.asarray(masks, dtype=bool), 0, cell_levels)
    col_weights = column_weights(cfg, wbits, wsigned)
    group = col_weights.shape[0]
    shape = cell_levels.shape
    if cell_levels.ndim == 0 or shape[-1] % group:
        raise EncodingError(f"levels of shape {shape}: the last axis is not a whole number of {group}-column groups")
    return (cell_levels.reshape(shape[:-1] + (shape[-1] // group, group)) * col_weights).sum(axis=-1)


def expand_mask(cfg: TileConfig, mask, wbits: int, wsigned: bool) -> np.ndarray:
    """Per-cell mask bits ``(..., N * group)`` of a per-weight mask ``(..., N)``: a pruned weight masks every
    cell of its group."""
    return np.repeat(np.asarray(mask, dtype=bool), group_size(cfg, wbits, wsigned), axis=-1)
