"""Near-duplicate pairs and the `similar` job's report, full and incremental (no Ray)."""

import numpy as np
import pyarrow.fs as pafs
import pytest

from catdog import storage
from catdog.config import SimilarConfig
from catdog.errors import CatdogError
from catdog.insight import neighbour_lists, neighbours, similar
from tests.test_neighbours import features_with_copies


def test_pairs_are_each_listed_once_above_the_threshold_with_their_splits():
    X = features_with_copies()
    paths = np.array([f"img{i}.jpg" for i in range(len(X))])
    splits = np.array(["train"] * 300 + ["test"] * 300, dtype=object)
    splits[10] = "test"
    indices, sim, _ = neighbours.search(neighbours.unit(X), 3)
    found = similar.pairs(indices, sim, 0.999, paths, splits)
    assert {(p.a, p.b) for p in found} == {("img3.jpg", "img10.jpg"), ("img5.jpg", "img20.jpg"), ("img4.jpg", "img30.jpg")}
    assert [p.cosine for p in found] == sorted((p.cosine for p in found), reverse=True)
    assert [p.across for p in found if p.a == "img3.jpg"] == [True]
    assert sum(p.across for p in found) == 1


@pytest.mark.parametrize("changes, message", [
    ({"threshold": 1.5}, "--threshold is a cosine similarity in"),
    ({"top": 0}, "--top must be positive"),
    ({"method": "hnsw"}, "--method is one of auto, exact, approximate"),
    ({"pca_dims": -1}, "--pca-dims must be 0"),
])
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(CatdogError, match=message):
        SimilarConfig(features="OUT", report_dir="R", **changes)


def test_the_summary_names_a_contact_sheet_only_when_one_was_drawn(tmp_path):
    """Features written straight to Parquet (no manifest: the photos cannot be found), with and
    without a near-duplicate pair."""
    from catdog.store import features
    from tests.test_features import metadata

    def written(name, X):
        out = storage.resolve(str(tmp_path / name))
        writer = features.ShardWriter(out, features.feature_schema({**metadata("float32"), "feature_dim": X.shape[1]}),
                                      ("cats", "dogs"))
        writer.write("train", "part-0.parquet", [f"{i}.jpg" for i in range(len(X))], np.zeros(len(X)), X, [])
        return str(tmp_path / name)

    for name, X, pairs in (("distinct", np.eye(4, dtype=np.float32), 0), ("copies", features_with_copies(), 3)):
        report = similar.run(SimilarConfig(features=written(name, X), report_dir=str(tmp_path / name / "r"), threshold=0.999))
        assert len(report.pairs) == pairs and not report.contact_sheet
        assert not (tmp_path / name / "r" / "similar.png").exists() and "contact sheet" not in report.lines()[-1]
        assert len(report.notes) == 1 and report.notes[0].endswith("no contact sheet")


def test_a_run_after_a_change_searches_only_what_changed_and_equals_a_full_run(tmp_path):
    """Embeddings written as another tool writes them; rows are then removed, changed and added."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    X = np.maximum(rng.normal(0, 1, (500, 32)), 0).astype(np.float32)
    X[400] = X[7] * 3  # a near-duplicate pair from the start
    paths = [f"img{i}.jpg" for i in range(500)]

    def run(X, paths, **options):
        pq.write_table(pa.table({"path": paths, "embedding": list(X)}), tmp_path / "emb.parquet")
        return similar.run(SimilarConfig(features=str(tmp_path / "emb.parquet"), features_column="embedding",
                                         report_dir=str(tmp_path / "r"), threshold=0.99, **options))

    first = run(X, paths)
    assert first.update is None and first.search.method == "exact"
    assert [(p.a, p.b) for p in first.pairs] == [("img7.jpg", "img400.jpg")]
    keep = np.ones(500, bool)
    keep[[7, 100, 200]] = False  # gone: img7 breaks the first pair
    X2 = np.concatenate([X[keep], np.maximum(rng.normal(0, 1, (6, 32)), 0).astype(np.float32)])
    paths2 = [p for p, k in zip(paths, keep) if k] + [f"new{i}.jpg" for i in range(6)]
    X2[10] = X2[20] * 0.5  # changed in place: now a copy of another image
    X2[-1] = X2[30] + 0.001  # added: a copy of another
    second = run(X2, paths2)
    assert second.update is not None and second.search is None
    assert (second.update.added, second.update.removed, second.update.kept) == (7, 4, 496)
    assert "incremental: 7 added or changed images searched exactly" in second.how()
    lines = (tmp_path / "r" / "similar.csv").read_text()
    full = run(X2, paths2, full=True)
    assert full.update is None and (tmp_path / "r" / "similar.csv").read_text() == lines
    assert {(p.a, p.b) for p in second.pairs} == {(paths2[10], paths2[20]), (paths2[30], "new5.jpg")}


@pytest.mark.slow
def test_the_lists_kept_on_a_store_make_the_next_run_incremental(s3, tmp_path):
    """Embeddings and report on S3 (SeaweedFS): the second run reads the first run's lists from the store."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = np.maximum(np.random.default_rng(1).normal(0, 1, (300, 16)), 0).astype(np.float32)
    X[200] = X[9] * 2
    source = storage.resolve(f"s3://{s3.prefix}/emb.parquet")
    with source.fs.open_output_stream(source.path) as f:
        pq.write_table(pa.table({"path": [f"{i}.jpg" for i in range(300)], "embedding": list(X)}), f)
    config = SimilarConfig(features=f"s3://{s3.prefix}/emb.parquet", features_column="embedding",
                           report_dir=f"s3://{s3.prefix}/report", threshold=0.99)
    first, again = similar.run(config), similar.run(config)
    assert first.update is None and again.update == neighbour_lists.Update(300, 0, 0, 0)
    assert [(p.a, p.b) for p in again.pairs] == [(p.a, p.b) for p in first.pairs] == [("9.jpg", "200.jpg")]
    assert storage.resolve(f"s3://{s3.prefix}/report/{neighbour_lists.FILE}").kind() == pafs.FileType.File
