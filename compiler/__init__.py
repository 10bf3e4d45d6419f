"""cimtile compiler: quantised ONNX in, tile microcode out, run on the golden model or the RTL.

Python API (the CLI's verbs): :func:`compile_model`, :func:`run`, :func:`report`, :func:`disasm`, :func:`load`.
"""

from .api import compile_model, disasm, load, report, run, save
from .bundle import Bundle
from .errors import CompileError
from .runtime import RunStats

__all__ = ["Bundle", "CompileError", "RunStats", "compile_model", "disasm", "load", "report", "run", "save"]
