"""``make regress`` at CI size: 180 constrained-random programs on the RTL (Verilator)
against the golden model, over tiny, isaac and the variant configuration, batched per simulator process."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.cosim, pytest.mark.slow]


def test_regress_small():
    """A small farm: N programs over tiny, isaac and variant (180; 60 in CI-sized runs, in two batches per job)."""
    from cimtile.tb.regress import default_configs, format_result, run_regress
    from helpers import ci_size

    n = ci_size(180, 60)
    res = run_regress(n, default_configs(), first_seed=100_000, jobs=2, batch=n // 6)
    print(format_result(res))
    assert sum(res.per_config.values()) == n and len(res.per_config) == 3
    assert res.instructions > n * 20  # the programs did run
    assert res.ok, format_result(res)


def test_regress_batches_do_not_depend_on_jobs():
    """Program i runs on configuration i % 3 with seed first + i, whatever the batch size."""
    from cimtile.tb.regress import _batches, default_configs

    cfgs = default_configs()
    def seeds(batch):
        return sorted((c.name, s + k * step) for c, s, n, step in _batches(50, cfgs, 7, batch) for k in range(n))
    assert seeds(4) == seeds(50) == sorted((cfgs[i % 3].name, 7 + i) for i in range(50))
