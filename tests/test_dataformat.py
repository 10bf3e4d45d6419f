"""Stream payload formats: pack/unpack round trips and bit positions."""

import numpy as np
import pytest
from cimtile.hw import dataformat as df
from cimtile.hw.isa import Opcode
from cimtile.hw.params import PRESETS
from hypothesis import given
from hypothesis import strategies as st


@given(
    items=st.integers(1, 4), elems=st.integers(1, 40), bits=st.integers(1, 40), signed=st.booleans(),
    bus=st.sampled_from([64, 128, 256]), seed=st.integers(0, 2**32 - 1),
)
def test_pack_unpack_round_trip(items, elems, bits, signed, bus, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    v = rng.integers(lo, hi, size=(items, elems), dtype=np.int64)
    words_per_item = -(-elems * bits // bus)
    w = df.pack(v, bits, words_per_item, bus)
    assert w.shape == (items * words_per_item, bus // 64)
    assert (df.unpack(w, items, elems, bits, signed, bus) == v).all()
    assert (df.ints_to_words(df.words_to_ints(w), bus) == w).all()


def test_bit_positions():
    # Element i at bits [i*bits, (i+1)*bits), little-endian across 64-bit limbs.
    w = df.pack(np.array([[1, 2, 3]]), 40, 2, 64)
    ints = df.words_to_ints(w)
    assert ints[0] == 1 | ((2 & 0xFFFFFF) << 40) and ints[1] == (2 >> 24) | (3 << 16)
    w = df.pack(np.array([[-1]]), 8, 1, 128)
    assert df.words_to_ints(w) == [0xFF]


def test_formats_cover_every_stream_instruction():
    f = df.formats(PRESETS["isaac"])
    stream_ops = {Opcode.LDW, Opcode.LDM, Opcode.LDIN, Opcode.LDD, Opcode.RDOUT, Opcode.RDACC, Opcode.RDW, Opcode.RDM}
    assert set(f) == stream_ops
    assert f[Opcode.LDW].words == PRESETS["isaac"].col_words and f[Opcode.LDIN].words == 4


@pytest.mark.parametrize("bus", [64, 256])
def test_rq_records(bus):
    cfg = PRESETS["tiny"].replace(bus_bits=bus)
    bias, mult, shift = np.array([-5, 7, -(1 << 31)]), np.array([1, 65535, 300]), np.array([0, 63, 17])
    w = df.pack_rq(bias, mult, shift, cfg)
    assert w.shape[0] == -(-3 // cfg.rq_per_word)
    b, m, s = df.unpack_rq(w, 3)
    assert (b == bias).all() and (m == mult).all() and (s == shift).all()
