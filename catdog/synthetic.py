"""Small synthetic image folders in the tutorial's layout, for demos and tests.

`make_demo_folder`: cats vs dogs, two classes that differ in colour and texture, so they separate
even with randomly initialised VGG16 weights; photos are not needed to see the pipeline work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
