"""The sharded neighbour search, its tasks run in this process (no Ray): the same lists and pairs
as the in-memory search, from shards and blocks much smaller than the data."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catdog import storage
from catdog.errors import CatdogError
from catdog.insight import neighbours, sharded, similar
from catdog.store import features
from tests import generators


def write_embeddings(folder, X, splits=None, files=3, row_group=97):
    """X as another tool writes embeddings: several files of several row groups."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(X)), files)):
        columns = {"path": [f"img{i:05d}.jpg" for i in part],
                   "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X[part].ravel()), X.shape[1])}
        if splits is not None:
            columns["split"] = splits[part]
        pq.write_table(pa.table(columns), folder / f"part-{k}.parquet", row_group_size=row_group)
    return folder


def lists(found: sharded.Found) -> pa.Table:
    table = pq.read_table(found.lists.path, filesystem=found.lists.fs).sort_by("row")
    top = table.schema.field("indices").type.list_size
    return (table.column("row").to_numpy(), table.column("indices").combine_chunks().flatten().to_numpy().reshape(-1, top),
            table.column("similarity").combine_chunks().flatten().to_numpy().reshape(-1, top))


def test_exact_shards_and_blocks_equal_the_in_memory_exact_search(tmp_path):
    data = generators.embeddings(1_500, 24, duplicates=40, clusters=30, seed=3)
    splits = np.where(np.arange(1_500) % 5 == 0, "test", "train").astype(object)
    source = sharded.Source(storage.resolve(str(write_embeddings(tmp_path / "emb", data.X, splits))), "embedding",
                            split_column="split")
    # Shards of ~200 rows and blocks of ~300: many of each, cut at row-group boundaries.
    found = sharded.search(source, storage.resolve(str(tmp_path / "report")), sharded.here, top=4, method="exact",
                           threshold=0.95, shard_bytes=200 * 24 * 4, block_rows=300)
    indices, similarity, how = neighbours.search(neighbours.unit(data.X), 4, method="exact")
    rows, got, got_similarity = lists(found)
    assert how.method == found.search.method == "exact" and found.rows == 1_500
    np.testing.assert_array_equal(rows, np.arange(1_500))
    np.testing.assert_allclose(got_similarity, similarity, atol=1e-5)
    assert (got == indices).mean() > 0.999  # equal but for ties in the last bit
    paths = np.array([f"img{i:05d}.jpg" for i in range(1_500)])
    expected = similar.pairs(indices, similarity, 0.95, paths, splits)
    assert [(p[0], p[2]) for p in found.pairs] == [(p.a, p.b) for p in expected]
    assert [p[1] for p in found.pairs] == [p.split_a for p in expected]
    np.testing.assert_allclose([p[4] for p in found.pairs], [p.cosine for p in expected], atol=1e-5)
    listed = sharded.pieces(source, sharded.here)
    shards, blocks = sharded.split_runs(listed, 200), sharded.split_runs(listed, 300)
    assert len(shards) > 3 and len(blocks) > 3 and len(found.pairs) >= 40
    assert found.tasks["this process"]["tasks"] == 1 + len(shards) + len(blocks)  # one task reads the footers
    assert not (tmp_path / "report" / sharded.STAGING).exists()


def test_approximate_shards_find_the_planted_copies_and_report_a_recall_that_is_true(tmp_path):
    data = generators.embeddings(20_000, 32, duplicates=200, clusters=100, seed=5)
    source = sharded.Source(storage.resolve(str(write_embeddings(tmp_path / "emb", data.X, row_group=2_000))),
                            "embedding")
    found = sharded.search(source, storage.resolve(str(tmp_path / "report")), sharded.here, top=5,
                           method="approximate", threshold=0.95, shard_bytes=5_000 * 32 * 4, block_rows=6_000)
    assert found.search.method == "approximate" and found.search.lists == neighbours.cells(20_000)
    paths = {f"img{i:05d}.jpg": i for i in range(20_000)}
    pairs = {(paths[a], paths[b]) for a, _, b, _, _ in found.pairs}
    planted = {tuple(sorted(p)) for p in data.pairs.tolist()}
    assert len(planted & pairs) >= 0.99 * len(planted)
    # The recall it reports, recomputed: its lists of its sample rows against brute force.
    rows, got, _ = lists(found)
    X = neighbours.unit(data.X)
    sample = np.sort(np.random.default_rng(1).choice(20_000, neighbours.RECALL_SAMPLE, replace=False))
    truth, _ = neighbours.without_self(*neighbours.exact(X[sample], X, 6), 5, sample)
    hit = (truth[:, :, None] == got[sample][:, None, :]).any(axis=2)
    assert found.search.recall.sample == len(sample)
    assert found.search.recall.neighbours == pytest.approx(hit.mean(), abs=1e-4)
    assert found.search.recall.neighbours > 0.9


@pytest.mark.slow  # the generated OUT's metadata builds a Keras backbone
def test_catdog_out_rows_are_numbered_as_load_reads_them(tmp_path):
    out = generators.features_out(tmp_path, 600, dim=8)
    data = features.load(out)
    found = sharded.search(sharded.Source(out), out.join("similar"), sharded.here, top=3, method="exact",
                           threshold=0.99, shard_bytes=150 * 8 * 4, block_rows=200)
    rows, got, similarity = lists(found)
    table = pq.read_table(found.lists.path, filesystem=found.lists.fs).sort_by("row")
    assert sorted(table.column("path").to_pylist()) == sorted(data.paths.tolist())
    by_path = dict(zip(data.paths, neighbours.unit(data.X)))
    named = table.column("path").to_numpy(zero_copy_only=False)
    first = np.array([by_path[named[rows == j][0]] for j in got[:, 0]])
    np.testing.assert_allclose(np.einsum("ij,ij->i", first, np.array([by_path[p] for p in named])), similarity[:, 0],
                               atol=1e-5)


def test_nan_rows_are_left_out_and_named(tmp_path):
    X = generators.embeddings(300, 8, seed=1).X
    X[[7, 120]] = np.nan
    source = sharded.Source(storage.resolve(str(write_embeddings(tmp_path / "emb", X))), "embedding")
    found = sharded.search(source, storage.resolve(str(tmp_path / "r")), sharded.here, top=3, method="exact",
                           shard_bytes=100 * 8 * 4, block_rows=100)
    rows, got, _ = lists(found)
    assert found.rows == 298 and sorted(found.non_finite) == ["img00007.jpg", "img00120.jpg"]
    assert 7 not in rows and 120 not in rows and not np.isin(got, [7, 120]).any()


def test_fewer_than_two_rows_is_one_line(tmp_path):
    source = sharded.Source(storage.resolve(str(write_embeddings(tmp_path / "emb", np.ones((1, 4), np.float32), files=1))),
                            "embedding")
    with pytest.raises(CatdogError, match="needs at least two images"):
        sharded.search(source, storage.resolve(str(tmp_path / "r")), sharded.here, top=3)


def test_auto_searches_here_while_the_vectors_are_small_and_on_ray_beyond(tmp_path, monkeypatch):
    X = generators.embeddings(500, 16, seed=2).X
    folder = str(write_embeddings(tmp_path / "emb", X))
    config = similar.SimilarConfig(features=folder, features_column="embedding")
    source = sharded.Source(storage.resolve(folder), "embedding")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    where, why = similar.choose(config, source)
    assert where == "local" and why.startswith(f"500 x 16 vectors, {500 * 16 * 4 / 2**30:.1f} GiB")
    monkeypatch.setattr(similar, "LOCAL_MAX_BYTES", 500 * 16 * 4 - 1)
    assert similar.choose(config, source)[0] == "ray"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert similar.choose(config.replace(executor="auto"), source) == ("ray", "a Ray address")
    with pytest.raises(CatdogError, match="--executor local runs in this process"):
        similar.choose(config.replace(executor="local", address="127.0.0.1:1"), source)
