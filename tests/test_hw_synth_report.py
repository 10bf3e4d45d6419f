"""hw.build's synthesis bookkeeping without running the tools: critical path from a nextpnr report, area
from yosys cell counts, synth.json reuse keyed by the Verilog's hash, the markdown report."""

from __future__ import annotations

import json

import pytest
from cimtile.hw import build
from helpers import TINY


def test_critical_path_takes_the_slowest_path():
    rep = {"critical_paths": [
        {"path": [{"from": {"cell": "a"}, "to": {"cell": "b"}, "delay": 1.0},
                  {"from": {"cell": "b"}, "to": {"cell": "c"}, "delay": 2.0}]},
        {"path": [{"from": {"cell": "x"}, "to": {"cell": "y"}, "delay": 4.5}]},
    ]}
    assert build.critical_path(rep) == {"critical_from": "x", "critical_to": "y", "critical_ns": 4.5}
    assert build.critical_path({})["critical_from"] is None
    # a slower path from a top-level port does not set the clock's figure: the register-to-register one does
    port = {"from": "<async>", "to": "posedge clk",
            "path": [{"from": {"cell": "pin"}, "to": {"cell": "r"}, "delay": 9.0}]}
    clocked = {"from": "posedge clk", "to": "posedge clk", **rep["critical_paths"][0]}
    assert build.critical_path({"critical_paths": [port, clocked]}) == {
        "critical_from": "a", "critical_to": "c", "critical_ns": 3.0}


def test_yosys_area_counts_carry_and_ram_cells():
    got = build.yosys_area({"LUT4": 10, "CCU2C": 3, "TRELLIS_DPR16X4": 2, "TRELLIS_FF": 7, "DP16KD": 1,
                            "MULT18X18D": 4, "PFUMX": 9})
    assert got == {"luts": 10 + 6 + 8, "ffs": 7, "brams": 1, "dsps": 4}


def test_synth_reuses_a_result_of_the_same_verilog(tmp_path, tiny_verilog):
    vpath = tiny_verilog(tmp_path)
    prev = {"config": "tiny", "source": "nextpnr", "luts": 1, "ffs": 2, "brams": 3, "dsps": 4, "fmax_mhz": 5.0,
            "verilog_sha256": build.verilog_hash(vpath)}
    (tmp_path / "synth.json").write_text(json.dumps(prev))
    # a result without a flow is of plain synth_ecp5 (before flows were recorded); the Verilog generated again
    # has the same hash (given as a file from here on)
    assert build.synth(TINY, tmp_path, reuse=True, flow="synth_ecp5") == prev  # no tool runs: it would take minutes
    default = {**prev, "flow": build.DEFAULT_SYNTH_FLOW, "seed": 1, "freq_mhz": 100.0}
    (tmp_path / "synth.json").write_text(json.dumps(default))
    assert build.synth(TINY, tmp_path, reuse=True, verilog=vpath) == default
    # a result of another flow is reused for that flow only (the other would run the tools)
    merged = {**prev, "flow": "merge-first", "luts": 9}
    (tmp_path / "synth.json").write_text(json.dumps(merged))
    assert build.synth(TINY, tmp_path, reuse=True, flow="merge-first", verilog=vpath) == merged
    with pytest.raises(RuntimeError, match="no synthesis flow 'quick'"):
        build.synth(TINY, tmp_path, reuse=True, flow="quick")


def test_report_markdown_names_missing_results(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "synth.json").write_text(json.dumps(
        {"source": "nextpnr", "luts": 11, "ffs": 22, "brams": 3, "dsps": 4, "fmax_mhz": 55.5,
         "critical_from": "p", "critical_to": "q", "critical_ns": 18.0}))
    (tmp_path / "tiny" / "area.json").write_text(json.dumps(
        {"components": {"tile.py": {"luts": 5, "ffs": 6, "brams": 1, "dsps": 0},
                        "shift_add.py": {"luts": 6, "ffs": 16, "brams": 0, "dsps": 0}}}))
    text = build.report_markdown(["tiny", "isaac"], root=tmp_path)
    assert "| tiny | nextpnr | 11 | 22 | 3 | 4 | 55.5 MHz | `p` -> `q` (18.0 ns) |" in text
    assert "| isaac | (no synth.json" in text
    assert "| `hw/shift_add.py` | 6 | 16 | 0 | 0 |" in text and "| total | 11 | 22 | 1 | 0 |" in text


def test_area_of_netlist_sums_modules_by_component_file(tmp_path):
    cell = lambda t: {"type": t}
    mods = {"LUT4": {"cells": {}}, "TRELLIS_FF": {"cells": {}},
            "tile": {"cells": {"a": cell("LUT4"), "b": cell("tile.lanes"), "c": cell("DP16KD")}},
            "tile.lanes": {"cells": {"a": cell("LUT4"), "b": cell("CCU2C"), "c": cell("TRELLIS_FF")}},
            "tile.requant": {"cells": {"a": cell("LUT4"), "b": cell("tile.requant.requant0")}},
            "tile.requant.requant0": {"cells": {"a": cell("MULT18X18D"), "b": cell("LUT4")}}}
    (tmp_path / "n.json").write_text(json.dumps({"modules": mods}))
    got = build.area_of_netlist(TINY, tmp_path / "n.json")
    assert got == {"tile.py": {"luts": 1, "ffs": 0, "brams": 1, "dsps": 0},
                   "mvm_lanes.py": {"luts": 3, "ffs": 1, "brams": 0, "dsps": 0},
                   "requant_bank.py": {"luts": 1, "ffs": 0, "brams": 0, "dsps": 0},
                   "requant.py": {"luts": 1, "ffs": 0, "brams": 0, "dsps": 1}}
    assert json.loads((tmp_path / "area.json").read_text())["components"] == got
    # a reused module (a black box in the netlist) counts with its previous row
    mods["tile.lanes"] = {"attributes": {"blackbox": "1"}}
    (tmp_path / "n.json").write_text(json.dumps({"modules": mods}))
    lanes = {"sha256": "h", "luts": 7, "ffs": 2, "brams": 0, "dsps": 1}
    got = build.area_of_netlist(TINY, tmp_path / "n.json", {"tile": "t"}, {"tile.lanes": lanes})
    assert got["mvm_lanes.py"] == {"luts": 7, "ffs": 2, "brams": 0, "dsps": 1}
    saved = json.loads((tmp_path / "area.json").read_text())
    assert saved["modules"]["tile.lanes"] == lanes and saved["modules"]["tile"]["sha256"] == "t"
    assert saved["reused_modules"] == ["tile.lanes"]


VERILOG = """module tile(a, b);
  input a; output b;
  \\tile.adder  adder ( .\\port$17$0 (a), .y(b) );
endmodule

module \\tile.adder (\\port$17$0 , y);
  input \\port$17$0 ; output y;
  assign y = ~\\port$17$0 ;
endmodule

module \\tile.adder.inner (x);
  input x;
endmodule
"""


def test_module_hashes_follow_a_module_s_own_logic(tmp_path):
    """Amaranth's design-wide port numbers do not change a module's hash; its logic does."""
    v = tmp_path / "tile.v"
    v.write_text(VERILOG)
    first = build.module_hashes(v)
    assert set(first) == {"tile", "tile.adder", "tile.adder.inner"}
    v.write_text(VERILOG.replace("port$17$0", "port$42$0"))
    assert build.module_hashes(v) == first
    v.write_text(VERILOG.replace("~\\port$17$0", "\\port$17$0"))
    changed = build.module_hashes(v)
    assert changed["tile.adder"] != first["tile.adder"] and changed["tile"] == first["tile"]


def test_reusable_modules_need_their_own_hash_and_flow():
    """Each module is synthesised alone (submodules black boxes): its row depends on its own Verilog, and is
    reused only if made by a flow the run allows."""
    hashes = {"tile": "t", "tile.requant": "r", "tile.requant.requant0": "q0", "tile.lanes": "l"}
    row = {"luts": 1, "ffs": 0, "brams": 0, "dsps": 0}
    previous = {name: {"sha256": h, **row} for name, h in hashes.items()}
    previous["tile.requant.requant0"]["sha256"] = "old"
    assert sorted(build.reusable_modules(hashes, previous)) == ["tile", "tile.lanes", "tile.requant"]
    previous["tile.lanes"]["flow"] = "merge-first"
    plain = {n: ("synth_ecp5",) for n in hashes}
    assert sorted(build.reusable_modules(hashes, previous, plain)) == ["tile", "tile.requant"]
    assert "tile.lanes" in build.reusable_modules(hashes, previous, {"tile.lanes": ("synth_ecp5", "merge-first")})


def test_every_component_of_the_tile_is_counted_in_its_own_file():
    """The area table names each component's file: every submodule of Tile that is a component of
    hw/ maps (hw.build.COMPONENT_FILES) to the file its class is defined in, so that a new component
    is not counted silently as hw/tile.py."""
    from amaranth.hdl import Fragment
    from amaranth.lib import wiring
    from cimtile.hw.cut import CUT_PREFIX
    from cimtile.hw.tile import Tile

    def walk(fragment, path, file):
        for sub, name, _ in fragment.subfragments:
            owner = next((o for o in sub.origins or [] if isinstance(o, wiring.Component)
                          and type(o).__module__.startswith("cimtile.hw.")), None)
            if owner is not None:  # (memories, and synthesis cuts, are counted in the component that holds them)
                own = file if name.startswith(CUT_PREFIX) else type(owner).__module__.rsplit(".", 1)[1] + ".py"
                yield f"{path}.{name}", own
                yield from walk(sub, f"{path}.{name}", own)

    seen = dict(walk(Fragment.get(Tile(TINY), None), "tile", "tile.py"))
    assert {"tile.loader", "tile.reader", "tile.requant.requant0", "tile.adc1", "tile.fetch.cut_word"} <= set(seen)
    assert {m: build._component_of(m) for m in seen} == seen


def test_report_markdown_names_a_synth_result_of_other_verilog_stale(tmp_path, tiny_verilog):
    vpath = tiny_verilog(tmp_path / "tiny")
    result = {"source": "nextpnr", "luts": 11, "ffs": 22, "brams": 3, "dsps": 4, "fmax_mhz": 55.5,
              "critical_from": "p", "critical_to": "q", "critical_ns": 18.0,
              "verilog_sha256": build.verilog_hash(vpath)}
    (tmp_path / "tiny" / "synth.json").write_text(json.dumps(result))
    assert "| tiny | nextpnr | 11 |" in build.report_markdown(["tiny"], root=tmp_path)
    (tmp_path / "tiny" / "synth.json").write_text(json.dumps({**result, "verilog_sha256": "0" * 64}))
    text = build.report_markdown(["tiny"], root=tmp_path)
    assert "| tiny | (synth.json is of other Verilog than tile.v" in text and "55.5 MHz" not in text


def test_report_sums_the_components_where_no_flattened_result_exists(tmp_path, tiny_verilog):
    """isaac has no flattened synthesis (larger than the part, and too slow for CI): its row is the per-component
    synthesis summed, when that is of the Verilog beside it; an area.json of other Verilog is not reported."""
    vpath = tiny_verilog(tmp_path / "tiny")
    comps = {"tile.py": {"luts": 5, "ffs": 6, "brams": 1, "dsps": 0},
             "shift_add.py": {"luts": 7, "ffs": 16, "brams": 0, "dsps": 2}}
    mods = {n: {"sha256": h} for n, h in build.module_hashes(vpath).items()}
    (tmp_path / "tiny" / "area.json").write_text(json.dumps({"components": comps, "modules": mods}))
    text = build.report_markdown(["tiny"], root=tmp_path)
    assert "| tiny | yosys per component, summed (no synth.json) | 12 | 22 | 1 | 2 | - | - |" in text
    some = next(iter(mods))
    (tmp_path / "tiny" / "area.json").write_text(json.dumps(
        {"components": comps, "modules": {**mods, some: {"sha256": "0" * 64}}}))
    text = build.report_markdown(["tiny"], root=tmp_path)
    assert "| tiny | (no synth.json: run synth first) |" in text and "summed" not in text
    assert "**Stale:** the area.json of tiny is of other Verilog" in text
