"""The Parquet contract without Ray: write shards with ShardWriter, read them back every way."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catdog import storage
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction.imagefolder import NO_LABEL, ImageSet
from catdog.extraction.metadata import compat_settings, feature_metadata
from catdog.store import features, layout

DIM = 512


def metadata(dtype="float32") -> dict:
    config = ExtractConfig(root="r", out="o", image_size=32, dtype=dtype)
    image_set = ImageSet(storage.resolve("r"), "split", ("cats", "dogs"), (), (), ())
    return feature_metadata(config, image_set, {"source": "none", "seed": 0})


def write_dataset(tmp_path, shards: dict, dtype="float32"):
    """shards: {(split, name): (labels, seed)} -> OUT and the arrays written, by path."""
    out = storage.resolve(str(tmp_path / "out"))
    writer = features.ShardWriter(out, features.feature_schema(metadata(dtype)), ("cats", "dogs"))
    written = {}
    for (split, name), (labels, seed) in shards.items():
        X = np.random.default_rng(seed).random((len(labels), DIM), dtype=np.float32).astype(dtype)
        paths = [f"{split}/{name}/{i}.jpg" for i in range(len(labels))]
        errors = [(f"{split}/{name}/bad.jpg", "OSError", "truncated")] if seed % 2 else []
        assert writer.write(split, name, paths, np.asarray(labels), X, errors) == len(labels)
        written.update({p: (x, y, split) for p, x, y in zip(paths, X, labels)})
    return out, written


def test_metadata_and_schema_are_the_contract():
    meta = metadata()
    assert meta["feature_dim"] == DIM and meta["feature_shape"] == [1, 1, 512] and meta["flatten_order"] == "C"
    schema = features.feature_schema(meta)
    assert schema.names == ["path", "label", "label_name", "features"]
    assert schema.field("features").type == pa.list_(pa.float32(), DIM)
    assert json.loads(schema.metadata[b"catdog"]) == meta
    compat = compat_settings(ExtractConfig(root="r", out="o", shard_size=256), meta, storage.resolve("/data/r"))
    assert compat["root"] == "/data/r" and "catdog_version" not in compat and compat["shard_size"] == 256
    drafted = ExtractConfig(root="r", out="o", jpeg_draft=True)
    image_set = ImageSet(storage.resolve("r"), "split", ("cats", "dogs"), (), (), ())
    other = compat_settings(drafted, feature_metadata(drafted, image_set, meta["weights"]), storage.resolve("/data/r"))
    assert other["jpeg_draft"] is True and compat["jpeg_draft"] is False  # pinned: a resume must match


def test_written_shards_read_back_exactly(tmp_path):
    out, written = write_dataset(tmp_path, {("train", "a.parquet"): ([0, 1, 1], 1), ("train", "b.parquet"): ([1, 0], 2),
                                            ("test", "c.parquet"): ([0, 0], 3)})
    X, y, paths = features.load(out)
    assert sorted(paths) == sorted(written)
    for x, label, path in zip(X, y, paths):
        np.testing.assert_array_equal(x, written[path][0])
        assert label == written[path][1]
    X_test, _, test_paths = features.load(str(tmp_path / "out"), "test")  # a plain path works too
    assert sorted(test_paths) == sorted(p for p in written if written[p][2] == "test")
    assert features.committed(out) == {("train", "a.parquet"), ("train", "b.parquet"), ("test", "c.parquet")}
    assert features.committed(out, layout.ERRORS_DIR) == {("train", "a.parquet"), ("test", "c.parquet")}
    errors = features.dataset(out, layout.ERRORS_DIR).to_table().to_pylist()
    assert sorted(e["path"] for e in errors) == ["test/c.parquet/bad.jpg", "train/a.parquet/bad.jpg"]
    assert features.splits(out) == ["test", "train"] and features.count_rows(out, "train") == 5
    assert list(features.read_paths(out, "train")) == list(features.load(out, "train").paths)
    table = pq.read_table(features.shard_path(out, layout.FEATURES_DIR, "train", "a.parquet"))
    assert table.column("label_name").to_pylist() == ["cats", "dogs", "dogs"]
    assert features.read_metadata(out)["feature_dim"] == DIM
    assert not (tmp_path / "out" / "_tmp").exists() or not list((tmp_path / "out" / "_tmp").iterdir())


def test_unlabeled_rows_are_null_and_read_as_minus_one(tmp_path):
    out, _ = write_dataset(tmp_path, {("unlabeled", "u.parquet"): ([NO_LABEL, NO_LABEL], 4)})
    table = features.dataset(out).to_table()
    assert table.column("label").null_count == 2 and table.column("label_name").null_count == 2
    assert list(features.load(out).y) == [NO_LABEL, NO_LABEL]


def test_float16_storage(tmp_path):
    out, written = write_dataset(tmp_path, {("train", "h.parquet"): ([0, 1], 6)}, dtype="float16")
    assert pq.read_schema(features.dataset(out).files[0]).field("features").type.value_type == pa.float16()
    X, _, paths = features.load(out)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, np.stack([written[p][0] for p in paths]).astype(np.float32))


@pytest.mark.parametrize("chunk", [1, 3, 4, 100])
def test_stream_yields_every_row_once_in_chunks(tmp_path, chunk):
    shards = {("train", f"{i}.parquet"): ([i % 2] * (i + 1), 10 + i) for i in range(4)}  # 1+2+3+4 rows
    out, written = write_dataset(tmp_path, shards)
    X_all, y_all, _ = features.load(out, "train")
    for seed in (None, 7):
        parts = list(features.stream(out, "train", chunk, seed))
        assert all(len(y) <= chunk for _, y in parts) and sum(len(y) for _, y in parts) == 10
        X = np.concatenate([x for x, _ in parts])
        y = np.concatenate([y for _, y in parts])
        order = np.lexsort(X.T[:3])  # rows compared as sets, independent of order
        expected = np.lexsort(X_all.T[:3])
        np.testing.assert_array_equal(X[order], X_all[expected])
        np.testing.assert_array_equal(y[order], y_all[expected])
    again = np.concatenate([x for x, _ in features.stream(out, "train", 3, 7)])
    np.testing.assert_array_equal(again, np.concatenate([x for x, _ in features.stream(out, "train", 3, 7)]))
    assert not np.array_equal(again, np.concatenate([x for x, _ in features.stream(out, "train", 3, None)]))


def test_missing_dataset_or_split_is_said(tmp_path):
    with pytest.raises(CatdogError, match="no features under"):
        features.load(str(tmp_path / "nothing"))
    out, _ = write_dataset(tmp_path, {("train", "a.parquet"): ([0], 2)})
    with pytest.raises(CatdogError, match="no split 'test'.*it has: train"):
        features.load(out, "test")
