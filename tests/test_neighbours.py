"""Nearest neighbours, exact and approximate, against numpy's brute force (no Ray)."""

import numpy as np
import pytest

from catdog.insight import neighbours
from tests import generators


def features_with_copies(n=600, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.normal(0, 1, (n, dim)), 0).astype(np.float32)
    X[10] = X[3] * 2.0  # the same direction: cosine 1
    X[20] = X[5] + rng.normal(0, 0.01, dim).astype(np.float32)  # nearly the same
    X[30] = X[4]  # an exact copy: its own row and the copy tie at cosine 1
    return X


def brute_force(U, rows, top):
    full = U[rows] @ U.T
    full[np.arange(len(rows)), rows] = -np.inf
    order = np.argsort(-full, axis=1, kind="stable")[:, :top]
    return order, np.take_along_axis(full, order, 1)


def test_exact_search_equals_brute_force_and_never_names_the_row_itself():
    X = features_with_copies()
    U = neighbours.unit(X)
    np.testing.assert_allclose(np.linalg.norm(U, axis=1), 1, atol=1e-6)
    indices, sim, how = neighbours.search(U, 4)
    assert how.method == "exact" and how.recall is None
    _, expected = brute_force(U, np.arange(len(U)), 4)
    np.testing.assert_allclose(sim, expected, atol=1e-5)
    assert not (indices == np.arange(len(X))[:, None]).any()  # never an image's own row, even for exact copies
    assert indices[30, 0] == 4 and indices[4, 0] == 30


def test_auto_is_exact_while_quick_and_approximate_beyond(monkeypatch):
    U = neighbours.unit(features_with_copies())
    monkeypatch.setattr(neighbours, "EXACT_WORK", 600 * 600 * 64)
    assert neighbours.search(U, 3)[2].method == "exact"
    monkeypatch.setattr(neighbours, "EXACT_WORK", 600 * 600 * 64 - 1)
    assert neighbours.search(U, 3)[2].method == "approximate"


@pytest.mark.slow
def test_approximate_search_finds_planted_duplicates_among_60000_rows_and_reports_its_recall():
    X, planted, _ = generators.embeddings(60_000, 64, duplicates=300, clusters=200, seed=1)
    U = neighbours.unit(X)
    indices, sim, how = neighbours.search(U, 5, method="approximate", threshold=0.95)
    assert how.method == "approximate" and how.lists >= 512 and how.probes == 16 and how.pca_dims == 0
    # Every planted copy has its original among its neighbours, with the exact cosine.
    copies, originals = planted[:, 0], planted[:, 1]
    assert (np.einsum("ij,ij->i", U[copies], U[originals]) > 0.95).all()
    hit = (indices[copies] == originals[:, None]).any(axis=1)
    assert hit.mean() >= 0.99
    row = copies[hit][0]
    column = int(np.flatnonzero(indices[row] == originals[hit][0])[0])
    assert sim[row, column] == pytest.approx(float(U[row] @ U[originals[hit][0]]), abs=1e-5)
    # The recall it reports is the recall on its sample, computed here by brute force.
    rng = np.random.default_rng(1)  # the search's own sample: seed + 1
    sample = np.sort(rng.choice(len(U), neighbours.RECALL_SAMPLE, replace=False))
    truth, _ = brute_force(U, sample, 5)
    expected = np.mean([len(set(t) & set(f)) / 5 for t, f in zip(truth, indices[sample])])
    assert how.recall.sample == neighbours.RECALL_SAMPLE
    assert how.recall.neighbours == pytest.approx(expected, abs=1e-4) and expected > 0.5


def test_wide_vectors_are_searched_through_a_pca_and_re_ranked_on_the_full_vectors():
    X, planted, _ = generators.embeddings(6_000, 1024, duplicates=60, clusters=50, seed=2)
    U = neighbours.unit(X)
    indices, sim, how = neighbours.search(U, 5, method="approximate", threshold=0.95)
    assert how.pca_dims == neighbours.PCA_DIMS and how.dimensions == neighbours.PCA_DIMS and 0 < how.pca_variance < 1
    assert how.pca_sample == 6_000
    copies, originals = planted[:, 0], planted[:, 1]
    assert (indices[copies] == originals[:, None]).any(axis=1).mean() >= 0.99
    # Cosines are those of the full vectors, not of their projection.
    full = np.einsum("ij,ij->i", U[np.arange(len(U))], U[indices[:, 0]])
    np.testing.assert_allclose(sim[:, 0], full, atol=1e-5)
    assert how.recall.pairs > 0 and how.recall.pairs_found >= 0.99
