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


def register(sub) -> None:
    """Add the compiler's verbs (compile, run, report, disasm) to the ``cimtile`` command's subparsers."""
    c = sub.add_parser("compile", help="compile MODEL.onnx to a program bundle directory")
    c.add_argument("model", help="quantized ONNX model")
    c.add_argument("--tile", default="isaac", help="TileConfig preset name or JSON file (default isaac)")
    c.add_argument("-o", "--out", required=True, help="output bundle directory")
    r = sub.add_parser("run", help="run a bundle on an input")
    r.add_argument("bundle")
    r.add_argument("--input", required=True, help="X.npy: the model's first input as ONNX takes it")
    r.add_argument("-o", "--out", required=True, help="Y.npy: the first output as onnxruntime returns it")
    r.add_argument("--backend", choices=("golden", "rtl"), default="golden")
    r.add_argument("--stats", action="store_true", help="print the cycles per layer on stderr")
    r.add_argument("--device", default=None, metavar="PRESET_OR_JSON",
                   help="device non-idealities (sim.device preset name or DeviceModel JSON; default: ideal)")
    rep = sub.add_parser("report", help="per-layer cycle report")
    rep.add_argument("bundle")
    rep.add_argument("--json", action="store_true")
    d = sub.add_parser("disasm", help="readable microcode")
    d.add_argument("bundle")
    for p in (c, r, rep, d):
        p.set_defaults(func=_main)


def _main(args) -> int:
    from . import api

    if args.cmd == "compile":
        b = api.compile_model(args.model, args.tile, out=args.out)
        t = b.report["totals"]
        print(f"compiled {args.model} for {b.cfg.name}: {len(b.model.layers)} tile layers, {t['words']} words in "
              f"{t['programs']} programs, {t['cycles']} cycles per image -> {args.out}")
        return 0
    if args.cmd == "run":
        b = api.load(args.bundle)
        try:
            x = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CompileError(f"cannot read {args.input}: {str(e).splitlines()[0]}") from None
        y, st = api.run(b, x, backend=args.backend, stats=True, device=args.device)
        out = Path(args.out)
        if out.parent and not out.parent.exists():
            out.parent.mkdir(parents=True)
        np.save(out, y)
        if args.stats:
            for name, c in st.layer_cycles.items():
                print(f"{name}: {c} cycles", file=sys.stderr)
        print(f"{args.backend}: {st.images} input(s), {st.cycles} cycles -> {args.out}", file=sys.stderr)
        return 0
    if args.cmd == "report":
        rep = api.report(args.bundle, as_json=True)
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
