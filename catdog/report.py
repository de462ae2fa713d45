"""How good a head is: metrics per split, a printed table, JSON, and matplotlib figures."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, roc_auc_score  # noqa: E402

WRONG_GRID = 16


def metrics(p: np.ndarray, y: np.ndarray) -> dict:
    predicted = (p >= 0.5).astype(int)
    both = len(set(y.tolist())) == 2
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, predicted)),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "confusion_matrix": confusion_matrix(y, predicted, labels=[0, 1]).tolist(),
    }


def table(by_split: dict[str, dict]) -> str:
    lines = [f"{'split':<12}{'n':>7}{'accuracy':>10}{'roc_auc':>9}{'log_loss':>10}  confusion [[tn fp] [fn tp]]"]
    for split, m in by_split.items():
        auc = "-" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        lines.append(f"{split:<12}{m['n']:>7}{m['accuracy']:>10.3f}{auc:>9}{m['log_loss']:>10.4f}  {m['confusion_matrix']}")
    return "\n".join(lines)


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


def most_confidently_wrong(p: np.ndarray, y: np.ndarray, k: int = WRONG_GRID) -> np.ndarray:
    wrong = np.flatnonzero((p >= 0.5) != (y == 1))
    return wrong[np.argsort(-np.abs(p[wrong] - 0.5))][:k]
