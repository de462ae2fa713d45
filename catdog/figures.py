"""The figures a user looks at: learning curves, confusion matrix, the most confidently wrong images."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(history: dict, path: str, title: str) -> None:
    """Loss and accuracy, train vs validation, side by side: the two plots the tutorial draws."""
    x = history[history["x"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("acc", "loss")):
        ax.plot(x, history[metric], "o-", label=f"training {metric}")
        if history.get(f"val_{metric}"):
            ax.plot(x, history[f"val_{metric}"], "s-", label=f"validation {metric}")
        ax.set_xlabel(history["x"])
        ax.set_title(f"{title}: {'accuracy' if metric == 'acc' else 'loss'}")
        if history["x"] == "C":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: list[list[int]], classes: list[str], path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    cm = np.asarray(matrix)
    ax.imshow(cm, cmap="Blues")
    for (i, j), value in np.ndenumerate(cm):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > cm.max() / 2 else "black", fontsize=14)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_wrong(pictures: list[np.ndarray], captions: list[str], path: str, title: str) -> None:
    """The most confidently wrong images, each captioned with its probability and true class."""
    cols = min(4, len(pictures))
    rows = math.ceil(len(pictures) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, caption in zip(axes.flat, pictures, captions):
        ax.imshow(picture)
        ax.set_title(caption, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
