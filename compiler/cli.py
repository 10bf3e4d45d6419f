"""``cimtile``: compile a quantised ONNX model for the tile, run it, report cycles, disassemble.

Every error is one line on stderr (``cimtile: error: ...``) with exit code 1; usage errors exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .errors import CompileError

__all__ = ["register"]


def _tile_help() -> str:
    from cimtile.hw.params import PRESETS

    return (f"tile configuration: a preset ({', '.join(PRESETS)}) or a TileConfig JSON file (format: "
            "docs/tile-config.md) (default: %(default)s)")


def register(sub) -> None:
    """Add the compiler's verbs (compile, run, report, disasm) to the ``cimtile`` command's subparsers."""
    c = sub.add_parser("compile", help="compile MODEL.onnx to a program bundle directory",
                       description="Compile a quantized ONNX model into a bundle directory (microcode, weight "
                       "images, the resolved tile configuration, the cycle report). Nothing is written unless "
                       "compilation succeeds.")
    c.add_argument("model", help="quantized ONNX model file (QDQ/QCDQ, QLinear*, *Integer or QONNX Quant)")
    c.add_argument("--tile", default="isaac", help=_tile_help())
    c.add_argument("-o", "--out", required=True, help="output bundle directory: new, empty, or an existing bundle "
                   "(replaced); any other directory is refused")
    c.add_argument("--calibrate", metavar="X.npy", default=None,
                   help="calibrated mapping: up to the array's rows per crossbar tile, each layer's ADC range shift "
                   "chosen on these inputs (a batch of the model's first input; docs/compiler.md). Default: exact "
                   "mapping (no conversion can clip)")
    r = sub.add_parser("run", help="run a bundle on an input",
                       description="Run a compiled bundle on an input array; writes the model's first output.")
    r.add_argument("bundle", help="bundle directory written by 'cimtile compile'")
    r.add_argument("--input", required=True, help="X.npy: the model's first input as ONNX takes it (float32 for a "
                   "float input, the batch first)")
    r.add_argument("-o", "--out", required=True, help="Y.npy: the first output as onnxruntime returns it "
                   "(written whole, by a rename, when the run succeeded)")
    r.add_argument("--backend", choices=("golden", "rtl"), default="golden",
                   help="golden: the NumPy golden model (default); rtl: the generated RTL under Verilator "
                   "(slow; the first use of a configuration builds its model, minutes)")
    r.add_argument("--stats", action="store_true", help="print the cycles per layer on stderr")
    r.add_argument("--device", default=None, metavar="PRESET_OR_JSON",
                   help="device non-idealities (sim.device preset name or DeviceModel JSON; default: ideal)")
    rep = sub.add_parser("report", help="per-layer cycle report",
                         description="The bundle's tile configuration and its per-layer cycle report.")
    rep.add_argument("bundle", help="bundle directory written by 'cimtile compile'")
    rep.add_argument("--json", action="store_true", help="print the report (with the tile configuration) as JSON")
    rep.add_argument("--batch", type=int, default=1, metavar="N",
                     help="cycles for a batch of N images, each layer on the schedule the runtime uses for N: for "
                     "N > 1 every crossbar tile programmed once, compute N times (docs/compiler.md, Batch schedule; "
                     "default 1)")
    d = sub.add_parser("disasm", help="readable microcode", description="Disassemble every program of a bundle.")
    d.add_argument("bundle", help="bundle directory written by 'cimtile compile'")
    for p in (c, r, rep, d):
        p.set_defaults(func=_main)


def _main(args) -> int:
    from . import api

    if args.cmd == "compile":
        if args.calibrate is not None:
            from .outputs import check_bundle_target

            check_bundle_target(args.out)  # a bad -o fails before the calibration inputs are read
            cal = _load_npy(args.calibrate)
            b = api.compile_model(args.model, args.tile, out=args.out, mapping="calibrated", calibration=cal)
        else:
            b = api.compile_model(args.model, args.tile, out=args.out)
        t = b.report["totals"]
        print(f"compiled {args.model} for {b.cfg.name}: {len(b.model.layers)} tile layers, {t['words']} words in "
              f"{t['programs']} programs, {t['cycles']} cycles per image ({t['program_cycles']} weight programming, "
              f"{t['compute_cycles']} compute), {b.report['mapping']} mapping -> {args.out}")
        return 0
    if args.cmd == "run":
        from .outputs import check_parent, save_npy

        check_parent(args.out)  # a bad -o fails now, not after the run
        if Path(args.out).is_dir():
            raise CompileError(f"output {args.out} is a directory (expected a .npy file name)")
        b = api.load(args.bundle)
        x = _load_npy(args.input)
        y, st = api.run(b, x, backend=args.backend, stats=True, device=args.device)
        save_npy(args.out, y)
        if args.stats:
            for name, c in st.layer_cycles.items():
                print(f"{name}: {c} cycles ({st.program_cycles.get(name, 0)} weight programming)", file=sys.stderr)
        print(f"{args.backend}: {st.images} input(s), {st.cycles} cycles -> {args.out}", file=sys.stderr)
        return 0
    if args.cmd == "report":
        b = api.load(args.bundle)
        rep = dict(api.report(b, as_json=True, batch=args.batch), tile_config=b.cfg.to_dict())  # as compiled
        if args.json:
            print(json.dumps(rep, indent=1))
        else:
            from .report import format_report

            sys.stdout.write(format_report(rep))
        return 0
    if args.cmd == "disasm":
        sys.stdout.write(api.disasm(args.bundle))
        return 0
    return 2  # pragma: no cover - argparse rejects other commands


def _load_npy(path: str) -> np.ndarray:
    """An array from a .npy file, never unpickled; one-line CompileError otherwise."""
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CompileError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise CompileError(f"cannot read {path}: it is a directory (expected a .npy file)") from None
    except (OSError, ValueError, EOFError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CompileError(f"cannot read {path}: not a .npy array ({why})") from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        x.close()
        raise CompileError(f"cannot read {path}: an .npz archive; expected one array in a .npy file")
    return x
