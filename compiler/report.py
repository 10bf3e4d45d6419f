"""Per-layer cycle report: the cycles are those the golden model counts when it runs the programs (one image)."""

from __future__ import annotations

import math

import numpy as np
from cimtile.hw import isa
from cimtile.hw.isa import Opcode
from cimtile.hw.params import TileConfig

from .errors import CompileError
from .ir import HostStep, Model, Program

__all__ = ["program_cycles", "build_report", "format_report"]


_GEO_OPS = (Opcode.MVM, Opcode.REQ, Opcode.VAUR, Opcode.VAUC)


def program_cycles(cfg: TileConfig, prog: Program) -> int:
    """Cycles of one run of ``prog`` by the ISA's formulas (:func:`cimtile.hw.isa.cycles`), walking the program as the
    golden model does: LOOP costs 1 plus ``count`` times its body. The tests check this equals the golden
    model's count (``timing_only`` and real runs) for every program the compiler emits."""
    ns = isa.cfg_namespace(cfg)
    dec: dict[int, isa.Decoded] = {}
    cost: dict[tuple, int] = {}
    words = prog.words
    state = {"cfg": (8, 8, True, False), "win": (cfg.rows, cfg.cols)}

    def block(start: int, end: int) -> tuple[int, bool]:
        c, pc = 0, start
        while pc < end:
            w = words[pc]
            d = dec.get(w)
            if d is None:
                d = dec[w] = isa.decode(w)
                if d.cause is not isa.Cause.NONE:
                    raise CompileError(f"internal: illegal word at pc {pc} of a program of layer {prog.layer}")
            op, a = d.op, d.args
            if op is Opcode.LOOP:
                body, halted = block(pc + 1, pc + 1 + a["body"])
                c += isa.cycles(op, ns, a) + a["count"] * body
                pc += 1 + a["body"]
                continue
            if op is Opcode.CFG:
                state["cfg"] = (a["wbits"], a["abits"], bool(a["wsigned"]), bool(a["asigned"]))
            elif op is Opcode.WIN:
                state["win"] = (a["row_count"], a["col_count"])
            key = (w, state["cfg"], state["win"]) if op in _GEO_OPS else (w,)
            k = cost.get(key)
            if k is None:
                geo = isa.geometry(cfg, *state["cfg"], *state["win"]) if op in _GEO_OPS else None
                k = cost[key] = isa.cycles(op, ns, a, geo)
            c += k
            if op is Opcode.HALT:
                return c, True
            pc += 1
        return c, False

    total, halted = block(0, len(words))
    if not halted:
        raise CompileError(f"internal: a program of layer {prog.layer} does not end in HALT")
    return total


def _shape(s) -> str:
    return "x".join(str(int(v)) for v in s[1:]) if len(s) > 1 else str(s)


def build_report(model: Model, cfg: TileConfig) -> dict:
    """Fill ``Program.cycles`` and return the report (per layer, host steps, totals) for one image."""
    for p in model.programs:
        p.cycles = program_cycles(cfg, p)
    init = model.programs[0].cycles
    rows = []
    for L in model.layers:
        chunks = math.ceil(L.positions / L.chunk)
        runs_cycles = sum(model.programs[i].cycles for i in L.programs)
        conv = 0
        for c0, c1 in L.col_tiles:
            for r0, r1 in L.row_tiles:
                g = isa.geometry(cfg, L.wbits, L.abits, L.wsigned, L.asigned, r1 - r0, (c1 - c0) * L.group)
                conv += g.nis * g.nrg * g.nconv
        for ct, rt in L.fix_tiles:
            (c0, c1), (r0, r1) = L.col_tiles[ct], L.row_tiles[rt]
            g = isa.geometry(cfg, 2, L.abits, True, L.asigned, r1 - r0, (c1 - c0) * 2)
            conv += g.nis * g.nrg * g.nconv
        n_tiles = len(L.row_tiles) * len(L.col_tiles) + len(L.fix_tiles)
        mvms = n_tiles * L.chunk * chunks
        cycles = runs_cycles * chunks
        conversions = conv * L.chunk * chunks
        rows.append({
            "name": L.name, "op": L.op, "shape": f"{_shape(L.in_shape)} -> {_shape(L.out_shape)}",
            "K": L.K, "N": L.N, "wbits": L.wbits, "abits": L.abits, "wsigned": L.wsigned, "asigned": L.asigned,
            "xbar_tiles": n_tiles, "row_tiles": len(L.row_tiles), "col_tiles": len(L.col_tiles),
            "fix_tiles": len(L.fix_tiles),
            "rows_per_tile": L.row_tile, "positions": L.positions, "chunk": L.chunk, "runs": chunks,
            "programs": len(L.programs), "words": sum(len(model.programs[i].words) for i in L.programs),
            "mvms": mvms, "adc_conversions": conversions, "cycles": cycles,
            "adc_util": conversions * cfg.adc_cycles / (cycles * cfg.n_adcs) if cycles else 0.0,
        })
    host = []
    for s in model.steps:
        if isinstance(s, HostStep) and s.op not in ("Identity",):
            entry = {"name": s.name, "op": s.op}
            if s.op == "HostMatMul":
                a, b = (model.tensors[n].shape for n in s.inputs[:2])
                entry["macs"] = int(np.prod(np.broadcast_shapes(a[:-2], b[:-2]))) * a[-2] * a[-1] * b[-1]
            host.append(entry)
    tot_c = sum(r["cycles"] for r in rows) + init
    tot_conv = sum(r["adc_conversions"] for r in rows)
    totals = {"cycles": tot_c, "init_cycles": init, "mvms": sum(r["mvms"] for r in rows),
              "adc_conversions": tot_conv, "xbar_tiles": sum(r["xbar_tiles"] for r in rows),
              "adc_util": tot_conv * cfg.adc_cycles / (tot_c * cfg.n_adcs) if tot_c else 0.0,
              "words": sum(len(p.words) for p in model.programs), "programs": len(model.programs),
              "host_ops": len(host), "host_macs": sum(h.get("macs", 0) for h in host)}
    return {"tile": cfg.name, "tile_config": cfg.to_dict(), "images": 1, "layers": rows, "host": host,
            "totals": totals}


def format_report(rep: dict) -> str:
    """The report as a Markdown table (what ``cimtile report`` prints)."""
    hdr = ["layer", "op", "shape", "w", "a", "xbar tiles", "MVMs", "ADC conv", "cycles", "ADC util"]
    lines = [f"tile {rep['tile']}, cycles for one image (golden model count)"]
    if rep.get("tile_config"):  # the configuration as resolved at compile time (presets and JSON files alike)
        lines.append("tile config: " + " ".join(f"{k}={v}" for k, v in rep["tile_config"].items() if k != "name"))
    lines += ["",
             "| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rep["layers"]:
        fix = f"+{r['fix_tiles']}" if r.get("fix_tiles") else ""
        lines.append(f"| {r['name']} | {r['op']} | {r['shape']} | {r['wbits']} | {r['abits']} | "
                     f"{r['row_tiles']}x{r['col_tiles']}{fix} | {r['mvms']} | {r['adc_conversions']} | {r['cycles']} | "
                     f"{100 * r['adc_util']:.1f}% |")
    t = rep["totals"]
    lines.append(f"| init (mask clear) | | | | | | | | {t['init_cycles']} | |")
    lines.append(f"| **total** | | | | | {t['xbar_tiles']} | {t['mvms']} | {t['adc_conversions']} | "
                 f"{t['cycles']} | {100 * t['adc_util']:.1f}% |")
    lines.append("")
    host = ", ".join(sorted({h["op"] for h in rep["host"]}))
    lines.append(f"host ops: {t['host_ops']} ({host or 'none'}); host MACs (activation x activation): "
                 f"{t['host_macs']}; program: {t['words']} words in {t['programs']} programs")
    return "\n".join(lines) + "\n"
