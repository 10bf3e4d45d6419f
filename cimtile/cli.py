"""The ``cimtile`` command: one parser, whose verbs each part registers (``register(subparsers)``).

Every error a user can cause is one line on stderr (``cimtile: error: ...``) with exit code 1; usage errors
exit 2 (argparse). A part adds its verbs by listing its ``cli`` module in :data:`PARTS`; each verb sets
``func`` (called with the parsed arguments, returning the exit code). Heavy imports happen inside the verbs,
so ``cimtile --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import CimtileError

__all__ = ["PARTS", "main", "parser"]

#: Modules whose ``register(subparsers)`` adds verbs, in the order ``cimtile --help`` lists them.
PARTS = ("cimtile.compiler.cli", "cimtile.train.cli", "cimtile.search.cli", "cimtile.explore.cli")


def parser() -> argparse.ArgumentParser:
    """The whole ``cimtile`` argument parser."""
    p = argparse.ArgumentParser(prog="cimtile", description="cimtile: an RRAM computing-in-memory tile's "
                                "compiler, golden model, RTL co-simulation and the systems built on them")
    p.add_argument("--version", action="version", version=f"cimtile {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name in PARTS:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cimtile`` console script; returns the exit code (and exits with it from a shell)."""
    args = parser().parse_args(argv)
    try:
        code = args.func(args)
    except CimtileError as e:
        print(f"cimtile: error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("cimtile: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # pragma: no cover - e.g. `cimtile disasm OUT | head`
        code = 0
    if argv is None:
        sys.exit(code)
    return code
