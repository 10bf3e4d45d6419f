"""``make mutate`` / ``python -m cimtile.tb.mutate``: which test suites kill each named mutant of the RTL.

Suites:

- ``pytest``: ``make test``'s RTL tests on the Amaranth simulator (``tests/test_hw_tile.py`` and the
  multi-vector MVM's and REQ's directed ``tests/test_hw_mvm_count.py`` and ``tests/test_hw_req_count.py``,
  the mutant selected through
  ``CIMTILE_MUTANT``), stopped at the first failure;
- ``sim``: ``make sim``'s cocotb suite over ``make sim``'s configurations (``tb.suite.SIM_CONFIGS``: tiny,
  then the differential-analog variant, then isaac), one Verilator build of the mutated design per
  configuration, stopped at the first configuration on which a test fails;
- ``regress``: ``make regress`` programs (``--regress-n`` of them) on ``tiny`` and the variant.

A mutant is killed by a suite when some test of it fails; the table says which test failed first, and a
summary line per suite says how many mutants it killed (the goal: every mutant, by each suite on its own).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from .mutants import MUTANTS

SUITES = ("pytest", "sim", "regress")
ROOT = Path(__file__).resolve().parents[1]


def run_pytest(name: str, jobs: int) -> tuple[bool, str]:
    env = dict(os.environ, CIMTILE_MUTANT=name)
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "not mutation",
           "-n", str(jobs), "tests/test_hw_tile.py", "tests/test_hw_mvm_count.py",
           "tests/test_hw_req_count.py"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", r.stdout, re.M)
    if failed:  # with -x under xdist pytest exits 2 (interrupted) after the first failure
        return True, failed[0].split("::")[-1]
    if r.returncode != 0:
        return False, f"pytest exit {r.returncode}: {(r.stdout + r.stderr).strip().splitlines()[-1:]}"
    return False, "every test passed"


def sim_order() -> list:
    """``make sim``'s configurations, cheapest first (isaac's Verilator build of a mutant costs minutes)."""
    from .regress import resolve
    from .suite import SIM_CONFIGS

    cfgs = [resolve(c) for c in SIM_CONFIGS]
    return sorted(cfgs, key=lambda c: c.rows * c.cols)


def run_sim(name: str) -> tuple[bool, str]:
    from .suite import _one

    ran = []
    for cfg in sim_order():
        recs, _, _ = _one(cfg, None, None, False, mutation=name, tag="mutate")
        # Killed means a test reported a mismatch with the golden model; a test that crashed (a testbench or
        # environment error) kills nothing.
        failed = [r["test"] for r in recs if r["result"] != "PASS" and "MISMATCH" in r.get("report", "")]
        if failed:
            return True, f"{failed[0]} on {cfg.name} (+{len(failed) - 1} more)"
        crashed = [r["test"] for r in recs if r["result"] != "PASS"]
        ran.append(f"{len(recs)} on {cfg.name}" + (f", {len(crashed)} crashed without a mismatch" if crashed else ""))
    return False, "no test reported a mismatch (" + ", ".join(ran) + ")"


def run_regress_suite(name: str, n: int, jobs: int) -> tuple[bool, str]:
    from cimtile.hw.params import PRESETS

    from .regress import VARIANT, run_regress

    res = run_regress(n, [PRESETS["tiny"], VARIANT], first_seed=0, jobs=jobs, batch=max(1, n // (2 * jobs)),
                      mutation=name)
    bad = res.failures
    return bool(bad or res.crashed), (f"{len(bad)} of {n} programs differ (first: {bad[0]['config']} seed "
                                      f"{bad[0]['seed']})" if bad else f"0 of {n} programs differ")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cimtile.tb.mutate", description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", default=",".join(MUTANTS), help="comma-separated names (default: all)")
    ap.add_argument("--suites", default="pytest,sim", help=f"comma-separated among {', '.join(SUITES)}")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--regress-n", type=int, default=300, help="programs of the regress suite")
    a = ap.parse_args(argv)
    names = [x.strip() for x in a.mutants.split(",") if x.strip()]
    suites = [x.strip() for x in a.suites.split(",") if x.strip()]
    bad = [x for x in names if x not in MUTANTS] + [s for s in suites if s not in SUITES]
    if bad:
        print(f"python -m cimtile.tb.mutate: unknown mutant or suite: {', '.join(bad)}", file=sys.stderr)
        return 2
    rows, survived = [], 0
    kills = dict.fromkeys(suites, 0)
    for name in names:
        row = [name]
        for s in suites:
            t0 = time.perf_counter()
            if s == "pytest":
                killed, how = run_pytest(name, a.jobs)
            elif s == "sim":
                killed, how = run_sim(name)
            else:
                killed, how = run_regress_suite(name, a.regress_n, a.jobs)
            survived += not killed
            kills[s] += killed
            row.append(f"{'killed' if killed else 'SURVIVED'} ({how}; {time.perf_counter() - t0:.0f} s)")
            print(f"{name} / {s}: {row[-1]}", flush=True)
        rows.append(row)
    print()
    print("| mutant | what | " + " | ".join(suites) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in suites) + " |")
    for row in rows:
        print(f"| `{row[0]}` | {MUTANTS[row[0]].what} | " + " | ".join(row[1:]) + " |")
    total = len(names) * len(suites)
    print()
    for s in suites:
        print(f"{s}: {kills[s]}/{len(names)} mutants killed" + ("" if kills[s] == len(names) else " (NOT all)"))
    print(f"{total - survived}/{total} (mutant, suite) pairs killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
