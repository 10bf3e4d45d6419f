"""hw.encoding: the one home of the signed-weight layout and the ADC code range."""

import numpy as np
import pytest
from cimtile.hw import encoding, isa
from cimtile.hw.params import ENCODINGS, PRESETS, TileConfig
from hypothesis import given
from hypothesis import strategies as st


@given(cell_bits=st.integers(1, 4), wbits=st.integers(1, 8), wsigned=st.booleans(),
       enc=st.sampled_from(ENCODINGS), seed=st.integers(0, 2**32 - 1))
def test_round_trip_every_encoding(cell_bits, wbits, wsigned, enc, seed):
    if wsigned and wbits < 2:
        wbits = 2
    cfg = TileConfig(cell_bits=cell_bits, weight_encoding=enc)
    lo, hi = encoding.weight_range(wbits, wsigned)
    w = np.random.default_rng(seed).integers(lo, hi + 1, size=(5, 3))
    w[0, 0], w[0, 1] = lo, hi
    lv = encoding.encode_weights(cfg, w, wbits, wsigned)
    g = encoding.group_size(cfg, wbits, wsigned)
    assert lv.shape == (5, 3 * g) and g == isa.geometry(cfg, wbits, 8, wsigned, False, 1, g).group
    assert lv.min() >= 0 and lv.max() <= cfg.max_level
    np.testing.assert_array_equal(encoding.decode_weights(cfg, lv, None, wbits, wsigned), w)
    if wsigned:  # one column of each pair is zero: a positive weight never drives its negative column
        pairs = lv.reshape(5, -1, 2)
        assert not (pairs.min(axis=2)).any()


def test_layout_is_the_documented_one():
    cfg = PRESETS["tiny"]  # 2-bit cells
    # 5 = 0b01_01: s0+ = 1, s1+ = 1; -3 = -(0b00_11): s0- = 3
    assert encoding.encode_weights(cfg, [[5, -3]], 4, True).tolist() == [[1, 0, 1, 0, 0, 3, 0, 0]]
    assert encoding.column_weights(cfg, 4, True).tolist() == [1, -1, 4, -4]
    assert encoding.column_weights(cfg, 4, False).tolist() == [1, 4]
    analog = cfg.replace(weight_encoding="differential-analog")
    assert encoding.conversion_weights(analog, 4, True).tolist() == [1, 4]
    assert encoding.conversion_weights(cfg, 4, True).tolist() == [1, -1, 4, -4]


def test_masks_count_zero():
    cfg = PRESETS["tiny"]
    lv = encoding.encode_weights(cfg, [[3, -3]], 3, True)
    masks = np.zeros_like(lv, dtype=bool)
    masks[0, 0] = True  # s0+ of the first weight
    assert encoding.decode_weights(cfg, lv, masks, 3, True).tolist() == [[0, -3]]


def test_adc_range():
    cfg = PRESETS["tiny"]  # 4-bit ADC
    assert encoding.adc_range(cfg, True) == (0, 15) == encoding.adc_range(cfg, False)
    analog = cfg.replace(weight_encoding="differential-analog")
    assert encoding.adc_range(analog, True) == (-8, 7)
    assert encoding.adc_range(analog, False) == (0, 15)


@pytest.mark.parametrize("w, wbits, wsigned", [(-4, 3, True), (4, 3, True), (-1, 3, False), (8, 3, False)])
def test_out_of_range_weight_is_named(w, wbits, wsigned):
    with pytest.raises(ValueError, match=rf"weight {w} at index \(0, 1\) is outside"):
        encoding.encode_weights(PRESETS["tiny"], [[0, w]], wbits, wsigned)


def test_partial_group_is_rejected():
    with pytest.raises(ValueError, match="not a whole number of 4-column groups"):
        encoding.decode_weights(PRESETS["tiny"], np.zeros((2, 6)), None, 4, True)
