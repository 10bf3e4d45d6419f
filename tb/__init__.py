"""cocotb + Verilator co-simulation of the generated tile against the golden model.

``python -m cimtile.tb`` (``make sim``) runs the suite; :mod:`cimtile.tb.programs` (program generator),
:mod:`cimtile.tb.scoreboard` and :mod:`cimtile.tb.backend` (``run(cfg, words, feed, batch)`` on the RTL) are
importable without a simulator. See docs/cosim.md.
"""
