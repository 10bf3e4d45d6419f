"""The search's evaluation journal: every finished evaluation, one JSON line each, keyed by everything its result
depends on (model, data, tile, seeds, epochs, device, policy). An interrupted search rerun on the same output
directory replays its agent (agents are deterministic for a seed) and takes every evaluation it already finished
from the journal instead of repeating it; the results being the same numbers, the agent takes the same path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["Journal", "job_key"]

#: bumped whenever an evaluation's result would change for the same job (a journal of another version is ignored)
VERSION = 1


def job_key(job: dict) -> str:
    """The journal key of an evaluation job (a SHA-256 of its canonical JSON)."""
    text = json.dumps({"journal_version": VERSION, **job}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Journal:
    """Finished evaluations in ``path`` (appended as they finish), and read-only ones from ``also`` (e.g. the
    journal of a finished search in the same output directory)."""

    def __init__(self, path: str | Path, also=()):
        self.path = Path(path)
        self._done: dict[str, dict] = {}
        self._mine: set[str] = set()
        for p in (*also, self.path):
            p = Path(p)
            if p.is_file():
                keys = self._load(p)
                if p == self.path:
                    self._mine |= keys
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, 2)
                cut = f.read(1) != b"\n"
            if cut:  # the last line was cut short by an interruption: start the next record on a line of its own
                with open(self.path, "a") as f:
                    f.write("\n")

    def _load(self, p: Path) -> set[str]:
        keys = set()
        for line in p.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption: that evaluation is run again
            if isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("result"), dict):
                self._done[rec["key"]] = rec["result"]
                keys.add(rec["key"])
        return keys

    def __len__(self) -> int:
        return len(self._done)

    def get(self, job: dict) -> dict | None:
        """The journalled result of ``job`` (a copy), or None. A result found only in ``also`` is copied into
        this journal, so it stays complete."""
        k = job_key(job)
        r = self._done.get(k)
        if r is None:
            return None
        if k not in self._mine:
            self._write(k, job, r)
        return json.loads(json.dumps(r))

    def add(self, job: dict, result: dict) -> None:
        """Record a finished evaluation (written and flushed at once)."""
        k = job_key(job)
        self._done[k] = json.loads(json.dumps(result))
        self._write(k, job, result)

    def _write(self, k: str, job: dict, result: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"key": k, "job": job, "result": result}) + "\n")
            f.flush()
        self._mine.add(k)
