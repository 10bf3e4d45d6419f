"""The base of every error cimtile reports to a user: one line that names the culprit and what was expected."""

from __future__ import annotations

__all__ = ["CimtileError", "one_line"]


def one_line(message: object) -> str:
    """``message`` with its white space folded, so that it prints as one line."""
    return " ".join(str(message).split())


class CimtileError(Exception):
    """An error caused by what the user gave us (a file, a value, a configuration), not by a bug.

    Its message is one line; the ``cimtile`` command prints it as ``cimtile: error: <message>`` and exits 1.
    Every part's own error type (``ConfigError``, ``CompileError``, ``ProgramError``, ...) derives from it, so
    callers can catch the whole family at once.
    """

    def __init__(self, message: object = ""):
        super().__init__(one_line(message))
