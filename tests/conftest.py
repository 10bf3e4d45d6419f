"""Shared pytest configuration: deterministic hypothesis runs in CI, shared fixtures."""

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# -- onnxruntime as an oracle ------------------------------------------------------------------------------------
# onnxruntime's uint8 x int8 integer kernels (MLAS) on x86-64 CPUs without VNNI (AVX2, or AVX-512 without
# AVX512_VNNI) multiply-add pairs of products into saturating 16-bit lanes (vpmaddubsw), so QLinearConv,
# QLinearMatMul, QGemm and the models quantised with them return codes that differ from the ONNX definition
# (onnx.reference agrees with the golden model within one code where onnxruntime is 36 codes off). There the
# tests that take onnxruntime's integer results as the oracle are skipped, with this reason; on CPUs with VNNI
# (where onnxruntime computes exact sums) they run. The probe: one QLinearMatMul whose pair sums exceed int16.
_ORT_ORACLE_TESTS = {
    "test_integer_ops_equal_onnxruntime": "qlinear", "test_other_tile_configs_stay_exact": "qlinear",
    "test_padding_forms_equal_onnxruntime": "QLinear", "test_separable_block_equals_onnxruntime": "QInt8",
    "test_long_rows_on_tiny_fit_one_program": "", "test_cli_compile_run_report_disasm": "",
    "test_asymmetric_qlinear_conv_within_one_step": "", "test_relu6_clip_folds_into_on_tile_requantisation": "",
    "test_minus_128_correction_before_on_tile_requantisation": "", "test_digits_cli_end_to_end": "",
    "test_digits_equal_oracle": "", "test_qgemm_variants_match_onnxruntime": "",
    "test_qoperator_residual_cnn_matches_onnxruntime": "", "test_vit_quantized_by_onnxruntime_matches": "",
    "test_dynamo_export_cnn": "", "test_dynamo_export_vit": "",
}


def _ort_u8s8_saturates() -> bool:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((2, 1), 127, np.int8)  # 2 x 255 x 127 = 64,770, over int16's 32,767
    inits = [numpy_helper.from_array(np.array(s, np.float32), n) for n, s in (("sa", 1.0), ("sb", 1.0), ("sy", 512.0))]
    inits += [numpy_helper.from_array(np.array(0, np.uint8), "za"), numpy_helper.from_array(np.array(0, np.int8), "zb"),
              numpy_helper.from_array(np.array(0, np.uint8), "zy"), numpy_helper.from_array(w, "w")]
    node = helper.make_node("QLinearMatMul", ["x", "sa", "za", "w", "sb", "zb", "sy", "zy"], ["y"])
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 9
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        y = sess.run(None, {"x": np.full((1, 2), 255, np.uint8)})[0]
    except Exception:  # a probe that cannot run says nothing: the tests run
        return False
    return int(y.ravel()[0]) != round(2 * 255 * 127 / 512)  # 127 exact; 64 from a saturated pair sum


def pytest_collection_modifyitems(config, items):
    import pytest

    chosen = [it for it in items if it.originalname in _ORT_ORACLE_TESTS
              and _ORT_ORACLE_TESTS[it.originalname] in it.name]
    if chosen and _ort_u8s8_saturates():
        mark = pytest.mark.skip(reason="onnxruntime's u8s8 kernels saturate on this CPU (no VNNI): not an oracle here "
                                       "(tests/conftest.py)")
        for it in chosen:
            it.add_marker(mark)

    # Longest first: pytest-xdist hands tests out in collection order, so a test of minutes collected late
    # leaves one worker running it alone at the end. The co-simulations (Verilator builds of minutes) go
    # first, the longest of them in this order (a CI-sized run, tests/test_cosim.py); the order is stable.
    first = ("test_cosim_isaac", "test_pgo_build_is_trained_on_the_layer_program", "test_cosim_variant",
             "test_training_run_replays_on_rtl_step_for_step", "test_cosim_mutant_is_caught", "test_waves_are_fst")
    items.sort(key=lambda it: first.index(it.originalname) if it.originalname in first
               else len(first) + (0 if it.get_closest_marker("cosim") else 1))


@pytest.fixture(scope="session")
def tiny_verilog():
    """tiny's Verilog as ``hw.build.generate`` writes it (tile.v, tile.json), generated once per test run: the
    co-simulation's cached copy (``tb.runner.model_verilog``). A function copying both files into a given
    directory, where a test may write beside them; it returns the copy of tile.v."""
    from cimtile.hw.params import PRESETS
    from cimtile.tb import runner

    src, _ = runner.model_verilog(PRESETS["tiny"])

    def copy_to(dest):
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("tile.v", "tile.json"):
            shutil.copyfile(src.parent / name, dest / name)
        return dest / "tile.v"

    return copy_to
