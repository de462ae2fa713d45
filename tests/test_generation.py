"""A generation's commit: staged files moved in, superseded rows dropped by rewriting whole files,
the index replaced, and every step safe to do twice (a run killed mid-commit is finished later)."""

import numpy as np

from catdog import storage
from catdog.config import ExtractConfig
from catdog.extraction import metadata
from catdog.extraction.imagefolder import ImageSet, Listed
from catdog.store import features, generation, index, layout
from catdog.store.index import Entry


def writer_at(location, classes=("cats", "dogs")):
    image_set = ImageSet(location, "class", classes, (), (), ())
    meta = metadata.feature_metadata(ExtractConfig(root="", out="", image_size=32), image_set, {"source": "none", "seed": 0})
    return features.ShardWriter(location, features.feature_schema(meta), classes)


def test_commit_moves_staged_files_in_drops_superseded_rows_and_is_idempotent(tmp_path):
    out = storage.resolve(str(tmp_path / "out"))
    X = np.arange(3 * 512, dtype=np.float32).reshape(3, 512)
    writer_at(out).write("all", "part-00000-a.parquet", ["cats/1.jpg", "cats/2.jpg", "dogs/3.jpg"], np.array([0, 0, 1]),
                         X, [("dogs/bad.jpg", "OSError", "truncated")])
    previous = {p: Entry(1, 1, "", "features/split=all/part-00000-a.parquet") for p in ("cats/1.jpg", "cats/2.jpg", "dogs/3.jpg")}
    previous["dogs/bad.jpg"] = Entry(1, 1, "", "errors/split=all/part-00000-a.parquet")
    stage = out.join(layout.staging(2))
    new = np.full((2, 512), 7, np.float32)
    writer_at(stage).write("all", "part-g2-00000-b.parquet", ["cats/2.jpg", "dogs/bad.jpg"], np.array([0, 1]), new, [])
    comparison = index.Comparison(sorted(previous.items(), key=index.key))
    listed = [Listed("cats/1.jpg", "all", 0, 1, 1), Listed("cats/2.jpg", "all", 0, 2, 2), Listed("dogs/bad.jpg", "all", 1, 2, 2)]
    assert [e.path for e in comparison.pending(listed)] == ["cats/2.jpg", "dogs/bad.jpg"]
    changes = comparison.changes
    assert (changes.added, changes.changed, changes.removed, changes.unchanged) == (0, 2, 1, 1)
    staged = generation.staged_files(stage)
    assert staged == ["features/split=all/part-g2-00000-b.parquet"]
    record = generation.plan(2, staged, changes)
    assert record["rewrite"] == {"errors/split=all/part-00000-a.parquet": ["dogs/bad.jpg"],
                                 "features/split=all/part-00000-a.parquet": ["cats/2.jpg", "dogs/3.jpg"]}
    added = {p: Entry(2, 2, "h", "features/split=all/part-g2-00000-b.parquet") for p in ("cats/2.jpg", "dogs/bad.jpg")}
    after = dict(generation.next_index(sorted(previous.items(), key=index.key), record, sorted(added.items())))
    index.write(stage, after)

    generation.carry_out(out, record)
    generation.carry_out(out, record)  # a second time, as after a kill mid-commit: nothing changes
    loaded = features.load(out)
    got = dict(zip(loaded.paths, loaded.X))
    assert sorted(got) == ["cats/1.jpg", "cats/2.jpg", "dogs/bad.jpg"]
    np.testing.assert_array_equal(got["cats/1.jpg"], X[0])
    np.testing.assert_array_equal(got["cats/2.jpg"], new[0])
    assert not features.committed(out, layout.ERRORS_DIR)  # its only row was superseded: no file left
    assert sorted(features.committed(out)) == [("all", "part-00000-a-r2.parquet"), ("all", "part-g2-00000-b.parquet")]
    assert index.read(out) == after and after["cats/1.jpg"].file == "features/split=all/part-00000-a-r2.parquet"
    assert not out.join(layout.STAGING).exists()
    rewritten = features.read_file(out, "features/split=all/part-00000-a-r2.parquet")
    assert rewritten.schema.metadata[features.METADATA_KEY] == features.read_file(
        out, "features/split=all/part-g2-00000-b.parquet").schema.metadata[features.METADATA_KEY]
