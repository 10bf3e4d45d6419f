"""The co-simulation suite: build every configuration, run the cocotb tests, tabulate the results.

``python -m cimtile.tb`` (``make sim``) and the pytest launchers (tests/test_cosim*.py) both call
:func:`run_suite`; configurations are built and simulated in parallel threads (each simulation is
its own process).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cimtile.hw.params import TileConfig, load_config

from . import runner

__all__ = ["MODULE", "MUTANT_TESTS", "SIM_CONFIGS", "SuiteResult", "format_table", "run_mutant", "run_suite"]

#: The cocotb test module of the suite.
MODULE = "cimtile.tb.tile_tests"
#: ``make sim``'s configurations (and ``make regress``'s): the two presets with digital differential weights
#: and ``variant`` (tb.regress.VARIANT: differential-analog weights, 2-bit DAC, 3 ADCs of 2 cycles, row groups
#: of 5, ...), without which a bug in the analog pair path (mutant ``diff_column_index``) is invisible.
SIM_CONFIGS = ("tiny", "isaac", "variant")
#: Tests a mutated design is run against (fast ones that exercise the shift-and-add).
MUTANT_TESTS = r"\.(bit_widths|signed_inputs|random_programs/style=small)"


@dataclass
class SuiteResult:
    records: list[dict]
    metrics: list[dict]
    seconds: float
    logs: dict[str, Path]

    @property
    def ok(self) -> bool:
        return bool(self.records) and all(r["result"] == "PASS" for r in self.records)


def _one(cfg: TileConfig, tests: str | None, seed: int | None, waves: bool, mutation: str | None = None,
         tag: str = "run", legacy: bool = False) -> tuple[list[dict], list[dict], Path]:
    b = runner.build(cfg, mutation=mutation, waves=waves, legacy=legacy)
    with runner.run_dir(b.build_dir, tag) as test_dir:  # this process's own: runs of other processes go on
        log = test_dir / "sim.log"
        sr = runner.run(b, MODULE, testcase=tests, seed=seed, test_dir=test_dir, log_file=log, waves=waves)
        metrics_file = test_dir / "records.jsonl.metrics"
        metrics = []
        if metrics_file.exists():
            metrics = [json.loads(x) for x in metrics_file.read_text().splitlines() if x.strip()]
            metrics_file.unlink()
    return sr.records, metrics, log


def run_suite(configs: list[str | TileConfig], tests: str | None = None, seed: int | None = None,
              waves: bool = False, jobs: int = 2, legacy: bool = False) -> SuiteResult:
    """Run the suite (optionally filtered by the regular expression ``tests``) on each configuration.
    ``legacy``: on the former build of the testbench (:func:`cimtile.tb.runner.build`), for speed baselines."""
    cfgs = [load_config(c) for c in configs]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        futs = [ex.submit(_one, c, tests, seed, waves, None, "run", legacy) for c in cfgs]
        outs = [f.result() for f in futs]
    records = [r for o in outs for r in o[0]]
    metrics = [m for o in outs for m in o[1]]
    logs = {c.name: o[2] for c, o in zip(cfgs, outs)}
    if tests and not records:
        records.append({"test": f"(no test matches {tests!r})", "config": ",".join(c.name for c in cfgs),
                        "instructions": 0, "cycles": 0, "sim_seconds": 0.0, "result": "FAIL", "report": ""})
    return SuiteResult(records, metrics, time.perf_counter() - t0, logs)


def run_mutant(config: str | TileConfig = "tiny", mutation: str = "shift_add") -> tuple[bool, SuiteResult]:
    """Build a deliberately broken design and run the suite's fast tests on it.

    Returns (caught, result): caught is True when at least one test failed with a mismatch
    report (not a crash of the testbench itself).
    """
    cfg = load_config(config)
    t0 = time.perf_counter()
    recs, metrics, log = _one(cfg, MUTANT_TESTS, None, False, mutation=mutation, tag="mutant")
    res = SuiteResult(recs, metrics, time.perf_counter() - t0, {cfg.name + "+" + mutation: log})
    caught = any(r["result"] != "PASS" and "MISMATCH" in r.get("report", "") for r in recs)
    return caught, res


def format_table(records: list[dict]) -> str:
    """The summary table: test, configuration, instructions, simulated cycles, cycles per second, result."""
    head = ("test", "config", "instructions", "sim cycles", "cycles/s", "result")
    rows = []
    for r in records:
        rate = r["cycles"] / r["sim_seconds"] if r.get("sim_seconds") else 0.0
        rows.append((r["test"], r["config"], f"{r['instructions']:,}", f"{r['cycles']:,}",
                     f"{rate:,.0f}" if rate else "-", r["result"]))
    tot_c = sum(r["cycles"] for r in records)
    tot_s = sum(r.get("sim_seconds", 0.0) for r in records)
    rows.append(("TOTAL", "", f"{sum(r['instructions'] for r in records):,}", f"{tot_c:,}",
                 f"{tot_c / tot_s:,.0f}" if tot_s else "-",
                 f"{sum(r['result'] == 'PASS' for r in records)}/{len(records)} pass"))
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    right = {2, 3, 4}

    def fmt(row):
        cells = enumerate(zip(row, widths))
        return "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w) for i, (v, w) in cells)

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(head), sep] + [fmt(r) for r in rows[:-1]] + [sep, fmt(rows[-1])])
