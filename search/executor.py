"""One small executor interface for evaluations: in-process (tests) or Ray (local by default, or a cluster).

``map(fn, items)`` returns ``[fn(x) for x in items]`` in order. Evaluations are seeded from their own inputs, so a
search's results for a seed do not depend on the executor or the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["Executor", "InProcessExecutor", "RayExecutor", "make_executor"]


class Executor:
    """Runs a function over items; results in the items' order."""

    workers = 1

    def map(self, fn: Callable, items: Sequence) -> list:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcessExecutor(Executor):
    """Evaluates one item after the other in this process."""

    def map(self, fn: Callable, items: Sequence) -> list:
        return [fn(x) for x in items]


class RayExecutor(Executor):
    """Ray tasks: a local Ray with ``workers`` CPUs, or the cluster at ``address``."""

    def __init__(self, workers: int = 2, address: str | None = None):
        import ray

        self._ray = ray
        self._own = not ray.is_initialized()
        if self._own:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        self.workers = workers

    def map(self, fn: Callable, items: Sequence) -> list:
        ray = self._ray
        task = ray.remote(num_cpus=1)(fn)
        return ray.get([task.remote(x) for x in items])

    def close(self) -> None:
        if self._own:
            self._ray.shutdown()


def make_executor(workers: int = 1, address: str | None = None) -> Executor:
    """In-process for one worker and no cluster; Ray otherwise."""
    if workers <= 1 and not address:
        return InProcessExecutor()
    return RayExecutor(max(workers, 1), address)
