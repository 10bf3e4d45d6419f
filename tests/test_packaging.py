"""One import namespace: the distribution installs `cimtile` and nothing else at the top level."""

from __future__ import annotations

import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import cimtile

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("hw", "sim", "compiler", "tb", "zoo", "search", "train", "explore")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test_every_module_imports_through_the_namespace(tmp_path):
    """Import every cimtile module from an unrelated directory: none may import a top-level `hw`, `sim`, ..."""
    names = [m.name for m in pkgutil.iter_modules(cimtile.__path__, "cimtile.")]
    for part in PARTS:  # pkgutil does not follow the editable install's folder mapping: walk each part's path
        pkg = importlib.import_module(f"cimtile.{part}")
        names += [pkg.__name__] + [m.name for m in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}.")]
    assert len(names) > 40, names
    skip = ("cimtile.__main__", "cimtile.tb.tile_tests", "cimtile.tb.backend_tests", "cimtile.tb.__main__")
    code = (
        "import importlib, sys\n"
        f"for n in {[n for n in names if n not in skip]!r}: importlib.import_module(n)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {PARTS!r})\n"
        "assert not bad, f'top-level modules imported: {bad}'\n"
        "print(len(sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
def test_wheel_installs_one_namespace(tmp_path):
    """Build the wheel, install it into a fresh virtual environment, and use it from there."""
    wheels = tmp_path / "wheels"
    # Build from a copy of the sources: setuptools keeps a build/lib/ inside the source tree, whose stale
    # modules (from files since removed) would otherwise end up in the wheel.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                             ".pytest_cache", ".hypothesis", ".ruff_cache"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
                       env=_clean_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = wheels.glob("cimtile-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(whl).namelist()}
    assert {t for t in tops if not t.endswith((".dist-info", ".data"))} == {"cimtile"}, tops
    assert any(n.startswith("cimtile/hw/isa.py") for n in zipfile.ZipFile(whl).namelist())

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The wheel's dependencies come from this environment's site-packages (a path, not a site dir: the
    # editable install's finder there is not activated), so no download is needed and no repository
    # module can leak in.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(whl)],
                       env=_clean_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=tmp_path, env=_clean_env(), capture_output=True, text=True)

    r = run(str(py), "-c", "import cimtile.hw.isa, cimtile.sim.tile, cimtile.compiler, cimtile.tb.backend, "
                           "cimtile.zoo.data; print(cimtile.hw.isa.__file__)")
    assert r.returncode == 0, r.stderr[-2000:]
    assert Path(r.stdout.strip()).is_relative_to(site), r.stdout
    r = run(str(venv / "bin" / "cimtile"), "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"cimtile {cimtile.__version__}", (r.stdout, r.stderr)
    for top in PARTS:
        r = run(str(py), "-c", f"import {top}")
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, f"`import {top}` worked in the wheel's venv"
