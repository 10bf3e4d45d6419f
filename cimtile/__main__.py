"""``python -m cimtile``: the same as the ``cimtile`` command."""

from .cli import main

main()
