"""PNG figures of training curves (matplotlib).

No backend is forced: headless, matplotlib picks Agg itself; in a notebook the figures stay inline.
Each figure is closed after saving."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt


def plot_runs(runs: Mapping[str, Sequence[dict]], path: Path, title: str = "") -> Path:
    """Test accuracy, training loss and alignment (cosine, per hidden layer) against epoch.

    ``runs`` maps a label (e.g. the mode) to its list of per-epoch metric records
    (the lines of ``metrics.jsonl``).
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for label, recs in runs.items():
        ep = [r["epoch"] for r in recs]
        axes[0].plot(ep, [100 * r["test_accuracy"] for r in recs], marker="o", label=label)
        axes[1].plot(ep, [r["train_loss"] for r in recs], marker="o", label=label)
        layers = recs[-1].get("alignment") or [] if recs else []
        for j in range(len(layers)):
            cos = [r["alignment"][j]["cos_update"] if r.get("alignment") else float("nan") for r in recs]
            axes[2].plot(ep, cos, marker="o", label=f"{label} layer {j + 1}")
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)")
    axes[1].set(xlabel="epoch", ylabel="training loss", yscale="log")
    axes[2].set(xlabel="epoch", ylabel="cos(DFA update, BP gradient)", ylim=(-0.1, 1.0))
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
