"""Sparse training on the tile: what VAU updates cost against per-cell writes, what index-free sparsity saves
on VGG-8 / CIFAR-10 layer shapes, and how VAU training compares with exact updates and float SGD on MNIST.

Figures (golden-model cycles; energies from the cited constants in :data:`cimtile.sim.energy.ENERGY`):

- ``vau_update_speedup`` (isaac) and ``vau_update_speedup_cimaq``: one training step's weight update of a
  layer filling the tile at 75% sparsity, every unmasked weight changing by one step: the exact update (only
  the cells that change, one per weight with the canonical encoding; per column WSETs of them or LDW of the
  column, whichever the ISA's formulas make cheaper, each a write-and-verify of ``write_cycles``: the best
  exact update the tile allows) against one VAU step (LDD + VAUR + VAUC with their pulse phases), both
  through the resident-tile API (:func:`update_costs`); ``_dense`` variants at 0%; ``_bound``: the ISA's
  ceiling for this ratio (:func:`speedup_bound`); ``_wset``: against WSETs of every changed cell;
  ``vau_vs_ldw``: a VAU step against rewriting the whole window with LDW (dense, no index).
- ``vau_update_speedup_measured``: the same ratio per training step as measured in the MNIST run below
  (the exact rule writes only the cells whose rounded level changes).
- ``vgg8_*``: dense vs indexed sparse vs index-free sparse at 75% sparsity on the isaac tile: training-step
  tile cycles and energy ratios (see :func:`vgg8_table`).
- ``float_sgd_acc``, ``exact_acc``, ``vau_lsq_acc``, ``vau_sign_acc`` (MNIST, 1,000 test images, ``mlp``
  model on the ``cimaq`` tile, 75% sparsity, lr 0.05, 8-bit weights in two slices (:data:`WBITS`), mean over
  seeds 0-2) and ``vau_acc_gap`` = exact - vau-lsq in points (``_worst_seed``: the largest single-seed gap;
  ``_seed0`` ...: each seed's; ``vau_acc_gap_lr0p1``: seed 0 at lr 0.1); ``*_one_slice``: the same with
  one-slice (5-bit) weights, the earlier protocol.
- ``pcm_*_acc`` and ``pcm_*_change`` (points against the ideal tiles of the same seed): training through
  noise, seed 0 of the same schedule with the ``pcm`` device model on every tile (docs/devices.md).

``python -m bench.training --markdown`` prints the tables of docs/training.md.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from cimtile.hw import encoding, isa
from cimtile.hw.isa import Opcode, encode
from cimtile.hw.params import PRESETS, TileConfig
from cimtile.sim.energy import ENERGY
from cimtile.sim.tile import Tile

GOALS = {"vau_acc_gap": "<= 1.0", "vau_update_speedup": ">= 50"}

SPARSITY = 0.75

#: Energy per event (pJ) with its source: the one table, :data:`cimtile.sim.energy.ENERGY`.

#: VGG-8 for CIFAR-10 (the NeuroSim benchmark network): (name, K = cin*9 or fin, N, output positions).
VGG8 = [
    ("conv1", 3 * 9, 128, 32 * 32), ("conv2", 128 * 9, 128, 32 * 32), ("conv3", 128 * 9, 256, 16 * 16),
    ("conv4", 256 * 9, 256, 16 * 16), ("conv5", 256 * 9, 512, 8 * 8), ("conv6", 512 * 9, 512, 8 * 8),
    ("fc1", 8192, 1024, 1), ("fc2", 1024, 10, 1),
]


def _cycles(cfg: TileConfig, words: list[int]) -> int:
    return Tile(cfg).run(words, timing_only=True).cycles


def _head(wbits: int, abits: int, rows: int, cols: int) -> list[int]:
    return [encode(Opcode.CFG, wbits=wbits, abits=abits, wsigned=1, asigned=0, adc_shift=0),
            encode(Opcode.WIN, row_start=0, row_count=rows, col_start=0, col_count=cols)]


def vau_step_cycles(cfg: TileConfig, rows: int, cols: int, wbits: int) -> int:
    """One VAU step (row then column deltas) over a rows x cols window (golden-model cycles)."""
    words = _head(wbits, 8, rows, cols) + [
        encode(Opcode.LDD, start=0, count=1), encode(Opcode.VAUR, delta_addr=0, pair=1),
        encode(Opcode.LDD, start=0, count=1), encode(Opcode.VAUC, delta_addr=0, pair=1), encode(Opcode.HALT)]
    return _cycles(cfg, words)


def wset_cycles(cfg: TileConfig, cells: int) -> int:
    """WSET of ``cells`` cells, in programs of at most ``prog_depth`` words (golden-model cycles)."""
    per = cfg.prog_depth - 1
    total = 0
    full, rest = divmod(cells, per)
    if full:
        total += full * _cycles(cfg, [encode(Opcode.WSET, row=0, col=0, value=1)] * per + [encode(Opcode.HALT)])
    if rest:
        total += _cycles(cfg, [encode(Opcode.WSET, row=0, col=0, value=1)] * rest + [encode(Opcode.HALT)])
    return total


def exact_tile_update_cycles(cfg: TileConfig, cols: int, changed_per_column: int) -> int:
    """An exact update of a tile's ``cols`` columns, each with ``changed_per_column`` changed cells: per
    column the cheaper of WSETs of its cells and LDW of the column, as ``ResidentTile.write_weights`` chooses
    (golden-model cycles, one program)."""
    ns = isa.cfg_namespace(cfg)
    if changed_per_column * isa.cycles(Opcode.WSET, ns, {}) > isa.cycles(Opcode.LDW, ns, {"start": 0, "count": 1}):
        return _cycles(cfg, [encode(Opcode.LDW, start=0, count=cols), encode(Opcode.HALT)])
    return wset_cycles(cfg, cols * changed_per_column)


def mvm_cycles(cfg: TileConfig, rows: int, cols: int, wbits: int, abits: int) -> int:
    """One MVM over a rows x cols window, without the program's HALT."""
    words = _head(wbits, abits, rows, cols) + [encode(Opcode.MVM, in_addr=0, acc_addr=0), encode(Opcode.HALT)]
    return _cycles(cfg, words) - 3  # CFG, WIN and HALT cost one cycle each


def _update_layer(cfg: TileConfig, sparsity: float, seed: int, wbits: int):
    """A layer filling ``cfg``: random weights with ``sparsity`` of them pruned, and their one-step change."""
    rng = np.random.default_rng(seed)
    g = encoding.group_size(cfg, wbits, True)
    K, N = cfg.rows, cfg.cols // g
    lo, hi = encoding.weight_range(wbits, True)
    W = rng.integers(lo, hi + 1, size=(K, N))
    mask = np.zeros(K * N, dtype=bool)
    mask[rng.permutation(K * N)[:int(round(sparsity * K * N))]] = True
    mask = mask.reshape(K, N)
    W[mask] = 0
    d = rng.choice([-1, 1], size=W.shape)
    d = np.where(W + d > hi, -1, np.where(W + d < lo, 1, d))
    return W, mask, np.where(mask, 0, W + d)


def update_costs(cfg: TileConfig, sparsity: float, seed: int = 0, wbits: int | None = None) -> dict:
    """One training step's weight update of a layer filling ``cfg``, counted by the golden model through the
    resident-tile API the training uses (:class:`cimtile.train.resident.ResidentTile`).

    Random weights (``wbits``, default one slice: ``cell_bits + 1``) with ``sparsity`` of them pruned; every
    unmasked weight changes by one step (+-1, kept in range). ``exact``: the exact update as the training
    applies it (``write_weights``: only the cells whose level changes, masked cells never; per column WSET of
    its changed cells or LDW of the column, whichever the ISA's formulas make cheaper: the best exact update
    the tile allows); ``wset``: the same cells, every one by WSET; ``vau``: one VAU step (row and column deltas,
    one LDD, VAUR and VAUC per slice); ``ldw``: the whole window rewritten (LDW of every column, dense, no
    index); ``changed``: cells the exact update changes; ``bound``: the largest exact / VAU ratio the ISA's
    formulas allow for this change (:func:`speedup_bound`).
    """
    from cimtile.train.resident import ResidentTile

    wbits = wbits or cfg.cell_bits + 1
    W, mask, W1 = _update_layer(cfg, sparsity, seed, wbits)
    K, N = W.shape
    g = encoding.group_size(cfg, wbits, True)
    out = {"weights": int((~mask).sum())}
    for via in ("cheapest", "wset"):
        t = ResidentTile(cfg, "golden")
        t.program(W, wbits=wbits, mask=mask)
        out["exact" if via == "cheapest" else "wset"] = t.write_weights(W1, via=via)
    out["vau"] = t.vau(np.ones(K, dtype=np.int64), np.ones(N, dtype=np.int64))
    out["ldw"] = _cycles(cfg, [encode(Opcode.LDW, start=0, count=N * g), encode(Opcode.HALT)])
    cells = encoding.expand_mask(cfg, mask, wbits, True)
    changed = (encoding.encode_weights(cfg, W1, wbits, True) != encoding.encode_weights(cfg, W, wbits, True)) & ~cells
    out["changed"] = int(changed.sum())
    out["bound"] = speedup_bound(cfg, changed.sum(axis=0))
    return out


def update_speedup(cfg: TileConfig, sparsity: float) -> tuple[float, int, int]:
    """(exact / VAU, exact cycles, VAU cycles) for a layer filling ``cfg`` (:func:`update_costs`)."""
    c = update_costs(cfg, sparsity)
    return c["exact"] / c["vau"], c["exact"], c["vau"]


def speedup_bound(cfg: TileConfig, changed_per_column) -> float:
    """The largest exact / VAU ratio the ISA's formulas allow for an update changing ``changed_per_column``
    cells in each column of a one-slice layer: per column the cheaper of WSETs of its changed cells and its
    share of one LDW (``col_words + write_cycles``), no HALT, against a VAUR and a VAUC over those columns
    alone (sweeps and pulses, no loads, no HALT)."""
    n = np.asarray(changed_per_column)
    ns = isa.cfg_namespace(cfg)
    wset = isa.cycles(Opcode.WSET, ns, {})
    exact = int(np.minimum(n * wset, cfg.col_words + cfg.write_cycles).sum())
    geo = isa.geometry(cfg, cfg.cell_bits + 1, 8, True, False, cfg.rows, n.size)
    vau = isa.cycles(Opcode.VAUR, ns, {}, geo) + isa.cycles(Opcode.VAUC, ns, {}, geo)
    return exact / vau


def vgg8_table(cfg: TileConfig = PRESETS["isaac"], sparsity: float = SPARSITY, abits: int = 8) -> list[dict]:
    """Per-layer and total training-step cost (one image forward + one weight update) on ``cfg`` tiles.

    - dense: every weight on the array; update = the exact update of every weight (one cell each; per column
      WSETs or LDW of the column, whichever is cheaper: :func:`exact_tile_update_cycles`).
    - indexed sparse: only non-zero weights, packed into ``ceil((1-s) * row tiles)`` row tiles; every MVM
      reads one index per packed row (to route its input), every update writes the packed tiles as dense does
      and reads one index per non-zero weight.
    - index-free sparse: the dense array with mask bits; MVM as dense (masked cells draw no read current);
      update = one VAU step per tile, each unmasked cell receiving a row and a column pulse.
    Tile cycles are summed over tiles (work; a design with one tile per weight block runs them in parallel).
    """
    wbits = cfg.cell_bits + 1
    g = encoding.group_size(cfg, wbits, True)
    E = {k: v for k, (v, _) in ENERGY.items()}
    geo_full = isa.geometry(cfg, wbits, abits, True, False, cfg.rows, cfg.cols)
    rows_out = []
    for name, K, N, P in VGG8:
        rt, ct = math.ceil(K / cfg.rows), math.ceil(N * g / cfg.cols)
        cols_last = N * g - (ct - 1) * cfg.cols
        rows_last = K - (rt - 1) * cfg.rows
        cells = K * N * g
        weights = K * N
        nnz = int(round((1 - sparsity) * weights))

        def fwd(row_tiles: int, last_rows: int, ct: int = ct, cols_last: int = cols_last, P: int = P):
            cyc = adc = dac = 0
            for r in range(row_tiles):
                nr = cfg.rows if r < row_tiles - 1 else last_rows
                for c in range(ct):
                    nc = cfg.cols if c < ct - 1 else cols_last
                    cyc += mvm_cycles(cfg, nr, nc, wbits, abits)
                    geo = isa.geometry(cfg, wbits, abits, True, False, nr, nc)
                    adc += geo.nis * geo.nrg * geo.nconv
                    dac += geo.nis * nr
            return cyc * P, adc * P, dac * P

        d_cyc, d_adc, d_dac = fwd(rt, rows_last)
        s_rows = max(1, math.ceil((1 - sparsity) * K))
        s_rt = math.ceil(s_rows / cfg.rows)
        s_cyc, s_adc, s_dac = fwd(s_rt, s_rows - (s_rt - 1) * cfg.rows)
        reads_dense = geo_full.nis * cells * P  # every cell read once per input slice
        nis = geo_full.nis
        # An exact update writes the cells that change: with the canonical encoding one cell per weight, so
        # about half of a tile's rows per column, by WSET or, cheaper with many per column, LDW of the column
        # (update_costs measures the choice on one tile), for dense and indexed (packed tiles) alike.
        def exact(row_tiles: int, last_rows: int, ct: int = ct, cols_last: int = cols_last) -> int:
            return sum(exact_tile_update_cycles(cfg, cfg.cols if c < ct - 1 else cols_last,
                                                -(-(cfg.rows if r < row_tiles - 1 else last_rows) // 2))
                       for r in range(row_tiles) for c in range(ct))

        dense = {"fwd": d_cyc, "upd": exact(rt, rows_last),
                 "e_fwd": d_adc * E["adc_conversion"] + d_dac * E["dac_drive"] + reads_dense * E["cell_read"],
                 "e_upd": weights * E["cell_write"]}
        idx = {"fwd": s_cyc, "upd": exact(s_rt, s_rows - (s_rt - 1) * cfg.rows),
               "e_fwd": s_adc * E["adc_conversion"] + s_dac * E["dac_drive"]
               + nis * nnz * g * P * E["cell_read"] + s_rows * ct * P * E["index_access"],
               "e_upd": nnz * E["cell_write"] + nnz * E["index_access"]}
        vau = sum(vau_step_cycles(cfg, cfg.rows if r < rt - 1 else rows_last, cfg.cols if c < ct - 1 else cols_last,
                                  wbits) for r in range(rt) for c in range(ct))
        free = {"fwd": d_cyc, "upd": vau,
                "e_fwd": d_adc * E["adc_conversion"] + d_dac * E["dac_drive"]
                + nis * nnz * g * P * E["cell_read"],
                "e_upd": 2 * nnz * g * E["cell_write"]}
        rows_out.append({"layer": name, "K": K, "N": N, "positions": P, "tiles": rt * ct,
                         "dense": dense, "indexed": idx, "index_free": free})
    total = {"layer": "total", "K": "", "N": "", "positions": "", "tiles": sum(r["tiles"] for r in rows_out)}
    for k in ("dense", "indexed", "index_free"):
        total[k] = {f: sum(r[k][f] for r in rows_out) for f in ("fwd", "upd", "e_fwd", "e_upd")}
    rows_out.append(total)
    return rows_out


SEEDS = (0, 1, 2)
#: Weight bits of the MNIST comparison: two slices of the cimaq tile's 4-bit cells (VAU with the host's
#: carry). One slice (5 bits) is the ``_one_slice`` figures.
WBITS = 8
#: The device model of the training-through-noise figures (sim.device.PRESETS).
DEVICE = "pcm"


def mnist_accuracy(seed: int, lr: float = 0.05, methods=None, **kw) -> dict:
    """Float SGD, exact, VAU-LSQ and VAU-sign at 75% sparsity on MNIST (the ``mlp`` on ``cimaq``), one seed
    (the seed fixes the initial weights, the data order and the rounding streams, the same for all methods);
    ``kw``: further :class:`~cimtile.train.sparse.Schedule` fields (e.g. ``device``)."""
    from cimtile.train import sparse

    s = sparse.Schedule(model="mlp", data="mnist", tile="cimaq", sparsity=SPARSITY, pretrain_epochs=3,
                        survive_epochs=2, regrow_fraction=0.1, train_epochs=2, lr=lr, seed=seed, **kw)
    results, _ = sparse.run(s, methods or sparse.METHODS)
    return {r.method: r for r in results}


def run() -> dict[str, float]:
    out = {}
    for name, key in (("isaac", "vau_update_speedup"), ("cimaq", "vau_update_speedup_cimaq")):
        cfg = PRESETS[name]
        c = update_costs(cfg, SPARSITY)
        out[key] = round(c["exact"] / c["vau"], 2)
        out[key + "_dense"] = round(update_speedup(cfg, 0.0)[0], 2)
        out[key + "_bound"] = round(c["bound"], 2)
        out[key + "_wset"] = round(c["wset"] / c["vau"], 2)
        out[key.replace("vau_update_speedup", "vau_vs_ldw")] = round(c["ldw"] / c["vau"], 2)
    tot = vgg8_table()[-1]
    d, i, f = tot["dense"], tot["indexed"], tot["index_free"]
    out["vgg8_step_cycles_dense_over_index_free"] = round((d["fwd"] + d["upd"]) / (f["fwd"] + f["upd"]), 2)
    out["vgg8_step_cycles_indexed_over_index_free"] = round((i["fwd"] + i["upd"]) / (f["fwd"] + f["upd"]), 2)
    out["vgg8_step_energy_dense_over_index_free"] = round((d["e_fwd"] + d["e_upd"]) / (f["e_fwd"] + f["e_upd"]), 2)
    out["vgg8_step_energy_indexed_over_index_free"] = round((i["e_fwd"] + i["e_upd"]) / (f["e_fwd"] + f["e_upd"]),
                                                            2)
    runs = [mnist_accuracy(seed, wbits=WBITS) for seed in SEEDS]

    def mean(method: str, runs=runs) -> float:
        return float(np.mean([r[method].final_acc for r in runs]))

    out["float_sgd_acc"] = round(mean("float"), 4)
    out["exact_acc"] = round(mean("exact"), 4)
    out["vau_lsq_acc"] = round(mean("vau-lsq"), 4)
    out["vau_sign_acc"] = round(mean("vau-sign"), 4)
    out["vau_acc_gap"] = round(100 * (mean("exact") - mean("vau-lsq")), 2)
    out["vau_acc_gap_worst_seed"] = round(100 * max(r["exact"].final_acc - r["vau-lsq"].final_acc for r in runs), 2)
    for seed, r in zip(SEEDS, runs):
        out[f"vau_acc_gap_seed{seed}"] = round(100 * (r["exact"].final_acc - r["vau-lsq"].final_acc), 2)
    out["vau_sign_acc_gap"] = round(100 * (mean("exact") - mean("vau-sign")), 2)
    ex_step = sum(r["exact"].update_cycles for r in runs) / max(sum(r["exact"].steps for r in runs), 1)
    va_step = sum(r["vau-lsq"].update_cycles for r in runs) / max(sum(r["vau-lsq"].steps for r in runs), 1)
    out["vau_update_speedup_measured"] = round(ex_step / va_step, 2) if va_step else float("nan")
    # The previous protocol: one weight slice (cell_bits + 1 = 5 bits on cimaq), exact against VAU-LSQ.
    one = [mnist_accuracy(seed, methods=("exact", "vau-lsq")) for seed in SEEDS]
    out["exact_acc_one_slice"] = round(mean("exact", one), 4)
    out["vau_lsq_acc_one_slice"] = round(mean("vau-lsq", one), 4)
    out["vau_acc_gap_one_slice"] = round(100 * (mean("exact", one) - mean("vau-lsq", one)), 2)
    # Sensitivity: the same schedule at twice the learning rate (seed 0).
    hi = mnist_accuracy(0, lr=0.1, methods=("exact", "vau-lsq"), wbits=WBITS)
    out["vau_acc_gap_lr0p1"] = round(100 * (hi["exact"].final_acc - hi["vau-lsq"].final_acc), 2)
    # Training through noise (docs/devices.md): seed 0 again, the tiles with the pcm device model; float
    # SGD has no tile and is not rerun.
    dev = mnist_accuracy(0, methods=("exact", "vau-lsq", "vau-sign"), device=DEVICE, wbits=WBITS)
    for m in ("exact", "vau-lsq", "vau-sign"):
        key = m.replace("-", "_")
        out[f"{DEVICE}_{key}_acc"] = round(dev[m].final_acc, 4)
        out[f"{DEVICE}_{key}_change"] = round(100 * (dev[m].final_acc - runs[0][m].final_acc), 2)
    return out


def markdown() -> str:
    """The tables of docs/training.md (update cost, energy constants, VGG-8)."""
    lines = ["### Update cost per training step (golden-model cycles, a layer filling the tile)", "",
             "Every unmasked weight changes by one step (one cell each); exact: the changed cells only, per "
             "column WSET of its changed cells or LDW of the column, whichever the ISA's formulas make cheaper "
             "(`bench.training.update_costs`); WSET only: every changed cell by WSET; bound: the ISA's ceiling "
             "for exact / VAU (no loads, no HALT); LDW: the whole window rewritten.", "",
             "| tile | sparsity | weights | changed cells | exact update | WSET only | VAU step | speedup | "
             "bound | speedup vs WSET only | LDW rewrite |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("isaac", "cimaq"):
        for sp in (0.0, 0.5, SPARSITY, 0.9):
            c = update_costs(PRESETS[name], sp)
            lines.append(f"| {name} | {sp:.0%} | {c['weights']} | {c['changed']} | {c['exact']} | {c['wset']} | "
                         f"{c['vau']} | {c['exact'] / c['vau']:.1f}x | {c['bound']:.1f}x | "
                         f"{c['wset'] / c['vau']:.1f}x | {c['ldw']} |")
    lines += ["", "### Energy constants", "", "| event | pJ | source |", "| --- | --- | --- |"]
    for k, (v, src) in ENERGY.items():
        lines.append(f"| {k} | {v:.4g} | {src} |")
    rows = vgg8_table()
    lines += ["", f"### VGG-8 / CIFAR-10 shapes on isaac tiles, {SPARSITY:.0%} sparsity, 8-bit inputs, 3-bit weights",
              "", "Training step = one image forward (tile cycles summed over tiles) + one weight update.", "",
              "| layer | tiles | dense fwd | dense upd | indexed fwd | indexed upd | index-free fwd | index-free upd |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        d, i, f = r["dense"], r["indexed"], r["index_free"]
        lines.append(f"| {r['layer']} | {r['tiles']} | {d['fwd']} | {d['upd']} | {i['fwd']} | {i['upd']} | "
                     f"{f['fwd']} | {f['upd']} |")
    lines += ["", "| energy per step (uJ) | forward | update | total | total / index-free |",
              "| --- | --- | --- | --- | --- |"]
    tot = rows[-1]
    free_total = tot["index_free"]["e_fwd"] + tot["index_free"]["e_upd"]
    for k in ("dense", "indexed", "index_free"):
        e = tot[k]
        t = e["e_fwd"] + e["e_upd"]
        lines.append(f"| {k} | {e['e_fwd'] / 1e6:.2f} | {e['e_upd'] / 1e6:.3f} | {t / 1e6:.2f} | "
                     f"{t / free_total:.2f} |")
    lines += ["", "| cycles per step | forward | update | total | total / index-free |",
              "| --- | --- | --- | --- | --- |"]
    free_c = tot["index_free"]["fwd"] + tot["index_free"]["upd"]
    for k in ("dense", "indexed", "index_free"):
        e = tot[k]
        t = e["fwd"] + e["upd"]
        lines.append(f"| {k} | {e['fwd']} | {e['upd']} | {t} | {t / free_c:.2f} |")
    return "\n".join(lines) + "\n"


RESULT_FIGURES = ("float_sgd_acc", "exact_acc", "vau_lsq_acc", "vau_sign_acc", "vau_acc_gap", "vau_acc_gap_worst_seed",
                  "vau_acc_gap_seed0", "vau_acc_gap_seed1", "vau_acc_gap_seed2",
                  "vau_acc_gap_lr0p1", "vau_sign_acc_gap", "exact_acc_one_slice",
                  "vau_lsq_acc_one_slice", "vau_acc_gap_one_slice",
                  "vau_update_speedup", "vau_update_speedup_dense", "vau_update_speedup_bound",
                  "vau_update_speedup_wset", "vau_vs_ldw", "vau_update_speedup_cimaq",
                  "vau_update_speedup_cimaq_dense", "vau_update_speedup_cimaq_bound", "vau_update_speedup_cimaq_wset",
                  "vau_vs_ldw_cimaq",
                  "vau_update_speedup_measured", "pcm_exact_acc", "pcm_exact_change", "pcm_vau_lsq_acc",
                  "pcm_vau_lsq_change", "pcm_vau_sign_acc", "pcm_vau_sign_change",
                  "vgg8_step_cycles_dense_over_index_free", "vgg8_step_cycles_indexed_over_index_free",
                  "vgg8_step_energy_dense_over_index_free", "vgg8_step_energy_indexed_over_index_free")


def results_markdown(bench_json) -> str:
    """The measured figures of the last ``python -m bench training`` (build/bench.json) with their goals."""
    import json
    from pathlib import Path

    data = json.loads(Path(bench_json).read_text())
    lines = ["| figure | value | goal | reached |", "| --- | --- | --- | --- |"]
    for k in RESULT_FIGURES:
        if k not in data:
            continue
        goal = GOALS.get(k, "")
        reached = ""
        if goal:
            op, val = goal.split()
            reached = "yes" if (data[k] <= float(val) if op == "<=" else data[k] >= float(val)) else "**no**"
        lines.append(f"| `{k}` | {data[k]:.4g} | {goal} | {reached} |")
    return "\n".join(lines) + "\n"


COST_BEGIN, COST_END = "<!-- begin: python -m bench.training --markdown -->", "<!-- end: cost tables -->"
RES_BEGIN, RES_END = "<!-- begin: python -m bench.training --results build/bench.json -->", "<!-- end: results -->"


def _splice(text: str, begin: str, end: str, body: str) -> str:
    i, j = text.index(begin) + len(begin), text.index(end)
    return text[:i] + "\n" + body + text[j:]


def update_doc(doc, bench_json=None) -> None:
    """Rewrite the generated sections of docs/training.md (cost tables; results when ``bench_json`` given)."""
    from pathlib import Path

    p = Path(doc)
    text = _splice(p.read_text(), COST_BEGIN, COST_END, markdown())
    if bench_json is not None:
        text = _splice(text, RES_BEGIN, RES_END, results_markdown(bench_json))
    p.write_text(text)


def plot(path) -> None:
    """Bar chart of VGG-8 training-step cycles and energy per scheme (docs/training-vgg8.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tot = vgg8_table()[-1]
    names = ("dense", "indexed", "index_free")
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.5))
    axs[0].bar(names, [tot[k]["fwd"] for k in names], label="forward")
    axs[0].bar(names, [tot[k]["upd"] for k in names], bottom=[tot[k]["fwd"] for k in names], label="update")
    axs[0].set_yscale("log")
    axs[0].set_title("tile cycles per training step")
    axs[0].legend()
    axs[1].bar(names, [tot[k]["e_fwd"] / 1e6 for k in names], label="forward")
    axs[1].bar(names, [tot[k]["e_upd"] / 1e6 for k in names], bottom=[tot[k]["e_fwd"] / 1e6 for k in names],
               label="update")
    axs[1].set_title("energy per training step (uJ)")
    axs[1].legend()
    fig.suptitle(f"VGG-8 / CIFAR-10 shapes, isaac tiles, {SPARSITY:.0%} sparsity")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--markdown"]:
        sys.stdout.write(markdown())
    elif sys.argv[1:2] == ["--plot"] and len(sys.argv) == 3:
        plot(sys.argv[2])
    elif sys.argv[1:2] == ["--update-doc"] and len(sys.argv) in (3, 4):
        update_doc(sys.argv[2], sys.argv[3] if len(sys.argv) == 4 else None)
    elif sys.argv[1:2] == ["--results"] and len(sys.argv) == 3:
        sys.stdout.write(results_markdown(sys.argv[2]))
    else:
        sys.stderr.write("usage: python -m bench.training --markdown | --plot PATH | --results BENCH_JSON | "
                         "--update-doc DOC [BENCH_JSON]\n")
        sys.exit(2)
