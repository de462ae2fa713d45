"""An image table read as the images of a run: columns, order, labels, splits, stamps and refusals."""

import os
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catdog import storage
from catdog.errors import CatdogError
from catdog.extraction import table
from catdog.store.features import NO_LABEL
from tests.conftest import random_pixels, save_image


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return str(path)


def test_rows_in_split_then_path_order_with_classes_splits_and_stamps(tmp_path):
    absolute = save_image(tmp_path / "elsewhere" / "z.png", random_pixels(1))
    csv = write_csv(tmp_path / "t.csv", ["path", "label", "split", "extra"],
                    [("b/2.jpg", "dogs", "train", 1), (absolute, "cats", "test", 2), ("a/1.jpg", "cats", "train", 3),
                     ("c/3.jpg", "", "train", 4)])
    images = table.read(csv)
    listed = list(images.entries())
    assert [e.path for e in listed] == [absolute, "a/1.jpg", "b/2.jpg", "c/3.jpg"]  # split "test" first
    assert images.layout == "table" and images.classes == ("cats", "dogs") and images.local
    rows = {e.path: (e.split, e.label) for e in listed}
    assert rows == {"a/1.jpg": ("train", 0), "b/2.jpg": ("train", 1), absolute: ("test", 0), "c/3.jpg": ("train", NO_LABEL)}
    assert {e.path: (e.size, e.mtime_ns) for e in listed}["b/2.jpg"] == (table.NO_SIZE, zlib.crc32(b"train\tdogs"))
    locate = storage.Resolver(images.root)  # relative paths are under the table's folder
    assert locate("a/1.jpg").path == storage.resolve(str(tmp_path / "a" / "1.jpg")).path
    assert locate(absolute).path == storage.resolve(absolute).path


def test_parquet_with_integer_labels_named_columns_and_no_split(tmp_path):
    pq.write_table(pa.table({"uri": ["x/10.jpg", "x/2.jpg", "x/1.jpg"], "y": [10, 2, 2]}), tmp_path / "t.parquet")
    images = table.read(str(tmp_path / "t.parquet"), path_column="uri", label_column="y")
    assert images.classes == ("2", "10")  # numeric order, as the integers are
    assert {e.path: e.label for e in images.entries()} == {"x/1.jpg": 0, "x/10.jpg": 1, "x/2.jpg": 0}
    assert {e.split for e in images.entries()} == {"all"}
    unlabeled = table.read(str(tmp_path / "t.parquet"), path_column="uri")
    assert unlabeled.classes == () and {e.label for e in unlabeled.entries()} == {NO_LABEL}


def _by_pandas(rows, path):
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["path", "label", "split"])
    frame["split"] = frame["split"].astype("category")  # a categorical: a dictionary column in Parquet
    frame.to_parquet(path)


def _by_polars(rows, path):
    import polars as pl

    pl.DataFrame(rows, schema=["path", "label", "split"], orient="row").write_parquet(path)


def _by_duckdb(rows, path):
    import duckdb

    with duckdb.connect() as db:
        db.execute("CREATE TABLE t (path VARCHAR, label VARCHAR, split VARCHAR)")
        db.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
        db.execute(f"COPY t TO '{path}' (FORMAT parquet)")


@pytest.mark.parametrize("writer", [_by_pandas, _by_polars, _by_duckdb], ids=["pandas", "polars", "duckdb"])
def test_tables_written_by_pandas_polars_and_duckdb_are_read_alike(tmp_path, writer):
    """Each tool stores text its own way (pandas 3 and Polars: large_string, or a dictionary for a
    categorical; DuckDB: string): the same rows are the same images."""
    rows = [(f"img/{i:03d}.jpg", ["cats", "dogs", ""][i % 3], ["train", "test"][i % 2]) for i in range(50, 0, -1)]
    writer(rows, tmp_path / "t.parquet")
    images = table.read(str(tmp_path / "t.parquet"))
    assert images.classes == ("cats", "dogs") and images.rows == 50
    listed = [(e.split, e.path, e.label) for e in images.entries()]
    names = {"cats": 0, "dogs": 1, "": NO_LABEL}
    assert listed == sorted((s, p, names[c]) for p, c, s in rows)


@pytest.mark.parametrize("ordered", [True, False])
def test_a_table_in_order_streams_and_another_is_sorted_with_the_same_rows(tmp_path, ordered, monkeypatch):
    """Several batches: an ordered table is read batch by batch and never whole; an unordered one is
    sorted in memory; both list the rows in (split, path) order, and the same image twice is refused
    either way, before any work."""
    monkeypatch.setattr(table, "BATCH_ROWS", 100)
    rows = [(f"img/{i:04d}.jpg", ["cats", "dogs"][i % 2], ["test", "train"][i % 3 == 0]) for i in range(1000)]
    rows.sort(key=lambda r: (r[2], r[0]) if ordered else hash(r[0]))
    pq.write_table(pa.table(dict(zip(["path", "label", "split"], zip(*rows)))), tmp_path / "t.parquet", row_group_size=100)
    images = table.read(str(tmp_path / "t.parquet"))
    assert (images.in_order is None) == ordered and images.rows == 1000
    listed = list(images.entries())
    assert [(e.split, e.path) for e in listed] == sorted((r[2], r[0]) for r in rows)
    assert all(e.label == ("cats", "dogs").index(r[1]) for e, r in zip(listed, sorted(rows, key=lambda r: (r[2], r[0]))))
    twice = rows[:500] + [rows[400]] + rows[500:]
    if ordered:
        twice.sort(key=lambda r: (r[2], r[0]))
    pq.write_table(pa.table(dict(zip(["path", "label", "split"], zip(*twice)))), tmp_path / "t2.parquet", row_group_size=100)
    with pytest.raises(CatdogError, match=f"{rows[400][0]} is in .*t2.parquet more than once"):
        table.read(str(tmp_path / "t2.parquet"))


@pytest.mark.parametrize("header, rows, kwargs, message", [
    (["file"], [("a.jpg",)], {}, r"no column 'path' in .*t.csv \(it has: file\); name the column .* --path-column"),
    (["path"], [("a.jpg",)], {"label_column": "class"}, r"no column 'class' in .*t.csv \(it has: path\)"),
    (["path", "label"], [("a.jpg", "cats"), ("a.jpg", "dogs")], {}, r"a.jpg is in .*t.csv more than once"),
    (["path", "split"], [("a.jpg", "train"), ("b.jpg", "x/y")], {}, r"split 'x/y' in .*t.csv: a split is a non-empty name"),
    (["path", "n"], [("a.jpg", 1), ("", 2)], {}, r"column 'path' of .*t.csv has empty paths"),
    (["path"], [], {}, r"no rows in .*t.csv"),
])
def test_a_table_catdog_cannot_use_is_one_line(tmp_path, header, rows, kwargs, message):
    csv = write_csv(tmp_path / "t.csv", header, rows)
    with pytest.raises(CatdogError, match=message):
        table.read(csv, **kwargs)


def test_a_missing_or_odd_table_is_one_line(tmp_path):
    with pytest.raises(CatdogError, match="table not found: .*nowhere.csv"):
        table.read(str(tmp_path / "nowhere.csv"))
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(CatdogError, match=r"t.json: a table is a .parquet or .csv file"):
        table.read(str(tmp_path / "t.json"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(CatdogError, match="cannot read .*bad.parquet"):
        table.read(str(tmp_path / "bad.parquet"))


def test_a_missing_bucket_is_one_line_before_any_work(s3, tmp_path):
    csv = write_csv(tmp_path / "t.csv", ["path"], [(f"s3://{s3.bucket}/a.jpg",), ("s3://no-such-bucket/b.jpg",)])
    with pytest.raises(CatdogError, match="bucket 'no-such-bucket' not found"):
        table.read(csv)
    assert not os.path.exists("s3:")


def test_a_folder_and_a_table_together_or_neither_is_one_line(tmp_path, capsys):
    from catdog import commands

    for argv in (["extract", "--out", str(tmp_path / "o")], ["extract", str(tmp_path), "--from-table", "t.csv", "--out", "o"]):
        assert commands.main(argv) == 2
        assert capsys.readouterr().err == "catdog: error: give an image folder ROOT or --from-table TABLE (one of them)\n"
    assert commands.main(["extract", str(tmp_path), "--out", "o", "--label-column", "y"]) == 2
    assert "go with --from-table" in capsys.readouterr().err


@pytest.mark.slow
def test_extract_from_a_table_of_uris_and_local_paths_then_an_incremental_run(s3, tmp_path, capsys):
    """One table: images on the bucket (URIs), local ones by absolute path and by a path relative to the
    table, and three that cannot be read. Each good image has the features a folder run gives it, with
    the table's class and split; the bad ones are error rows under their table path. Then a row removed,
    one added and one relabelled: only those are read again, every image once."""
    from catdog import commands, synthetic
    from catdog.config import ExtractConfig
    from catdog.extraction import extract
    from catdog.store import features
    from tests.conftest import assert_rows_match, fresh_extraction

    photos = tmp_path / "photos"
    synthetic.make_demo_folder(str(photos), per_class=6, size=40)
    bucket = s3.upload(photos, f"{s3.prefix}/photos")
    good = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg"))
    forms = [lambda r: f"{bucket}/{r}", lambda r: str(photos / r), lambda r: f"photos/{r}"]
    where = {forms[i % 3](r): r for i, r in enumerate(good)}  # table path -> the image in the folder
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")
    bad = ["photos/missing.jpg", str(photos / "broken.jpg"), f"{bucket}/train/cats/missing.jpg"]
    rows = [(p, r.split("/")[1], r.split("/")[0]) for p, r in where.items()] + [(p, "cats", "train") for p in bad]
    csv = tmp_path / "images.csv"
    write_csv(csv, ["path", "label", "split"], rows)
    out = str(tmp_path / "out")
    config = ExtractConfig(root=str(csv), out=out, from_table=True, weights="none", image_size=32, shard_size=4,
                           progress=False, executor="local")  # the table is read here whatever the executor
    first = extract.run(config)
    assert first.images == len(good) and first.errors == len(bad)
    expected, _ = fresh_extraction(config.replace(root=str(photos), from_table=False))
    stored = features.load(out)
    assert_rows_match([where[p] for p in stored.paths], stored.X, expected)
    classes = stored.classes
    assert classes == ("cats", "dogs")
    assert [(classes[y], s) for y, s in zip(stored.y, stored.splits)] == \
        [tuple(where[p].split("/")[1::-1]) for p in stored.paths]
    assert sorted(p for p, _, _ in features.read_errors(out)) == sorted(bad)

    # A first run killed before its index, and before one of its shards: the re-run resumes the others.
    from catdog.store import layout
    target = storage.resolve(out)
    target.join(layout.INDEX).delete()
    done = sorted(features.committed(target))
    for kind in layout.KINDS:
        target.join(layout.shard_file(kind, *done[-1])).delete()
    resumed = extract.run(config)
    assert resumed.resumed_shards == len(done) - 1 and 0 < resumed.processed <= 4
    assert sorted(features.load(out).paths) == sorted(stored.paths)

    removed, relabelled = next(iter(where)), list(where)[1]
    added = save_image(tmp_path / "new" / "n.png", random_pixels(5))
    rows = [(p, ("dogs" if c == "cats" else "cats") if p == relabelled else c, s) for p, c, s in rows if p != removed]
    write_csv(csv, ["path", "label", "split"], rows + [(added, "cats", "train")])
    assert commands.main(["extract", "--from-table", str(csv), "--out", out, "--weights", "none", "--image-size",
                          "32", "--shard-size", "4", "--no-progress", "--executor", "local"]) == 0
    assert "changes     added 1, changed 1, removed 1, unchanged " in capsys.readouterr().out
    again = features.load(out)
    paths = list(again.paths)
    assert len(paths) == len(set(paths)) == len(good) and removed not in paths and added in paths
    now = dict(zip(paths, again.y))
    assert classes[now[relabelled]] != where[relabelled].split("/")[1]

