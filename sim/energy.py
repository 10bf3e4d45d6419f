"""Energy and area constants of the analog tile, each with its source: the one home for every floor that turns
operation counts into picojoules or square millimetres (``bench.training``, :mod:`cimtile.explore`).

Each table entry is ``name: (value, source)``. Values are per event (pJ) or per instance (mm^2) at the node
of their source (ISAAC: 32 nm); nothing is scaled between nodes, so the figures are comparable with each other
and with ISAAC's, not absolute predictions of a chip.

ADC energy and area depend on resolution. The 8-bit figures are ISAAC's; other resolutions are scaled by the
Walden figure of merit (energy per conversion step constant: ``E(b) = E(8) * 2**(b - 8)``), the scaling ISAAC
itself uses to argue for fewer ADC bits (Shafiee et al., ISCA 2016, section 5) and the one NeuroSim's
SAR-ADC model approximates for area (Peng et al., IEDM 2019: area roughly proportional to the capacitor
array, ``2**b`` unit capacitors). Multi-bit DACs: energy and area scale with the levels driven
(``2**b - 1``; a 1-bit DAC is ISAAC's).

:func:`operation_counts` counts the events of one image of a compiled bundle from its layers' crossbar
tiles and schedules (the geometry the golden model and the report share); :func:`energy_pj` and
:func:`analog_area_mm2` apply the tables.
"""

from __future__ import annotations

import math

from cimtile.hw import isa
from cimtile.hw.params import TileConfig

__all__ = ["AREA", "ENERGY", "adc_area_mm2", "adc_energy_pj", "analog_area_mm2", "dac_energy_pj", "energy_pj",
           "operation_counts"]

#: Energy per event (pJ). Sources: ISAAC = Shafiee et al., ISCA 2016, Table 6 (8-bit 1.28 GS/s ADC 2 mW;
#: 1,024 1-bit DACs 4 mW and eight 128x128 arrays 2.4 mW at a 100 ns read cycle; eDRAM buffer 64 KB 20.7 mW
#: at 256-bit accesses per cycle of 1 ns); Horowitz, ISSCC 2014 (8 KB SRAM, 64-bit access ~10 pJ) for the
#: index memory. The cell write energy is an assumption of the order reported for RRAM programming pulses
#: (0.1-10 pJ, e.g. Yu, Proc. IEEE 106(2), 2018); every programming pulse (a cell of an LDW, WSET, or one VAU
#: pulse reaching a cell) counts one write.
ENERGY = {
    "adc_conversion": (2e-3 / 1.28e9 * 1e12, "ISAAC: 2 mW / 1.28 GS/s"),
    "dac_drive": (4e-3 / 1024 / 10e6 * 1e12, "ISAAC: 4 mW / 1,024 DACs / 10 MHz"),
    "cell_read": (2.4e-3 / 8 / (128 * 128) / 10e6 * 1e12, "ISAAC: 2.4 mW / 8 arrays / 16,384 cells / 10 MHz"),
    "cell_write": (1.0, "assumed (RRAM programming pulse, 0.1-10 pJ)"),
    "index_access": (10.0, "Horowitz ISSCC 2014: 8 KB SRAM 64-bit access"),
    "buffer_byte": (20.7e-3 * 1e-9 / 32 * 1e12, "ISAAC: eDRAM buffer 20.7 mW, 256 bits per 1 ns cycle"),
}

#: Area per instance (mm^2). Sources: ISAAC Table 6 (32 nm): eight 8-bit ADCs 0.0096 mm^2; 8 x 128 1-bit DACs
#: 0.00017 mm^2; eight 128x128 memristor arrays 0.0002 mm^2; 8 x 128 sample-and-hold 0.00004 mm^2.
AREA = {
    "adc": (0.0096 / 8, "ISAAC: 8 ADCs (8-bit) 0.0096 mm^2"),
    "dac": (0.00017 / (8 * 128), "ISAAC: 8 x 128 1-bit DACs 0.00017 mm^2"),
    "cell": (0.0002 / (8 * 128 * 128), "ISAAC: 8 arrays of 128 x 128 cells 0.0002 mm^2"),
    "sample_hold": (0.00004 / (8 * 128), "ISAAC: 8 x 128 sample-and-hold 0.00004 mm^2"),
}

#: The resolution ISAAC's ADC figures are for.
ADC_REF_BITS = 8


def adc_energy_pj(bits: int) -> float:
    """Energy of one conversion at ``bits`` (Walden scaling of ISAAC's 8-bit figure)."""
    return ENERGY["adc_conversion"][0] * 2.0 ** (bits - ADC_REF_BITS)


def adc_area_mm2(bits: int) -> float:
    """Area of one ADC at ``bits`` (capacitor-array scaling of ISAAC's 8-bit figure)."""
    return AREA["adc"][0] * 2.0 ** (bits - ADC_REF_BITS)


def dac_energy_pj(bits: int) -> float:
    """Energy of driving one row for one input slice with a ``bits``-bit DAC (levels ``2**bits - 1``)."""
    return ENERGY["dac_drive"][0] * ((1 << bits) - 1)


def analog_area_mm2(cfg: TileConfig, n_tiles: int = 1) -> dict:
    """Area of ``n_tiles`` tiles' analog parts: the array, its ADCs, row DACs and column sample-and-holds."""
    per = {"array": cfg.rows * cfg.cols * AREA["cell"][0],
           "adcs": cfg.n_adcs * adc_area_mm2(cfg.adc_bits),
           "dacs": cfg.rows * AREA["dac"][0] * ((1 << cfg.dac_bits) - 1),
           "sample_hold": cfg.cols * AREA["sample_hold"][0]}
    out = {k: v * n_tiles for k, v in per.items()}
    out["total"] = sum(out.values())
    return out


def operation_counts(bundle) -> dict:
    """Events of one image of a compiled bundle (:class:`cimtile.compiler.Bundle`): ADC conversions, row DAC
    drives (one per active row per input slice), cell reads (one per cell of the active window per input slice),
    cell writes (every cell an LDW programs, as one image's programs do: weights loaded once per run of each
    layer's programs; ``cells_stored``: each crossbar tile's cells once, what weight-stationary tiles program and
    what the runtime's batch schedule programs per batch of more than one image, docs/compiler.md "Batch
    schedule"; ``layers``: per layer its ``cells_stored`` and ``runs`` per image),
    buffer bytes (input bytes loaded and output/accumulator bytes read back), MVMs.

    The conversions are counted the way :func:`cimtile.compiler.report.build_report` counts them (the count the
    golden model's cycles are built from: ``isa.geometry`` per crossbar tile); ``conversions`` equals the
    report's ``adc_conversions`` (tested)."""
    cfg = bundle.cfg
    c = {"adc_conversions": 0, "dac_drives": 0, "cell_reads": 0, "cell_writes": 0, "cells_stored": 0,
         "buffer_bytes": 0, "mvms": 0, "layers": []}
    for L in bundle.model.layers:
        stored = c["cells_stored"]
        wt, tl, sch = L.weights, L.tiling, L.schedule
        runs = math.ceil(sch.positions / sch.chunk)
        mvm_per_tile = sch.chunk * runs  # one MVM per tile per output position (padded to whole chunks)
        # (row tile, weight bits, signed, physical columns): the layer's tiles, then the 2-bit correction tiles
        # of weights that do not fit the encoding (as the report counts them)
        tiles = [(rt, wt.wbits, wt.wsigned, (tl.col_tiles[ct][1] - tl.col_tiles[ct][0]) * tl.group)
                 for ct, rt in tl.pairs()]
        tiles += [(rt, 2, True, (tl.col_tiles[ct][1] - tl.col_tiles[ct][0]) * 2) for ct, rt in tl.fix_tiles]
        for rt, wb, ws, nc in tiles:
            r0, r1 = tl.row_tiles[rt]
            g = isa.geometry(cfg, wb, wt.abits, ws, wt.asigned, r1 - r0, nc)
            c["adc_conversions"] += g.nis * g.nrg * g.nconv * mvm_per_tile
            c["dac_drives"] += g.nis * g.nr * mvm_per_tile
            c["cell_reads"] += g.nis * g.nr * g.nc * mvm_per_tile
            c["cell_writes"] += g.nr * g.nc * runs
            c["cells_stored"] += g.nr * g.nc
            c["mvms"] += mvm_per_tile
            c["buffer_bytes"] += (g.nr + g.n_out) * mvm_per_tile
        c["layers"].append({"name": L.name, "cells_stored": c["cells_stored"] - stored, "runs": runs})
    return c


def energy_pj(counts: dict, cfg: TileConfig, program_share: float = 1.0) -> dict:
    """Energy (pJ) of one image's ``counts`` on tiles ``cfg``, by component; ``program_share`` scales the cell
    writes (1: ``counts["cell_writes"]`` are one image's; ``1/B``: they are a batch of B images')."""
    e = {"adc": counts["adc_conversions"] * adc_energy_pj(cfg.adc_bits),
         "dac": counts["dac_drives"] * dac_energy_pj(cfg.dac_bits),
         "array": counts["cell_reads"] * ENERGY["cell_read"][0],
         "buffers": counts["buffer_bytes"] * ENERGY["buffer_byte"][0],
         "programming": counts["cell_writes"] * ENERGY["cell_write"][0] * program_share}
    e["total"] = sum(e.values())
    return e
