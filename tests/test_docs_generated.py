"""Figures and tables in the docs come from scripts the docs name, and the generated files are current."""

from __future__ import annotations

import re
import subprocess
import sys
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
    assert blocks == 35


def test_mapping_figures_block_is_current():
    """docs/compiler.md's mapping-figures block equals the output of the command its header names, run as written
    from the repository's root (the tile's cycle and tile counts; the row comparing with onnxruntime is left out:
    its figure depends on the CPU's int8 kernels). Fails when a cycle formula changes and the block is not
    regenerated, and when the documented command no longer runs."""
    text = (ROOT / "docs" / "compiler.md").read_text()
    cmd, body = re.search(r"<!-- generated: mapping-figures \((.*?)\) -->\n(.*?)<!-- end: mapping-figures -->",
                          text, re.S).groups()
    argv = cmd.split()
    assert argv[0] == "python"
    run = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]

    def rows(s: str) -> list[str]:
        return [line for line in s.splitlines() if line.startswith("|") and "onnxruntime" not in line]

    assert rows(run.stdout) == rows(body)
