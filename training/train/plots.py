"""Figures for the run folder (and, drawn onto a given Figure, for the wizard).

Matplotlib's object API only (``Figure`` + Agg canvas): no pyplot state, safe
in worker threads and embeddable in Qt via ``FigureCanvasQTAgg``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from training.common import atomic
from training.train import run_folder


def draw_curves(fig: Figure, history: Sequence[dict], title: str = "", best_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch, train vs validation (the paper's Figures 3-5)."""
    fig.clear()
    ax_l, ax_a = fig.subplots(1, 2)
    ep = [h["epoch"] for h in history]
    for ax, key, name in ((ax_l, "loss", "Loss"), (ax_a, "acc", "Accuracy")):
        ax.plot(ep, [h[f"train_{key}"] for h in history], "o-", ms=3, label="train")
        ax.plot(ep, [h[f"val_{key}"] for h in history], "s-", ms=3, label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"chosen epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if key == "acc":
            ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()


def draw_confusion(ax, cm: dict[str, int], title: str = "") -> None:
    """Rows = actual, columns = predicted; COVID first, as in the paper's Tables 3-5."""
    m = np.array([[cm["tp"], cm["fn"]], [cm["fp"], cm["tn"]]])
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, m.max()))
    names = ["COVID", "Normal"]
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=14,
                    color="white" if m[i, j] > m.max() / 2 else "black")
    if title:
        ax.set_title(title)


def draw_reliability(ax, bins: Sequence[dict], ece: float, title: str = "") -> None:
    xs = [b["mean_p"] for b in bins if b["n"]]
    ys = [b["frac_pos"] for b in bins if b["n"]]
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(xs, ys, "o-", label=f"model (ECE {ece:.3f})")
    ax.set_xlabel("predicted P(COVID)")
    ax.set_ylabel("observed fraction COVID")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    atomic.write_with(path, lambda tmp: fig.savefig(str(tmp), dpi=dpi, format="png"))


def save_model_plots(folder: str | Path, history: Sequence[dict], result: dict[str, Any]) -> None:
    folder = Path(folder)
    label = result["label"]
    fig = Figure(figsize=(9, 3.6))
    draw_curves(fig, history, f"{label}: loss and accuracy", result.get("best_epoch"))
    save_figure(fig, folder / run_folder.CURVES)
    test = result["evaluations"]["test"]["at_0.5"]
    fig = Figure(figsize=(3.8, 3.4))
    draw_confusion(fig.add_subplot(111), test["confusion"], f"{label} (test, n={test['n']})")
    fig.tight_layout()
    save_figure(fig, folder / run_folder.CONFUSION)
    fig = Figure(figsize=(4, 3.8))
    draw_reliability(fig.add_subplot(111), test["reliability"], test["ece"], f"{label}: reliability (test)")
    fig.tight_layout()
    save_figure(fig, folder / run_folder.RELIABILITY)
