"""Per-layer cycle report: the cycles are those the golden model counts when it runs the programs (one image)."""

from __future__ import annotations

import math

import numpy as np
from cimtile.hw import isa
from cimtile.hw.isa import Opcode
from cimtile.hw.params import TileConfig
from cimtile.hw.program import Halted, Walker, WalkStop, decode_program

from .errors import CompileError
from .hostops import host_cost
from .ir import HostStep, Model, Program

__all__ = ["program_cycles", "build_report", "format_report"]


_GEO_OPS = (Opcode.MVM, Opcode.REQ, Opcode.VAUR, Opcode.VAUC)


class _Timing(Walker):
    """Cycles by the ISA's formulas along the one walk of a program; a loop's body is walked once and
    counted ``count`` times (the compiler's loop bodies do not change CFG or WIN)."""

    def __init__(self, cfg: TileConfig, program: list):
        super().__init__(program, cfg.loop_depth)
        self.cfg, self.ns = cfg, isa.cfg_namespace(cfg)
        self.cost: dict[tuple, int] = {}
        r = isa.RESET_CFG
        self.layer = (r["wbits"], r["abits"], bool(r["wsigned"]), bool(r["asigned"]))
        self.win = isa.reset_window(cfg)[1::2]
        self.cycles = 0

    def step(self, pc, d, offs) -> None:
        op, a = d.op, d.args
        if op is Opcode.CFG:
            self.layer = (a["wbits"], a["abits"], bool(a["wsigned"]), bool(a["asigned"]))
        elif op is Opcode.WIN:
            self.win = (a["row_count"], a["col_count"])
        key = (d.word, self.layer, self.win) if op in _GEO_OPS else (d.word,)
        k = self.cost.get(key)
        if k is None:
            geo = isa.geometry(self.cfg, *self.layer, *self.win) if op in _GEO_OPS else None
            k = self.cost[key] = isa.cycles(op, self.ns, a, geo)
        self.cycles += k

    def loop(self, pc, d, end, offs, depth) -> None:
        self.step(pc, d, offs)
        c0 = self.cycles
        self.block(pc + 1, end, offs, depth + 1)
        self.cycles += (d.args["count"] - 1) * (self.cycles - c0)


def program_cycles(cfg: TileConfig, prog: Program) -> int:
    """Cycles of one run of ``prog`` by the ISA's formulas (:func:`cimtile.hw.isa.cycles`), walking the program
    with the golden model's walker (:class:`cimtile.hw.program.Walker`): LOOP costs 1 plus ``count`` times its
    body. The tests check this equals the golden model's count (``timing_only`` and real runs) for every program
    the compiler emits."""
    t = _Timing(cfg, decode_program(prog.words))
    try:
        t.walk()
    except Halted:
        return t.cycles
    except WalkStop as e:
        if e.cause is isa.Cause.PC_RANGE:
            raise CompileError(f"internal: a program of layer {prog.layer} does not end in HALT") from None
        raise CompileError(f"internal: {e.cause.name} at pc {e.pc} of a program of layer {prog.layer}: "
                           f"{e.detail}") from None
    raise AssertionError("unreachable: Walker.walk returns only by raising")  # pragma: no cover


def _shape(s) -> str:
    return "x".join(str(int(v)) for v in s[1:]) if len(s) > 1 else str(s)


def build_report(model: Model, cfg: TileConfig) -> dict:
    """Fill ``Program.cycles`` and return the report (per layer, host steps, totals) for one image."""
    for p in model.programs:
        p.cycles = program_cycles(cfg, p)
    init = model.programs[0].cycles
    rows = []
    for L in model.layers:
        wt, tl, sch = L.need("weights", "report"), L.need("tiling", "report"), L.need("schedule", "report")
        chunks = math.ceil(sch.positions / sch.chunk)
        runs_cycles = sum(model.programs[i].cycles for i in L.programs)
        conv = 0
        for ct, rt in tl.pairs():  # grouped layers: only the tiles on the block diagonal
            (c0, c1), (r0, r1) = tl.col_tiles[ct], tl.row_tiles[rt]
            g = isa.geometry(cfg, wt.wbits, wt.abits, wt.wsigned, wt.asigned, r1 - r0, (c1 - c0) * tl.group)
            conv += g.nis * g.nrg * g.nconv
        for ct, rt in tl.fix_tiles:
            (c0, c1), (r0, r1) = tl.col_tiles[ct], tl.row_tiles[rt]
            g = isa.geometry(cfg, 2, wt.abits, True, wt.asigned, r1 - r0, (c1 - c0) * 2)
            conv += g.nis * g.nrg * g.nconv
        n_tiles = len(tl.pairs()) + len(tl.fix_tiles)
        mvms = n_tiles * sch.chunk * chunks
        cycles = runs_cycles * chunks
        conversions = conv * sch.chunk * chunks
        rows.append({
            "name": L.name, "op": L.op, "shape": f"{_shape(L.in_shape)} -> {_shape(L.out_shape)}",
            "K": wt.K, "N": wt.N, "wbits": wt.wbits, "abits": wt.abits, "wsigned": wt.wsigned, "asigned": wt.asigned,
            "xbar_tiles": n_tiles, "row_tiles": len(tl.row_tiles), "col_tiles": len(tl.col_tiles),
            "fix_tiles": len(tl.fix_tiles),
            "rows_per_tile": tl.row_tile, "positions": sch.positions, "chunk": sch.chunk, "runs": chunks,
            "programs": len(L.programs), "words": sum(len(model.programs[i].words) for i in L.programs),
            "mvms": mvms, "adc_conversions": conversions, "cycles": cycles,
            "adc_util": conversions * cfg.adc_cycles / (cycles * cfg.n_adcs) if cycles else 0.0,
        })
        if L.groups > 1:
            rows[-1]["groups"] = L.groups
        if wt.host_corrected:
            # the weight zero point's term on the host: K adds (sum of x) and N multiply-adds per position
            rows[-1]["host_zp_ops"] = sch.positions * (wt.K + wt.N)
    host = []
    for s in model.steps:
        if isinstance(s, HostStep) and s.op not in ("Identity",):
            entry = {"name": s.name, "op": s.op}
            shape = (lambda n: model.tensors[n].shape if n in model.tensors else np.shape(model.consts.get(n)))
            macs, elem = host_cost(s, [shape(n) for n in s.inputs if n], [shape(n) for n in s.outputs if n])
            if macs:
                entry["macs"] = macs
            if elem:
                entry["elem_ops"] = elem
            host.append(entry)
    tot_c = sum(r["cycles"] for r in rows) + init
    tot_conv = sum(r["adc_conversions"] for r in rows)
    totals = {"cycles": tot_c, "init_cycles": init, "mvms": sum(r["mvms"] for r in rows),
              "adc_conversions": tot_conv, "xbar_tiles": sum(r["xbar_tiles"] for r in rows),
              "adc_util": tot_conv * cfg.adc_cycles / (tot_c * cfg.n_adcs) if tot_c else 0.0,
              "words": sum(len(p.words) for p in model.programs), "programs": len(model.programs),
              "host_ops": len(host), "host_macs": sum(h.get("macs", 0) for h in host),
              "host_elem_ops": sum(h.get("elem_ops", 0) for h in host)}
    zp_ops = sum(r.get("host_zp_ops", 0) for r in rows)
    if zp_ops:
        totals["host_zp_ops"] = zp_ops
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
        grid = f"{r['row_tiles']}x{r['col_tiles']}"
        if r.get("groups"):  # grouped: only the block-diagonal tiles of the grid are used
            grid = f"{r['xbar_tiles'] - r.get('fix_tiles', 0)} of {grid} (g={r['groups']})"
        lines.append(f"| {r['name']} | {r['op']} | {r['shape']} | {r['wbits']} | {r['abits']} | "
                     f"{grid}{fix} | {r['mvms']} | {r['adc_conversions']} | {r['cycles']} | "
                     f"{100 * r['adc_util']:.1f}% |")
    t = rep["totals"]
    lines.append(f"| init (mask clear) | | | | | | | | {t['init_cycles']} | |")
    lines.append(f"| **total** | | | | | {t['xbar_tiles']} | {t['mvms']} | {t['adc_conversions']} | "
                 f"{t['cycles']} | {100 * t['adc_util']:.1f}% |")
    lines.append("")
    host = ", ".join(sorted({h["op"] for h in rep["host"]}))
    lines.append(f"host ops: {t['host_ops']} ({host or 'none'}); host MACs (activation x activation): "
                 f"{t['host_macs']}; host element ops: {t.get('host_elem_ops', 0)}; program: {t['words']} words in "
                 f"{t['programs']} programs")
    if t.get("host_zp_ops"):
        names = ", ".join(r["name"] for r in rep["layers"] if r.get("host_zp_ops"))
        lines.append(f"asymmetric-weight correction on the host (zp_w * sum x, accumulators read back): "
                     f"{t['host_zp_ops']} ops ({names})")
    return "\n".join(lines) + "\n"
