"""Benchmarks: one module per area (``bench/<area>.py`` with ``run() -> dict[str, float]``); ``bench/perf.py``
holds the RTL speed helpers ``bench/rtl.py`` and tests/test_hw_perf.py share.

``python -m bench [area ...]`` runs them, writes ``build/bench.json`` (a flat object of named
figures) and prints a table. A module may define ``GOALS: dict[str, str]`` (figure -> goal text,
e.g. ``"<= 25"``) for the table's goal column.
"""

#: Areas in the order they run; a missing module is skipped (its issue has not landed yet).
AREAS = ("golden", "rtl", "cosim", "regress", "compiler", "agreement", "devices", "training", "search", "mapping",
         "models", "explore", "multivector")


def area_main(run, markdown, argv: list[str]) -> None:
    """``python -m bench.<area>`` of an area with a ``markdown(figures)`` table: runs the area (or, with
    ``--json``, reads the figures of the last ``python -m bench`` run from build/bench.json), then prints the
    docs' tables (``--markdown``) or one figure a line."""
    if "--json" in argv:
        import json
        from pathlib import Path

        f = json.loads((Path(__file__).resolve().parent.parent / "build" / "bench.json").read_text())
    else:
        f = run()
    if "--markdown" in argv:
        print(markdown(f), end="")
    else:
        for k, v in f.items():
            print(f"{k}: {v:.4g}")
