"""One small executor interface for evaluations: in-process (tests) or Ray (local by default, or a cluster).

``map(fn, items, on_result)`` returns ``[fn(x) for x in items]`` in order and calls ``on_result(i, result)`` as each
item finishes (the search journals every finished evaluation at once, so an interrupted search loses none).
Evaluations are seeded from their own inputs, so a search's results for a seed do not depend on the executor or
the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["Executor", "InProcessExecutor", "RayExecutor", "make_executor"]


class Executor:
    """Runs a function over items; results in the items' order."""

    workers = 1

    def map(self, fn: Callable, items: Sequence, on_result: Callable | None = None) -> list:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcessExecutor(Executor):
    """Evaluates one item after the other in this process."""

    def map(self, fn: Callable, items: Sequence, on_result: Callable | None = None) -> list:
        out = []
        for i, x in enumerate(items):
            out.append(fn(x))
            if on_result is not None:
                on_result(i, out[-1])
        return out


class RayExecutor(Executor):
    """Ray tasks: a local Ray with ``workers`` CPUs, or the cluster at ``address``.

    A local Ray started here runs its workers at the driver's priority (niceness 0): Ray's default
    (``RAY_worker_niceness`` = 15) leaves the evaluations, which are the whole of the work while the
    driver waits, a small share of a machine with anything else running (a search on a 2-core machine
    beside a build ran about ten times slower). Set ``RAY_worker_niceness`` yourself to choose another.
    """

    def __init__(self, workers: int = 2, address: str | None = None):
        import os

        import ray

        self._ray = ray
        self._own = not ray.is_initialized()
        if self._own:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                nice = "RAY_worker_niceness"
                had = os.environ.get(nice)
                os.environ.setdefault(nice, "0")  # read by the raylet ray.init starts
                try:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
                finally:
                    if had is None:
                        os.environ.pop(nice, None)
        self.workers = workers

    def map(self, fn: Callable, items: Sequence, on_result: Callable | None = None) -> list:
        ray = self._ray
        task = ray.remote(num_cpus=1)(fn)
        refs = [task.remote(x) for x in items]
        where = {r: i for i, r in enumerate(refs)}
        out: list = [None] * len(refs)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for r in ready:
                out[where[r]] = ray.get(r)
                if on_result is not None:
                    on_result(where[r], out[where[r]])
        return out

    def close(self) -> None:
        if self._own:
            self._ray.shutdown()


def make_executor(workers: int = 1, address: str | None = None) -> Executor:
    """In-process for one worker and no cluster; Ray otherwise."""
    if workers <= 1 and not address:
        return InProcessExecutor()
    return RayExecutor(max(workers, 1), address)
