"""RTL speed figures: ADC utilisation on isaac, MVM cycles over the ADC bound, VAU step vs per-cell."""

from __future__ import annotations

from cimtile.hw.params import PRESETS

from bench.perf import layer_utilisation, measure_mvm_cycles, vau_step_vs_cellwise

#: Goals of issue 3.
GOALS = {
    "rtl_adc_utilization": ">= 0.95",
    "rtl_adc_utilization_with_io": "(reported)",
    "rtl_mvm_cycles_over_bound": "(reported)",
    "rtl_mvm_cycles_above_bound_max": "<= 4",
    "vau_step_vs_cellwise": "> 1",
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
    print(f"rtl: isaac layer of 64 vectors (MVM + REQ each): {busy} conversion cycles of {cycles}")
    util_io, cycles_io, _ = layer_utilisation(isaac, vectors=64, load=True)
    print(f"rtl: the same with weight and input loads and output reads: {busy} of {cycles_io}")
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
    return {
        "rtl_adc_utilization": round(util, 4),
        "rtl_adc_utilization_with_io": round(util_io, 4),
        "rtl_mvm_cycles_over_bound": round(worst, 4),
        "rtl_mvm_cycles_above_bound_max": float(worst_over),
        "vau_step_vs_cellwise": round(vau, 1),
    }
