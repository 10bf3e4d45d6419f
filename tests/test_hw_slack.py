"""hw.build's timing endpoint map (``late_endpoints``, ``slack``): every clocked cell's input pins from a
nextpnr ``--detailed-timing-report`` JSON, grouped by register, without running the tools."""

from __future__ import annotations

import json

import pytest
from cimtile.hw import build

CLK = "posedge $glbnet$clk"


def _net(endpoints, event=CLK):
    return {"net": "n", "event": event, "endpoints": [
        {"cell": c, "port": p, "event": CLK, "delay": [1.0, t]} for c, p, t in endpoints]}


NETLIST = {"modules": {"tile": {"cells": {
    "lanes.step.k_TRELLIS_FF_Q": {"type": "TRELLIS_FF"},
    "lanes.step.k_TRELLIS_FF_Q_1": {"type": "TRELLIS_FF"},
    "acc[3]_TRELLIS_FF_Q": {"type": "TRELLIS_FF"},
    "acc[4]_TRELLIS_FF_Q": {"type": "TRELLIS_FF"},
    "a_LUT4_Z": {"type": "LUT4"},
    "fetch.prog.0.0_DP16KD": {"type": "DP16KD"},
}}}}

REPORT = {"detailed_net_timings": [
    _net([("lanes.step.k_TRELLIS_FF_Q", "M", 16.5), ("a_LUT4_Z", "A", 30.0)]),  # a LUT pin ends no path
    _net([("lanes.step.k_TRELLIS_FF_Q_1", "M", 9.0), ("lanes.step.k_TRELLIS_FF_Q", "M", 12.0)]),
    _net([("acc[3]_TRELLIS_FF_Q", "CE", 11.0), ("acc[4]_TRELLIS_FF_Q", "CE", 10.5)]),
    _net([("in_buffer.0.3$DPRAM_COMB", "WAD2", 14.0), ("in_buffer.0.3$DPRAM_COMB", "RAD0", 40.0)]),
    _net([("fetch.prog.0.0_DP16KD", "ADB5", 8.0)]),
    _net([("acc[3]_TRELLIS_FF_Q", "DI", 50.0)], event="<async>"),  # from a top-level port: not counted
]}


def test_late_endpoints_group_registers_and_keep_each_pin_s_latest_arrival():
    res = build.late_endpoints(REPORT, NETLIST, 10.0)
    assert res["endpoints"] == 6  # step.k M (twice), step.k_1 M, acc CE x2, RAM WAD2, prog ADB5
    rows = {(r["group"], r["pin"]): r for r in res["groups"]}
    assert rows[("lanes.step.k", "M")] == {"group": "lanes.step.k", "pin": "M", "max_ns": 16.5, "late": 1,
                                           "count": 2}
    assert rows[("acc#", "CE")]["late"] == 2 and rows[("acc#", "CE")]["max_ns"] == 11.0
    assert rows[("in_buffer", "WAD")]["late"] == 1  # a LUT RAM's write pin ends a path, its read pin does not
    assert rows[("fetch.prog", "ADB")]["late"] == 0
    assert res["late"] == 4 and [r["max_ns"] for r in res["groups"]] == sorted(
        (r["max_ns"] for r in res["groups"]), reverse=True)
    assert build.late_endpoints(REPORT, NETLIST, 20.0)["late"] == 0


def test_late_markdown_lists_the_late_groups_latest_first():
    text = build.late_markdown(build.late_endpoints(REPORT, NETLIST, 10.0), top=2)
    assert text.startswith("4 of 6 timing endpoints arrive later than 10 ns (100 MHz), in 3 groups; the 2 latest")
    lines = [line for line in text.splitlines() if line.startswith("| `")]
    assert lines == ["| `lanes.step.k` | M | 16.50 | 1 | 2 |", "| `in_buffer` | WAD | 14.00 | 1 | 1 |"]


def test_a_report_without_detailed_timings_is_refused():
    with pytest.raises(RuntimeError, match="no detailed net timings"):
        build.late_endpoints({"critical_paths": []}, NETLIST, 10.0)


def test_slack_command_reads_a_synth_folder_and_names_what_is_missing(tmp_path, capsys):
    assert build.main(["slack", "-o", str(tmp_path)]) == 1
    assert "report.json: not found" in capsys.readouterr().err
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    (tmp_path / "tile_synth.json").write_text(json.dumps(NETLIST))
    (tmp_path / "synth.json").write_text(json.dumps({"freq_mhz": 80.0}))  # the run's target: 12.5 ns
    assert build.main(["slack", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 of 6 timing endpoints arrive later than 12.5 ns (80 MHz), in 2 groups:")
    assert build.main(["slack", "-o", str(tmp_path), "--period", "0"]) == 1
    assert "--period 0: expected a positive number" in capsys.readouterr().err
    (tmp_path / "report.json").write_text("{")
    assert build.main(["slack", "-o", str(tmp_path)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_synth_records_the_late_endpoints_of_a_detailed_report(monkeypatch, tmp_path):
    def run_tool(args, cwd, log):
        if "yosys" in args[0]:
            (cwd / "tile_synth.json").write_text(json.dumps(NETLIST))
        else:
            assert "--detailed-timing-report" in args
            (cwd / "report.json").write_text(json.dumps({**REPORT, "fmax": {"clk": {"achieved": 60.0}},
                                                         "utilization": {}, "critical_paths": []}))
        log.write_text("")
        return ""

    monkeypatch.setattr(build, "_run_tool", run_tool)
    v = tmp_path / "given.v"
    v.write_text("module tile(); endmodule\n")
    res = build.synth("tiny", tmp_path / "run", flow="synth_ecp5", verilog=v)
    assert (res["endpoints"], res["late_endpoints"]) == (6, 4)


def test_unnamed_registers_holding_a_memory_s_read_data_are_named_after_it(tmp_path):
    (tmp_path / "tile.v").write_text(
        "module tile(clk);\n  reg [7:0] _12_;\n  always @(posedge clk)\n"
        "      _12_ <= out_buffer3[\\$signature__addr ];\n"
        "endmodule\n"
        "module \\tile.fetch (clk);\n  always @(posedge clk)\n    _0_ <= prog_buffer[\\$3 [7:0]];\nendmodule\n")
    groups = [{"group": "_12_"}, {"group": "fetch._0_"}, {"group": "_7_"}, {"group": "lanes.vector"}]
    build.name_memory_reads(groups, tmp_path / "tile.v")
    assert [g["group"] for g in groups] == ["_12_ (out_buffer3 read)", "fetch._0_ (prog_buffer read)", "_7_",
                                            "lanes.vector"]


def test_groups_of_a_harness_run_are_named_as_the_tile_s_own():
    """In the ``harness`` flow the tile is the instance ``tile`` of the harness: its cells' groups drop the prefix,
    so the two flows' maps compare row by row; the harness's own registers keep their names."""
    for cell in ("loops.room0_in_TRELLIS_FF_Q_3", "_0__TRELLIS_FF_Q_21", "acc_buffer.0.101$DPRAM_COMB2"):
        assert build.register_group(f"tile.{cell}") == build.register_group(cell)
    assert build.register_group("tile.loops.room0_in_TRELLIS_FF_Q_3") == "loops.room0_in"
    assert build.register_group("harness_out_TRELLIS_FF_Q_7") == "harness_out"
