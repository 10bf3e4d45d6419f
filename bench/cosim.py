"""Co-simulation speed: simulated clock cycles per second of the RTL under cocotb + Verilator.

The figure is measured on the layer-sized program (``tb.programs.conv_layer_program``: a
convolution layer's MVMs with requantisation in hardware loops, ~72k cycles) on the ``tiny``
preset: clock cycles the model ran (program load, execution and stalls) divided by the wall time
from ``go`` to ``tb_done`` as Python sees it (file staging and read-back included).
"""

from __future__ import annotations

GOALS = {"cosim_cycles_per_s": ">= 400000"}


def run() -> dict[str, float]:
    from cimtile.tb.suite import run_suite

    res = run_suite(["tiny"], tests=r"\.layer_conv$", jobs=1)
    rec = next((r for r in res.records if r["test"] == "layer_conv"), None)
    if rec is None or rec["result"] != "PASS":
        print("bench.cosim: layer_conv did not pass on tiny; see", res.logs.get("tiny"))
    rate = next((m["value"] for m in res.metrics if m["name"] == "layer_cycles_per_s"), float("nan"))
    print(f"bench.cosim: layer program on tiny at {rate:,.0f} simulated cycles/s")
    return {"cosim_cycles_per_s": float(rate)}


if __name__ == "__main__":
    print(run())
