"""Per-layer cycle report: the cycles are those the golden model counts when it runs the programs, for a batch of
images (one by default), with weight programming apart from compute (docs/compiler.md, "Batch schedule")."""

from __future__ import annotations

import math

import numpy as np
from cimtile.hw import isa
from cimtile.hw.isa import Opcode
from cimtile.hw.params import TileConfig
from cimtile.hw.program import Halted, Walker, WalkStop, decode_program

from .codegen import psum_ops
from .errors import CompileError
from .hostops import host_cost
from .ir import HostStep, Model, Program

__all__ = ["PROGRAMMING_OPS", "program_cycles", "write_cycles", "build_report", "format_report", "for_batch",
           "batch_terms", "stationary_schedule"]


_GEO_OPS = (Opcode.MVM, Opcode.REQ, Opcode.VAUR, Opcode.VAUC)

#: The instructions that write the analog array's cells: their cycles are "programming" in the report and in
#: :class:`cimtile.compiler.runtime.RunStats`, every other instruction's are "compute". LDW programs whole columns
#: (write-and-verify); WSET writes one cell (write-and-verify); VAUR/VAUC pulse cells (the on-tile weight update of
#: docs/training.md). The compiler emits only LDW; the others are counted the same way wherever they occur.
PROGRAMMING_OPS = frozenset({Opcode.LDW, Opcode.WSET, Opcode.VAUR, Opcode.VAUC})


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
        self.writing = 0  # of ``cycles``, those of PROGRAMMING_OPS

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
        if op in PROGRAMMING_OPS:
            self.writing += k

    def loop(self, pc, d, end, offs, depth) -> None:
        self.step(pc, d, offs)
        c0, w0 = self.cycles, self.writing
        self.block(pc + 1, end, offs, depth + 1)
        self.cycles += (d.args["count"] - 1) * (self.cycles - c0)
        self.writing += (d.args["count"] - 1) * (self.writing - w0)


def _walk(cfg: TileConfig, prog: Program) -> _Timing:
    t = _Timing(cfg, decode_program(prog.words))
    try:
        t.walk()
    except Halted:
        return t
    except WalkStop as e:
        if e.cause is isa.Cause.PC_RANGE:
            raise CompileError(f"internal: a program of layer {prog.layer} does not end in HALT") from None
        raise CompileError(f"internal: {e.cause.name} at pc {e.pc} of a program of layer {prog.layer}: "
                           f"{e.detail}") from None
    raise AssertionError("unreachable: Walker.walk returns only by raising")  # pragma: no cover


def program_cycles(cfg: TileConfig, prog: Program) -> int:
    """Cycles of one run of ``prog`` by the ISA's formulas (:func:`cimtile.hw.isa.cycles`), walking the program
    with the golden model's walker (:class:`cimtile.hw.program.Walker`): LOOP costs 1 plus ``count`` times its
    body. The tests check this equals the golden model's count (``timing_only`` and real runs) for every program
    the compiler emits."""
    return _walk(cfg, prog).cycles


def write_cycles(cfg: TileConfig, prog: Program) -> int:
    """Of :func:`program_cycles`, the cycles of the instructions that write cells (:data:`PROGRAMMING_OPS`: the
    report's "programming"), loops counted like :func:`program_cycles`."""
    return _walk(cfg, prog).writing


def _runs(row: dict, images: int) -> int:
    """Runs of a layer's programs for ``images`` images: the runtime runs chunks of the whole batch's positions."""
    return max(1, math.ceil(images * row["positions"] / row["chunk"]))


def stationary_schedule(has_batch_programs: bool, images: int, runs: int) -> bool:
    """The batch schedule's rule (docs/compiler.md, "Batch schedule"), the one the runtime and the report apply: a
    layer with the stationary schedule's programs (column tiles of several crossbar tiles) runs on it when the batch
    has more than one image or takes more than one run; otherwise the single-run schedule programs each crossbar
    tile once already."""
    return has_batch_programs and (images > 1 or runs > 1)


def batch_terms(row: dict, images: int) -> dict:
    """A layer's schedule and cycles for a batch of ``images`` images, from its report row's per-run terms (also
    what :class:`cimtile.search.cost.LayerCost` keeps), as the runtime schedules a batch (docs/compiler.md, "Batch
    schedule"; :func:`cimtile.compiler.runtime.uses_stationary`):

    - ``single-run`` (one image in one run, or a layer without the stationary schedule's programs: every column
      tile one crossbar tile): ``prog_once`` (weights programs) + runs x ``run_cycles``; ``reload_cycles`` of a
      run are programming (LDW inside run programs).
    - ``stationary`` (more than one image or more than one run, and the layer has column tiles of several
      crossbar tiles): ``batch_prog_once`` (every crossbar tile's weights program, once) + runs x
      ``batch_run_cycles``.

    runs = ceil(images x positions / chunk): a batch's positions are cut into chunks across images, so compute is
    exactly ``images`` x one image's when chunk divides positions, and at most that otherwise.
    Returns ``schedule``, ``runs``, ``cycles``, ``program_cycles``."""
    runs = _runs(row, images)
    if stationary_schedule(row.get("batch_run_cycles") is not None, images, runs):
        once, run, reload, sched = row["batch_prog_once"], row["batch_run_cycles"], row["batch_reload_cycles"], \
            "stationary"
    else:
        once, run, reload, sched = row["prog_once"], row["run_cycles"], row["reload_cycles"], "single-run"
    return {"schedule": sched, "runs": runs, "cycles": once + runs * run, "program_cycles": once + runs * reload}


def _batch_fields(row: dict, images: int, cfg_adc: tuple[int, int]) -> None:
    """Fill a layer row's batch-dependent figures from its per-run ones (:func:`batch_terms`)."""
    bt = batch_terms(row, images)
    runs = bt["runs"]
    row["schedule"] = bt["schedule"]
    row["runs"] = runs
    row["cycles"] = bt["cycles"]
    row["program_cycles"] = bt["program_cycles"]
    row["compute_cycles"] = row["cycles"] - row["program_cycles"]
    row["mvms"] = runs * row["mvms_per_run"]
    row["adc_conversions"] = runs * row["conv_per_run"]
    row.pop("host_psum_ops", None)
    if bt["schedule"] == "stationary" and row.get("psum_ops"):
        # the partial sums of the batch's positions, added (and requantised) on the host
        row["host_psum_ops"] = images * row["positions"] * row["psum_ops"]
    adc_cycles, n_adcs = cfg_adc
    row["adc_util"] = row["adc_conversions"] * adc_cycles / (row["cycles"] * n_adcs) if row["cycles"] else 0.0


def _totals(rep: dict, cfg_adc: tuple[int, int]) -> dict:
    rows, init = rep["layers"], rep["totals"]["init_cycles"]
    adc_cycles, n_adcs = cfg_adc
    tot_c = sum(r["cycles"] for r in rows) + init
    tot_conv = sum(r["adc_conversions"] for r in rows)
    prog = sum(r["program_cycles"] for r in rows)
    t = dict(rep["totals"])
    t.update({"cycles": tot_c, "program_cycles": prog, "compute_cycles": tot_c - prog,
              "mvms": sum(r["mvms"] for r in rows), "adc_conversions": tot_conv,
              "adc_util": tot_conv * adc_cycles / (tot_c * n_adcs) if tot_c else 0.0})
    psum = sum(r.get("host_psum_ops", 0) for r in rows)
    t.pop("host_psum_ops", None)
    if psum:
        t["host_psum_ops"] = psum
    return t


def for_batch(rep: dict, images: int) -> dict:
    """The report ``rep`` (of any batch size) for a batch of ``images`` images, each layer on the schedule the
    runtime uses for that batch (:func:`batch_terms`; ``cimtile report --batch N``)."""
    if not isinstance(images, int) or isinstance(images, bool) or images < 1:
        raise CompileError(f"batch = {images!r}: expected a whole number of images >= 1")
    cfg_adc = (rep["tile_config"]["adc_cycles"], rep["tile_config"]["n_adcs"])
    out = dict(rep, images=images, layers=[dict(r) for r in rep["layers"]])
    for r in out["layers"]:
        _batch_fields(r, images, cfg_adc)
    out["totals"] = _totals(out, cfg_adc)
    return out


def _shape(s) -> str:
    return "x".join(str(int(v)) for v in s[1:]) if len(s) > 1 else str(s)


def build_report(model: Model, cfg: TileConfig, images: int = 1) -> dict:
    """Fill ``Program.cycles`` and return the report (per layer, host steps, totals) for ``images`` images.

    Per layer, the single-run schedule's ``prog_once`` (weights programs, once per batch), ``run_cycles`` (the
    layer's run programs, one run each) of which ``reload_cycles`` are programming inside run programs (column
    tiles of several crossbar tiles load their weights every run); for a layer with column tiles of several
    crossbar tiles, the stationary schedule's ``batch_prog_once``, ``batch_run_cycles``, ``batch_reload_cycles``
    and ``psum_ops`` (host operations per position on partial sums). ``runs`` = ceil(images x positions / chunk);
    ``cycles`` and its split into ``program_cycles`` and ``compute_cycles`` by :func:`batch_terms`."""
    memo: dict[tuple, int] = {}  # the stationary schedule's crossbar tiles of one shape have the same programs
    for p in (*model.programs, *model.batch_programs):
        key = tuple(p.words)
        c = memo.get(key)
        if c is None:
            c = memo[key] = program_cycles(cfg, p)
        p.cycles = c
    init = model.programs[0].cycles
    rows = []
    for L in model.layers:
        wt, tl, sch = L.need("weights", "report"), L.need("tiling", "report"), L.need("schedule", "report")
        progs = [model.programs[i] for i in L.programs]
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
        rows.append({
            "name": L.name, "op": L.op, "shape": f"{_shape(L.in_shape)} -> {_shape(L.out_shape)}",
            "K": wt.K, "N": wt.N, "wbits": wt.wbits, "abits": wt.abits, "wsigned": wt.wsigned, "asigned": wt.asigned,
            "xbar_tiles": n_tiles, "row_tiles": len(tl.row_tiles), "col_tiles": len(tl.col_tiles),
            "fix_tiles": len(tl.fix_tiles),
            "rows_per_tile": tl.row_tile, "positions": sch.positions, "chunk": sch.chunk,
            "programs": len(L.programs), "words": sum(len(p.words) for p in progs),
            "prog_once": sum(model.programs[p.setup].cycles for p in progs if p.setup is not None),
            "stationary_tiles": sum(1 for p in progs if p.setup is not None),
            "run_cycles": sum(p.cycles for p in progs),
            "reload_cycles": sum(write_cycles(cfg, p) for p in progs),
            "mvms_per_run": n_tiles * sch.chunk, "conv_per_run": conv * sch.chunk,
            "mapping": tl.mapping, "adc_shift": tl.adc_shift,
        })
        if L.batch_programs:
            # the stationary schedule: the stationary column tiles' programs, and every other crossbar tile's
            # weights program and run program
            bprogs = [model.batch_programs[i] for i in L.batch_programs]
            kept = [p for p in progs if p.setup is not None]
            rows[-1].update({
                "batch_prog_once": rows[-1]["prog_once"] + sum(model.batch_programs[p.setup].cycles for p in bprogs),
                "batch_run_cycles": sum(p.cycles for p in kept + bprogs),
                "batch_reload_cycles": sum(write_cycles(cfg, p) for p in kept + bprogs),
                "psum_ops": psum_ops(L), "batch_programs": len(bprogs)})
        _batch_fields(rows[-1], images, (cfg.adc_cycles, cfg.n_adcs))
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
    totals = {"init_cycles": init, "xbar_tiles": sum(r["xbar_tiles"] for r in rows),
              "words": sum(len(p.words) for p in model.programs), "programs": len(model.programs),
              "host_ops": len(host), "host_macs": sum(h.get("macs", 0) for h in host),
              "host_elem_ops": sum(h.get("elem_ops", 0) for h in host)}
    zp_ops = sum(r.get("host_zp_ops", 0) for r in rows)
    if zp_ops:
        totals["host_zp_ops"] = zp_ops
    mapping = "calibrated" if any(r["mapping"] == "calibrated" for r in rows) else "exact"
    rep = {"tile": cfg.name, "tile_config": cfg.to_dict(), "images": images, "mapping": mapping, "layers": rows,
           "host": host, "totals": totals}
    rep["totals"] = _totals(rep, (cfg.adc_cycles, cfg.n_adcs))
    return rep


def format_report(rep: dict) -> str:
    """The report as a Markdown table (what ``cimtile report`` prints)."""
    hdr = ["layer", "op", "shape", "w", "a", "xbar tiles", "MVMs", "ADC conv", "programming", "compute", "cycles",
           "ADC util"]
    n = rep.get("images", 1)
    lines = [f"tile {rep['tile']}, cycles for {'one image' if n == 1 else f'a batch of {n} images'} (golden model "
             "count; programming: instructions that write cells (LDW, WSET, VAUR, VAUC), once per batch for crossbar "
             "tiles that stay in the array, every run for the others)"]
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
                     f"{grid}{fix} | {r['mvms']} | {r['adc_conversions']} | {r['program_cycles']} | "
                     f"{r['compute_cycles']} | {r['cycles']} | "
                     f"{100 * r['adc_util']:.1f}% |")
    t = rep["totals"]
    lines.append(f"| init (mask clear) | | | | | | | | | {t['init_cycles']} | {t['init_cycles']} | |")
    lines.append(f"| **total** | | | | | {t['xbar_tiles']} | {t['mvms']} | {t['adc_conversions']} | "
                 f"{t['program_cycles']} | {t['compute_cycles']} | {t['cycles']} | {100 * t['adc_util']:.1f}% |")
    lines.append("")
    host = ", ".join(sorted({h["op"] for h in rep["host"]}))
    lines.append(f"host ops: {t['host_ops']} ({host or 'none'}); host MACs (activation x activation): "
                 f"{t['host_macs']}; host element ops: {t.get('host_elem_ops', 0)}; program: {t['words']} words in "
                 f"{t['programs']} programs")
    lines.append(f"mapping: {rep.get('mapping', 'exact')}" + (
        " (rows per crossbar tile chosen so that no ADC conversion can clip)" if rep.get("mapping", "exact") == "exact"
        else " (up to the array's rows per crossbar tile; ADC range shift per layer)"))
    if rep.get("mapping") == "calibrated":
        cal = rep.get("calibration", {}).get("images")
        for r in rep["layers"]:
            line = f"- {r['name']}: adc_shift {r['adc_shift']} ({r.get('chosen_by', 'given')})"
            if "clip_fraction" in r:
                line += (f", {100 * r['clip_fraction']:.2f}% of conversions clipped on the {cal} calibration inputs, "
                         f"output MSE {r['mse']:.4g} vs exact mapping (relative error {100 * r['rel_err']:.2f}%)")
            lines.append(line)
    multi = [r["name"] for r in rep["layers"] if r.get("batch_run_cycles") is not None]
    if multi:
        on = [r["name"] for r in rep["layers"] if r.get("schedule") == "stationary"]
        lines.append("batch schedule: " + (
            f"stationary for {', '.join(on)} (every crossbar tile programmed once per batch; partial sums added on "
            f"the host: {t.get('host_psum_ops', 0)} ops)" if on else
            f"single-run (one image); a batch of more than one runs {', '.join(multi)} on the stationary schedule "
            f"(column tiles of several crossbar tiles)"))
    if t.get("host_zp_ops"):
        names = ", ".join(r["name"] for r in rep["layers"] if r.get("host_zp_ops"))
        lines.append(f"asymmetric-weight correction on the host (zp_w * sum x, accumulators read back): "
                     f"{t['host_zp_ops']} ops ({names})")
    return "\n".join(lines) + "\n"
