"""search.cimaq and ``cimtile cost``: CIM-AQ's layer files, its latency formula (the paper's 2.482x on VGG-16) and
the tile's exact cycles from shapes alone."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest
from cimtile.search.cimaq import LayerFileError, formula_latency, load_layers, parse_int_expr, tile_cost_from_shapes
from cimtile.search.cost import CostModel, load_policy
from onnx import TensorProto, helper, numpy_helper

from cimtile.cli import main

DATA = files("cimtile.search") / "data"
VGG = str(DATA / "vgg16_imagenet.yaml")
VGG_POLICY = str(DATA / "vgg16_cimaq_policy.json")


def test_vgg16_paper_policy_gives_2_482():
    layers = load_layers(VGG)
    assert len(layers) == 16 and [L.type for L in layers].count("Conv2D") == 13
    pol = load_policy(VGG_POLICY)
    ratio = sum(formula_latency(layers, [(8, 8)] * 16)) / sum(formula_latency(layers, pol))
    assert round(ratio, 3) == 2.482


def test_cost_cli_formula_json(capsys):
    assert main(["cost", VGG, "--policy", VGG_POLICY, "--hw", "cimaq-formula", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert round(out["speedup"], 3) == 2.482 and len(out["layers"]) == 16


def test_policy_npy(tmp_path, capsys):
    p = tmp_path / "p.npy"
    np.save(p, np.array(load_policy(VGG_POLICY)))
    assert main(["cost", VGG, "--policy", str(p)]) == 0
    assert "speedup 2.482x" in capsys.readouterr().out


@pytest.mark.parametrize("text,value", [("64*3*3", 576), ("(2+3)*4", 20), ("10//3", 3), (7, 7)])
def test_int_expr(text, value):
    assert parse_int_expr(text) == value


@pytest.mark.parametrize("text", ["__import__('os')", "2**10", "1.5", "a*3", "1/0", True])
def test_int_expr_rejects(text):
    with pytest.raises(LayerFileError):
        parse_int_expr(text)


@pytest.mark.parametrize("doc,msg", [("[1, 2", "not YAML"), ("foo: 1", "layer_dimensions"),
                                     ("layer_dimensions:\n  - {type: Conv3D, output_dim: 1, input_dim: 1}", "Conv3D"),
                                     ("layer_dimensions:\n  - {type: Dense, output_dim: 4}", "missing input_dim"),
                                     ("layer_dimensions:\n  - {type: Dense, output_dim: 0, input_dim: 3}", "at least"),
                                     ("layer_dimensions:\n  - !!python/object:os.system {}", "not YAML")])
def test_bad_layer_file(tmp_path, capsys, doc, msg):
    f = tmp_path / "l.yaml"
    f.write_text(doc)
    pol = tmp_path / "p.json"
    pol.write_text("[[8, 8]]")
    assert main(["cost", str(f), "--policy", str(pol)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cimtile: error:") and msg in err and err.count("\n") == 1


@pytest.mark.parametrize("pol,msg", [("[[8, 8]]", "1 layers"), ('{"a": 1}', "pairs"), ("[[8, 1]]" * 1, "outside")])
def test_bad_policy_file(tmp_path, capsys, pol, msg):
    p = tmp_path / "p.json"
    p.write_text(pol)
    assert main(["cost", VGG, "--policy", str(p)]) == 1
    assert msg in capsys.readouterr().err


def _mlp(K=60, H=40, N=10, positions=1):
    """A two-layer QDQ MatMul model (integer input codes) with worst-case weights (all +127)."""
    nodes, inits = [], []

    def c(a, n):
        inits.append(numpy_helper.from_array(np.asarray(a), n))
        return n

    nodes.append(helper.make_node("DequantizeLinear", ["x", c(np.float32(0.1), "xs"), c(np.uint8(0), "xz")], ["xd"]))
    nodes.append(helper.make_node("DequantizeLinear", [c(np.full((K, H), 127, np.int8), "w1"),
                                                       c(np.float32(0.01), "s1"),
                                                       c(np.int8(0), "z1")], ["w1d"]))
    nodes.append(helper.make_node("MatMul", ["xd", "w1d"], ["h"], name="l1"))
    nodes.append(helper.make_node("Relu", ["h"], ["hr"]))
    nodes.append(helper.make_node("QuantizeLinear", ["hr", c(np.float32(0.5), "hs"), c(np.uint8(0), "hz")], ["hq"]))
    nodes.append(helper.make_node("DequantizeLinear", ["hq", "hs", "hz"], ["hd"]))
    nodes.append(helper.make_node("DequantizeLinear", [c(np.full((H, N), 127, np.int8), "w2"),
                                                       c(np.float32(0.01), "s2"),
                                                       c(np.int8(0), "z2")], ["w2d"]))
    nodes.append(helper.make_node("MatMul", ["hd", "w2d"], ["y"], name="l2"))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, positions, K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, positions, N])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("tile", ["tiny", "isaac", "cimaq"])
def test_shapes_equal_compiled_worst_case(tmp_path, tile):
    """From shapes alone (worst-case weights) = the exact cost of a compiled model whose weights are the worst case."""
    f = tmp_path / "l.yaml"
    f.write_text("layer_dimensions:\n  - {type: Dense, output_dim: 40, input_dim: 3*20, mvm_invocations: 5}\n"
                 "  - {type: Dense, output_dim: 10, input_dim: 40, mvm_invocations: 5}\n"
                 "  - {type: MatMul, output_dim: 7, input_dim: 3, mvm_invocations: 2, repeat_factor: 2}\n")
    layers = load_layers(f)
    cm = CostModel(_mlp(positions=5), tile)
    rng = np.random.default_rng(1)
    for _ in range(3):
        pol = [tuple(int(v) for v in p) for p in rng.integers(2, 9, (2, 2))]
        shp = tile_cost_from_shapes(layers, pol + [(8, 8)], tile)
        ex = cm.query(pol, "worst")
        for s, e in zip(shp, ex.layers):
            assert (s["cycles"], s["program_cycles"], s["adc_conversions"], s["xbar_tiles"]) == \
                (e.cycles, e.program_cycles, e.adc_conversions, e.xbar_tiles)
        assert shp[2]["cycles"] == 0 and shp[2]["host_macs"] == 2 * 2 * 3 * 7


def test_cost_cli_onnx_exact(tmp_path, capsys):
    """``cimtile cost MODEL.onnx --hw PRESET`` prints the cost API's exact figures (reference weights)."""
    import onnx

    f = tmp_path / "m.onnx"
    onnx.save(_mlp(positions=3), f)
    p = tmp_path / "p.json"
    p.write_text("[[4, 5], [3, 2]]")
    assert main(["cost", str(f), "--policy", str(p), "--hw", "isaac", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = CostModel(_mlp(positions=3), "isaac").query([(4, 5), (3, 2)])
    assert out["total"]["cycles"] == r.totals["cycles"]
    assert [x["cycles"] for x in out["layers"]] == [x.cycles for x in r.layers]
    assert main(["cost", str(f), "--policy", str(p)]) == 1
    assert "needs a CIM-AQ layer file" in capsys.readouterr().err


def test_search_cli_bad_model(tmp_path, capsys):
    assert main(["search", "--model", "alexnet", "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "model 'alexnet'" in err and err.count("\n") == 1
