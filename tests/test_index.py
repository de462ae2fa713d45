"""The index: written and read back, and ROOT's listing compared against it path by path."""

import os
import tempfile
import threading

import pytest

from catdog import storage
from catdog.errors import CatdogError
from catdog.extraction import imagefolder
from catdog.store import features, index
from catdog.store.index import Entry
from tests.conftest import random_pixels, save_image


def listing(tmp_path, names):
    for name in names:
        save_image(tmp_path / "in" / name, random_pixels(len(name)))
    return imagefolder.scan(str(tmp_path / "in"))


def test_round_trip_and_stamps_from_the_listing(tmp_path):
    image_set = listing(tmp_path, ["cats/a.png", "dogs/b.png"])
    stamps = dict(zip(image_set.paths, image_set.stamps))
    entries = dict(index.entries(stamps, "features/split=all/part-00000-x.parquet", ["cats/a.png", "dogs/b.png"], ["s1", "s2"]))
    stat = (tmp_path / "in" / "cats" / "a.png").stat()
    assert entries["cats/a.png"] == Entry(stat.st_size, stat.st_mtime_ns, "s1", "features/split=all/part-00000-x.parquet")
    out = storage.resolve(str(tmp_path / "out"))
    assert index.read(out) is None
    index.write(out, entries)
    assert index.read(out) == entries
    assert list(index.rows(out)) == sorted(entries.items())
    file = tmp_path / "out" / index.INDEX
    file.write_bytes(file.read_bytes()[:50])
    with pytest.raises(CatdogError, match=r"index.parquet is damaged .*--overwrite"):
        index.read(out)
    with pytest.raises(CatdogError, match=r"index.parquet is damaged .*--overwrite"):
        list(index.rows(out))


def compare(previous: dict, listed, content=None):
    comparison = index.Comparison(sorted(previous.items(), key=index.key), content)
    pending = [e.path for e in comparison.pending(listed)]
    return pending, comparison.changes


def test_compare_finds_added_changed_removed_and_unchanged(tmp_path):
    image_set = listing(tmp_path, ["cats/a.png", "cats/b.png", "dogs/c.png"])
    stamps = dict(zip(image_set.paths, image_set.stamps))
    previous = {
        "cats/a.png": Entry(*stamps["cats/a.png"], "h-a", "features/split=all/f1"),
        "cats/b.png": Entry(stamps["cats/b.png"][0] + 1, stamps["cats/b.png"][1], "h-b", "features/split=all/f1"),  # size differs
        "dogs/gone.png": Entry(1, 1, "h-g", "errors/split=all/f2"),
    }
    pending, changes = compare(previous, image_set.entries())
    assert pending == ["cats/b.png", "dogs/c.png"]  # in listing order
    assert (changes.added, changes.changed, changes.removed, changes.unchanged) == (1, 1, 1, 1)
    assert changes.superseded == {"features/split=all/f1": ("cats/b.png",), "errors/split=all/f2": ("dogs/gone.png",)}
    assert str(changes) == "added 1, changed 1, removed 1, unchanged 1" and changes.pending == 2
    pending, by_content = compare(previous, image_set.entries(), lambda paths: {p: "other" for p in paths})
    assert pending == ["cats/a.png", "cats/b.png", "dogs/c.png"] and (by_content.changed, by_content.unchanged) == (2, 0)


def test_compare_streams_100k_paths_against_an_independent_set_computation():
    """Added, changed, removed, unchanged at the scale the benchmark times, against Python sets (a
    split's rows sort apart from another's: a row whose split changed is removed and added)."""
    n = 100_000
    listed = [imagefolder.Listed(f"c{i % 7}/{i:06d}.jpg", "train" if i % 3 else "test", 0, i, i) for i in range(n)]
    listed.sort(key=lambda e: e.key)
    previous = {e.path: Entry(e.size + (e.size % 11 == 0), e.mtime_ns, "", f"features/split={e.split if e.size % 13 else 'x'}/f")
                for e in listed if e.size % 5}
    previous.update({f"gone/{i}.jpg": Entry(0, 0, "", "features/split=train/g") for i in range(500)})
    rows = sorted(previous.items(), key=index.key)
    comparison = index.Comparison(iter(rows))
    pending = [e.path for e in comparison.pending(iter(listed))]
    in_index = {(index.split_of(e.file), p) for p, e in previous.items()}
    same_key = [e for e in listed if e.key in in_index]
    changed = {e.path for e in same_key if previous[e.path].size != e.size}
    added = {e.path for e in listed if e.key not in in_index}
    removed = in_index - {e.key for e in listed}
    work = added | changed
    assert pending == [e.path for e in listed if e.path in work]
    assert (comparison.changes.added, comparison.changes.changed, comparison.changes.removed) == (len(added), len(changed), len(removed))
    assert comparison.changes.unchanged == len(same_key) - len(changed)
    assert sum(map(len, comparison.changes.superseded.values())) == len(changed) + len(removed)


def test_the_index_merged_after_a_commit_streams_in_order(tmp_path):
    previous = {f"cats/{i}.png": Entry(i, i, "", f"features/split=all/part-{i % 2}.parquet") for i in range(6)}
    added = [(f"cats/{i}.png", Entry(9, 9, "new", "features/split=all/part-g2.parquet")) for i in (1, 7)]
    rows = list(index.merged(sorted(previous.items()), {"features/split=all/part-1.parquet": ["cats/1.png", "cats/3.png"]},
                             {"features/split=all/part-1.parquet": "features/split=all/part-1-r2.parquet"}, iter(added)))
    assert [p for p, _ in rows] == ["cats/0.png", "cats/1.png", "cats/2.png", "cats/4.png", "cats/5.png", "cats/7.png"]
    assert dict(rows)["cats/1.png"].sha1 == "new" and dict(rows)["cats/5.png"].file == "features/split=all/part-1-r2.parquet"
    out = storage.resolve(str(tmp_path / "out"))
    index.write_rows(out, iter(rows))
    assert list(index.rows(out)) == rows
    with pytest.raises(ValueError, match="out of order"):
        index.write_rows(out, iter(reversed(rows)))
    spool = index.Spool()  # a first run's rows, spooled as its shards land, become the index as they are
    spool.add(rows)
    index.write_batches(out, spool.batches())
    assert list(index.rows(out)) == rows and index.counts(out) == (6, 0)
    spool.close()
    backwards = index.Spool()
    backwards.add(reversed(rows))
    with pytest.raises(ValueError, match="out of order"):
        index.write_batches(out, backwards.batches())
    backwards.close()


def test_a_spool_leaves_no_file_behind_even_when_its_run_is_killed(tmp_path, monkeypatch):
    """A run's spool has no name in the temporary folder: a killed driver cannot leave it there."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spool = index.Spool()
    spool.add([(f"cats/{i}.png", Entry(i, i, f"s{i}", "features/split=all/part-1.parquet")) for i in range(5)])
    assert os.listdir(tmp_path) == []  # as a SIGKILL would find it, mid-run
    assert [p for p, _ in spool.rows()] == [f"cats/{i}.png" for i in range(5)]
    spool.close()


def test_a_reader_sees_the_old_or_the_new_index_while_it_is_replaced(tmp_path):
    """A commit replaces index.parquet by renaming a new one onto it: a reader in that moment reads
    one whole index or the other (a reader that reads the footer, then opens the file again for the
    pages, pairs one file's footer with the other's pages)."""
    out = storage.resolve(str(tmp_path / "out"))
    states = [{f"cats/{i}.png": Entry(i, i, f"s{i}", f"features/split=all/part-{k}.parquet") for i in range(n)}
              for k, n in enumerate((300, 3000))]
    index.write(out, states[0])
    stop = threading.Event()

    def commits():
        k = 0
        while not stop.is_set():
            k = 1 - k
            index.write(out, states[k])

    writer = threading.Thread(target=commits)
    writer.start()
    try:
        seen = [len(index.read(out)) for _ in range(400)]
        files = {tuple(features.indexed_files(out, "features")) for _ in range(400)}
    finally:
        stop.set()
        writer.join()
    assert set(seen) <= {300, 3000} and len(set(seen)) == 2, "both states are read, nothing else"
    assert files <= {("features/split=all/part-0.parquet",), ("features/split=all/part-1.parquet",)}
