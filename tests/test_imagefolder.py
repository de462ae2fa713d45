import os

import pytest

from catdog import storage
from catdog.errors import CatdogError
from catdog.extraction import imagefolder
from tests.conftest import random_pixels, save_image


def make(root, names):
    for i, name in enumerate(names):
        save_image(os.path.join(root, name), random_pixels(i), format="PNG")


def test_split_layout_labels_follow_sorted_class_names(tmp_path):
    make(tmp_path, ["train/dogs/b.jpg", "train/cats/a.jpg", "test/dogs/c.jpg", "test/cats/d.jpg", "validation/cats/e.jpg"])
    images = imagefolder.scan(str(tmp_path))
    assert images.layout == "split"
    assert images.classes == ("cats", "dogs")
    by_path = dict(zip(images.paths, zip(images.splits, images.labels)))
    assert by_path["train/cats/a.jpg"] == ("train", 0)
    assert by_path["train/dogs/b.jpg"] == ("train", 1)
    assert by_path["test/dogs/c.jpg"] == ("test", 1)
    assert list(images.paths) == sorted(images.paths)


def test_class_layout_and_recursion(tmp_path):
    make(tmp_path, ["dogs/x/deep/1.jpg", "cats/2.jpg", "birds/3.jpg"])
    images = imagefolder.scan(str(tmp_path))
    assert images.layout == "class"
    assert images.classes == ("birds", "cats", "dogs")
    assert dict(zip(images.paths, images.labels)) == {"birds/3.jpg": 0, "cats/2.jpg": 1, "dogs/x/deep/1.jpg": 2}
    assert set(images.splits) == {"all"}


def test_flat_folder_is_unlabeled(tmp_path):
    make(tmp_path, ["1.jpg", "sub/2.jpg"])
    images = imagefolder.scan(str(tmp_path))
    assert images.layout == "flat"
    assert images.labels == (imagefolder.NO_LABEL, imagefolder.NO_LABEL)
    assert images.classes == ()


def test_extensions_any_case_hidden_and_non_images_skipped(tmp_path):
    make(tmp_path, ["cats/a.JPG", "cats/b.Jpeg", "cats/c.png", "cats/d.BMP", "cats/e.gif", "cats/f.webp"])
    make(tmp_path, ["cats/.hidden.jpg", "cats/._a.jpg", ".git/x.jpg", "cats/.thumbs/y.jpg"])
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    (tmp_path / "cats" / "Thumbs.db").write_bytes(b"\0")
    images = imagefolder.scan(str(tmp_path))
    assert [os.path.basename(p) for p in images.paths] == ["a.JPG", "b.Jpeg", "c.png", "d.BMP", "e.gif", "f.webp"]


def test_symlink_loop_terminates_without_duplicates(tmp_path):
    make(tmp_path, ["cats/a.jpg"])
    os.symlink("..", tmp_path / "cats" / "loop")
    images = imagefolder.scan(str(tmp_path))
    assert images.paths == ("cats/a.jpg",)


def test_labels_in_some_splits_only_is_refused(tmp_path):
    make(tmp_path, ["train/cats/a.jpg", "test/b.jpg"])
    with pytest.raises(CatdogError, match="labels in some splits only"):
        imagefolder.scan(str(tmp_path))


@pytest.mark.parametrize("setup, message", [(None, "not found"), ("empty", "no images")])
def test_missing_or_empty_folder(tmp_path, setup, message):
    root = tmp_path / "in"
    if setup == "empty":
        (root / "cats").mkdir(parents=True)
        (root / "cats" / "readme.txt").write_text("x")
    with pytest.raises(CatdogError, match=message):
        imagefolder.scan(str(root))


def test_shards_are_fixed_size_per_split_and_named_by_content(tmp_path):
    make(tmp_path, [f"train/cats/{i}.jpg" for i in range(7)] + [f"test/dogs/{i}.jpg" for i in range(3)])
    images = imagefolder.scan(str(tmp_path))
    shards = imagefolder.plan_shards(images, 3)
    assert [(s.split, len(s.paths)) for s in shards] == [("test", 3), ("train", 3), ("train", 3), ("train", 1)]
    assert sorted(p for s in shards for p in s.paths) == sorted(images.paths)
    again = imagefolder.plan_shards(imagefolder.scan(str(tmp_path)), 3)
    assert [s.name for s in again] == [s.name for s in shards]
    make(tmp_path, ["train/cats/00.jpg"])  # a new file moves shard boundaries: names must change
    moved = imagefolder.plan_shards(imagefolder.scan(str(tmp_path)), 3)
    assert {s.name for s in moved if s.split == "train"}.isdisjoint({s.name for s in shards if s.split == "train"})


def test_an_input_that_is_neither_file_nor_folder_is_refused_not_read(tmp_path):
    """A FIFO named on the command line would block the read forever."""
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    with pytest.raises(CatdogError, match="not a file or a folder: .*x.jpg"):
        imagefolder.inputs([str(fifo)])


def test_the_walk_yields_paths_in_sorted_order_as_stored(tmp_path):
    """OUT's index is merged with the listing as both stream: the walk must give exactly the sorted
    order of the stored paths (a folder sorts as "name/", and undecodable bytes are stored as \\xNN)."""
    names = ["a.jpg", "a-b/1.jpg", "a/1.jpg", "a/b/c/2.jpg", "a0.jpg", "A.jpg", "é/1.jpg", "z/y/x.png", "z/y.png"]
    make(tmp_path, names)
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")  # not UTF-8
    with open(odd, "wb") as f:
        f.write(open(tmp_path / "a.jpg", "rb").read())
    images = imagefolder.scan(str(tmp_path))
    assert images.layout == "flat" and len(images.paths) == len(names) + 1
    assert list(images.paths) == sorted(images.paths) and "caf\\xe9.jpg" in images.paths


def test_the_listing_streams_before_the_walk_ends(tmp_path, monkeypatch):
    """The first images come out when only the first folders have been listed."""
    make(tmp_path, [f"c{k:02d}/{i}.jpg" for k in range(30) for i in range(2)])
    folder = imagefolder.open_folder(str(tmp_path))
    calls = []
    real = imagefolder._local_children
    monkeypatch.setattr(imagefolder, "_local_children", lambda base, rel: calls.append(rel) or real(base, rel))
    entries = folder.entries()
    listed = [next(entries)]
    listed_then = len(calls)
    listed += list(entries)
    assert listed[0].path == "c00/0.jpg" and listed_then <= imagefolder.LOOKAHEAD < 30
    assert len(calls) == 30 and [e.path for e in listed] == sorted(e.path for e in listed)


def test_a_class_folder_without_images_is_a_class_as_in_keras(tmp_path):
    make(tmp_path, ["cats/a.jpg", "dogs/b.jpg"])
    (tmp_path / "birds").mkdir()
    images = imagefolder.scan(str(tmp_path))
    assert images.classes == ("birds", "cats", "dogs") and images.labels == (1, 2)


def test_cut_shards_equals_fixed_runs_per_split_of_the_sorted_listing():
    listed = [imagefolder.Listed(f"{s}/x/{i:03d}.jpg", s, i % 2, i, i) for s in ("test", "train") for i in range(7)]
    shards = list(imagefolder.cut_shards(iter(listed), 3))
    assert [(s.split, s.index, len(s.paths)) for s in shards] == [("test", 0, 3), ("test", 1, 3), ("test", 2, 1),
                                                                  ("train", 0, 3), ("train", 1, 3), ("train", 2, 1)]
    assert [p for s in shards for p in s.paths] == [e.path for e in listed]
    assert shards[4].stamps == ((3, 3), (4, 4), (5, 5)) and shards[4].labels == (1, 0, 1)


@pytest.mark.parametrize("given, said", [([], "no images given"), (3, "images are a list of paths or URIs, got int"),
                                          ([b"a.jpg"], "images are a list of paths or URIs, got list")])
def test_images_that_are_not_a_list_of_paths_are_one_line(given, said):
    with pytest.raises(CatdogError, match=said):
        imagefolder.inputs(given)


def test_one_path_alone_is_a_list_of_one(tmp_path):
    image = save_image(tmp_path / "a.png", random_pixels(0))
    files, folders = imagefolder.inputs(image)
    assert [f.path for f in files] == [storage.resolve(image).path] and folders == []
