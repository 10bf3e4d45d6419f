"""The declared joint search space: tile, network and precision dimensions, each a documented list of choices.

A candidate is a dict ``{dimension name: value}``. Tile dimensions are TileConfig fields (the one home of tile
parameters, :mod:`cimtile.hw.params`) plus ``n_tiles``; their choices are checked against TileConfig's own field
ranges when a space is built. The other TileConfig fields (buffers, accumulator, bus, encoding) come from a base
preset. Network dimensions describe a CNN family (stages of 3x3 convolutions, each stage ending in 2x2 max
pooling, then one fully connected classifier); precision dimensions give each weight layer's weight and input
activation bits; ``sparsity`` (optional) the share of each layer's weights pruned by magnitude before the
quantisation-aware fine-tune.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from cimtile.hw.params import ConfigError, TileConfig, load_config

from cimtile.errors import CimtileError

__all__ = ["DIMENSIONS", "Dimension", "ExploreError", "Space", "MAX_LAYERS"]


class ExploreError(CimtileError, ValueError):
    """Bad exploration settings or space (one-line message naming the offending thing)."""


@dataclass(frozen=True)
class Dimension:
    """One axis of the space: its name, group (tile, network, precision), allowed choices and meaning."""

    name: str
    group: str
    choices: tuple
    doc: str


#: Stages and convolutions per stage at most.
MAX_STAGES = 3
MAX_CONVS = 2
#: Encoder blocks of the small ViT at most (each has four weight layers: qkv, projection, two MLP linears).
MAX_VIT_DEPTH = 2
#: Weight layers at most (the precision genes cover this many): a CNN's stages x convs + 1, a ViT's patch
#: embedding, 4 per block and the head.
MAX_LAYERS = max(MAX_STAGES * MAX_CONVS + 1, 2 + 4 * MAX_VIT_DEPTH)
#: Attention heads of the ViT (fixed: every searched width is a multiple of it).
VIT_HEADS = 4

_TILE = [
    Dimension("rows", "tile", (32, 64, 128, 256), "crossbar rows (wordlines): the rows one MVM sums"),
    Dimension("cols", "tile", (32, 64, 128, 256), "crossbar physical columns (bitlines)"),
    Dimension("cell_bits", "tile", (1, 2, 4), "bits per RRAM cell (weight slices = weight bits / cell bits)"),
    Dimension("dac_bits", "tile", (1, 2), "row DAC resolution (input slices = activation bits / DAC bits)"),
    Dimension("adc_bits", "tile", (4, 5, 6, 7, 8), "ADC resolution: fewer bits mean cheaper conversions and "
              "shorter row tiles (the exact mapping keeps column sums within the ADC range)"),
    Dimension("n_adcs", "tile", (2, 4, 8, 16), "ADCs shared among the columns (conversions run n_adcs at a time)"),
    Dimension("rows_per_conv", "tile", (16, 32, 64, 128, 256),
              "rows active in one conversion (values above rows are clipped to rows)"),
    Dimension("n_tiles", "tile", (1, 2, 4, 8, 16),
              "tiles of the accelerator, weight-stationary: a network whose crossbar tiles all fit is programmed "
              "once per batch; one that does not is re-programmed for every image"),
]
_NET = [
    Dimension("family", "network", ("cnn", "vit"),
              "network family: the CNN below, or the small ViT of cimtile.zoo.vit (patch embedding, encoder blocks "
              f"of {VIT_HEADS}-head self-attention and an MLP of twice the width, a head on the class token)"),
    Dimension("stages", "network", (1, 2, 3), "CNN stages (each: convolutions, then 2x2 max pooling)"),
    Dimension("convs", "network", (1, 2), "3x3 convolutions per stage (depth = stages x convs + 1 layers)"),
] + [Dimension(f"width{i}", "network", (4, 8, 16, 32), f"output channels of stage {i}") for i in range(MAX_STAGES)] + [
    Dimension("vit_dim", "network", (16, 32, 48), "ViT width (token dimension; a multiple of the heads)"),
    Dimension("vit_depth", "network", tuple(range(1, MAX_VIT_DEPTH + 1)), "ViT encoder blocks"),
]
_PREC = ([Dimension(f"w{i}", "precision", (2, 3, 4, 5, 6, 7, 8), f"weight bits of weight layer {i}")
          for i in range(MAX_LAYERS)]
         + [Dimension(f"a{i}", "precision", (2, 3, 4, 5, 6, 7, 8), f"input activation bits of weight layer {i}")
            for i in range(MAX_LAYERS)]
         + [Dimension("sparsity", "precision", (0.0, 0.5, 0.75),
                      "share of each weight layer's weights pruned (magnitude) before the fine-tune; "
                      "only with sparsity enabled")])

#: Every dimension in declaration order.
DIMENSIONS: dict[str, Dimension] = {d.name: d for d in _TILE + _NET + _PREC}

#: The reference point every baseline fixes the other side at: a mid-size network at W8A8 on isaac-like tiles.
REFERENCE = {"rows": 128, "cols": 128, "cell_bits": 2, "dac_bits": 1, "adc_bits": 8, "n_adcs": 8,
             "rows_per_conv": 128, "n_tiles": 4, "family": "cnn", "stages": 2, "convs": 1, "width0": 8, "width1": 16,
             "width2": 16,
             "vit_dim": 32, "vit_depth": 2,
             **{f"w{i}": 8 for i in range(MAX_LAYERS)}, **{f"a{i}": 8 for i in range(MAX_LAYERS)}, "sparsity": 0.0}

_TILE_FIELDS = {f.name: f for f in fields(TileConfig)}


def _check_choices(d: Dimension, values) -> tuple:
    if not isinstance(values, (list, tuple)) or not values:
        raise ExploreError(f"space dimension {d.name!r}: expected a non-empty list of choices")
    out = []
    for v in values:
        if d.name == "family":
            if v not in DIMENSIONS["family"].choices:
                raise ExploreError(f"space dimension 'family': choice {v!r} is not one of cnn, vit")
            out.append(v)
            continue
        if d.name == "sparsity":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise ExploreError(f"space dimension 'sparsity': choice {v!r} outside 0 <= s < 1")
            out.append(float(v))
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise ExploreError(f"space dimension {d.name!r}: choice {v!r} is not an integer")
        f = _TILE_FIELDS.get(d.name)
        if f is not None:  # a TileConfig field: its own range is the law
            lo, hi = f.metadata["lo"], f.metadata["hi"]
            if not lo <= v <= hi:
                raise ExploreError(f"space dimension {d.name!r}: choice {v} outside TileConfig.{d.name}'s range "
                                   f"{lo}..{hi}")
        elif d.group == "precision" and not 2 <= v <= 8:
            raise ExploreError(f"space dimension {d.name!r}: choice {v} outside 2..8 bits")
        elif d.name == "n_tiles" and not 1 <= v <= 1024:
            raise ExploreError(f"space dimension 'n_tiles': choice {v} outside 1..1024")
        elif d.name == "stages" and not 1 <= v <= MAX_STAGES:
            raise ExploreError(f"space dimension 'stages': choice {v} outside 1..{MAX_STAGES}")
        elif d.name == "convs" and not 1 <= v <= MAX_CONVS:
            raise ExploreError(f"space dimension 'convs': choice {v} outside 1..{MAX_CONVS}")
        elif d.name.startswith("width") and not 1 <= v <= 256:
            raise ExploreError(f"space dimension {d.name!r}: choice {v} outside 1..256 channels")
        elif d.name == "vit_dim" and not (VIT_HEADS <= v <= 256 and v % VIT_HEADS == 0):
            raise ExploreError(f"space dimension 'vit_dim': choice {v} is not a multiple of {VIT_HEADS} in "
                               f"{VIT_HEADS}..256")
        elif d.name == "vit_depth" and not 1 <= v <= MAX_VIT_DEPTH:
            raise ExploreError(f"space dimension 'vit_depth': choice {v} outside 1..{MAX_VIT_DEPTH}")
        out.append(v)
    return tuple(dict.fromkeys(out))


class Space:
    """A joint space: the declared :data:`DIMENSIONS`, optionally with narrowed choices.

    Parameters
    ----------
    overrides : dict, optional
        ``{dimension: [choices]}`` replacing declared choices (validated: TileConfig ranges for tile fields).
    sparsity : bool
        Whether ``sparsity`` is searched (otherwise every candidate is dense).
    base : str or TileConfig
        Preset (or config) the tile fields outside the space come from.
    """

    def __init__(self, overrides: dict | None = None, sparsity: bool = False, base: str | TileConfig = "isaac"):
        try:
            self.base = load_config(base)
        except ConfigError as e:
            raise ExploreError(str(e)) from None
        self.choices = {n: d.choices for n, d in DIMENSIONS.items()}
        for n, vals in (overrides or {}).items():
            if n not in DIMENSIONS:
                raise ExploreError(f"space: unknown dimension {n!r} (known: {', '.join(DIMENSIONS)})")
            self.choices[n] = _check_choices(DIMENSIONS[n], vals)
        if not sparsity:
            self.choices["sparsity"] = (0.0,)
        self.sparsity = sparsity

    @classmethod
    def load(cls, path: str | Path, **kw) -> Space:
        """A space file: JSON ``{"dimension": [choices], ...}``."""
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ExploreError(f"space file {path}: no such file") from None
        except (OSError, ValueError) as e:
            raise ExploreError(f"space file {path}: {type(e).__name__}: {str(e)[:80]}") from None
        if not isinstance(d, dict):
            raise ExploreError(f"space file {path}: expected a JSON object of dimension: [choices]")
        return cls(d, **kw)

    def names(self, groups=("tile", "network", "precision")) -> list[str]:
        """Dimensions of ``groups`` with more than one choice (what a strategy searches)."""
        return [n for n, d in DIMENSIONS.items() if d.group in groups and len(self.choices[n]) > 1]

    def complete(self, partial: dict, fixed: dict) -> dict:
        """A full candidate: ``partial``'s values, else ``fixed``'s (a reference), else the first choice."""
        return {n: partial.get(n, fixed.get(n, self.choices[n][0])) for n in DIMENSIONS}

    # -- what a candidate means -----------------------------------------------------------------------

    def tile(self, c: dict) -> TileConfig:
        """The candidate's TileConfig (the base preset's other fields; ``rows_per_conv`` clipped to rows)."""
        b = self.base
        rows, cols = c["rows"], c["cols"]
        try:
            return b.replace(name=f"x{rows}x{cols}c{c['cell_bits']}d{c['dac_bits']}a{c['adc_bits']}n{c['n_adcs']}"
                                  f"r{min(c['rows_per_conv'], rows)}",
                             rows=rows, cols=cols, cell_bits=c["cell_bits"], dac_bits=c["dac_bits"],
                             adc_bits=c["adc_bits"], n_adcs=min(c["n_adcs"], cols),
                             rows_per_conv=min(c["rows_per_conv"], rows), rq_lanes=min(b.rq_lanes, cols))
        except ConfigError as e:
            raise ExploreError(f"candidate tile: {e}") from None

    @staticmethod
    def n_layers(c: dict) -> int:
        """Weight layers of the candidate's network (the precision genes it uses)."""
        if c.get("family", "cnn") == "vit":
            return 2 + 4 * c["vit_depth"]
        return c["stages"] * c["convs"] + 1

    @staticmethod
    def layers(c: dict, size: int) -> list[tuple]:
        """The candidate's layer list (:func:`cimtile.zoo.mnist_nets.torch_net`'s format) for ``size`` x
        ``size`` one-channel images. A CNN: per stage ``convs`` 3x3 convolutions (padding 1), then 2x2 max
        pooling while the image is at least 2 wide; one fully connected layer to 10 classes. A ViT: the one
        ``("vit", ...)`` entry of :class:`cimtile.zoo.vit.ViTConfig` (2x2 patches on 8x8 digits, 4x4 on 28x28
        MNIST), ``vit_dim`` wide, ``vit_depth`` blocks, MLP twice the width."""
        if c.get("family", "cnn") == "vit":
            from cimtile.zoo.vit import ViTConfig

            d = c["vit_dim"]
            return [ViTConfig(size=size, patch=2 if size <= 16 else 4, dim=d, depth=c["vit_depth"], heads=VIT_HEADS,
                              mlp=2 * d).spec()]
        out, cin, s = [], 1, size
        for i in range(c["stages"]):
            w = c[f"width{i}"]
            for _ in range(c["convs"]):
                out.append(("conv", cin, w, 3, 1))
                cin = w
            if s >= 2:
                out.append(("pool",))
                s //= 2
        return out + [("fc", cin * s * s, 10)]

    @staticmethod
    def policy(c: dict, n: int) -> list[tuple[int, int]]:
        """``[(weight bits, activation bits)]`` of the first ``n`` weight layers."""
        return [(c[f"w{i}"], c[f"a{i}"]) for i in range(n)]

    @staticmethod
    def key(c: dict) -> str:
        """A canonical string of the candidate's values (the evaluation cache's key; unused genes dropped)."""
        n = Space.n_layers(c)
        vit = c.get("family", "cnn") == "vit"
        used = {k: v for k, v in c.items()
                if not (k[0] in "wa" and k[1:].isdigit() and int(k[1:]) >= n)
                and not (k.startswith("width") and (vit or int(k[5:]) >= c["stages"]))
                and not (k in ("stages", "convs") and vit) and not (k.startswith("vit_") and not vit)}
        return json.dumps(used, sort_keys=True)


def describe(space: Space | None = None) -> list[dict]:
    """The space as a table: name, group, choices, meaning (docs/explore.md is generated from it)."""
    sp = space or Space(sparsity=True)
    return [{"name": n, "group": d.group, "choices": list(sp.choices[n]), "doc": d.doc}
            for n, d in DIMENSIONS.items()]
