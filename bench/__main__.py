"""Run the benchmarks: ``python -m bench [area ...]``; writes build/bench.json and prints a table."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import traceback
from pathlib import Path

from bench import AREAS

#: Next to the sources, wherever the command is run from.
OUT = Path(__file__).resolve().parent.parent / "build" / "bench.json"


def main(argv: list[str]) -> int:
    areas = argv or list(AREAS)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        print(f"bench: unknown area {unknown[0]!r} (areas: {', '.join(AREAS)})", file=sys.stderr)
        return 2
    figures: dict[str, float] = {}
    goals: dict[str, str] = {}
    ran = []
    failed: list[str] = []
    for area in areas:
        if importlib.util.find_spec(f"bench.{area}") is None:
            print(f"bench: no bench/{area}.py yet, skipping {area}")
            continue
        print(f"== {area}", flush=True)
        try:
            mod = importlib.import_module(f"bench.{area}")
            got = mod.run()
        except Exception as e:  # one broken area must not hide the others' figures
            traceback.print_exc()  # a bug in the area's bench, not bad input: show where
            print(f"bench: {area} failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(area)
            continue
        clash = sorted(set(got) & set(figures))
        if clash:
            print(f"bench: figure {clash[0]!r} reported by two areas", file=sys.stderr)
            return 1
        figures.update({k: float(v) for k, v in got.items()})
        goals.update(getattr(mod, "GOALS", {}))
        ran.append(area)
    if not ran:
        print("bench: no benchmark area ran", file=sys.stderr)
        return 1
    # A partial run (named areas) keeps the other areas' figures from the previous full run.
    old = {}
    if argv and OUT.exists():
        try:
            old = json.loads(OUT.read_text())
        except json.JSONDecodeError:
            old = {}
    merged = {**old, **figures}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")

    w = max(len(k) for k in figures)
    print()
    print(f"{'figure':<{w}}  {'value':>12}  goal")
    print(f"{'-' * w}  {'-' * 12}  ----")
    for k, v in figures.items():
        print(f"{k:<{w}}  {v:>12.4g}  {goals.get(k, '')}")
    print(f"\nwrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT} ({len(merged)} figures)")
    if failed:
        print(f"bench: failed areas: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
