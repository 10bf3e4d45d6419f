"""cocotb test of ``make regress``: many constrained-random programs in one simulator process.

A simulator process costs ~0.3 s to start, a program a few milliseconds: so one process runs a
whole batch of seeds (``CIMTILE_REGRESS=<first seed>:<count>:<seed step>``). Every program starts from the
power-on state (the reset program), so a failing seed reproduces on its own; a mismatch does not
stop the batch: every failing seed is recorded with its report and a one-line rerun command.
"""

from __future__ import annotations

import json
import os

import cocotb
from cimtile.tb.programs import random_program
from cimtile.tb.testbench import TB, TestFailure

#: The program length (top-level items) of the regression's programs.
LENGTH = 30


def rerun_line(config: str, seed: int) -> str:
    """The command that reruns one regression program (from the power-on state, with waves)."""
    return f"python -m cimtile.tb --regress 1 --seed {seed} --config {config} --waves"


@cocotb.test()
async def regress(dut):
    first, count, step = (int(x) for x in os.environ["CIMTILE_REGRESS"].split(":"))
    tb = TB(dut, test="regress")
    await tb.start()
    tb.seed = first
    tb.expect_failure = True  # collect every failing seed instead of stopping at the first
    failures = []
    for seed in range(first, first + count * step, step):
        p = random_program(tb.cfg, seed, length=LENGTH)
        tb.rerun = rerun_line(tb.cfg.name, seed)
        try:
            await tb.power_on_state()
            await tb.execute(p, what=f"program seed {seed}", dump=True)
        except TestFailure as e:
            failures.append({"seed": seed, "report": str(e), "rerun": tb.rerun})
    out = os.environ.get("CIMTILE_REGRESS_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({"config": tb.label, "first": first, "count": count, "failures": failures,
                       "instructions": tb.instructions, "cycles": tb.sim_cycles}, f)
    tb.expect_failure = False
    if failures:
        tb.record("FAIL", "\n".join(f"seed {x['seed']}: rerun with `{x['rerun']}`" for x in failures))
        raise TestFailure(f"{len(failures)} of {count} programs differ from the golden model")
    tb.record("PASS")
