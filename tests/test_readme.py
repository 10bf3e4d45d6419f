"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_examples():
    assert BLOCKS


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, capsys):
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "False" not in out and "True" in out  # the examples print their own checks


def _commands(section: str) -> list[str]:
    """The shell commands of the first plain code block after the README heading ``section``."""
    body = README.split(f"## {section}\n", 1)[1]
    block = re.search(r"```\n(.*?)```", body, flags=re.S).group(1)
    return [ln.split("  #")[0].strip() for ln in block.splitlines() if ln.strip()]


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_readme_command_sequence(tmp_path):
    """The README's compile-and-run commands, run as written (from a directory holding the repository's
    examples/ and the environment's .venv/): each succeeds, and no step overwrites a file that it does not
    name as its output (``y.npy`` keeps the labels, ``x.npy`` the images)."""
    import os
    import subprocess
    import sys

    import numpy as np
    from cimtile.zoo import data

    cmds = _commands("Compile and run a quantized ONNX model")
    assert cmds[0].startswith(".venv/bin/python examples/digits_end_to_end.py build/digits")
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "examples").symlink_to(root / "examples")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = dict(os.environ, CI="true")
    env.pop("CIMTILE_BUILD_DIR", None)
    work = tmp_path / "build" / "digits"
    for cmd in cmds:
        before = _files(work) if work.exists() else {}
        p = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert p.returncode == 0, f"{cmd}: {p.stderr[-2000:]}"
        assert "Traceback" not in p.stderr, cmd
        after = _files(work)
        m = re.search(r"-o (\S+)", cmd)
        mine = str(Path(m.group(1)).relative_to("build/digits")) if m else None
        changed = [f for f in before if f in after and after[f] != before[f]
                   and not (mine and (f == mine or f.startswith(mine + "/")))]
        assert not changed, f"{cmd} overwrote {changed}"
    _, _, xte, yte = data.digits()
    assert np.array_equal(np.load(work / "y.npy"), yte)  # the labels, not logits
    assert np.array_equal(np.load(work / "x.npy"), xte)
    y = np.load(work / "cnn_y.npy")
    assert y.shape == (len(yte), 10) and (y.argmax(1) == yte).mean() > 0.9
