"""Run the benchmarks: ``python -m bench [--strict] [--runs N] [--markdown] [area ...]``.

Writes build/bench.json and prints a table: figure, value (the range over runs with ``--runs``), goal,
verdict (``pass``, ``MISS``, blank for figures without a goal), then one line naming every missed goal.
Each area's 1-minute load average (``os.getloadavg()``, read when the area ends) is printed with it and
recorded as the figure ``load_avg_<area>``: timings taken on a loaded machine are not a quiet machine's.

Exit code: 1 when an area fails; with ``--strict`` also when a goal is missed (not used in CI: timings
on shared CI machines are noisy); 2 on a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import statistics
import sys
import traceback
from pathlib import Path

from bench import AREAS
from cimtile.errors import CimtileError

#: Next to the sources, wherever the command is run from.
OUT = Path(__file__).resolve().parent.parent / "build" / "bench.json"

_GOAL = re.compile(r"^\s*(<=|>=|<|>|==)\s*([-+0-9.eE]+)\s*$")


def verdict(value: float, goal: str) -> str:
    """``pass`` or ``MISS`` for a goal like ``"<= 25"`` / ``"> 1"``; ``""`` for ``"(reported)"`` or none."""
    m = _GOAL.match(goal or "")
    if not m:
        return ""
    op, bound = m.group(1), float(m.group(2))
    ok = {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound,
          "==": value == bound}[op]
    return "pass" if ok else "MISS"


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="Run cimtile's benchmarks (see bench/*.py).")
    p.add_argument("areas", nargs="*", metavar="area", help=f"areas to run (default all: {', '.join(AREAS)})")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed (not for CI: timings are "
                   "noisy on shared machines)")
    p.add_argument("--runs", type=int, default=1, help="run each area this many times; the table shows the range, "
                   "bench.json and the verdict the median (default 1)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (for docs)")
    return p


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    areas = a.areas or list(AREAS)
    unknown = [x for x in areas if x not in AREAS]
    if unknown:
        print(f"bench: unknown area {unknown[0]!r} (areas: {', '.join(AREAS)})", file=sys.stderr)
        return 2
    if a.runs < 1:
        print("bench: --runs must be at least 1", file=sys.stderr)
        return 2
    samples: dict[str, list[float]] = {}
    goals: dict[str, str] = {}
    loads: dict[str, list[float]] = {}
    ran = []
    failed: list[str] = []
    for area in areas:
        if importlib.util.find_spec(f"bench.{area}") is None:
            print(f"bench: no bench/{area}.py yet, skipping {area}")
            continue
        got_area: dict[str, list[float]] = {}
        for run in range(a.runs):
            print(f"== {area}" + (f" (run {run + 1} of {a.runs})" if a.runs > 1 else "")
                  + f"  [load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs]", flush=True)
            try:
                mod = importlib.import_module(f"bench.{area}")
                got = mod.run()
            except CimtileError as e:  # bad input (a setting, a file): its one-line message, no traceback
                print(f"bench: {area} failed: {e}", file=sys.stderr)
                failed.append(area)
                got_area = {}
                break
            except Exception as e:  # one broken area must not hide the others' figures
                traceback.print_exc()  # a bug in the area's bench, not bad input: show where
                print(f"bench: {area} failed: {type(e).__name__}: {e}", file=sys.stderr)
                failed.append(area)
                got_area = {}
                break
            for k, v in got.items():
                got_area.setdefault(k, []).append(float(v))
            loads.setdefault(area, []).append(os.getloadavg()[0])
        if not got_area:
            continue
        clash = sorted(set(got_area) & set(samples))
        if clash:
            print(f"bench: figure {clash[0]!r} reported by two areas", file=sys.stderr)
            return 1
        samples.update(got_area)
        goals.update(getattr(mod, "GOALS", {}))
        ran.append(area)
    if not ran:
        print("bench: no benchmark area ran", file=sys.stderr)
        return 1
    figures = {k: statistics.median(v) for k, v in samples.items()}
    for area in ran:
        figures[f"load_avg_{area}"] = max(loads[area])
        samples[f"load_avg_{area}"] = loads[area]
        goals[f"load_avg_{area}"] = "(machine load)"
    # A partial run (named areas) keeps the other areas' figures from the previous full run.
    old = {}
    if a.areas and OUT.exists():
        try:
            old = json.loads(OUT.read_text())
        except json.JSONDecodeError:
            old = {}
    merged = {**old, **figures}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")

    rows = []
    for k in figures:
        vs = samples[k]
        shown = _fmt(vs[0]) if _fmt(min(vs)) == _fmt(max(vs)) else f"{_fmt(min(vs))} - {_fmt(max(vs))}"
        rows.append((k, shown, goals.get(k, ""), verdict(figures[k], goals.get(k, ""))))
    missed = [(k, figures[k], goals[k]) for k, *_, v in rows if v == "MISS"]
    print()
    if a.markdown:
        print("| figure | value | goal | verdict |")
        print("| --- | --- | --- | --- |")
        for r in rows:
            print(f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]} |")
    else:
        w = max(len(r[0]) for r in rows)
        wv = max(12, max(len(r[1]) for r in rows))
        wg = max(4, max(len(r[2]) for r in rows))
        print(f"{'figure':<{w}}  {'value':>{wv}}  {'goal':<{wg}}  verdict")
        print(f"{'-' * w}  {'-' * wv}  {'-' * wg}  -------")
        for r in rows:
            print(f"{r[0]:<{w}}  {r[1]:>{wv}}  {r[2]:<{wg}}  {r[3]}".rstrip())
    n_goals = sum(1 for r in rows if r[3])
    print()
    if missed:
        print(f"missed {len(missed)} of {n_goals} goals: "
              + "; ".join(f"{k} = {_fmt(v)} (goal {g})" for k, v, g in missed))
    else:
        print(f"all {n_goals} goals met")
    print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT} ({len(merged)} figures)")
    if failed:
        print(f"bench: failed areas: {', '.join(failed)}", file=sys.stderr)
        return 1
    if missed and a.strict:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
