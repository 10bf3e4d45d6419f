"""The compiler's one error type: a one-line message naming the node, its op and why."""

from __future__ import annotations

from cimtile.errors import CimtileError

__all__ = ["CompileError"]


class CompileError(CimtileError, ValueError):
    """Bad input for the compiler or the runtime (unsupported op, float model, layer that cannot fit...).

    The message is one line; the CLI prints it as ``cimtile: error: <message>`` and exits non-zero.
    """


def node_error(name: str, op: str, why: str) -> CompileError:
    """The standard message: ``node 'NAME' (OP): WHY``."""
    return CompileError(f"node {name!r} ({op}): {why}")
