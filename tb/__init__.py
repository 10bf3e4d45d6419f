"""cocotb + Verilator co-simulation of the generated tile against the golden model.

``python -m tb`` (``make sim``) runs the suite; :mod:`tb.programs` (program generator),
:mod:`tb.scoreboard` and :mod:`tb.backend` (``run(cfg, words, feed, batch)`` on the RTL) are
importable without a simulator. See docs/cosim.md.
"""
