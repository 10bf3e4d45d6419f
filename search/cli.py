"""``cimtile cost`` (a policy's cost by CIM-AQ's formula or in the tile's exact cycles) and ``cimtile search``."""

from __future__ import annotations

import json
import sys

__all__ = ["register"]


def _tile_help() -> str:
    from cimtile.hw.params import PRESETS

    return (f"tile configuration: a preset ({', '.join(PRESETS)}) or a TileConfig JSON file (format: "
            "docs/tile-config.md) (default: %(default)s)")


def register(sub) -> None:
    """Add the search's verbs (cost, search) to the ``cimtile`` command's subparsers."""
    c = sub.add_parser("cost", help="cost of a mixed-precision policy: CIM-AQ's formula or the tile's exact cycles")
    c.add_argument("layers", help="CIM-AQ layer file (YAML, layer_dimensions) or a quantized ONNX model")
    c.add_argument("--policy", required=True, help="POLICY.npy or .json: [w_bits, a_bits] per layer, in order")
    c.add_argument("--hw", default="cimaq-formula",
                   help="cimaq-formula (the paper's latency formula, default) or a tile configuration, a preset or "
                        "a TileConfig JSON file (the tile's exact cycles)")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(func=_cost)
    s = sub.add_parser("search", help="search per-layer weight/activation bits on the tile's exact cycles")
    s.add_argument("--model", default="lenet", help="zoo model: lenet, vgg, resnet, vit (default lenet)")
    s.add_argument("--data", default="digits", choices=("digits", "mnist"), help="data set (default digits)")
    s.add_argument("--tile", default="isaac", help=_tile_help())
    s.add_argument("--agent", default="ddpg", choices=("ddpg", "random", "tpe", "greedy"),
                   help="ddpg (CIM-AQ's agent, default), random, tpe (optuna) or greedy (one step at a time)")
    s.add_argument("--budget", type=int, default=40, help="policies evaluated (default 40)")
    s.add_argument("--max-loss", type=float, default=1.0, help="accuracy budget in points below W8A8 (default 1)")
    s.add_argument("--cost", default="compute", choices=("compute", "total", "batch"),
                   help="what the search minimises: compute cycles (default), compute + weight programming for one "
                        "image, or for a batch of 1,000")
    s.add_argument("--finetune-epochs", type=float, default=0.5, help="short fine-tune per evaluated policy")
    s.add_argument("--final-epochs", type=float, default=3.0, help="final fine-tune of the chosen policy")
    s.add_argument("--screen-loss", type=float, default=None,
                   help="the search's own target, points below W8A8 after the short fine-tune (default: --max-loss); "
                        "a looser screen leaves --max-loss to the final candidates' long fine-tune")
    s.add_argument("--final-candidates", type=int, default=1,
                   help="the K cheapest policies within the budget get the final fine-tune; the cheapest whose "
                        "validation accuracy stays within --max-loss of W8A8's (same fine-tune) is chosen (default 1)")
    s.add_argument("--final-seeds", type=int, default=1,
                   help="final fine-tunes (seeds) of W8A8 and the chosen policy; the reported accuracies and loss "
                        "are their means over the test split, golden model (default 1)")
    s.add_argument("--pin-first-last", action="store_true", help="first and last layers W8A8 (CIM-AQ option)")
    s.add_argument("--cell-multiples", action="store_true",
                   help="weight bits only multiples of the tile's cell bits (CIM-AQ's consider_cell_resolution)")
    s.add_argument("--workers", type=int, default=1, help="Ray workers (1: in-process)")
    s.add_argument("--ray-address", default=None, help="join an existing Ray cluster")
    s.add_argument("--seed", type=int, default=0, help="seed of the agent and of every fine-tune (default 0)")
    s.add_argument("--device", default=None,
                   help="device model (a preset of docs/devices.md or a DeviceModel JSON file): every "
                        "evaluated policy's accuracy is its compiled bundle's on the golden model with this device "
                        "(docs/devices.md; default: fake-quantised accuracy, ideal tile)")
    s.add_argument("-o", "--out", required=True,
                   help="output directory; a search rerun on it (after an interruption, or to extend it) takes the "
                        "evaluations it has already made from its journal (evaluations.jsonl) instead of repeating "
                        "them")
    s.set_defaults(func=_search)


def _fmt_table(hdr, rows) -> str:
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _cost(args) -> int:
    from pathlib import Path

    from .cost import CostModel, PolicyError, _check_policy, load_policy

    pol = load_policy(args.policy)
    path = Path(args.layers)
    if path.suffix == ".onnx":
        if args.hw == "cimaq-formula":
            raise PolicyError("--hw cimaq-formula needs a CIM-AQ layer file (YAML), not an ONNX model")
        cm = CostModel(path, args.hw)
        _check_policy(pol, len(cm))
        r, b = cm.query(pol), cm.uniform(8)
        names = cm.names
        per = [(x.cycles, x.program_cycles, x.adc_conversions, x.xbar_tiles) for x in r.layers]
        base = [(x.cycles, x.program_cycles, x.adc_conversions, x.xbar_tiles) for x in b.layers]
        init = cm.init_cycles
        return _print_tile(args, names, ["Conv/Gemm"] * len(names), pol, per, base, init, cm.cfg.name,
                           "reference weights requantised per channel (search.cost.quantize_weights)")
    from .cimaq import formula_latency, load_layers, tile_cost_from_shapes

    layers = load_layers(path)
    _check_policy(pol, len(layers))
    names = [f"{i}" for i in range(len(layers))]
    if args.hw == "cimaq-formula":
        lat, lat8 = formula_latency(layers, pol), formula_latency(layers, [(8, 8)] * len(layers))
        tot, tot8 = sum(lat), sum(lat8)
        if args.json:
            print(json.dumps({"hw": "cimaq-formula", "unit": "us", "policy": pol, "layers": lat, "w8a8_layers": lat8,
                              "total": tot, "w8a8_total": tot8, "speedup": tot8 / tot}, indent=2))
            return 0
        rows = [(i, L.type, L.input_dim, L.output_dim, L.mvm_invocations, L.repeat_factor, w, a, f"{x:.1f}",
                 f"{y:.1f}") for i, (L, (w, a), x, y) in enumerate(zip(layers, pol, lat, lat8))]
        print("CIM-AQ latency formula (256x256 crossbar, 4-bit cells, 1-bit inputs, 56 us per write, 1.4 us per "
              "MVM step)\n")
        print(_fmt_table(["layer", "type", "n (rows)", "m (cols)", "mvm", "repeat", "w", "a", "policy us",
                          "W8A8 us"], rows))
        print(f"\ntotal: policy {tot:.1f} us, W8A8 {tot8:.1f} us, speedup {tot8 / tot:.3f}x")
        return 0
    from cimtile.compiler.codegen import init_program
    from cimtile.compiler.report import program_cycles
    from cimtile.hw.params import load_config

    try:
        cfg = load_config(args.hw)
    except Exception as e:
        raise PolicyError(f"--hw: {e}") from None
    tp, t8 = tile_cost_from_shapes(layers, pol, cfg), tile_cost_from_shapes(layers, [(8, 8)] * len(layers), cfg)
    per = [(x["cycles"], x["program_cycles"], x["adc_conversions"], x["xbar_tiles"]) for x in tp]
    base = [(x["cycles"], x["program_cycles"], x["adc_conversions"], x["xbar_tiles"]) for x in t8]
    host = sum(x["host_macs"] for x in tp)
    return _print_tile(args, names, [L.type for L in layers], pol, per, base, program_cycles(cfg, init_program(cfg)),
                       cfg.name, "worst-case weights (every weight at its largest magnitude), from shapes alone",
                       host)


def _print_tile(args, names, types, pol, per, base, init, tile, weights, host_macs=0) -> int:
    tot = [sum(x[k] for x in per) for k in range(4)]
    tot8 = [sum(x[k] for x in base) for k in range(4)]
    cyc, cyc8 = tot[0] + init, tot8[0] + init
    comp, comp8 = cyc - tot[1], cyc8 - tot8[1]
    res = {"hw": tile, "unit": "cycles", "weights": weights, "policy": pol, "init_cycles": init,
           "layers": [{"name": n, "cycles": c, "program_cycles": p, "compute_cycles": c - p, "adc_conversions": a,
                       "xbar_tiles": t} for n, (c, p, a, t) in zip(names, per)],
           "total": {"cycles": cyc, "compute_cycles": comp, "program_cycles": tot[1], "adc_conversions": tot[2],
                     "xbar_tiles": tot[3]},
           "w8a8_total": {"cycles": cyc8, "compute_cycles": comp8, "program_cycles": tot8[1],
                          "adc_conversions": tot8[2], "xbar_tiles": tot8[3]},
           "speedup_compute": comp8 / comp, "speedup_total": cyc8 / cyc, "host_macs": host_macs}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    rows = [(n, t, w, a, c - p, p, adc, xt, b[0]) for n, t, (w, a), (c, p, adc, xt), b in
            zip(names, types, pol, per, base)]
    print(f"tile {tile}: exact cycles for one image ({weights})\n")
    print(_fmt_table(["layer", "type", "w", "a", "compute cycles", "weight-load cycles", "ADC conv", "xbar tiles",
                      "W8A8 cycles"], rows))
    print(f"\ninit (mask clear): {init} cycles")
    print(f"total: policy {cyc} cycles ({comp} compute + {tot[1]} weight loads), W8A8 {cyc8} ({comp8} + {tot8[1]})")
    print(f"speedup: {comp8 / comp:.3f}x compute cycles, {cyc8 / cyc:.3f}x compute + weight loads")
    if host_macs:
        print(f"host MACs (MatMul entries, activation x activation, not on the tile): {host_macs}")
    sys.stdout.flush()
    return 0


def _search(args) -> int:
    from .run import SearchConfig, search

    cfg = SearchConfig(model=args.model, data=args.data, tile=args.tile, agent=args.agent, budget=args.budget,
                       max_loss=args.max_loss, cost=args.cost, finetune_epochs=args.finetune_epochs,
                       final_epochs=args.final_epochs, pin_first_last=args.pin_first_last,
                       cell_multiples=args.cell_multiples, workers=args.workers, ray_address=args.ray_address,
                       seed=args.seed, device=args.device, final_candidates=args.final_candidates,
                       final_seeds=args.final_seeds, screen_loss=args.screen_loss)
    res = search(cfg, args.out)
    print(res.summary())
    return 0
