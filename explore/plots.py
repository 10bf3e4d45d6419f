"""Plots of an exploration (matplotlib, Agg backend): every candidate and each strategy's front."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plots"]

_AXES = (("latency", "latency (cycles / image)"), ("energy_pj", "energy (pJ / image)"), ("area_mm2", "area (mm$^2$)"))
_COLORS = {"joint": "tab:red", "hardware": "tab:blue", "network": "tab:green", "precision": "tab:purple"}


def plots(out: Path, per: dict, fronts: dict, ref: dict) -> None:
    """``objectives.png``: accuracy against latency, energy and area for every candidate (fronts outlined);
    ``fronts.png``: each strategy's Pareto front alone in the same three projections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    for name, only_front in (("objectives.png", False), ("fronts.png", True)):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
        for ax, (k, label) in zip(axes, _AXES):
            for s, rs in per.items():
                col = _COLORS.get(s, "k")
                ok = [r for r in rs if r["status"] == "ok"]
                f = sorted(fronts[s], key=lambda r: r[k])
                if not only_front:
                    ax.scatter([r[k] for r in ok], [r["acc"] for r in ok], s=10, alpha=0.35, color=col)
                ax.scatter([r[k] for r in f], [r["acc"] for r in f], s=28, color=col, edgecolors="k", linewidths=0.5,
                           label=f"{s} ({len(f)} on front)" if ax is axes[0] else None)
                if only_front:  # the 2-D envelope of the 4-D front in this projection
                    best, xs, ys = -1.0, [], []
                    for r in f:
                        if r["acc"] > best:
                            best = r["acc"]
                            xs.append(r[k])
                            ys.append(r["acc"])
                    ax.step(xs, ys, where="post", color=col, lw=1)
            ax.scatter([ref[k]], [ref["acc"]], marker="s", color="k", s=30,
                       label="reference" if ax is axes[0] else None)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(label)
        axes[0].set_ylabel("validation accuracy, golden model (%)")
        axes[0].legend(fontsize=7)
        fig.suptitle("every candidate (front outlined)" if not only_front else "Pareto front of each strategy "
                     "(4 objectives; steps: the 2-D envelope)", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
