"""Nearest neighbours and near-duplicate pairs against a brute-force computation (no Ray)."""

import numpy as np
import pytest

from catdog import storage
from catdog.config import SimilarConfig
from catdog.errors import CatdogError
from catdog.insight import similar


def features_with_copies(n=600, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.normal(0, 1, (n, dim)), 0).astype(np.float32)
    X[10] = X[3] * 2.0  # the same direction: cosine 1
    X[20] = X[5] + rng.normal(0, 0.01, dim).astype(np.float32)  # nearly the same
    X[30] = X[4]  # an exact copy: its own row and the copy tie at distance 0
    return X


def test_neighbours_equal_brute_force_under_a_small_working_memory():
    X = features_with_copies()
    # 1 MiB: about 200 rows of the 600-column distance matrix at a time, so the search runs in blocks.
    indices, sim = similar.neighbours(X, top=4, working_memory_mb=1)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    full = unit @ unit.T
    np.fill_diagonal(full, -np.inf)
    expected = np.sort(full, axis=1)[:, ::-1][:, :4]
    np.testing.assert_allclose(sim, expected, atol=1e-5)
    assert not (indices == np.arange(len(X))[:, None]).any()  # never an image's own row, even for exact copies
    assert indices[30, 0] == 4 and indices[4, 0] == 30


def test_pairs_are_each_listed_once_above_the_threshold_with_their_splits():
    X = features_with_copies()
    paths = np.array([f"img{i}.jpg" for i in range(len(X))])
    splits = np.array(["train"] * 300 + ["test"] * 300, dtype=object)
    splits[10] = "test"
    indices, sim = similar.neighbours(X, top=3, working_memory_mb=16)
    found = similar.pairs(indices, sim, 0.999, paths, splits)
    assert {(p.a, p.b) for p in found} == {("img3.jpg", "img10.jpg"), ("img5.jpg", "img20.jpg"), ("img4.jpg", "img30.jpg")}
    assert [p.cosine for p in found] == sorted((p.cosine for p in found), reverse=True)
    assert [p.across for p in found if p.a == "img3.jpg"] == [True]
    assert sum(p.across for p in found) == 1


@pytest.mark.parametrize("changes, message", [
    ({"threshold": 1.5}, "--threshold is a cosine similarity in"),
    ({"top": 0}, "--top must be positive"),
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
