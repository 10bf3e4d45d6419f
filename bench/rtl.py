"""RTL figures: ADC utilisation on isaac (the layer program with multi-vector MVM and REQ, and beside it
the loop of single-vector ones it replaces), MVM cycles over the ADC bound, VAU step vs per-cell, and the
ECP5 synthesis of tiny (post-route Fmax, LUTs; Fmax with every port on a pin, the goal's figure, and in the
``harness`` flow, inside registers on 4 pins) and isaac (LUTs).

Synthesis is slow (minutes): tiny's ``synth.json`` under ``build/tiny`` made from the same Verilog with the
default flow (``hw.build.synth(..., reuse=True)``, keyed by the Verilog's hash, the flow
``hw.build.DEFAULT_SYNTH_FLOW``, the seed and the target) is reused, and so is the ``harness`` flow's under
``build/tiny/harness``. isaac is larger than the
LFE5U-85F that place and route targets, and a flattened yosys run of it takes longer than the CI machine
allows, so its LUTs are the sum of its per-component area (``hw.build.area``: each module synthesised alone,
with the flows of ``hw.build.PRESET_AREA_FLOWS``), which reuses the rows of the modules whose Verilog is
unchanged since the ``area.json`` under ``build/isaac``.
"""

from __future__ import annotations

from cimtile.hw.build import PRESET_AREA_FLOWS, area, synth
from cimtile.hw.params import PRESETS

from bench.perf import layer_utilisation, measure_mvm_cycles, vau_step_vs_cellwise
from cimtile.paths import build_dir

#: Goals of issue 3.
GOALS = {
    "rtl_adc_utilization": ">= 0.98",
    "rtl_adc_utilization_loop_program": "(reported)",
    "rtl_adc_utilization_with_io": "(reported)",
    "rtl_mvm_cycles_over_bound": "(reported)",
    "rtl_mvm_cycles_above_bound_max": "<= 4",
    "vau_step_vs_cellwise": "> 1",
    "rtl_fmax_tiny_mhz": ">= 100",
    "rtl_fmax_tiny_harness_mhz": "(reported)",
    "rtl_late_endpoints_tiny": "(reported; 0 at 100 MHz)",
    "rtl_luts_tiny": "(reported)",
    "rtl_luts_isaac": "(reported; per-component sum)",
}


def _variant():
    # The second configuration of tests/test_hw_tile.py: 2-bit DAC, 3 ADCs of 2 cycles, row groups
    # of 5, differential pairs converted once.
    return PRESETS["tiny"].replace(name="variant", dac_bits=2, n_adcs=3, adc_cycles=2, rows_per_conv=5,
                                   weight_encoding="differential-analog", rq_lanes=3, bus_bits=128,
                                   loop_depth=2)


def run() -> dict[str, float]:
    isaac = PRESETS["isaac"]
    util, cycles, busy = layer_utilisation(isaac, vectors=64)
    print(f"rtl: isaac layer of 64 vectors (one MVM and one REQ of count=64): {busy} conversion cycles of {cycles}"
          f" ({util:.2%})")
    loop_util, loop_cycles, _ = layer_utilisation(isaac, vectors=64, counted=False)
    print(f"rtl: the loop program it replaces (an MVM and a REQ per vector): {busy} of {loop_cycles} ({loop_util:.2%})")
    util_io, cycles_io, _ = layer_utilisation(isaac, vectors=64, load=True)
    print(f"rtl: the counted program with weight and input loads and output reads: {busy} of {cycles_io}"
          f" ({util_io:.2%})")
    worst, worst_shape, worst_over = 0.0, None, 0
    for cfg in (PRESETS["tiny"], _variant()):
        for shape, mvm, bound in measure_mvm_cycles(cfg):
            ratio = mvm / bound
            if ratio > worst:
                worst, worst_shape = ratio, (cfg.name, shape, mvm, bound)
            worst_over = max(worst_over, mvm - bound)
    print(f"rtl: worst MVM/bound {worst:.3f} at {worst_shape} (cfg, (wbits, abits, wsigned, asigned, rows, cols),"
          f" cycles, bound); most cycles over the bound: {worst_over}")
    vau = vau_step_vs_cellwise(isaac)
    tiny = synth(PRESETS["tiny"], build_dir("tiny"), reuse=True)
    print(f"rtl: tiny on {tiny['device']} (flow {tiny['flow']}, seed {tiny.get('seed', 1)}): {tiny['luts']} LUTs, "
          f"{tiny['ffs']} FFs, {tiny['brams']} BRAMs, {tiny['dsps']} DSPs, {tiny['fmax_mhz']} MHz (critical path "
          f"{tiny['critical_from']} -> {tiny['critical_to']}); {tiny.get('late_endpoints', '?')} of "
          f"{tiny.get('endpoints', '?')} timing endpoints later than 10 ns (hw.build slack)")
    harness = synth(PRESETS["tiny"], build_dir("tiny") / "harness", reuse=True, flow="harness")
    print(f"rtl: tiny inside the harness's registers (flow harness, seed {harness['seed']}): {harness['fmax_mhz']} MHz "
          f"(critical path {harness['critical_from']} -> {harness['critical_to']}); {harness['late_endpoints']} of "
          f"{harness['endpoints']} timing endpoints later than 10 ns")
    flow, flows = PRESET_AREA_FLOWS["isaac"]
    parts = area(isaac, build_dir("isaac"), reuse=True, jobs=2, flow=flow, flows=flows)
    big = {k: sum(row[k] for row in parts.values()) for k in ("luts", "ffs", "brams", "dsps")}
    print(f"rtl: isaac (yosys, per component, summed): {big['luts']} LUTs, {big['ffs']} FFs, {big['brams']} BRAMs, "
          f"{big['dsps']} DSPs")
    return {
        "rtl_fmax_tiny_mhz": round(float(tiny["fmax_mhz"]), 1),
        "rtl_fmax_tiny_harness_mhz": round(float(harness["fmax_mhz"]), 1),
        "rtl_luts_tiny": float(tiny["luts"]),
        # a synth.json from before the endpoint map has no count: run synth again (no figure is made up)
        **({"rtl_late_endpoints_tiny": float(tiny["late_endpoints"])} if "late_endpoints" in tiny else {}),
        "rtl_luts_isaac": float(big["luts"]),
        "rtl_adc_utilization": round(util, 4),
        "rtl_adc_utilization_loop_program": round(loop_util, 4),
        "rtl_adc_utilization_with_io": round(util_io, 4),
        "rtl_mvm_cycles_over_bound": round(worst, 4),
        "rtl_mvm_cycles_above_bound_max": float(worst_over),
        "vau_step_vs_cellwise": round(vau, 1),
    }
