"""catdog.heads.splits without Ray: a folder without splits is divided stratified and seeded, and the
heads see the same rows in memory and streamed."""

import numpy as np
import pytest

from catdog.errors import CatdogError
from catdog.heads.splits import FeatureSplits, holdout_masks
from catdog.store import features
from tests.test_features import write_dataset


def test_holdout_is_stratified_disjoint_complete_and_seeded():
    labels = np.repeat([0, 1, 2], [20, 30, 50])
    masks = holdout_masks(labels, 0.2, 0.1, seed=3)
    stacked = np.stack([masks["train"], masks["validation"], masks["test"]])
    assert (stacked.sum(axis=0) == 1).all()  # every row in exactly one split
    for k, n in ((0, 20), (1, 30), (2, 50)):
        rows = labels == k
        assert abs(masks["validation"][rows].sum() - 0.2 * n) <= 1 and abs(masks["test"][rows].sum() - 0.1 * n) <= 1
    again = holdout_masks(labels, 0.2, 0.1, seed=3)
    assert all((again[s] == masks[s]).all() for s in masks)
    other = holdout_masks(labels, 0.2, 0.1, seed=4)
    assert not (other["test"] == masks["test"]).all()


def test_a_class_too_small_to_hold_out_is_one_line():
    with pytest.raises(CatdogError, match="cannot hold out 0.2 for validation and 0.2 for test"):
        holdout_masks(np.array([0] * 10 + [1]), 0.2, 0.2, seed=0)


@pytest.fixture
def unsplit(tmp_path):
    labels = [0] * 12 + [1] * 18
    shards = {("all", f"part-{i}.parquet"): (labels[i * 10:(i + 1) * 10], i * 2) for i in range(3)}
    return write_dataset(tmp_path, shards)


def test_a_folder_without_splits_gets_train_validation_and_test(unsplit):
    out, written = unsplit
    data = FeatureSplits(out, max_memory=1 << 30, seed=0)
    assert data.splits == ["train", "validation", "test"] and data.holdout.counts == {"train": 18, "validation": 6, "test": 6}
    seen = []
    for split in data.splits:
        X, y = data.arrays(split)
        paths = data.paths(split)
        assert len(X) == len(y) == len(paths) == data.count(split)
        for x, label, path in zip(X, y, paths):  # each row is the one written for its path
            np.testing.assert_array_equal(x, written[path][0])
            assert label == written[path][1]
        assert (data.labels(split) == y).all()
        seen += list(paths)
    assert sorted(seen) == sorted(written)


def test_streamed_splits_hold_the_same_rows_as_in_memory(unsplit):
    out, _ = unsplit
    memory = FeatureSplits(out, max_memory=1 << 30, seed=0)
    streamed = FeatureSplits(out, max_memory=1, seed=0)  # a budget nothing fits: chunks of 16 rows
    assert streamed.streaming and not memory.streaming
    for split in memory.splits:
        X, y = memory.arrays(split)
        chunks = list(streamed.chunks(split, shuffle_seed=7))  # files and rows shuffled
        Xs, ys = np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])
        order, again = np.lexsort(X.T), np.lexsort(Xs.T)
        np.testing.assert_array_equal(X[order], Xs[again])
        np.testing.assert_array_equal(y[order], ys[again])


def test_stream_keeps_only_the_masked_rows_whatever_the_file_order(unsplit):
    out, _ = unsplit
    X, y, _ = features.load(out, "all")
    keep = np.zeros(len(y), bool)
    keep[[0, 5, 11, 12, 29]] = True
    got = np.concatenate([c[0] for c in features.stream(out, "all", 4, seed=1, rows=keep)])
    np.testing.assert_array_equal(got[np.lexsort(got.T)], X[keep][np.lexsort(X[keep].T)])


def test_a_folder_with_its_own_splits_keeps_them_and_refuses_fractions(tmp_path):
    out, _ = write_dataset(tmp_path, {("train", "a.parquet"): ([0, 1, 0, 1], 2), ("test", "b.parquet"): ([1, 0], 4)})
    assert FeatureSplits(out, max_memory=1 << 30).splits == ["test", "train"]
    with pytest.raises(CatdogError, match="has its own splits"):
        FeatureSplits(out, max_memory=1 << 30, validation_split=0.1)
