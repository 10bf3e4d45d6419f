"""What a new user runs into: every bad input is one line on stderr, a non-zero exit, no traceback, and the
output untouched; the Python API's entry points refuse wrong types; the CLI documents itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from cimtile.hw.isa import EncodeError, Opcode, encode
from cimtile.hw.params import PRESETS, ConfigError, TileConfig, load_config
from cimtile.sim.tile import ProgramError, Tile
from models import conv_qdq
from onnx import TensorProto, helper, numpy_helper

from cimtile import compiler
from cimtile.cli import main, parser


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A project directory: model, bundle, a good input, and a file (README.md) to misuse as a directory."""
    d = tmp_path_factory.mktemp("user")
    onnx.save(conv_qdq(), d / "m.onnx")
    assert main(["compile", str(d / "m.onnx"), "--tile", "tiny", "-o", str(d / "b")]) == 0
    np.save(d / "x.npy", np.random.default_rng(1).random((2, 1, 8, 8), dtype=np.float32))
    (d / "README.md").write_text("not a directory\n")
    return d


def snapshot(d: Path) -> dict:
    """Every file under ``d`` (hidden ones too) with its bytes and mode: 'untouched' means equal snapshots."""
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None, p.stat().st_mode)
            for p in sorted(d.rglob("*"))}


def one_line_error(code: int, err: str, pattern: str) -> None:
    import re

    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("cimtile: error: "), err
    assert "Traceback" not in err
    assert re.search(pattern, err), err


def _npy(d: Path, name: str, a) -> str:
    np.save(d / name, a)
    return str(d / name)


RUN_CASES = {
    # name: (input array or None for the good x.npy, output relative to work dir, expected message)
    "output under a file": (None, "README.md/y.npy", r"README.md/y.npy: .*README.md exists and is not a directory"),
    "output is a directory": (None, "b", r"output .*b is a directory"),
    "empty batch": (np.zeros((0, 1, 8, 8), np.float32), "y.npy", r"input 'x': empty \(shape \(0, 1, 8, 8\)\)"),
    "strings": (np.array([["a", "b"]]), "y.npy", r"input 'x': an array of strings \(dtype <U1\)"),
    "int64 for float": (np.ones((2, 1, 8, 8), np.int64), "y.npy", r"input 'x': int64 array for the model's float "
                        r"input \(onnxruntime refuses it too\)"),
    "uint8 for float": (np.ones((2, 1, 8, 8), np.uint8), "y.npy", r"input 'x': uint8 array for the model's float"),
    "NaN": (np.where(np.arange(128).reshape(2, 1, 8, 8) == 70, np.nan, 0.5).astype(np.float32), "y.npy",
            r"input 'x': 1 NaN value\(s\), the first at index \(1, 0, 0, 6\)"),
    "shape": (np.zeros((2, 8, 8), np.float32), "y.npy",
              r"shape \(2, 8, 8\) does not match the model's input \[batch, 1, 8, 8\]"),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_bad_input_or_output(case, work, capsys):
    arr, out, pattern = RUN_CASES[case]
    x = str(work / "x.npy") if arr is None else _npy(work, f"bad-{case.replace(' ', '_')}.npy", arr)
    before = snapshot(work)
    code = main(["run", str(work / "b"), "--input", x, "-o", str(work / out)])
    one_line_error(code, capsys.readouterr().err, pattern)
    assert snapshot(work) == before


def test_run_unreadable_inputs(work, tmp_path, capsys):
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    for path, pattern in ((tmp_path / "a.npz", r"an .npz archive"), (tmp_path / "obj.npy", r"not a .npy array"),
                          (tmp_path / "junk.npy", r"not a .npy array"), (tmp_path / "none.npy", r"no such file"),
                          (tmp_path, r"it is a directory")):
        code = main(["run", str(work / "b"), "--input", str(path), "-o", str(tmp_path / "y.npy")])
        one_line_error(code, capsys.readouterr().err, pattern)
    assert not (tmp_path / "y.npy").exists()


def test_run_writes_output_whole(work, tmp_path, capsys):
    y = tmp_path / "deep" / "y.npy"
    assert main(["run", str(work / "b"), "--input", str(work / "x.npy"), "-o", str(y)]) == 0
    got = np.load(y)
    assert got.shape == (2, 4, 8, 8) and got.dtype == np.float32
    assert [p.name for p in y.parent.iterdir()] == ["y.npy"]  # no temporary file left behind


COMPILE_CASES = {
    "output under a file": ("README.md/out", r"output .*README.md/out: .*README.md exists and is not a directory"),
    "output is a file": ("README.md", r"output .*README.md exists and is not a directory"),
    "output is another directory": ("notabundle", r"output .*notabundle is a directory that is not a cimtile bundle"),
}


@pytest.mark.parametrize("case", list(COMPILE_CASES))
def test_compile_bad_output(case, work, capsys):
    out, pattern = COMPILE_CASES[case]
    (work / "notabundle").mkdir(exist_ok=True)
    (work / "notabundle" / "mine.txt").write_text("user data\n")
    before = snapshot(work)
    code = main(["compile", str(work / "m.onnx"), "--tile", "tiny", "-o", str(work / out)])
    one_line_error(code, capsys.readouterr().err, pattern)
    assert snapshot(work) == before


def test_compile_replaces_a_bundle_with_usual_permissions(work, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["compile", str(work / "m.onnx"), "--tile", "tiny", "-o", str(out)]) == 0
    first = json.loads((out / "tile.json").read_text())
    assert main(["compile", str(work / "m.onnx"), "--tile", "isaac", "-o", str(out)]) == 0
    assert first["name"] == "tiny" and json.loads((out / "tile.json").read_text())["name"] == "isaac"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary or old directory left
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o777 & ~umask)  # not mkdtemp's 0700
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compile", str(work / "m.onnx"), "--tile", "tiny", "-o", str(empty)]) == 0
    assert (empty / "network.json").exists()


def test_every_unsupported_op_in_one_line(tmp_path, capsys):
    """A model with several op types the compiler does not take (an LSTM after NonZero/TopK): the error names
    all the op types, each with its first node."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="nonzero0"),
             helper.make_node("TopK", ["x", "k"], ["v", "idx"], name="topk0"),
             helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="lstm0", hidden_size=2),
             helper.make_node("NonZero", ["y"], ["nz2"], name="nonzero1")]
    g = helper.make_graph(nodes, "lstm", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([1], np.int64), "k"),
                           numpy_helper.from_array(np.zeros((1, 8, 4), np.float32), "W"),
                           numpy_helper.from_array(np.zeros((1, 8, 2), np.float32), "R")])
    onnx.save(helper.make_model(g), tmp_path / "lstm.onnx")
    code = main(["compile", str(tmp_path / "lstm.onnx"), "-o", str(tmp_path / "out")])
    one_line_error(code, capsys.readouterr().err, r"3 unsupported operator types: NonZero \(first: node 'nonzero0'\), "
                   r"TopK \(first: node 'topk0'\), LSTM \(first: node 'lstm0'\)")
    assert not (tmp_path / "out").exists()


def test_cli_errors_from_a_shell(work, tmp_path):
    """The installed command: exit 1, one line, nothing on stdout, for a bad -o and a bad input."""
    env = dict(os.environ, CI="true")
    for args in (["compile", str(work / "m.onnx"), "-o", str(work / "README.md" / "out")],
                 ["run", str(work / "b"), "--input", _npy(tmp_path, "e.npy", np.zeros((0, 1, 8, 8), np.float32)),
                  "-o", str(tmp_path / "y.npy")]):
        p = subprocess.run([sys.executable, "-m", "cimtile", *args], capture_output=True, text=True, env=env)
        assert p.returncode == 1 and p.stdout == ""
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("cimtile: error: "), p.stderr
    assert not (tmp_path / "y.npy").exists()


def test_api_input_checks(work):
    b = compiler.load(work / "b")
    with pytest.raises(compiler.CompileError, match="int64 array"):
        compiler.run(b, np.ones((1, 1, 8, 8), np.int64))
    y = compiler.run(b, np.ones((1, 1, 8, 8), np.float64) / 2, progress=False)  # floats: computed in float32
    assert np.array_equal(y, compiler.run(b, np.ones((1, 1, 8, 8), np.float32) / 2, progress=False))


def test_python_api_type_checks():
    with pytest.raises(EncodeError, match=r"encode\(63\): expected an Opcode"):
        encode(63)
    cfg = PRESETS["tiny"]
    for bad in ([1.5], [encode(Opcode.NOP), "1"], [True]):
        with pytest.raises(ProgramError, match=r"word \d+ = .*: expected an integer instruction word"):
            Tile(cfg).run(bad)
    assert Tile(cfg).run([np.uint64(encode(Opcode.HALT))]).halted  # numpy integers are integers


def test_tile_json_every_field_or_a_base(tmp_path, capsys):
    full = PRESETS["tiny"].replace(name="mine").to_dict()
    partial = {k: v for k, v in full.items() if k not in ("adc_bits", "n_adcs")}
    with pytest.raises(ConfigError, match=r"missing fields adc_bits, n_adcs \(give every field, or \"base\""):
        TileConfig.from_dict(partial)
    based = TileConfig.from_dict({"base": "isaac", "name": "wide_adc", "adc_bits": 10})
    assert based == PRESETS["isaac"].replace(name="wide_adc", adc_bits=10)
    with pytest.raises(ConfigError, match=r"needs its own \"name\""):
        TileConfig.from_dict({"base": "isaac", "adc_bits": 10})
    with pytest.raises(ConfigError, match=r"TileConfig.base = 'huge': expected a preset name"):
        TileConfig.from_dict({"base": "huge", "name": "x"})
    p = tmp_path / "t.json"
    p.write_text(json.dumps(partial))
    onnx.save(conv_qdq(), tmp_path / "m.onnx")
    code = main(["compile", str(tmp_path / "m.onnx"), "--tile", str(p), "-o", str(tmp_path / "out")])
    one_line_error(code, capsys.readouterr().err, r"missing fields adc_bits, n_adcs")
    # the resolved configuration is printed by `cimtile report` and written into the bundle
    p.write_text(json.dumps({"base": "tiny", "name": "mine", "adc_bits": 6}))
    assert main(["compile", str(tmp_path / "m.onnx"), "--tile", str(p), "-o", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert load_config(str(tmp_path / "out" / "tile.json")) == PRESETS["tiny"].replace(name="mine", adc_bits=6)
    assert main(["report", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "tile config: rows=16 cols=16 cell_bits=2 dac_bits=1 adc_bits=6 n_adcs=2" in text
    assert main(["report", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tile_config"]["adc_bits"] == 6


def _actions(p):
    import argparse

    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sp in a.choices.values():
                yield from _actions(sp)
        else:
            yield p.prog, a


def test_cli_every_argument_has_help_and_tile_lists_presets(capsys):
    missing = [f"{prog} {a.dest}" for prog, a in _actions(parser()) if not a.help]
    assert not missing, missing
    with pytest.raises(SystemExit):
        main(["compile", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"a preset ({', '.join(PRESETS)})" in out
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("cimtile ")


def test_fixed_batch_model_names_the_batch(tmp_path, capsys):
    """A model exported for batch 2 that reshapes to (2, 64), run on 3 inputs: one line naming the step and
    the fixed batch size, not a NumPy traceback from the host op."""
    inits = {"xs": np.float32(1 / 64), "xz": np.uint8(0), "shape": np.array([2, 64], np.int64),
             "w": np.ones((64, 10), np.int8), "ws": np.float32(0.01), "wz": np.int8(0)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("Reshape", ["xd", "shape"], ["r"], name="flat"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("Gemm", ["r", "wd"], ["y"], name="fc")]
    g = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    assert main(["compile", str(tmp_path / "m.onnx"), "--tile", "tiny", "-o", str(tmp_path / "b")]) == 0
    x = _npy(tmp_path, "x.npy", np.zeros((3, 1, 8, 8), np.float32))
    code = main(["run", str(tmp_path / "b"), "--input", x, "-o", str(tmp_path / "y.npy")])
    one_line_error(code, capsys.readouterr().err, r"host step 'flat' \(Reshape\): .*fixed batch size of 2, input "
                   r"\[2, 1, 8, 8\], and the input has 3")
    assert not (tmp_path / "y.npy").exists()
    assert main(["run", str(tmp_path / "b"), "--input", _npy(tmp_path, "x2.npy", np.zeros((2, 1, 8, 8), np.float32)),
                 "-o", str(tmp_path / "y.npy")]) == 0
