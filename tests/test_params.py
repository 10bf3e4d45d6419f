"""TileConfig: validation errors, derived values, JSON round trip, presets."""

import dataclasses

import pytest
from cimtile.hw.params import PRESETS, ConfigError, TileConfig, load_config
from hypothesis import given
from hypothesis import strategies as st

INT_FIELDS = [f for f in dataclasses.fields(TileConfig) if f.metadata["lo"] is not None]


@pytest.mark.parametrize("f", INT_FIELDS, ids=lambda f: f.name)
def test_every_integer_field_rejects_values_outside_its_range(f):
    lo, hi = f.metadata["lo"], f.metadata["hi"]
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ConfigError) as e:
            TileConfig(**{f.name: bad})
        msg = str(e.value)
        assert "\n" not in msg and f"TileConfig.{f.name} = {bad}" in msg and "allowed range" in msg


@pytest.mark.parametrize("f", INT_FIELDS, ids=lambda f: f.name)
def test_every_integer_field_rejects_non_integers(f):
    with pytest.raises(ConfigError, match=f"TileConfig.{f.name} = '3': expected an integer"):
        TileConfig(**{f.name: "3"})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"weight_encoding": "offset"}, "TileConfig.weight_encoding = 'offset': allowed values are differential, "
                                        "differential-analog"),
        ({"cols": 8, "n_adcs": 9}, "TileConfig.n_adcs = 9: allowed range is 1..cols (8)"),
        ({"rows": 8, "rows_per_conv": 9}, "TileConfig.rows_per_conv = 9: allowed range is 1..rows (8)"),
        ({"cols": 8, "rq_lanes": 9}, "TileConfig.rq_lanes = 9: allowed range is 1..cols (8)"),
        ({"bus_bits": 96}, "TileConfig.bus_bits = 96: must be a multiple of 64"),
        ({"name": "my tile"}, "TileConfig.name = 'my tile': expected an identifier (letters, digits, _)"),
        ({"adc_bits": True}, "TileConfig.adc_bits = True: expected an integer in 2..14"),
    ],
)
def test_cross_field_validation(changes, message):
    with pytest.raises(ConfigError) as e:
        TileConfig(**changes)
    assert str(e.value) == message


def test_presets():
    isaac, cimaq = PRESETS["isaac"], PRESETS["cimaq"]
    assert (isaac.rows, isaac.cols, isaac.cell_bits, isaac.dac_bits, isaac.adc_bits, isaac.n_adcs) == (
        128, 128, 2, 1, 8, 8)
    assert (cimaq.rows, cimaq.cols, cimaq.cell_bits, cimaq.dac_bits, cimaq.weight_encoding) == (
        256, 256, 4, 1, "differential")
    assert all(name == cfg.name for name, cfg in PRESETS.items())


def test_derived_values():
    c = PRESETS["isaac"]
    assert c.max_level == 3 and c.adc_max == 255 and not c.analog_diff
    assert c.in_words == 4 and c.col_words == 1 and c.mask_words == 1 and c.out_words == 4
    assert c.acc_words == 16 and c.rq_per_word == 4 and c.delta_len == 128 and c.delta_words == 4


configs = st.builds(
    TileConfig,
    rows=st.integers(2, 64), cols=st.integers(8, 64), cell_bits=st.integers(1, 4), dac_bits=st.integers(1, 4),
    adc_bits=st.integers(2, 14), n_adcs=st.integers(1, 8), adc_cycles=st.integers(1, 16),
    rows_per_conv=st.integers(1, 2), weight_encoding=st.sampled_from(["differential", "differential-analog"]),
    acc_bits=st.integers(16, 40), bus_bits=st.sampled_from([64, 128, 256]),
)


@given(configs)
def test_json_round_trip(cfg):
    assert TileConfig.from_json(cfg.to_json()) == cfg


def test_save_load_and_load_config(tmp_path):
    p = tmp_path / "t.json"
    cfg = PRESETS["isaac"].replace(name="mine", adc_bits=6)
    cfg.save(p)
    assert TileConfig.load(p) == cfg
    assert load_config(str(p)) == cfg
    assert load_config("tiny") is PRESETS["tiny"]


def test_bad_json_and_unknown_fields(tmp_path):
    with pytest.raises(ConfigError, match=r"TileConfig: unknown field 'colz'"):
        TileConfig.from_dict({"colz": 3})
    with pytest.raises(ConfigError, match=r"TileConfig: invalid JSON"):
        TileConfig.from_json("{")
    with pytest.raises(ConfigError, match=r"TileConfig: cannot read"):
        TileConfig.load(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match=r"tile 'nope': not a preset"):
        load_config("nope")


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["tiny"].rows = 3
