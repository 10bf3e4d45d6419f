"""Co-simulation speed: simulated clock cycles per second of the RTL under cocotb + Verilator.

The figures are measured on the layer-sized program (``tb.programs.conv_layer_program``: a
convolution layer's MVMs with requantisation in hardware loops; ~72k cycles on ``tiny``, ~148k on
``isaac``): clock cycles the model ran (program load, execution and stalls) divided by the time
from ``go`` to ``tb_done`` as Python sees it (file staging and read-back included).

Two clocks: wall time (``cosim_cycles_per_s*``, the issue's figure; on a shared machine it depends on
the other jobs) and the CPU time of the simulator process (``*_per_cpu_s*``: the model, cocotb and
Python run in that one process, so this is the speed the model would have on an idle core).

On ``isaac`` the same program also runs on the former build of the testbench (``legacy``: top-level
inputs not registered, see :func:`cimtile.tb.wrapper.render`; ``tb.runner.LEGACY_BUILD_ARGS`` and
``LEGACY_OPT``; BLAS threads not limited), built in ``<sim dir>/isaac-legacy/`` from the current RTL, in
the same run: ``cosim_speedup_isaac`` is the ratio of CPU-time rates.
"""

from __future__ import annotations

GOALS = {"cosim_cycles_per_s": ">= 400000", "cosim_cycles_per_s_isaac": ">= 500000",
         "cosim_cycles_per_cpu_s_isaac": "(reported)", "cosim_legacy_cycles_per_cpu_s_isaac": "(reported)",
         "cosim_speedup_isaac": "(reported)"}


def _layer(config: str, legacy: bool = False) -> tuple[float, float]:
    """(cycles per wall second, cycles per CPU second) of ``layer_conv`` on ``config``."""
    from cimtile.tb.suite import run_suite

    res = run_suite([config], tests=r"\.layer_conv$", jobs=1, legacy=legacy)
    rec = next((r for r in res.records if r["test"] == "layer_conv"), None)
    what = f"{config}{' (legacy build)' if legacy else ''}"
    if rec is None or rec["result"] != "PASS":
        print(f"bench.cosim: layer_conv did not pass on {what}; see", res.logs.get(config))
    m = {x["name"]: x["value"] for x in res.metrics}
    wall, cpu = m.get("layer_cycles_per_s", float("nan")), m.get("layer_cycles_per_cpu_s", float("nan"))
    print(f"bench.cosim: layer program on {what}: {wall:,.0f} simulated cycles/s, {cpu:,.0f} per CPU second")
    return float(wall), float(cpu)


def run() -> dict[str, float]:
    tiny, _ = _layer("tiny")
    old_wall, old_cpu = _layer("isaac", legacy=True)
    wall, cpu = _layer("isaac")
    return {"cosim_cycles_per_s": tiny, "cosim_cycles_per_s_isaac": wall, "cosim_cycles_per_cpu_s_isaac": cpu,
            "cosim_legacy_cycles_per_s_isaac": old_wall, "cosim_legacy_cycles_per_cpu_s_isaac": old_cpu,
            "cosim_speedup_isaac": cpu / old_cpu}


def layer_on_build(build_dir: str, config: str) -> tuple[float, float]:
    """(cycles per wall second, cycles per CPU second) of ``layer_conv`` on an existing Verilator build of
    ``config`` in ``build_dir``, run as is (no rebuild, whatever the current hw/ sources): for A/B
    comparisons of two RTL versions, e.g. a copy of main's ``build/sim/isaac`` against this branch's."""
    import json
    import tempfile
    from pathlib import Path

    from cimtile.hw.params import load_config
    from cimtile.tb import runner
    from cimtile.tb.suite import MODULE

    b = runner.Build(load_config(config), Path(build_dir), False, None, False, 0.0)
    with tempfile.TemporaryDirectory() as d:
        runner.run(b, MODULE, testcase=r"\.layer_conv$", test_dir=Path(d), log_file=Path(d) / "sim.log")
        mf = Path(d) / "records.jsonl.metrics"
        m = {x["name"]: x["value"] for x in map(json.loads, mf.read_text().splitlines())} if mf.exists() else {}
    return float(m.get("layer_cycles_per_s", float("nan"))), float(m.get("layer_cycles_per_cpu_s", float("nan")))


def _ab(argv: list[str]) -> int:
    """``python -m bench.cosim --ab CONFIG DIR_A DIR_B [ROUNDS]``: the two builds alternately, per CPU second."""
    import os

    config, dirs, rounds = argv[0], argv[1:3], int(argv[3]) if len(argv) > 3 else 2
    for r in range(rounds):
        for d in dirs:
            wall, cpu = layer_on_build(d, config)
            print(f"bench.cosim: round {r + 1} {d}: {wall:,.0f} simulated cycles/s, {cpu:,.0f} per CPU second "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--ab"]:
        sys.exit(_ab(sys.argv[2:]))
    print(run())
