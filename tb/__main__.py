"""``python -m cimtile.tb``: the RTL co-simulation suite (``make sim``); prints the summary table."""

from __future__ import annotations

import argparse
import sys

from cimtile.hw.params import ConfigError

from .runner import SimBuildError
from .suite import SIM_CONFIGS, format_table, run_mutant, run_suite


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cimtile.tb",
                                 description="cocotb + Verilator: RTL against the golden model")
    ap.add_argument("--tests", default="", help="regular expression over test names (e.g. 'random|layer')")
    ap.add_argument("--config", default="", help="comma-separated presets, JSON files or `variant` "
                    "(default tiny,isaac,variant, also with --regress)")
    ap.add_argument("--seed", default="", help="seed for the random tests (each prints the one it used)")
    ap.add_argument("--waves", action="store_true", help="dump FST waves (separate build with tracing)")
    ap.add_argument("--jobs", type=int, default=2, help="configurations simulated in parallel (default 2)")
    ap.add_argument("--no-mutant", action="store_true", help="skip the mutated-design check")
    ap.add_argument("--regress", type=int, default=0, metavar="N",
                    help="instead of the suite: N constrained-random programs (seeds SEED.. SEED+N-1, default "
                         "SEED 0) over --config (default here tiny,isaac,variant), batched per simulator process")
    ap.add_argument("--batch", type=int, default=200, help="programs per simulator process with --regress")
    a = ap.parse_args(argv)
    if a.regress:
        return _regress(a)
    from .regress import resolve

    a.config = a.config or ",".join(SIM_CONFIGS)
    try:
        configs = [resolve(c.strip()) for c in a.config.split(",") if c.strip()]
        seed = int(a.seed) if str(a.seed).strip() else None
    except (ConfigError, ValueError) as e:
        print(f"python -m cimtile.tb: {e}", file=sys.stderr)
        return 2
    tests = a.tests or None
    try:
        res = run_suite(configs, tests, seed, a.waves, a.jobs)
        records = list(res.records)
        mutant_line = ""
        if not a.no_mutant and tests is None and not a.waves:
            caught, mres = run_mutant(configs[0], "shift_add")
            n_fail = sum(r["result"] != "PASS" for r in mres.records)
            records.append({"test": "mutant shift_add is caught", "config": configs[0].name + "+shift_add",
                            "instructions": sum(r["instructions"] for r in mres.records),
                            "cycles": sum(r["cycles"] for r in mres.records),
                            "sim_seconds": sum(r.get("sim_seconds", 0.0) for r in mres.records),
                            "result": "PASS" if caught else "FAIL",
                            "report": "" if caught else "the mutated design passed every test"})
            mutant_line = f"mutant shift_add: {n_fail} of {len(mres.records)} tests fail on it (expected: > 0)"
    except SimBuildError as e:
        print(f"python -m cimtile.tb: {e}", file=sys.stderr)
        return 1
    print()
    print(format_table(records))
    seeds = sorted({(r["test"], r["seed"]) for r in records if r.get("seed") is not None})
    if seeds:
        print("random tests and their seeds (rerun one with TESTS=<test> SEED=<seed>): "
              + ", ".join(f"{t} {s}" for t, s in seeds))
    for m in res.metrics:
        print(f"{m['config']}: {m['name']} = {m['value']:,.0f}")
    if mutant_line:
        print(mutant_line)
    if a.waves:
        for name, log in res.logs.items():
            waves = sorted(log.parent.glob("dump.*"))
            for w in waves:
                print(f"waves ({name}): {w}  (open with: gtkwave {w})")
    failed = [r for r in records if r["result"] != "PASS"]
    for r in failed:
        print()
        print(f"FAILED {r['test']} on {r['config']}")
        if r.get("report"):
            print(r["report"])
    if failed:
        print()
        for name, log in res.logs.items():
            print(f"simulator log ({name}): {log}")
    print(f"\n{len(records) - len(failed)}/{len(records)} passed in {res.seconds:.1f} s")
    return 1 if failed or not records else 0


def _regress(a) -> int:
    from .regress import format_result, resolve, run_regress

    try:
        names = [c.strip() for c in (a.config or ",".join(SIM_CONFIGS)).split(",") if c.strip()]
        configs = [resolve(c) for c in names]
        seed = int(a.seed) if str(a.seed).strip() else 0
        if a.regress < 0 or a.batch < 1:
            raise ValueError("--regress and --batch must be positive")
    except (ConfigError, ValueError) as e:
        print(f"python -m cimtile.tb: {e}", file=sys.stderr)
        return 2
    try:
        res = run_regress(a.regress, configs, first_seed=seed, jobs=a.jobs, batch=a.batch, waves=a.waves)
    except SimBuildError as e:
        print(f"python -m cimtile.tb: {e}", file=sys.stderr)
        return 1
    print(format_result(res))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
