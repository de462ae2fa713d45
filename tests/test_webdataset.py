"""WebDataset tar shards as input: samples read from a tar stream, the features a folder run gives
the same images, incremental runs tar by tar, a killed run resumed exactly once, on disk and on S3."""

import io
import os
import tarfile

import numpy as np
import pytest

from catdog import storage, synthetic
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction import extract, imagefolder, webdataset
from catdog.store import features, layout
from catdog.store.features import NO_LABEL
from tests.conftest import assert_rows_match, fresh_extraction


def write_tar(path, members: dict[str, bytes]) -> None:
    """A tar of `members` (name -> bytes) in the given order, as img2dataset writes one."""
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def tars_from_folder(folder, into, per_tar: int) -> dict[str, str]:
    """The class folder's images as WebDataset tars of `per_tar` samples (KEY.jpg + KEY.cls + KEY.json);
    returns {tar path/KEY: the image's path in the folder}."""
    files = sorted(p for p in folder.rglob("*.jpg"))
    classes = sorted({p.parent.name for p in files})
    where = {}
    os.makedirs(into, exist_ok=True)
    for start in range(0, len(files), per_tar):
        tar = f"{start // per_tar:05d}.tar"
        members = {}
        for i, file in enumerate(files[start:start + per_tar], start):
            key = f"{i:06d}"
            members[f"{key}.jpg"] = file.read_bytes()
            members[f"{key}.cls"] = str(classes.index(file.parent.name)).encode()
            members[f"{key}.json"] = b'{"caption": "x"}'
            where[f"{tar}/{key}"] = file.relative_to(folder).as_posix()
        write_tar(os.path.join(into, tar), members)
    return where


def test_samples_group_members_by_key_and_record_what_is_wrong(tmp_path):
    png = synthetic_png()
    write_tar(tmp_path / "a.tar", {"b.png": png, "b.cls": b"1", "a.jpg": png, "a.cls": b" 0\n", "a.txt": b"caption",
                                   "c.cls": b"0", "d.webp": png, "d.cls": b"7", "e.jpg": png, "dir/f.jpg": png})
    found, failure = webdataset.samples(storage.resolve(str(tmp_path / "a.tar")), classes=2)
    assert failure is None
    assert [s.key for s in found] == ["a", "b", "c", "d", "dir/f", "e"]  # KEY order, not the tar's
    by_key = {s.key: s for s in found}
    assert (by_key["a"].label, by_key["b"].label, by_key["e"].label) == (0, 1, NO_LABEL)
    assert isinstance(by_key["c"].image, webdataset.NoImage) and isinstance(by_key["d"].image, webdataset.BadLabel)
    assert by_key["a"].image == png
    unlabeled, _ = webdataset.samples(storage.resolve(str(tmp_path / "a.tar")), classes=0)
    assert {s.label for s in unlabeled} == {NO_LABEL} and not isinstance({s.key: s for s in unlabeled}["d"].image, Exception)
    cut = tmp_path / "cut.tar"
    cut.write_bytes((tmp_path / "a.tar").read_bytes()[:2600])  # cut inside a member
    found, failure = webdataset.samples(storage.resolve(str(cut)), classes=2)
    assert isinstance(failure, (tarfile.TarError, EOFError)) and 0 < len(found) < 6


def synthetic_png() -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_tars_in_root_are_a_webdataset_listed_as_one_shard_each(tmp_path):
    write_tar(tmp_path / "00001.tar", {"a.jpg": b"x"})
    write_tar(tmp_path / "00000.tar", {"a.jpg": b"x"})
    (tmp_path / "_stats.json").write_text("{}")
    folder = imagefolder.open_folder(str(tmp_path), ("cats", "dogs"))
    assert folder.layout == "webdataset" and folder.classes == ("cats", "dogs")
    shards = list(imagefolder.cut_shards(folder.entries(), 256))
    assert [(s.paths, s.index, s.container) for s in shards] == [(("00000.tar",), 0, True), (("00001.tar",), 1, True)]
    with pytest.raises(CatdogError, match="--class-names is for WebDataset input"):
        imagefolder.open_folder(str(synthetic.make_demo_folder(str(tmp_path / "f"), per_class=2)), ("a",))


@pytest.mark.slow
def test_extract_a_webdataset_then_change_it_then_resume_a_killed_run(tmp_path):
    """Three tars of the demo folder's images: each image has the features a folder run gives it and
    its class from KEY.cls; a sample without an image is an error row. Then a tar
    replaced, one removed and one added: only those are read again. Then a first run killed before
    its index (one shard's files gone with it) resumes with every image once. In this process: Ray's
    workers reading tars are the bucket test's."""
    photos = tmp_path / "photos"
    synthetic.make_demo_folder(str(photos), per_class=12, size=40)
    root = tmp_path / "wds"
    where = tars_from_folder(photos, root, per_tar=10)
    write_tar(root / "00002.tar", {**dict(tarfile_members(root / "00002.tar")), "zz.cls": b"1"})  # a sample without image
    config = ExtractConfig(root=str(root), out=str(tmp_path / "out"), weights="none", image_size=32,
                           class_names=("cats", "dogs"), progress=False, executor="local")
    first = extract.run(config)
    assert first.images == len(where) and first.errors == 1 and first.processed == len(where) + 1
    expected, _ = fresh_extraction(config.replace(root=str(photos), out=str(tmp_path / "o2"), class_names=()))
    stored = features.load(config.out)
    assert_rows_match([where[p] for p in stored.paths], stored.X, expected)
    assert stored.classes == ("cats", "dogs")
    assert all(stored.classes[y] == where[p].split("/")[1] for p, y in zip(stored.paths, stored.y))
    assert features.read_errors(config.out)[0][:2] == ("00002.tar/zz", "NoImage")

    os.remove(root / "00000.tar")  # removed: its 10 images go
    members = dict(tarfile_members(root / "00001.tar"))
    del members["000010.jpg"], members["000010.cls"], members["000010.json"]
    write_tar(root / "00001.tar", members)  # replaced with one sample fewer
    later = os.stat(root / "00001.tar").st_mtime + 10  # a new time even where timestamps are coarse
    os.utime(root / "00001.tar", (later, later))
    write_tar(root / "00009.tar", {"new.jpg": (photos / where["00000.tar/000000"]).read_bytes(), "new.cls": b"0"})
    second = extract.run(config)
    assert second.changes == f"added 0, changed 10, removed 10, unchanged {len(where) - 20 + 1}, 1 new tars"
    assert second.processed == 9 + 1 and second.images == len(where) - 10 - 1 + 1
    paths = list(features.load(config.out).paths)
    assert len(paths) == len(set(paths)) and "00009.tar/new" in paths and not any(p.startswith("00000.tar/") for p in paths)
    assert extract.run(config).processed == 0

    fresh = config.replace(out=str(tmp_path / "out2"))
    extract.run(fresh)
    out = storage.resolve(fresh.out)
    out.join(layout.INDEX).delete()  # as a first run killed before its index
    done = sorted(features.committed(out))
    for kind in layout.KINDS:
        out.join(layout.shard_file(kind, *done[0])).delete()  # ... and before its first shard
    resumed = extract.run(fresh)
    assert resumed.resumed_shards == len(done) - 1 and resumed.processed == 9
    again = features.load(fresh.out)
    assert sorted(again.paths) == sorted(paths) and sorted(features.read_errors(fresh.out)) == sorted(features.read_errors(config.out))


def tarfile_members(path):
    with tarfile.open(path) as archive:
        return [(m.name, archive.extractfile(m).read()) for m in archive if m.isfile()]


@pytest.mark.slow
def test_a_webdataset_on_the_bucket(s3, ray_local, tmp_path):
    """Tars on S3 are read as streams by the workers: the same rows and features as from the folder."""
    photos = tmp_path / "photos"
    synthetic.make_demo_folder(str(photos), per_class=4, size=40)
    where = tars_from_folder(photos, tmp_path / "wds", per_tar=6)
    root = s3.upload(tmp_path / "wds", f"{s3.prefix}/wds")
    config = ExtractConfig(root=root, out=f"s3://{s3.prefix}/features", weights="none", image_size=32,
                           class_names=("cats", "dogs"), progress=False)
    done = extract.run(config)
    assert done.images == len(where) and done.errors == 0
    expected, _ = fresh_extraction(config.replace(root=str(photos), out=str(tmp_path / "o"), class_names=()))
    stored = features.load(config.out)
    assert_rows_match([where[p] for p in stored.paths], stored.X, expected)


def test_the_images_behind_webdataset_rows_are_read_from_inside_their_tars(tmp_path):
    """The report's thumbnails and the figures read a row's image from its tar, each tar once, decoded
    as the extraction decoded it."""
    from catdog.config import DecodeConfig
    from catdog.extraction import originals
    from catdog.vision.images import decode

    photos = tmp_path / "photos"
    synthetic.make_demo_folder(str(photos), per_class=6, size=40)
    root = tmp_path / "wds"
    where = tars_from_folder(photos, root, per_tar=5)
    rows = sorted(where)[:2] + [sorted(where)[-1], "00000.tar/no-such-key"]
    recorded = {"root": str(root), "out": str(tmp_path / "out"), "image_size": 32, "class_names": ["cats", "dogs"]}
    pictures, note = originals.decode(recorded, rows)
    assert note is None and sorted(pictures) == [0, 1, 2]
    for i in (0, 1, 2):
        np.testing.assert_array_equal(pictures[i], decode((photos / where[rows[i]]).read_bytes(), DecodeConfig(32)))
