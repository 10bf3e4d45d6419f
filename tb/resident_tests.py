"""cocotb module behind :class:`cimtile.train.resident.RtlBackend`: one simulator process serves program
requests (``req-NNNNNN.pkl`` in ``CIMTILE_SERVE_DIR``) in order, keeping the tile's state between them,
until a request says stop. Each answer is ``res-NNNNNN.pkl`` holding the RunResult (or an error)."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import cocotb

from .backend import merge, split_feed
from .backend_tests import _run_one
from .testbench import TB

#: Seconds the server waits for the next request before it gives up (the client died).
IDLE_TIMEOUT = float(os.environ.get("CIMTILE_SERVE_IDLE", "1800"))


@cocotb.test()
async def serve(dut):
    """Serve requests until a stop request (or IDLE_TIMEOUT without one)."""
    d = Path(os.environ["CIMTILE_SERVE_DIR"])
    tb = TB(dut, test="resident")
    await tb.start()
    n = 0
    while True:
        req = d / f"req-{n:06d}.pkl"
        t0 = time.monotonic()
        delay = 0.001
        # Blocking the simulator while waiting is intended: nothing in the design runs meanwhile.
        while not req.exists():
            if time.monotonic() - t0 > IDLE_TIMEOUT:
                raise RuntimeError(f"no request {n} within {IDLE_TIMEOUT:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        spec = pickle.loads(req.read_bytes())
        if spec.get("stop"):
            break
        words, feed, batch = spec["words"], spec["feed"], spec["batch"]
        try:
            # Batch elements run one after another without a reset: the resident state carries on.
            results = [await _run_one(tb, words, split_feed(tb.cfg, words, feed, batch, e)) for e in range(batch)]
            res = merge(results)
            res.cycles = results[0].cycles
            out = {"result": res}
        except Exception as e:
            out = {"error": f"{type(e).__name__}: {e}"}
        tmp = d / f"res-{n:06d}.tmp"
        tmp.write_bytes(pickle.dumps(out))
        os.replace(tmp, d / f"res-{n:06d}.pkl")
        n += 1
    tb.record("PASS")
