"""The index: written and read back, and ROOT's listing compared against it path by path."""

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
    entries = index.entries(image_set.stamp_of, "features/split=all/part-00000-x.parquet", ["cats/a.png", "dogs/b.png"], ["s1", "s2"])
    stat = (tmp_path / "in" / "cats" / "a.png").stat()
    assert entries["cats/a.png"] == Entry(stat.st_size, stat.st_mtime_ns, "s1", "features/split=all/part-00000-x.parquet")
    out = storage.resolve(str(tmp_path / "out"))
    assert index.read(out) is None
    index.write(out, entries)
    assert index.read(out) == entries
    file = tmp_path / "out" / index.INDEX
    file.write_bytes(file.read_bytes()[:50])
    with pytest.raises(CatdogError, match=r"index.parquet is damaged .*--overwrite"):
        index.read(out)


def test_compare_finds_added_changed_removed_and_unchanged(tmp_path):
    image_set = listing(tmp_path, ["cats/a.png", "cats/b.png", "dogs/c.png"])
    stamps = dict(zip(image_set.paths, image_set.stamps))
    previous = {
        "cats/a.png": Entry(*stamps["cats/a.png"], "h-a", "f1"),
        "cats/b.png": Entry(stamps["cats/b.png"][0] + 1, stamps["cats/b.png"][1], "h-b", "f1"),  # size differs
        "dogs/gone.png": Entry(1, 1, "h-g", "f2"),
    }
    changes = index.compare(previous, image_set.stamp_of)
    assert (changes.added, changes.changed, changes.removed, changes.unchanged) == (
        ("dogs/c.png",), ("cats/b.png",), ("dogs/gone.png",), ("cats/a.png",))
    assert changes.pending == {"dogs/c.png", "cats/b.png"} and changes.superseded == {"cats/b.png", "dogs/gone.png"}
    assert str(changes) == "added 1, changed 1, removed 1, unchanged 1"
    by_content = index.compare(previous, image_set.stamp_of, lambda paths: {p: "other" for p in paths})
    assert by_content.changed == ("cats/a.png", "cats/b.png") and by_content.unchanged == ()


def test_compare_at_100k_paths():
    """At the scale the benchmark times (a quadratic compare would not finish within the test timeout)."""
    n = 100_000
    paths = tuple(f"train/c{i % 10}/{i:06d}.jpg" for i in range(n))
    image_set = imagefolder.ImageSet(storage.resolve("/tmp"), "split", tuple(f"c{i}" for i in range(10)), paths,
                                     ("train",) * n, tuple(i % 10 for i in range(n)), tuple((i, i) for i in range(n)))
    previous = {p: Entry(i, i, "", "f") for i, p in enumerate(paths[1000:], 1000)}
    changes = index.compare(previous, image_set.stamp_of)
    assert changes.added == paths[:1000] and len(changes.unchanged) == n - 1000 and not changes.removed


def test_entries_for_every_shard_of_100k_paths():
    """The driver stamps each written shard's paths as it arrives: one lookup per path, not a map of the
    whole listing per shard (that took 8.5 s at 100k paths in 256-path shards, 46 s at 200k)."""
    n = 100_000
    paths = tuple(f"train/cats/{i:06d}.jpg" for i in range(n))
    image_set = imagefolder.ImageSet(storage.resolve("/tmp"), "split", ("cats",), paths, ("train",) * n, (0,) * n,
                                     tuple((1000 + i, 7 * i) for i in range(n)))
    found: index.Index = {}
    for start in range(0, n, 256):
        found.update(index.entries(image_set.stamp_of, f"f{start}", paths[start:start + 256], ["d"] * len(paths[start:start + 256])))
    assert len(found) == n and found[paths[4321]] == Entry(5321, 7 * 4321, "d", "f4096")


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
