"""The feature map: a sample of the images placed in 2-D by the first two principal components of
their (unit-length) features, fitted on the sample (scikit-learn's randomized PCA): the same map for
the same OUT and seed."""

from __future__ import annotations

import numpy as np


def sample(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Row numbers of `count` rows (all if fewer), every class in proportion, in row order."""
    if len(labels) <= count:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(labels), count, replace=False))


def project(X: np.ndarray, seed: int) -> np.ndarray:
    """(n, 2) coordinates scaled to [0, 1]."""
    from sklearn.decomposition import PCA

    X = np.asarray(X, dtype=np.float32)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    if len(X) < 3:
        return np.full((len(X), 2), 0.5)
    xy = PCA(2, svd_solver="randomized", random_state=seed).fit_transform(X)
    low, high = xy.min(axis=0), xy.max(axis=0)
    return (xy - low) / np.where(high > low, high - low, 1.0)
