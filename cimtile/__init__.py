"""cimtile: an RRAM computing-in-memory tile whose RTL, golden model, compiler and testbench agree bit for bit.

One import namespace. The repository keeps one top-level folder per part; packaging maps each into it:

==========================  =======================================================================
``cimtile.hw``              the specification (TileConfig, ISA, encodings, cycle formulas) and the RTL
``cimtile.sim``             the bit-exact, cycle-exact NumPy golden model
``cimtile.compiler``        quantized ONNX to microcode, weight images and a cycle report
``cimtile.tb``              cocotb on Verilator: the RTL against the golden model
``cimtile.zoo``             the offline data sets and small models the upper floors train
==========================  =======================================================================

Imports go one way: ``hw`` <- ``sim`` <- ``compiler`` <- the upper floors, with ``tb`` beside them as the
RTL backend.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("cimtile")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
