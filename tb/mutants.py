"""Named mutants of the RTL: deliberate, realistic bugs, each applied to a copy of the RTL generator's
source (never to ``hw/`` itself), for measuring which test suites catch which bug (``make mutate``).

A mutant replaces one exact piece of text (which must occur exactly once) in one module of
``cimtile.hw`` (``tile`` or one of its components); :func:`tile_class` loads the mutated copy (and
copies of the modules that import it, up to ``tile``) as private modules and returns its ``Tile`` class.
The same class drives the Amaranth simulator (``tb.amaranth_sim.run_rtl(..., mutation=name)``) and
the generated Verilog of a mutated Verilator build (``tb.runner.build(cfg, mutation=name)``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MUTANTS", "Mutant", "MutantError", "mutant_key", "tile_class"]


class MutantError(RuntimeError):
    """A mutant no longer applies: its text is not found exactly once in the RTL source."""


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str  # module of cimtile.hw the text lives in
    old: str
    new: str
    what: str


MUTANTS: dict[str, Mutant] = {m.name: m for m in [
    Mutant("shift_off_by_one", "mvm_lanes", "in_shift = Mux(sign_slice, layer.abits_m1, digits.k * cfg.dac_bits)",
           "in_shift = Mux(sign_slice, layer.abits_m1, digits.k * cfg.dac_bits + (digits.k >= 3))",
           "input slices 3 and up are shifted one bit too far"),
    Mutant("adc_clip_bound", "adc", "next_hi, next_lo = Mux(self.diff, pair_hi, single_hi),",
           "next_hi, next_lo = Mux(self.diff, pair_hi, single_hi - 1),",
           "the unsigned ADC clips one code too low"),
    Mutant("vau_mask_ignored", "vau", "Mux(self.mask[r] | ~changes[r], old,", "Mux(~changes[r], old,",
           "VAUR/VAUC update masked cells"),
    Mutant("mvm_mask_ignored", "crossbar", "m.d.comb += live.eq(~mask_read.data)", "m.d.comb += live.eq(-1)",
           "masked cells contribute to MVM column sums"),
    Mutant("vau_saturation", "vau", "return Mux(below, 0, Mux(above, max_level, total[:cell]))",
           "return Mux(below, 0, total[:cell])", "VAU levels wrap instead of saturating at max_level"),
    Mutant("sign_slice", "mvm_lanes", "req.conv.neg.eq(sign_slice ^ (per_column_sign & digits.q[0]))",
           "req.conv.neg.eq(per_column_sign & digits.q[0])", "the sign slice of signed inputs counts positively"),
    Mutant("requant_rounding", "requant", "m.d.comb += rbit.eq((p & round_sel).any() | (round_sign & p[-1]))",
           "m.d.comb += rbit.eq(0)", "REQ truncates instead of rounding half up"),
    Mutant("req_vector_end", "requant_bank", "last_chunk.eq(first_col + 2 * lanes >= self.n_out)",
           "last_chunk.eq(first_col + 2 * lanes > self.n_out)",
           "multi-vector REQ: when n_out is a multiple of rq_lanes, a vector's last chunk is not seen as its last"),
    Mutant("loop_stride_space", "tile",
           "loops.push_strides[1].eq(loop_args.stride_acc),\n"
           "                     loops.push_strides[2].eq(loop_args.stride_out)",
           "loops.push_strides[1].eq(loop_args.stride_out),\n"
           "                     loops.push_strides[2].eq(loop_args.stride_acc)",
           "LOOP applies stride_out to accumulator addresses and stride_acc to output addresses"),
    Mutant("latency_cycle", "tile", "parts.lanes.finished & (drain == isa.MVM_LATENCY - 1)",
           "parts.lanes.finished & (drain == isa.MVM_LATENCY)", "MVM takes one cycle more than its formula"),
    Mutant("mvm_vector_input", "tile", "m.d.comb += [in_r.addr.eq(parts.in_next), in_r.en.eq(parts.vector_in)]",
           "m.d.comb += [in_r.addr.eq(parts.in_next), in_r.en.eq(0)]",
           "a multi-vector MVM multiplies its first input vector again for every later vector"),
    Mutant("diff_column_index", "crossbar",
           "m.d.comb += [levels_read.addr.eq(self.col[lane] + offset), mask_read.addr.eq(self.col[lane] + offset)]",
           "m.d.comb += [levels_read.addr.eq(self.col[lane] + 2 * offset), "
           "mask_read.addr.eq(self.col[lane] + 2 * offset)]",
           "differential-analog pairs subtract the column two to the right instead of the next one"),
    Mutant("diff_sign_column", "mvm_lanes", "(per_column_sign & digits.q[0])",
           "(per_column_sign & digits.q[0] & ~digits.q[1])",
           "digital differential weights: the negative columns of odd slices count positively"),
    Mutant("load_word_order", "load_formatter", "Cat(*staged[:words - 1], self.word)",
           "Cat(self.word, *staged[:words - 1])", "multi-word load items are assembled with their last bus word first"),
    Mutant("read_word_order", "read_formatter", "self.word.eq(item[w * bus:(w + 1) * bus])",
           "self.word.eq(item[(words - 1 - w) * bus:(words - w) * bus])",
           "multi-word read items leave with their last bus word first"),
    Mutant("cfg_decode", "layer", "after_cfg.adc_shift.eq(cfg_in.adc_shift)]",
           "after_cfg.adc_shift.eq(cfg_in.adc_shift[:3])]",
           "CFG's adc_shift loses its top bit"),
]}

_HW = Path(importlib.util.find_spec("cimtile.hw").submodule_search_locations[0])
_cache: dict[str, type] = {}


def _source(module: str) -> str:
    return (_HW / f"{module}.py").read_text()


def _mutated(m: Mutant) -> str:
    text = _source(m.module)
    n = text.count(m.old)
    if n != 1:
        raise MutantError(f"mutant {m.name}: its text occurs {n} times in hw/{m.module}.py (expected once); "
                          "update tb/mutants.py to the RTL")
    return text.replace(m.old, m.new)


def mutant_key(name: str) -> str:
    """A key that changes with the mutant's definition and the source it mutates (for build caches)."""
    m = MUTANTS[name]
    return name + ":" + hashlib.sha256((m.old + "\0" + m.new + "\0" + _source(m.module)).encode()).hexdigest()[:16]


def _load(modname: str, text: str):
    full = f"cimtile.hw.{modname}"
    spec = importlib.util.spec_from_loader(full, loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "cimtile.hw"
    mod.__file__ = str(_HW / f"{modname}.py")
    sys.modules[full] = mod
    exec(compile(text, f"<mutant {modname}>", "exec"), mod.__dict__)
    return mod


def _importers(module: str) -> list[str]:
    """``module`` and every module of ``cimtile.hw`` that imports it, directly or through others, in
    an order where each comes after what it imports (the copies a mutant needs)."""
    texts = {p.stem: p.read_text() for p in _HW.glob("*.py")}
    chain = [module]
    changed = True
    while changed:
        changed = False
        for name, text in sorted(texts.items()):
            if name not in chain and any(f"from .{d} import " in text for d in chain):
                chain.append(name)
                changed = True
    # only what hw/tile.py needs: the modules it imports, directly or through others
    needed, todo = {"tile"}, ["tile"]
    while todo:
        text = texts[todo.pop()]
        for d in texts:
            if d not in needed and f"from .{d} import " in text:
                needed.add(d)
                todo.append(d)
    chain = [n for n in chain if n in needed]
    if "tile" not in chain:
        raise MutantError(f"hw/{module}.py is not imported by hw/tile.py, directly or through other modules")
    ordered: list[str] = []
    while len(ordered) < len(chain):
        ready = [n for n in chain if n not in ordered and
                 all(d == n or d in ordered or f"from .{d} import " not in texts[n] for d in chain)]
        if not ready:  # a cycle of imports among the copies: no order loads each after what it imports
            cycle = [n for n in chain if n not in ordered]
            while True:  # (drop what only waits on the cycle: modules no other one left imports)
                kept = [n for n in cycle if any(d != n and f"from .{n} import " in texts[d] for d in cycle)]
                if kept == cycle:
                    break
                cycle = kept
            cycle = sorted(cycle)
            raise MutantError(f"hw/{module}.py: the modules {', '.join(cycle)} import each other in a cycle; "
                              "a mutant's copies need an order")
        ordered += ready
    return ordered


def tile_class(name: str) -> type:
    """The ``Tile`` class of the RTL with mutant ``name`` applied (cached per process): the mutated
    module and copies of the modules that import it (up to ``tile``) load as private modules."""
    if name not in MUTANTS:
        raise MutantError(f"unknown mutant {name!r}: expected one of {', '.join(MUTANTS)}")
    if name in _cache:
        return _cache[name]
    m = MUTANTS[name]
    tag = f"_mutant_{name}"
    chain = _importers(m.module)
    loaded = None
    for mod in chain:
        text = _mutated(m) if mod == m.module else _source(mod)
        for dep in chain:
            text = text.replace(f"from .{dep} import ", f"from .{dep}{tag} import ")
        loaded = _load(f"{mod}{tag}", text)
    cls = loaded.Tile
    _cache[name] = cls
    return cls
