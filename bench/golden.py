"""Golden-model speed: the time of one batched MVM of 3136 input vectors over one float32 GEMM.

Each figure divides the golden model's time for 3136 input vectors (the positions of a 56x56 conv
layer) by the time of one float32 GEMM of the same logical shape (3136 x rows @ rows x 128), both
measured in this run, best of several interleaved repetitions. Weights are normal and quantised to
8 bits symmetrically per output channel; inputs are unsigned 8-bit activations after a ReLU.

The golden model is timed through the instruction path: a :class:`cimtile.sim.tile.Tile` with batch 3136 is
programmed once (CFG, WIN, LDW, LDIN), then a program ``MVM; HALT`` is run and timed (decode, the
MVM handler, accumulator wrap and store). ``fastmvm.mvm`` alone and the straightforward loop
``kernels.mvm_sliced`` on the same operands are printed alongside.

``golden_resnet18_cpu_s``: one image of the ResNet-18-shaped model of :mod:`bench.compiler` (compiled for ``isaac``,
bundle loaded, as ``cimtile run`` runs it), best CPU time of 3, through the program-level fast path
(:mod:`cimtile.sim.fastrun`) with the int8 GEMMs; alternating with it in the same run, the instruction path
(``golden_resnet18_instr_cpu_s``, ``sim.tile.FAST`` off: the baseline of the fast path) and the fast path without
the int8 GEMMs (``golden_resnet18_float_cpu_s``); ``golden_resnet18_first_cpu_s`` is the first image of the run
(it traces the programs and analyses the cells that later images reuse).
``golden_resnet18_img_s`` (wall time) stays in ``python -m bench compiler``.

BLAS runs single-threaded (``CIMTILE_BENCH_THREADS``, default 1) for the GEMM and the golden model
alike: NumPy's element-wise work is single-threaded, and the machine's other jobs make multi-threaded
BLAS timings erratic. Times are CPU times of this process (see :func:`_best`).
"""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np
from cimtile.hw import isa
from cimtile.hw.encoding import encode_weights
from cimtile.hw.isa import Opcode
from cimtile.hw.params import PRESETS, TileConfig
from cimtile.sim import fastmvm, fastrun, kernels
from cimtile.sim.kernels import Layer
from cimtile.sim.tile import Tile

#: Input vectors per MVM: the output positions of a 56x56 convolution layer.
M = 3136
#: Logical outputs (output channels) of the layer.
N_OUT = 128
REPS = int(os.environ.get("CIMTILE_BENCH_REPS", "9"))
THREADS = int(os.environ.get("CIMTILE_BENCH_THREADS", "1"))

GOALS = {"golden_clip_vs_f32": "<= 15", "golden_lossless_vs_f32": "<= 1.5", "golden_worst_vs_f32": "(reported)",
         "golden_resnet18_cpu_s": "<= 0.3"}


def quantised_weights(rng: np.random.Generator, rows: int, n_out: int) -> np.ndarray:
    """Normal weights quantised to 8 bits, symmetric per output channel: integers in -127..127."""
    w = rng.standard_normal((rows, n_out))
    return np.round(w / (np.abs(w).max(axis=0) / 127)).astype(np.int64)


def relu_activations(rng: np.random.Generator, m: int, rows: int) -> np.ndarray:
    """Unsigned 8-bit activations after a ReLU (about half are zero)."""
    a = np.maximum(rng.standard_normal((m, rows)), 0)
    return np.clip(np.round(a / (a.max() / 255)), 0, 255).astype(np.uint8)


def cell_levels(w: np.ndarray, cfg: TileConfig, wbits: int = 8) -> np.ndarray:
    """Differential cell levels of signed weights (:func:`cimtile.hw.encoding.encode_weights`)."""
    return encode_weights(cfg, w, wbits, True).astype(np.int64)


def clip_fraction(x: np.ndarray, levels: np.ndarray, cfg: TileConfig) -> float:
    """Fraction of conversions (input slice x row group x column x vector) whose sum exceeds the ADC."""
    lf = levels.astype(np.float32)
    clipped = total = 0
    for v, _ in kernels.input_slices(x, 8, False, cfg.dac_bits):
        vf = v.astype(np.float32)
        for a in range(0, x.shape[1], cfg.rows_per_conv):
            S = vf[:, a:a + cfg.rows_per_conv] @ lf[a:a + cfg.rows_per_conv]
            clipped += int(np.count_nonzero(S > cfg.adc_max))
            total += S.size
    return clipped / total


def _best(fns: dict, reps: int) -> dict[str, float]:
    """Best CPU time of one call of each function (``samples`` timed calls per repetition), the
    repetitions interleaved so that all functions see the same machine load.

    CPU time of this process, not wall time: on a shared machine other jobs preempt us, and a short
    GEMM slips between them more often than a long MVM, which biased wall-time ratios upwards by up
    to 50%. With one BLAS thread and an idle machine the two are the same.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for k, (f, samples) in fns.items():
            for _ in range(samples):
                t0 = time.process_time()
                f()
                best[k] = min(best[k], time.process_time() - t0)
    return best


def case(name: str, cfg: TileConfig, w: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """Time one layer; returns ratios to the float32 GEMM and the clip fraction."""
    rows = w.shape[0]
    levels = cell_levels(w, cfg)
    # One buffer entry each: the Tile keeps batch x depth x cols accumulators, and a preset's depth of
    # 64 would make that 1.6 GB at batch 3136 (touched sparsely, its page faults would dominate).
    cfg = cfg.replace(cols=levels.shape[1], in_depth=1, acc_depth=1, out_depth=1)
    layer = Layer(8, 8, True, False, 0)
    geo = isa.geometry(cfg, 8, 8, True, False, rows, levels.shape[1])
    masks = np.zeros(levels.shape, dtype=bool)

    tile = Tile(cfg, batch=M)
    setup = [
        isa.encode(Opcode.CFG, wbits=8, abits=8, wsigned=1, asigned=0, adc_shift=0),
        isa.encode(Opcode.WIN, row_start=0, row_count=rows, col_start=0, col_count=levels.shape[1]),
        isa.encode(Opcode.LDW, start=0, count=levels.shape[1]),
        isa.encode(Opcode.LDIN, start=0, count=1),
        isa.encode(Opcode.HALT),
    ]
    tile.run(setup, [levels, x[:, None, :]]).check()
    tile.load([isa.encode(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0), isa.encode(Opcode.HALT)])

    def run_tile():
        tile.run().check()

    def run_tile_float():  # the float path (int8 GEMMs off): the baseline of this change, in the same run
        fastmvm.INT_GEMM = False
        try:
            tile.run().check()
        finally:
            fastmvm.INT_GEMM = True

    run_tile()
    want = kernels.mvm_sliced(x, levels, masks, layer, geo, cfg)
    if not (np.array_equal(tile.acc[:, 0, :N_OUT], kernels.wrap(want, cfg.acc_bits))
            and np.array_equal(fastmvm.mvm(x, levels, masks, layer, geo, cfg), want)):
        raise AssertionError(f"{name}: the golden model disagrees with mvm_sliced")

    xf, wf = x.astype(np.float32), w.astype(np.float32)
    t = _best({
        # The same number of samples for each: the minimum of more samples is biased low.
        "gemm": (lambda: xf @ wf, 3),
        "tile": (run_tile, 3),
        "tile_float": (run_tile_float, 3),
        "mvm": (lambda: fastmvm.mvm(x, levels, masks, layer, geo, cfg), 3),
    }, REPS)
    t_sliced = _best({"sliced": (lambda: kernels.mvm_sliced(x, levels, masks, layer, geo, cfg), 1)},
                     max(2, REPS // 2))["sliced"]
    frac = clip_fraction(x, levels, cfg)
    g = t["gemm"]
    print(f"  {name}: {cfg.name} {rows}x{N_OUT} ({levels.shape[1]} columns, {cfg.cell_bits}-bit cells, "
          f"{cfg.dac_bits}-bit DAC, {cfg.adc_bits}-bit ADC, {cfg.rows_per_conv} rows/conversion), M={M}")
    print(f"    conversions that clip: {100 * frac:.2f}%")
    print(f"    f32 GEMM {1e3 * g:.3f} ms | Tile MVM {t['tile'] / g:.1f}x (float path {t['tile_float'] / g:.1f}x) | "
          f"fastmvm.mvm {t['mvm'] / g:.1f}x | "
          f"mvm_sliced {t_sliced / g:.1f}x", flush=True)
    return {"ratio": t["tile"] / g, "float": t["tile_float"] / g, "kernel": t["mvm"] / g, "sliced": t_sliced / g,
            "clip": frac}


def resnet18_image(runs: int = 3) -> dict[str, float]:
    """CPU seconds of one ResNet-18 image on the golden backend: the program-level fast path (``sim.fastrun``, the
    default), the instruction path (``Tile.fast`` off: the path the fast one replaced) and the fast path with the
    int8 GEMMs off, alternating; and the first image's (traces and analyses of the cells made then)."""
    import tempfile
    from pathlib import Path

    import onnx
    from cimtile.sim import tile as tile_mod

    from bench.compiler import resnet18_qdq
    from cimtile import compiler

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "resnet18.onnx"
        onnx.save(resnet18_qdq(), src)
        compiler.compile_model(src, "isaac", out=Path(d) / "out")
        b = compiler.load(Path(d) / "out")
    x = np.random.default_rng(1).random((1, 3, 224, 224)).astype(np.float32)
    fastmvm._i8mm()  # (PyTorch's import, once per process, is not an image's time)
    fastrun._PLANS.clear()  # the first image starts cold, also when the area runs again in this process
    fastrun._ANALYSES.clear()
    paths = {"fast": (True, True), "instr": (False, True), "float": (True, False)}  # (Tile fast path, int8 GEMMs)
    best = dict.fromkeys(paths, float("inf"))
    outs = {}
    first = None
    saved = fastmvm.INT_GEMM, tile_mod.FAST
    try:
        for _ in range(runs):
            for k, (fast, i8) in paths.items():
                tile_mod.FAST, fastmvm.INT_GEMM = fast, i8
                c = time.process_time()
                y, st = compiler.run(b, x, stats=True, progress=False)
                t = time.process_time() - c
                first = t if first is None else first
                best[k] = min(best[k], t)
                outs[k] = (np.asarray(y).tobytes(), st.cycles)
    finally:
        fastmvm.INT_GEMM, tile_mod.FAST = saved
    if len({outs[k] for k in paths}) != 1:
        raise AssertionError("resnet18: the fast, instruction and float paths give different outputs or cycles")
    print(f"  resnet18 on isaac, one image: {best['fast']:.3f} s CPU (instruction path {best['instr']:.3f} s, "
          f"without int8 GEMMs {best['float']:.3f} s, first image {first:.3f} s), {outs['fast'][1]} cycles")
    return {"golden_resnet18_cpu_s": best["fast"], "golden_resnet18_instr_cpu_s": best["instr"],
            "golden_resnet18_float_cpu_s": best["float"], "golden_resnet18_first_cpu_s": first}


def run() -> dict[str, float]:
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(THREADS)
    except ImportError:  # threadpoolctl comes with scikit-learn; without it BLAS keeps its default
        limit = contextlib.nullcontext()
        print("  (threadpoolctl missing: BLAS threads not limited)")
    with limit:
        print(f"  timing the Tile instruction path (MVM on a batch of {M}); BLAS threads: {THREADS}, "
              f"best CPU time of {REPS}")
        rng = np.random.default_rng(2)
        out = {}
        cimaq = PRESETS["cimaq"]
        r = case("clip", cimaq, quantised_weights(rng, cimaq.rows, N_OUT), relu_activations(rng, M, cimaq.rows))
        out.update(golden_clip_vs_f32=r["ratio"], golden_clip_float_vs_f32=r["float"],
                   golden_clip_sliced_vs_f32=r["sliced"],
                   golden_clip_fraction=r["clip"])
        isaac = PRESETS["isaac"]
        r = case("lossless", isaac, quantised_weights(rng, isaac.rows, N_OUT), relu_activations(rng, M, isaac.rows))
        out.update(golden_lossless_vs_f32=r["ratio"], golden_lossless_float_vs_f32=r["float"],
                   golden_lossless_sliced_vs_f32=r["sliced"],
                   golden_lossless_fraction=r["clip"])
        # Worst case: weight magnitudes 112..127 (cell levels near their maxima) and inputs 192..255.
        w = rng.choice([-1, 1], (cimaq.rows, N_OUT)) * rng.integers(112, 128, (cimaq.rows, N_OUT))
        x = rng.integers(192, 256, (M, cimaq.rows)).astype(np.uint8)
        r = case("worst", cimaq, w, x)
        out.update(golden_worst_vs_f32=r["ratio"], golden_worst_float_vs_f32=r["float"],
                   golden_worst_sliced_vs_f32=r["sliced"],
                   golden_worst_fraction=r["clip"])
        out.update(resnet18_image())
    return out
