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
    """Rows normalised by the true class (the recall on the diagonal), so classes of any size compare;
    counts written in the cells while they fit, labels turned when there are many."""
    cm = np.asarray(matrix, dtype=float)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    side = max(4.5, 0.32 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 12:
        for (i, j), value in np.ndenumerate(cm):
            ax.text(j, i, f"{int(value)}\n{rates[i, j]:.0%}", ha="center", va="center", fontsize=12 if n <= 4 else 8,
                    color="white" if rates[i, j] > 0.5 else "black")
    small = 10 if n <= 20 else 7
    ax.set_xticks(range(n), classes, rotation=0 if n <= 4 else 90, fontsize=small)
    ax.set_yticks(range(n), classes, fontsize=small)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (rows sum to 1)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_wrong(pictures: list[np.ndarray], captions: list[str], path: str, title: str) -> None:
    """The most confidently wrong images, each captioned with the predicted and the true class."""
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


def plot_map(points: np.ndarray, labels: np.ndarray, classes: list[str], thumbnails: list[tuple[int, np.ndarray]],
             path: str, title: str) -> None:
    """A 2-D map of features coloured by class, with a few images placed at their points."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    fig, ax = plt.subplots(figsize=(9, 8))
    colours = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for k, name in enumerate(classes):
        mine = labels == k
        if mine.any():
            ax.scatter(points[mine, 0], points[mine, 1], s=12, color=colours(k % colours.N), label=name, alpha=0.8)
    for index, picture in thumbnails:
        box = OffsetImage(picture, zoom=min(1.0, 40 / max(picture.shape[:2])))
        edge = colours(int(labels[index]) % colours.N)  # the frame in the class's colour: the point is under it
        ax.add_artist(AnnotationBbox(box, points[index], frameon=True, pad=0.1, bboxprops={"edgecolor": edge, "linewidth": 2}))
    if len(classes) <= 30:
        ax.legend(fontsize=8, markerscale=2, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pairs(pairs: list[tuple[np.ndarray, np.ndarray, str]], path: str, title: str) -> None:
    """A contact sheet: one row per pair of images, the caption above the pair."""
    fig, axes = plt.subplots(len(pairs), 2, figsize=(5, 2.6 * len(pairs)), squeeze=False)
    for (a, b, caption), row in zip(pairs, axes):
        for ax, picture in zip(row, (a, b)):
            ax.imshow(picture)
            ax.axis("off")
        row[0].set_title(caption, fontsize=8, loc="left")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_heatmap(picture: np.ndarray, heatmap: np.ndarray, caption: str, path: str) -> None:
    """The photo and the photo under its class activation heatmap, side by side."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4.3))
    left.imshow(picture)
    right.imshow(picture)
    right.imshow(heatmap, cmap="jet", alpha=0.45, vmin=0, vmax=1, extent=(-0.5, picture.shape[1] - 0.5, picture.shape[0] - 0.5, -0.5))
    for ax in (left, right):
        ax.axis("off")
    fig.suptitle(caption, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
