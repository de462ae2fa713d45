"""Small synthetic image folders in the tutorial's layout, for demos and tests.

`make_demo_folder`: cats vs dogs, two classes that differ in colour and texture, so they separate
even with randomly initialised VGG16 weights; photos are not needed to see the pipeline work.
`make_shapes_folder`: N classes of coloured shapes, for everything that must not assume two.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

CLASSES = ("cats", "dogs")
SPLITS = {"train": 0.5, "validation": 0.25, "test": 0.25}


def synthetic_image(label: int, size: int, rng: np.random.Generator) -> Image.Image:
    """Cats: cool tones with soft blobs; dogs: warm tones with stripes; both noisy and varied."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(3, 8)
    if label == 0:
        pattern = np.sin(freq * np.hypot(xx - rng.uniform(), yy - rng.uniform()) * 2 + phase)
        base = np.array([60, 110, 190]) + rng.normal(0, 20, 3)
    else:
        pattern = np.sign(np.sin(freq * (xx * rng.uniform(0.5, 1.5) + yy) * 2 * np.pi + phase))
        base = np.array([190, 110, 60]) + rng.normal(0, 20, 3)
    pixels = base + 50 * pattern[..., None] + rng.normal(0, 15, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_demo_folder(root: str, per_class: int = 40, size: int = 64, seed: int = 0, splits: dict | None = None) -> str:
    """Write ROOT/{train,validation,test}/{cats,dogs}/NNNN.jpg; `per_class` images per class in all."""
    rng = np.random.default_rng(seed)
    fractions = SPLITS if splits is None else splits
    counts = [round(per_class * f) for f in list(fractions.values())[:-1]]
    counts.append(per_class - sum(counts))
    for label, name in enumerate(CLASSES):
        start = 0
        for split, count in zip(fractions, counts):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(start, start + count):
                synthetic_image(label, size, rng).save(os.path.join(folder, f"{name[:-1]}.{i}.jpg"), quality=90)
            start += count
    return root


@dataclass(frozen=True)
class Planted:
    """What `plant_problems` did to a demo folder, paths relative to its root."""

    misfiled: tuple[tuple[str, str], ...]  # (path now, the class it shows)
    duplicate: tuple[str, str]  # (the original in train, its re-saved copy in test)


def plant_problems(root: str, misfiled: int = 1) -> Planted:
    """Problems for `catdog audit` to find in a demo folder: `misfiled` images of each class moved to
    the other class's train folder, and one train image re-saved into test (leakage)."""
    chosen = [(name, CLASSES[1 - label], file) for label, name in enumerate(CLASSES)
              for file in sorted(os.listdir(os.path.join(root, "train", name)))[:misfiled]]  # all chosen, then moved
    original = f"train/{CLASSES[0]}/{sorted(os.listdir(os.path.join(root, 'train', CLASSES[0])))[-1]}"  # not moved
    moved = []
    for name, other, file in chosen:
        os.replace(os.path.join(root, "train", name, file), os.path.join(root, "train", other, file))
        moved.append((f"train/{other}/{file}", name))
    copy = f"test/{CLASSES[0]}/copy-of-{os.path.basename(original)}"
    Image.open(os.path.join(root, original)).save(os.path.join(root, copy), quality=80)
    return Planted(tuple(moved), (original, copy))


SHAPES = ("disc", "square", "ring", "cross", "bar")
HUES = ((220, 40, 40), (40, 90, 220), (40, 180, 60), (230, 200, 40), (160, 60, 200), (40, 200, 200),
        (240, 130, 30), (120, 120, 120), (250, 250, 250), (90, 50, 20))


def shape_classes(n: int) -> list[str]:
    """`n` class names, each a colour and a shape: hue-0-disc, hue-1-square, ..."""
    return [f"hue{k % len(HUES)}-{SHAPES[k % len(SHAPES)]}" for k in range(n)]


def shape_image(label: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One shape of the class's colour on a noisy grey ground, at a random place and scale."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = rng.uniform(0.22, 0.35) * size
    cy, cx = rng.uniform(r, size - r, 2)
    dy, dx = yy - cy, xx - cx
    shape = SHAPES[label % len(SHAPES)]
    mask = {"disc": np.hypot(dy, dx) < r, "square": np.maximum(abs(dy), abs(dx)) < r * 0.85,
            "ring": abs(np.hypot(dy, dx) - r * 0.75) < r * 0.25,
            "cross": (np.minimum(abs(dy), abs(dx)) < r * 0.3) & (np.maximum(abs(dy), abs(dx)) < r),
            "bar": (abs(dy) < r * 0.3) & (abs(dx) < r)}[shape]
    pixels = rng.normal(110, 25, (size, size, 3))
    pixels[mask] = np.array(HUES[label % len(HUES)]) + rng.normal(0, 12, (int(mask.sum()), 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_shapes_folder(root: str, classes: int = 10, per_class: int = 12, size: int = 48, seed: int = 0) -> str:
    """Write ROOT/{train,validation,test}/CLASS/NNNN.png: `classes` classes, `per_class` images each in all."""
    rng = np.random.default_rng(seed)
    counts = {"train": per_class - 2 * (per_class // 4), "validation": per_class // 4, "test": per_class // 4}
    for label, name in enumerate(shape_classes(classes)):
        i = 0
        for split, count in counts.items():
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for _ in range(count):
                shape_image(label, size, rng).save(os.path.join(folder, f"{i:04d}.png"))
                i += 1
    return root


class Embeddings(NamedTuple):
    X: np.ndarray  # (n, dim) float32
    pairs: np.ndarray  # (duplicates, 2): each planted near-copy and its original
    centres: np.ndarray  # (n,) the centre each row was drawn around: a class


def embeddings(n: int, dim: int, duplicates: int = 0, clusters: int = 1000, spread: float = 1.0,
               seed: int = 0) -> Embeddings:
    """`n` ReLU'd Gaussian vectors (unit noise) around `clusters` centres drawn with standard deviation
    `spread` (small: classes that overlap), float32, built in blocks; the last `duplicates` rows are
    near-copies of earlier rows (cosine about 0.99, the original's centre)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (clusters, dim)).astype(np.float32)
    X, which = np.empty((n, dim), np.float32), rng.integers(0, clusters, n)
    for start in range(0, n, 8192):
        rows = min(8192, n - start)
        X[start : start + rows] = centres[which[start : start + rows]] + rng.normal(0, 1, (rows, dim)).astype(np.float32)
    np.maximum(X, 0, out=X)
    copies = np.arange(n - duplicates, n)
    originals = rng.choice(n - duplicates, duplicates, replace=False)
    X[copies] = X[originals] + rng.normal(0, 0.05, (duplicates, dim)).astype(np.float32) * X[originals].std(axis=1, keepdims=True)
    which[copies] = which[originals]
    return Embeddings(X, np.stack([copies, originals], axis=1), which)
