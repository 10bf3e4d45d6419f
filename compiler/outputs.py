"""Where the compiler's commands write: checked before any work, written completely or not at all.

A bundle directory (``cimtile compile -o OUT``) is written into a new sibling directory and renamed into
place; an existing bundle at ``OUT`` is replaced (renamed aside, then removed), a directory that is not a
bundle is refused. An output array (``cimtile run -o Y.npy``) is written to a sibling temporary file and
renamed. Every failure is a one-line :class:`CompileError` naming the path, raised before the long work
where it can be known in advance.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from .errors import CompileError

__all__ = ["check_parent", "check_bundle_target", "is_bundle", "new_sibling_dir", "replace_dir", "save_npy"]


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def check_parent(path: str | Path, what: str = "output") -> Path:
    """The absolute parent of ``path``, after checking it is, or can be created as, a directory.

    Nothing is created; raises :class:`CompileError` if some existing component of the parent is a file.
    """
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise CompileError(f"{what} {str(path)!r}: expected a file or directory name")
    parent = p.absolute().parent
    for anc in [parent, *parent.parents]:
        if anc.exists():
            if not anc.is_dir():
                raise CompileError(f"{what} {path}: {anc} exists and is not a directory")
            if not os.access(anc, os.W_OK | os.X_OK) and anc == parent:
                raise CompileError(f"{what} {path}: directory {anc} is not writable")
            break
    return parent


def is_bundle(path: Path) -> bool:
    """True if ``path`` is a directory written by ``cimtile compile`` (its network.json says so)."""
    try:
        return json.loads((path / "network.json").read_text()).get("format") == "cimtile-bundle"
    except (OSError, ValueError, AttributeError):
        return False


def check_bundle_target(out: str | Path) -> Path:
    """Check that a bundle can be written to ``out`` (new, an empty directory, or an existing bundle)."""
    p = Path(out)
    check_parent(p, "output")
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise CompileError(f"output {out} exists and is not a directory")
        if any(p.iterdir()) and not is_bundle(p):
            raise CompileError(f"output {out} is a directory that is not a cimtile bundle (not replacing it; "
                               "choose a new name or remove it)")
    return p


def new_sibling_dir(out: Path) -> Path:
    """A new, empty directory beside ``out`` (the usual umask applies: ``os.mkdir``, not ``mkdtemp``'s 0700)."""
    parent = check_parent(out, "output")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CompileError(f"output {out}: cannot create {parent}: {_why(e)}") from None
    for _ in range(100):
        tmp = parent / f".cimtile-{out.name}-{secrets.token_hex(4)}"
        try:
            os.mkdir(tmp)
        except FileExistsError:
            continue
        except OSError as e:
            raise CompileError(f"output {out}: cannot create a directory in {parent}: {_why(e)}") from None
        return tmp
    raise CompileError(f"output {out}: cannot create a temporary directory in {parent}")  # pragma: no cover


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished directory ``tmp`` to ``out``; an existing bundle (or empty directory) there is
    renamed aside first and removed after, so ``out`` is always either the old or the new bundle."""
    check_bundle_target(out)  # again: it may have changed while we worked
    old = None
    if out.exists():
        old = out.parent / f".cimtile-old-{out.name}-{secrets.token_hex(4)}"
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended), through a sibling temporary file and a rename."""
    p = Path(path)
    parent = check_parent(p, "output")
    if p.is_dir():
        raise CompileError(f"output {path} is a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CompileError(f"output {path}: cannot create {parent}: {_why(e)}") from None
    tmp = parent / f".{p.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, p)
    except OSError as e:
        raise CompileError(f"output {path}: cannot write: {_why(e)}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
