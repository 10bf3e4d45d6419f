"""Speed figures of the tile from the cycle formulas the RTL follows: layer utilisation, MVM cycles over the
ADC bound (:func:`cimtile.hw.isa.adc_bound`), VAU step vs per-cell writes. Used by bench/rtl.py and
tests/test_hw_perf.py."""

from __future__ import annotations

from cimtile.hw import isa
from cimtile.hw.encoding import group_size
from cimtile.hw.isa import Opcode, adc_bound, encode
from cimtile.hw.params import TileConfig

__all__ = ["layer_program", "layer_utilisation", "measure_mvm_cycles", "mvm_shapes", "vau_step_vs_cellwise"]


def mvm_shapes(cfg: TileConfig) -> list[tuple[int, int, int, int, int, int]]:
    """(wbits, abits, wsigned, asigned, window rows, window cols) covering full and partial row
    groups, one and many slices, fewer conversions than ADCs, signed and unsigned."""
    out = []
    for wbits, abits, ws, as_, rows in [(8, 8, 1, 0, cfg.rows), (3, 5, 1, 1, max(1, cfg.rows // 2 - 1)),
                                        (1, 1, 0, 0, 1), (5, 8, 0, 1, cfg.rows), (2, 4, 1, 0, cfg.rows - 3),
                                        (8, 2, 0, 0, 3)]:
        g = group_size(cfg, wbits, bool(ws))
        if g > cfg.cols or rows < 1:
            continue
        for nc in sorted({g, g * (cfg.cols // g)}):
            out.append((wbits, abits, ws, as_, rows, nc))
    return out


def layer_program(cfg: TileConfig, vectors: int, *, load: bool = False, wbits: int = 8, abits: int = 8,
                  counted: bool = True) -> list[int]:
    """A layer on one tile: signed ``wbits`` weights over the widest window of whole groups, and
    ``vectors`` input vectors multiplied (MVM) and requantised (REQ). With ``counted`` (the default)
    one MVM and one REQ of ``count=vectors`` each (the multi-vector instructions: the vectors' rounds
    back to back); without it a hardware loop of an MVM and a REQ per vector (the program before
    counts existed). With ``load`` the program first loads the weights (LDW) and the inputs (LDIN)
    and finally reads the outputs (RDOUT)."""
    g = isa.geometry(cfg, wbits, abits, True, False, cfg.rows, cfg.cols)
    nc = g.group * (cfg.cols // g.group)
    words = []
    if load:
        words += [encode(Opcode.LDW, start=0, count=cfg.cols), encode(Opcode.LDIN, start=0, count=vectors)]
    words += [
        encode(Opcode.CFG, wbits=wbits, abits=abits, wsigned=1, asigned=0, adc_shift=0),
        encode(Opcode.WIN, row_start=0, row_count=cfg.rows, col_start=0, col_count=nc),
    ]
    if counted:
        words += [encode(Opcode.MVM, in_addr=0, acc_addr=0, count=vectors),
                  encode(Opcode.REQ, acc_addr=0, out_addr=0, count=vectors)]
    else:
        words += [encode(Opcode.LOOP, count=vectors, body=2, stride_in=1, stride_acc=1, stride_out=1),
                  encode(Opcode.MVM, in_addr=0, acc_addr=0), encode(Opcode.REQ, acc_addr=0, out_addr=0)]
    if load:
        words.append(encode(Opcode.RDOUT, start=0, count=vectors))
    return words + [encode(Opcode.HALT)]


def layer_utilisation(cfg: TileConfig, vectors: int = 64, *, load: bool = False,
                      counted: bool = True) -> tuple[float, int, int]:
    """ADC utilisation of :func:`layer_program` (weights programmed, inputs in the buffer; with
    ``load`` the program also loads weights and inputs and reads the outputs; ``counted`` as there):
    (conversion cycles / all cycles, all cycles, conversion cycles). Cycles come from the golden
    model's timing, i.e. the documented formulas, which the RTL tests prove the RTL takes."""
    from cimtile.sim.tile import Tile

    vectors = min(vectors, cfg.in_depth, cfg.acc_depth, cfg.out_depth)
    res = Tile(cfg).run(layer_program(cfg, vectors, load=load, counted=counted), timing_only=True).check()
    g = isa.geometry(cfg, 8, 8, True, False, cfg.rows, cfg.cols)
    busy = vectors * adc_bound(cfg, g)
    return busy / res.cycles, res.cycles, busy


def vau_step_vs_cellwise(cfg: TileConfig) -> float:
    """Cycles of an exact write of every cell over cycles of one VAU step (VAUR + VAUC over the whole array),
    both with the array's programming time: the cheaper of a WSET per cell and an LDW of every column (each a
    write-and-verify of ``write_cycles``), against the two sweeps with their pulse phases."""
    ns = isa.cfg_namespace(cfg)
    g = isa.geometry(cfg, 8, 8, True, False, cfg.rows, cfg.cols)
    step = isa.cycles(Opcode.VAUR, ns, {}, g) + isa.cycles(Opcode.VAUC, ns, {}, g)
    cellwise = min(cfg.rows * cfg.cols * isa.cycles(Opcode.WSET, ns, {}),
                   isa.cycles(Opcode.LDW, ns, {"start": 0, "count": cfg.cols}))
    return cellwise / step


def measure_mvm_cycles(cfg: TileConfig) -> list[tuple[tuple, int, int]]:
    """Run one MVM of every :func:`mvm_shapes` shape on the RTL (Amaranth's simulator) and return
    (shape, measured MVM cycles, ADC bound). The MVM's cycles are the run's count minus those of
    the surrounding instructions (CFG, WIN, HALT: one each)."""
    from cimtile.tb.amaranth_sim import golden_runs, run_rtl

    shapes = mvm_shapes(cfg)
    runs = []
    for wbits, abits, ws, as_, nr, nc in shapes:
        prog = [encode(Opcode.CFG, wbits=wbits, abits=abits, wsigned=ws, asigned=as_, adc_shift=0),
                encode(Opcode.WIN, row_start=cfg.rows - nr, row_count=nr, col_start=0, col_count=nc),
                encode(Opcode.MVM, in_addr=0, acc_addr=0), encode(Opcode.HALT)]
        runs.append((prog, []))
    rtl = run_rtl(cfg, [(p, din) for (p, _), (_, din, _) in zip(runs, golden_runs(cfg, runs))])
    out = []
    for shape, r in zip(shapes, rtl):
        g = isa.geometry(cfg, shape[0], shape[1], bool(shape[2]), bool(shape[3]), shape[4], shape[5])
        out.append((shape, r.cycles - 3, adc_bound(cfg, g)))
    return out
