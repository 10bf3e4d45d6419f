"""Benchmarks: one module per area (``bench/<area>.py`` with ``run() -> dict[str, float]``); ``bench/perf.py``
holds the RTL speed helpers ``bench/rtl.py`` and tests/test_hw_perf.py share.

``python -m bench [area ...]`` runs them, writes ``build/bench.json`` (a flat object of named
figures) and prints a table. A module may define ``GOALS: dict[str, str]`` (figure -> goal text,
e.g. ``"<= 25"``) for the table's goal column.
"""

#: Areas in the order they run; a missing module is skipped (its issue has not landed yet).
AREAS = ("golden", "rtl", "cosim", "regress", "compiler", "agreement", "devices", "training", "search", "mapping",
         "explore")
