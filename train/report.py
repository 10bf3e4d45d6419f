"""Outputs of a sparse-training run: a metrics table (CSV and Markdown), per-epoch JSON, and plots.

Written atomically into the output directory (each file is written to a temporary name, then renamed),
so an interrupted run never leaves a half-written table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["metrics_rows", "markdown_table", "write_outputs"]

COLUMNS = ("method", "sparsity", "measured_sparsity", "final_acc", "steps", "update_cycles",
           "update_cycles_per_step", "forward_cycles", "mask_cycles", "fit_error", "seconds")


def metrics_rows(results) -> list[dict]:
    rows = []
    for r in results:
        steps = max(r.steps, 1)
        rows.append({
            "method": r.method, "sparsity": r.sparsity, "measured_sparsity": round(r.measured_sparsity, 4),
            "final_acc": round(r.final_acc, 4), "steps": r.steps, "update_cycles": r.update_cycles,
            "update_cycles_per_step": round(r.update_cycles / steps, 1),
            "forward_cycles": int(r.cycles.get("forward", 0)),
            "mask_cycles": int(r.cycles.get("mask", 0) + r.cycles.get("regrow", 0)),
            "fit_error": None if r.fit_error is None else round(r.fit_error, 3), "seconds": round(r.seconds, 1),
        })
    return rows


def markdown_table(rows: list[dict]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in rows:
        out.append("| " + " | ".join("" if row[c] is None else str(row[c]) for c in COLUMNS) + " |")
    return "\n".join(out) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_fig(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)


def write_outputs(out: Path, results_by_sparsity: dict, schedule: dict) -> list[Path]:
    """metrics.csv, metrics.md, history.json, accuracy.png, sparsity.png, cycles.png in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    all_results = [r for rs in results_by_sparsity.values() for r in rs]
    rows = metrics_rows(all_results)
    written = []
    p = out / "metrics.csv"
    _write(p, ",".join(COLUMNS) + "\n" + "".join(",".join("" if row[c] is None else str(row[c]) for c in COLUMNS)
                                                  + "\n" for row in rows))
    written.append(p)
    p = out / "metrics.md"
    _write(p, markdown_table(rows))
    written.append(p)
    p = out / "history.json"
    _write(p, json.dumps({"schedule": schedule, "results": [r.to_dict() for r in all_results]}, indent=1))
    written.append(p)

    # Accuracy per epoch, every method, at the first (or only) sparsity.
    first = next(iter(results_by_sparsity.values()))
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in first:
        xs = list(range(len(r.epochs)))
        ax.plot(xs, [e["acc"] for e in r.epochs], marker=".", label=r.method)
    if first:
        ax.set_xticks(range(len(first[0].epochs)))
        ax.set_xticklabels([e["phase"][:5] for e in first[0].epochs], rotation=60, fontsize=7)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"accuracy per epoch (sparsity {first[0].sparsity:.0%})" if first else "accuracy per epoch")
    ax.legend()
    p = out / "accuracy.png"
    _save_fig(fig, p)
    plt.close(fig)
    written.append(p)

    fig, ax = plt.subplots(figsize=(5, 4))
    methods = sorted({r.method for r in all_results}, key=[r.method for r in all_results].index)
    for m in methods:
        pts = sorted((sp, r.final_acc) for sp, rs in results_by_sparsity.items() for r in rs if r.method == m)
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=m)
    ax.set_xlabel("sparsity")
    ax.set_ylabel("final test accuracy")
    ax.set_title("accuracy against sparsity")
    ax.legend()
    p = out / "sparsity.png"
    _save_fig(fig, p)
    plt.close(fig)
    written.append(p)

    fig, ax = plt.subplots(figsize=(5, 4))
    tile_rows = [row for row in metrics_rows(first) if row["method"] != "float"]
    ax.bar([row["method"] for row in tile_rows], [row["update_cycles_per_step"] for row in tile_rows])
    ax.set_ylabel("update cycles per training step (golden model)")
    ax.set_title("update cost per method")
    p = out / "cycles.png"
    _save_fig(fig, p)
    plt.close(fig)
    written.append(p)
    return written
