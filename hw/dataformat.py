"""Bit layout of the data-in and data-out streams: how load and read payloads pack into bus words."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .isa import RQ_RECORD, Opcode
from .params import TileConfig

__all__ = ["Format", "formats", "pack", "unpack", "words_to_ints", "ints_to_words"]


@dataclass(frozen=True)
class Format:
    """Payload of one load or read instruction, per item (a column, a vector, or the whole record run)."""

    elems: int  # elements per item
    bits: int  # bits per element
    signed: bool
    words: int  # bus words per item (items start on a word boundary)


def formats(cfg: TileConfig) -> dict[Opcode, Format]:
    """Payload format of every stream instruction for ``cfg``.

    LDRQ is the exception to item alignment: its records run on across words, so its "item" is the
    whole run and :func:`pack` is called with one item of ``count`` records.
    """
    rows, cols = cfg.rows, cfg.cols
    return {
        Opcode.LDW: Format(rows, cfg.cell_bits, False, cfg.col_words),
        Opcode.RDW: Format(rows, cfg.cell_bits, False, cfg.col_words),
        Opcode.LDM: Format(rows, 1, False, cfg.mask_words),
        Opcode.RDM: Format(rows, 1, False, cfg.mask_words),
        Opcode.LDIN: Format(rows, 8, False, cfg.in_words),
        Opcode.LDD: Format(cfg.delta_len, 8, True, cfg.delta_words),
        Opcode.RDOUT: Format(cols, 8, False, cfg.out_words),
        Opcode.RDACC: Format(cols, cfg.acc_bits, True, cfg.acc_words),
    }


def pack(values: np.ndarray, bits: int, words_per_item: int, bus_bits: int) -> np.ndarray:
    """Pack ``values`` (items x elems) into bus words: uint64 limbs, shape (items*words, bus_bits/64).

    Element i of an item occupies bits ``[i*bits, (i+1)*bits)`` of the item's words, little-endian;
    negative values are stored in two's complement.
    """
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[None, :]
    items, elems = values.shape
    total = words_per_item * bus_bits
    if elems * bits > total:
        raise ValueError(f"{elems} elements of {bits} bits do not fit {words_per_item} words of {bus_bits} bits")
    v = values.astype(np.int64) & ((1 << bits) - 1)
    shifts = np.arange(bits, dtype=np.int64)
    bitarr = ((v[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(items, elems * bits)
    padded = np.zeros((items, total), dtype=np.uint8)
    padded[:, : elems * bits] = bitarr
    by = np.packbits(padded, axis=1, bitorder="little")
    return by.view("<u8").reshape(items * words_per_item, bus_bits // 64)


def unpack(words: np.ndarray, items: int, elems: int, bits: int, signed: bool, bus_bits: int) -> np.ndarray:
    """Inverse of :func:`pack`: (items x elems) int64."""
    words = np.ascontiguousarray(words, dtype="<u8").reshape(-1, bus_bits // 64)
    per_item = words.shape[0] // items if items else 0
    by = words.view(np.uint8).reshape(items, per_item * bus_bits // 8)
    bitarr = np.unpackbits(by, axis=1, bitorder="little")[:, : elems * bits].reshape(items, elems, bits)
    weights = (np.int64(1) << np.arange(bits, dtype=np.int64))
    v = (bitarr.astype(np.int64) * weights).sum(axis=2)
    if signed:
        v = np.where(v >> (bits - 1), v - (1 << bits), v)
    return v


def words_to_ints(words: np.ndarray) -> list[int]:
    """Bus words (uint64 limbs) to Python ints (for drivers that take one integer per word)."""
    out = []
    for row in np.asarray(words, dtype=np.uint64):
        v = 0
        for i, limb in enumerate(row):
            v |= int(limb) << (64 * i)
        out.append(v)
    return out


def ints_to_words(ints, bus_bits: int) -> np.ndarray:
    limbs = bus_bits // 64
    out = np.zeros((len(ints), limbs), dtype=np.uint64)
    for i, v in enumerate(ints):
        for j in range(limbs):
            out[i, j] = (int(v) >> (64 * j)) & 0xFFFFFFFFFFFFFFFF
    return out


def pack_rq(bias, mult, shift, cfg: TileConfig) -> np.ndarray:
    """Requantisation lane records (bias, multiplier, shift) packed as LDRQ expects: one
    :data:`cimtile.hw.isa.RQ_RECORD` per 64 bits, ``rq_per_word`` per bus word."""
    rec = np.zeros(np.shape(bias), dtype=np.int64)
    for name, v in (("bias", bias), ("mult", mult), ("shift", shift)):
        f = RQ_RECORD[name]
        rec |= (np.asarray(v, dtype=np.int64) & ((1 << f.width) - 1)) << f.offset
    n = len(rec)
    per = cfg.rq_per_word
    nwords = -(-n // per)
    flat = np.zeros(nwords * per, dtype=np.uint64)
    flat[:n] = rec.astype(np.uint64)
    return flat.reshape(nwords, per)


def unpack_rq(words: np.ndarray, count: int):
    """Inverse of :func:`pack_rq`: (bias, mult, shift) arrays of the first ``count`` records."""
    flat = np.asarray(words, dtype=np.uint64).reshape(-1)[:count]
    out = []
    for _name, f in RQ_RECORD:
        v = ((flat >> np.uint64(f.offset)) & np.uint64((1 << f.width) - 1)).astype(np.int64)
        if f.shape.signed:
            v = np.where(v >> (f.width - 1), v - (1 << f.width), v)
        out.append(v)
    return tuple(out)
