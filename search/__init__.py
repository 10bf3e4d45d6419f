"""Mixed-precision search on the tile's exact cycles: the cost API, CIM-AQ's formula, QAT and search agents.

:class:`CostModel` (exact per-layer tile cycles of a policy), :mod:`cimtile.search.cimaq` (the paper's latency
formula and its layer files), :func:`cimtile.search.run.search` (the search itself).
"""

from .cost import CostModel, CostResult, LayerCost, PolicyError, apply_policy, load_policy, quantize_weights

__all__ = ["CostModel", "CostResult", "LayerCost", "PolicyError", "apply_policy", "load_policy", "quantize_weights"]
