"""``make regress`` throughput: constrained-random programs per second on the RTL (Verilator) against
the golden model, per configuration, with 2 simulator processes at once, and the projected wall time
of 10,000 programs spread evenly over tiny, isaac and the variant (goal: 20 minutes on 2 cores).

Baseline in the same run: one program per simulator process (``batch=1``) on tiny, which is what a
test-per-program driver pays (cocotb's start-up per process).
"""

from __future__ import annotations

GOALS = {"regress_10k_minutes": "<= 20"}

#: (configuration, programs measured).
SIZES = (("tiny", 200), ("isaac", 40), ("variant", 200))


def run() -> dict[str, float]:
    from cimtile.tb.regress import resolve, run_regress

    out: dict[str, float] = {}
    per_program_s = []
    for name, n in SIZES:
        cfg = resolve(name)
        run_regress(2, [cfg], first_seed=0, jobs=1, batch=2)  # build (or reuse) outside the timing
        res = run_regress(n, [cfg], first_seed=50_000, jobs=2, batch=max(1, n // 2))
        if not res.ok:
            print(f"bench.regress: {len(res.failures)} of {n} programs failed on {name}")
        out[f"regress_programs_per_s_{name}"] = n / res.seconds
        per_program_s.append(res.seconds / n)
    base = run_regress(8, [resolve("tiny")], first_seed=50_000, jobs=2, batch=1)
    out["regress_programs_per_s_tiny_unbatched"] = 8 / base.seconds
    out["regress_10k_minutes"] = 10_000 / len(SIZES) * sum(per_program_s) / 60
    return out


if __name__ == "__main__":
    print(run())
