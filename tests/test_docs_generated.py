"""Figures and tables in the docs come from scripts the docs name, and the generated files are current."""

from __future__ import annotations

import re
from pathlib import Path

from cimtile.hw import config_doc

ROOT = Path(__file__).resolve().parent.parent


def test_tile_config_doc_is_current():
    """docs/tile-config.md equals `python -m cimtile.hw.config_doc` (`make docs` after changing hw/params.py)."""
    assert (ROOT / "docs" / "tile-config.md").read_text() == config_doc.markdown()


def test_generated_blocks_name_their_script_and_are_filled():
    blocks = 0
    for doc in ("README.md", "docs/compiler.md", "docs/microarchitecture.md"):
        text = (ROOT / doc).read_text()
        for name, cmd, body in re.findall(r"<!-- generated: (\S+) \((.*?)\) -->\n(.*?)<!-- end: \1 -->", text, re.S):
            assert cmd.startswith(("python examples/digits_end_to_end.py", "python bench/mapping.py",
                                   "python -m cimtile.hw.build report",
                                   "python -m cimtile.hw.build flows",
                                   "python -m cimtile.hw.build slack")), (doc, name)
            assert body.count("\n|") >= 3, (doc, name)  # a table was written, not an empty block
            blocks += 1
    assert blocks == 18
