"""The compiler's one error type: a one-line message naming the node, its op and why."""

from __future__ import annotations

__all__ = ["CompileError"]


class CompileError(ValueError):
    """Bad input for the compiler or the runtime (unsupported op, float model, layer that cannot fit...).

    The message is one line; the CLI prints it as ``cimtile: error: <message>`` and exits non-zero.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def node_error(name: str, op: str, why: str) -> CompileError:
    """The standard message: ``node 'NAME' (OP): WHY``."""
    return CompileError(f"node {name!r} ({op}): {why}")
