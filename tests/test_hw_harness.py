"""hw.build's harness (``harness_verilog``): the tile's ports parsed from the generated Verilog, each input bit
driven by a register, each output bit captured by one, checked by yosys on a small tile and on tiny's Verilog."""

from __future__ import annotations

import json
import subprocess

import pytest
from cimtile.hw import build

SMALL = """module tile(a, b, clk, rst, y, z);
  input a;
  input [3:0] b;
  input clk;
  input rst;
  output [2:0] y;
  wire [2:0] y;
  output z;
  reg z;
  assign y = b[2:0] ^ {3{a}};
  always @(posedge clk) z <= rst ? 1'b0 : ^b;
endmodule
"""


def _yosys(tmp_path, script: str) -> None:
    run = subprocess.run([build._yosys_exe(), "-q", "-p", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


def test_ports_are_parsed_in_declaration_order(tmp_path):
    (tmp_path / "tile.v").write_text(SMALL)
    assert build.tile_ports(tmp_path / "tile.v") == [("input", 1, "a"), ("input", 4, "b"), ("input", 1, "clk"),
                                                    ("input", 1, "rst"), ("output", 3, "y"), ("output", 1, "z")]
    with pytest.raises(RuntimeError, match=r"tile.v: no module 'adc'"):
        build.tile_ports(tmp_path / "tile.v", "adc")
    (tmp_path / "empty.v").write_text("module tile();\nendmodule\n")
    with pytest.raises(RuntimeError, match="declares no ports"):
        build.tile_ports(tmp_path / "empty.v")


def test_harness_drives_every_input_bit_and_captures_every_output_bit(tmp_path):
    (tmp_path / "tile.v").write_text(SMALL)
    text = build.harness_verilog(tmp_path / "tile.v")
    # inputs but clk, in order, on consecutive bits of the input shift register; outputs on tile_out
    assert ".clk(clk), .a(harness_in[0:0]), .b(harness_in[4:1]), .rst(harness_in[5:5]), " \
           ".y(tile_out[2:0]), .z(tile_out[3:3])" in text
    assert "reg [5:0] harness_in;" in text and "reg [3:0] harness_out;" in text
    (tmp_path / "harness.v").write_text(text)
    # yosys elaborates it, and the flattened design has the harness's flip-flops (6 in, 4 captured, 4 shifted)
    # and the tile's one
    _yosys(tmp_path, "read_verilog tile.v harness.v; hierarchy -check -top tile_harness; proc; flatten; opt_clean; "
                     "write_json flat.json")
    cells = json.loads((tmp_path / "flat.json").read_text())["modules"]["tile_harness"]["cells"].values()
    assert sum(int(c["parameters"]["WIDTH"], 2) for c in cells if c["type"] == "$dff") == 6 + 4 + 4 + 1


def test_harness_of_tiny_connects_all_its_ports(tmp_path, tiny_verilog):
    vpath = tiny_verilog(tmp_path)
    ports = build.tile_ports(vpath)
    names = {n for _, _, n in ports}
    assert {"instr__payload", "din__payload", "dout__payload", "cycles", "start", "rst"} <= names
    text = build.harness_verilog(vpath)
    n_in = sum(w for d, w, n in ports if d == "input" and n != "clk")
    n_out = sum(w for d, w, n in ports if d == "output")
    assert f"reg [{n_in - 1}:0] harness_in;" in text and f"reg [{n_out - 1}:0] harness_shift;" in text
    assert all(f".{n}(" in text for n in names)
