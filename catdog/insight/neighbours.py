"""Each row's nearest other rows by cosine similarity, exact for small sets and approximate beyond.

Exact: faiss' blocked brute force on unit vectors (inner product = cosine); memory is the vectors
plus a block of the similarity matrix. Its cost grows with rows² x dimensions, so above
`EXACT_WORK` an inverted-file index takes over (faiss IVF with half-precision codes: half the
vectors' memory; measured faster here than full floats or 8-bit codes): every row is looked up in the `probes` cells nearest it, its `candidates` best
matches there are re-ranked by their exact cosine on the full vectors, and the best `top` kept.
Vectors of more than `PCA_ABOVE` dimensions (VGG16's 8,192) are searched through a PCA fitted on a
sample, then re-ranked on the full vectors. The approximate search's recall is measured on a
sample of rows against the exact search and reported with its settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

EXACT_WORK = 2e13  # rows² x dimensions up to which the search is exact: 50,000 x 8,192 or 200,000 x 512
PCA_ABOVE, PCA_DIMS, PCA_SAMPLE = 512, 256, 50_000
TRAIN_PER_LIST = 64  # k-means sample per cell (faiss advises 39 at least)
RECALL_SAMPLE = 1_000
BLOCK = 4096  # rows re-ranked at once


@dataclass(frozen=True)
class Search:
    """How the neighbours were found (in similar.json)."""

    method: str  # "exact" or "approximate"
    dimensions: int  # of the vectors compared in the index (after a PCA: its components)
    index: str = "flat"  # the faiss index: "flat" (brute force), "IVF<lists>,SQfp16"
    lists: int = 0  # IVF cells
    probes: int = 0  # cells looked in per row
    candidates: int = 0  # re-ranked by exact cosine per row
    pca_dims: int = 0  # 0: no PCA
    pca_variance: float = 0.0  # the share of the variance the PCA keeps (on its sample)
    pca_sample: int = 0
    recall: Recall | None = None


@dataclass(frozen=True)
class Recall:
    """The approximate search against the exact one, on a sample of rows."""

    sample: int  # rows whose exact neighbours were computed
    neighbours: float  # share of their exact `top` neighbours the approximate search found
    pairs: int  # exact neighbours of those rows at or above the threshold
    pairs_found: float | None  # share of those found (None: no pair in the sample)


def unit(X: np.ndarray, copy: bool = True) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), float32; in place when `copy` is False and X
    is already a writable C-ordered float32 array (the features Arrow hands over are read-only)."""
    X = np.array(X, dtype=np.float32, order="C", copy=copy or not getattr(X, "flags", {"WRITEABLE": False})["WRITEABLE"] or None)
    for start in range(0, len(X), BLOCK):  # in blocks: no temporary the size of X
        rows = X[start : start + BLOCK]
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
        np.divide(rows, norms, out=rows, where=norms > 0)
    return X


def exact(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of `base` most similar to each query (unit vectors): (indices, cosines), best first."""
    import faiss

    similarity, indices = faiss.knn(queries, base, min(k, len(base)), metric=faiss.METRIC_INNER_PRODUCT)
    return indices, similarity


def search(X: np.ndarray, top: int, *, method: str = "auto", probes: int = 16, candidates: int = 0,
           pca_dims: int | None = None, threshold: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, Search]:
    """Each row's `top` nearest other rows of unit vectors `X`: (n, top) indices and cosines, the
    nearest first, and how they were found. `method` "auto" is exact up to EXACT_WORK; `pca_dims`
    None applies a PCA of PCA_DIMS to an approximate search of vectors wider than PCA_ABOVE (0: none).
    `threshold` is the cosine of a pair whose recall is measured."""
    n, d = X.shape
    top = min(top, n - 1)
    if top < 1:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32), Search("exact", d)
    if method == "exact" or (method == "auto" and float(n) * n * d <= EXACT_WORK):
        indices, similarity = exact(X, X, top + 1)
        indices, similarity = without_self(indices, similarity, top)
        return indices, similarity, Search("exact", d)
    if method not in ("auto", "approximate"):
        raise ValueError(f"method {method!r}")
    index, search_space, how = _ivf(X, probes, pca_dims, seed)
    wanted = max(candidates or 4 * top, top + 1)
    _, found = index.search(search_space, wanted)
    del search_space
    indices, similarity = rerank(X, X, found, top, np.arange(len(X)))
    return indices, similarity, _with_recall(replace(how, candidates=wanted), X, indices, similarity, top, threshold, seed)


@dataclass(frozen=True)
class Quantiser:
    """An IVF index's coarse quantiser: its cells' centroids, in the space of a PCA for wide vectors.
    Fitted once on a sample; every index made from it (one, or one per shard) assigns rows alike."""

    centroids: np.ndarray  # (lists, dims) float32
    pca: object | None  # a fitted sklearn PCA, or None: the vectors are searched as they are
    how: Search  # "approximate", its index, lists, PCA dimensions, variance and sample

    def project(self, X: np.ndarray) -> np.ndarray:
        """Unit vectors X in the index's space: their PCA, scaled to unit length (cosine stays the
        inner product), in blocks; X itself without a PCA."""
        if self.pca is None:
            return X
        space = np.empty((len(X), self.centroids.shape[1]), np.float32)
        for start in range(0, len(X), BLOCK):
            space[start : start + BLOCK] = self.pca.transform(X[start : start + BLOCK])
        return unit(space, copy=False)

    def index(self, probes: int):
        """An empty IVF index of half-precision codes on these cells, looking in `probes` of them."""
        import faiss

        lists, dims = self.centroids.shape
        quantizer = faiss.IndexFlatIP(dims)
        quantizer.add(self.centroids)
        index = faiss.IndexIVFScalarQuantizer(quantizer, dims, lists, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
        index.train(self.centroids)  # the quantiser holds its cells already: this trains the fp16 codes (nothing to learn)
        index.nprobe = min(probes, lists)
        return index


def cells(n: int) -> int:
    """IVF cells for n rows: about 4 sqrt(n), a power of two, at least TRAIN_PER_LIST rows each."""
    return int(min(max(1, n // TRAIN_PER_LIST), 2 ** round(np.log2(4 * np.sqrt(n)))))


def sample_rows(n: int) -> int:
    """Rows a quantiser for n rows is fitted on (`fit_quantiser` uses no more)."""
    return max(PCA_SAMPLE, cells(n) * TRAIN_PER_LIST)


def fit_quantiser(sample: np.ndarray, n: int, pca_dims: int | None, seed: int) -> Quantiser:
    """The coarse quantiser for n rows, fitted on a sample of their unit vectors (PCA_SAMPLE rows
    for the PCA, TRAIN_PER_LIST per cell for the k-means: at most those are used)."""
    import faiss

    d = sample.shape[1]
    rng = np.random.default_rng(seed)
    pca, variance, pca_rows = None, 0.0, 0
    dims = (PCA_DIMS if d > PCA_ABOVE else 0) if pca_dims is None else pca_dims
    if 0 < dims < d:
        from sklearn.decomposition import PCA

        # Randomised SVD on a sample: faiss' own PCA decomposes the full d x d covariance (minutes at 8,192).
        rows = sample[np.sort(rng.choice(len(sample), min(len(sample), PCA_SAMPLE), replace=False))]
        pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit(rows)
        variance, pca_rows = float(pca.explained_variance_ratio_.sum()), len(rows)
        del rows
    lists = cells(n)
    space_dims = dims if pca is not None else d
    train = sample[np.sort(rng.choice(len(sample), min(len(sample), lists * TRAIN_PER_LIST), replace=False))]
    quantiser = Quantiser(np.zeros((0, space_dims), np.float32), pca, Search("approximate", space_dims))
    train = quantiser.project(np.ascontiguousarray(train))
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(space_dims), space_dims, lists,
                                          faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(train)  # faiss' k-means, assigning by inner product as the index searches
    centroids = index.quantizer.reconstruct_n(0, lists).astype(np.float32)
    how = Search("approximate", space_dims, f"IVF{lists},SQfp16", lists, 0, 0, dims if pca is not None else 0,
                 round(variance, 4), pca_rows)
    return Quantiser(centroids, pca, how)


def _ivf(X: np.ndarray, probes: int, pca_dims: int | None, seed: int):
    """An IVF index of half-precision codes on X, or on X's PCA; the vectors it searches with."""
    n = len(X)
    sample = X[np.sort(np.random.default_rng(seed).choice(n, min(n, sample_rows(n)), replace=False))]
    quantiser = fit_quantiser(sample, n, pca_dims, seed)
    del sample
    space = quantiser.project(X)
    index = quantiser.index(probes)
    index.add(space)
    return index, space, replace(quantiser.how, probes=index.nprobe)


def rerank(queries: np.ndarray, base: np.ndarray, found: np.ndarray, top: int, rows: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """The `top` best of each query's candidates (`found`: rows of `base`, -1 for none) by exact
    cosine, best first; -inf where there are fewer. `rows`: each query's own row of `base`, left out."""
    n = len(queries)
    indices = np.zeros((n, top), np.int64)
    similarity = np.full((n, top), -np.inf, np.float32)
    for start in range(0, n, BLOCK):
        block = slice(start, min(n, start + BLOCK))
        candidates = found[block]
        valid = candidates >= 0
        if rows is not None:
            valid &= candidates != rows[block, None]
        cosines = np.einsum("ij,ikj->ik", queries[block], base[np.where(valid, candidates, 0)])
        cosines[~valid] = -np.inf
        best = np.argsort(-cosines, axis=1, kind="stable")[:, :top]
        indices[block] = np.take_along_axis(np.where(valid, candidates, 0), best, 1)
        similarity[block] = np.take_along_axis(cosines, best, 1)
    return indices, similarity


def without_self(indices: np.ndarray, similarity: np.ndarray, top: int, rows: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Each query's first `top` neighbours that are not the query itself (query i is row rows[i], by
    default row i): an exact duplicate may come before the row itself, so it is dropped wherever it is."""
    others = indices != (np.arange(len(indices)) if rows is None else rows)[:, None]
    keep = np.argsort(~others, axis=1, kind="stable")[:, :top]
    return np.take_along_axis(indices, keep, 1), np.take_along_axis(similarity, keep, 1)


def _with_recall(how: Search, X: np.ndarray, indices: np.ndarray, similarity: np.ndarray, top: int, threshold: float,
                 seed: int) -> Search:
    sample = np.sort(np.random.default_rng(seed + 1).choice(len(X), min(len(X), RECALL_SAMPLE), replace=False))
    truth, cosines = without_self(*exact(X[sample], X, top + 1), top, sample)
    found = indices[sample]
    hit = (truth[:, :, None] == found[:, None, :]).any(axis=2)
    paired = cosines >= threshold
    pairs = int(paired.sum())
    return replace(how, recall=Recall(len(sample), round(float(hit.mean()), 4), pairs,
                                      round(float(hit[paired].mean()), 4) if pairs else None))
