"""``make regress`` / ``python -m cimtile.tb --regress N``: constrained-random programs on the RTL
(Verilator) against the golden model, at volume.

The N programs are spread over the configurations (``tiny``, ``isaac`` and :data:`VARIANT` by
default) and cut into batches; each batch is one simulator process (cocotb's start-up costs ~0.3 s,
a program a few milliseconds), and ``jobs`` processes run at once. Seeds are fixed by the first
seed and N, whatever the number of jobs. Every failure is reported with its seed and a one-line
rerun command.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cimtile.hw.params import PRESETS, TileConfig, load_config

from cimtile import progress

from . import runner

__all__ = ["VARIANT", "RegressResult", "default_configs", "run_regress"]

MODULE = "cimtile.tb.regress_tests"

#: A third configuration whose parameters differ from both presets' wherever the RTL has a
#: parameter-dependent path: 2-bit DAC, 3 ADCs of 2 cycles each, row groups of 5, differential
#: analog weights, 3 requantisation lanes, a 128-bit bus, two loop levels.
VARIANT = PRESETS["tiny"].replace(name="variant", dac_bits=2, n_adcs=3, adc_cycles=2, rows_per_conv=5,
                                  weight_encoding="differential-analog", rq_lanes=3, bus_bits=128, loop_depth=2)


def default_configs() -> list[TileConfig]:
    return [PRESETS["tiny"], PRESETS["isaac"], VARIANT]


def resolve(name: str | TileConfig) -> TileConfig:
    """A preset, a JSON file, or ``variant``."""
    if isinstance(name, str) and name == "variant":
        return VARIANT
    return load_config(name)


@dataclass
class RegressResult:
    programs: int
    seconds: float
    failures: list[dict] = field(default_factory=list)  # {config, seed, report, rerun}
    per_config: dict[str, int] = field(default_factory=dict)
    instructions: int = 0
    cycles: int = 0
    crashed: list[str] = field(default_factory=list)  # batches whose simulator produced no result

    @property
    def ok(self) -> bool:
        return not self.failures and not self.crashed


def _batches(n: int, configs: list[TileConfig], first_seed: int, batch: int) -> list[tuple[TileConfig, int, int]]:
    """(configuration, first seed, count) of every batch: program i runs on configuration
    ``i % len(configs)`` with seed ``first_seed + i`` -- independent of the number of jobs."""
    per = {c.name: [] for c in configs}
    for i in range(n):
        per[configs[i % len(configs)].name].append(first_seed + i)
    out = []
    by_name = {c.name: c for c in configs}
    for name, seeds in per.items():
        # Consecutive seeds of one configuration are len(configs) apart: batch them as runs.
        k = len(configs)
        for j in range(0, len(seeds), batch):
            chunk = seeds[j:j + batch]
            out.append((by_name[name], chunk[0], len(chunk), k))
    return out


def run_regress(n: int, configs: list[TileConfig] | None = None, *, first_seed: int = 0, jobs: int = 2,
                batch: int = 200, mutation: str | None = None, waves: bool = False) -> RegressResult:
    """Run ``n`` random programs (seeds ``first_seed`` ... ``first_seed + n - 1``) on the RTL."""
    configs = configs or default_configs()
    t0 = time.perf_counter()
    for c in configs:  # build first (serially: a first build takes minutes and its own cores)
        runner.build(c, mutation=mutation, waves=waves)
    todo = _batches(n, configs, first_seed, batch)
    res = RegressResult(n, 0.0)

    def one(item):
        cfg, first, count, step = item
        b = runner.build(cfg, mutation=mutation, waves=waves)
        # a directory of this process's own (runner.run_dir): two regressions may run at once
        with runner.run_dir(b.build_dir / "regress", f"{first}-{step}x{count}") as d:
            out = d / "regress.json"
            out.unlink(missing_ok=True)
            runner.run(b, MODULE, test_dir=d, log_file=d / "sim.log", waves=waves,
                       extra_env={"CIMTILE_REGRESS": f"{first}:{count}:{step}", "CIMTILE_REGRESS_OUT": str(out)})
        return cfg, first, count, d, (json.loads(out.read_text()) if out.exists() else None)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex, \
            progress.bar(total=n, desc="regress", unit="program") as bar:
        for cfg, first, count, d, r in ex.map(one, todo):
            bar.update(count)
            res.per_config[cfg.name] = res.per_config.get(cfg.name, 0) + count
            if r is None:
                res.crashed.append(f"{cfg.name} seeds from {first}: the simulator wrote no result; see {d / 'sim.log'}")
                continue
            res.instructions += r["instructions"]
            res.cycles += r["cycles"]
            for f in r["failures"]:
                res.failures.append({"config": cfg.name, **f})
    res.seconds = time.perf_counter() - t0
    return res


def format_result(res: RegressResult) -> str:
    lines = []
    for f in res.failures:
        lines.append(f"FAILED {f['config']} seed {f['seed']}: rerun with: {f['rerun']}")
        lines.append("  " + f["report"].replace("\n", "\n  "))
    lines += [f"CRASHED {c}" for c in res.crashed]
    per = ", ".join(f"{k} {v}" for k, v in res.per_config.items())
    lines.append(f"regress: {res.programs - len(res.failures)}/{res.programs} programs match the golden model "
                 f"({per}); {res.instructions:,} instructions, {res.cycles:,} cycles in {res.seconds:.1f} s "
                 f"({res.programs / max(res.seconds, 1e-9):.1f} programs/s)")
    return "\n".join(lines)
