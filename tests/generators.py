"""Data the tests and benchmarks generate: N classes of coloured shapes (for everything that must not
assume two classes), and synthetic embeddings with planted near-copies (for the neighbour search
and the audit at scale). The demo's cats-vs-dogs folder is catdog's own (`catdog.synthetic`)."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
from PIL import Image

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


def features_out(folder, n: int, dim: int = 16, classes: int = 5, images: bool = False, seed: int = 0):
    """An OUT of `n` rows written through catdog's own writer and manifest, as `catdog extract` would
    leave it: `classes` overlapping classes of Gaussian vectors (thousands of likely label errors at
    100,000 rows, few copies), 80 % train and 20 % test. With `images`, a small picture behind every
    row (for thumbnails); without, the rows name files that are not there."""
    from catdog import storage
    from catdog.config import ExtractConfig
    from catdog.extraction.imagefolder import ImageSet
    from catdog.extraction.metadata import compat_settings, feature_metadata
    from catdog.store import features, manifest
    from catdog.store.manifest import Manifest

    names = tuple(f"c{k}" for k in range(classes))
    config = ExtractConfig(root=str(folder / "images"), out=str(folder / "out"), weights="none", image_size=32,
                           backbone="mobilenet_v3_small")
    meta = feature_metadata(config, ImageSet(storage.resolve(config.root), "split", names, (), (), ()),
                            {"source": "none", "seed": 0})
    meta["feature_dim"], meta["feature_shape"] = dim, [dim]
    out = storage.resolve(config.out)
    writer = features.ShardWriter(out, features.feature_schema(meta), names)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.6, (classes, dim))
    step = 20_000
    for start in range(0, n, step):
        rows = min(step, n - start)
        y = rng.integers(0, classes, rows)
        X = (centres[y] + rng.normal(0, 1, (rows, dim))).astype(np.float32)
        split = "train" if start < n * 0.8 else "test"
        paths = [f"{split}/{names[k]}/{start + i:07d}.jpg" for i, k in enumerate(y)]
        if images:
            for path, k in zip(paths, y):
                os.makedirs(os.path.join(config.root, os.path.dirname(path)), exist_ok=True)
                shape_image(int(k), 32, rng).save(os.path.join(config.root, path), quality=80)
        writer.write(split, f"part-{start:07d}.parquet", paths, y, X, [])
    manifest.write(out, Manifest(compat=compat_settings(config, meta, out), features=meta,
                                 config={"root": config.root, "out": config.out, "weights": "none", "image_size": 32},
                                 status="complete"))
    return out
