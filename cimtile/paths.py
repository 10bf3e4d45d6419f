"""Where cimtile writes what it builds (Verilog, Verilator models, synthesis results, benchmark JSON, caches)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_dir"]


def build_dir(*parts: str) -> Path:
    """``$CIMTILE_BUILD_DIR`` (default ``build`` in the current directory) joined with ``parts``, absolute.

    From the repository (``make ...``) this is ``build/``, as before; an installed cimtile run elsewhere
    builds beside the user's work rather than inside site-packages.
    """
    return Path(os.environ.get("CIMTILE_BUILD_DIR", "build")).resolve().joinpath(*parts)
