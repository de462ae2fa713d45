"""Locations: resolved once, joined, read, committed by rename and deleted, for paths and URIs alike."""

import os

import pyarrow.fs as pafs
import pytest

from catdog import commands, storage
from catdog.errors import CatdogError
from catdog.store import files, layout


def test_path_and_file_uri_resolve_to_the_same_place(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_bytes(b"hello")
    by_path = storage.resolve(str(tmp_path))
    by_uri = storage.resolve(f"file://{tmp_path}")
    assert by_path.is_local and isinstance(by_uri.fs, pafs.LocalFileSystem)
    assert by_path.join("a", "x.txt").read_bytes() == by_uri.join("a", "x.txt").read_bytes() == b"hello"
    assert str(by_uri.join("a")) == f"file://{tmp_path}/a" and by_path.join("a").is_dir()
    assert storage.resolve(by_path) is by_path
    assert not by_path.join("nope").exists()


def test_write_text_commits_by_rename_and_delete_removes_files_and_folders(tmp_path):
    out = storage.resolve(str(tmp_path / "out"))
    files.write_text(out, "sub/note.txt", "hi")
    assert (tmp_path / "out" / "sub" / "note.txt").read_text() == "hi"
    assert os.listdir(tmp_path / "out" / layout.TMP_DIR) == []  # the temporary name was moved away
    out.join("sub", "note.txt").delete()
    assert not (tmp_path / "out" / "sub" / "note.txt").exists()
    out.join("sub").delete()
    out.join("never-there").delete()  # nothing to delete is not an error
    assert sorted(os.listdir(tmp_path / "out")) == [layout.TMP_DIR]


def test_unknown_uri_scheme_is_one_line_error(capsys):
    with pytest.raises(CatdogError, match="cannot open foo://bucket/x: Unrecognized filesystem type"):
        storage.resolve("foo://bucket/x")
    assert commands.main(["extract", "foo://bucket/photos", "--out", "/tmp/never"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catdog: error: cannot open foo://bucket/photos") and err.count("\n") == 1


def test_a_uri_query_stays_at_the_end_of_joined_names(tmp_path):
    base = storage.resolve(f"file://{tmp_path}")
    with_query = storage.Location(base.fs, base.path, "s3://bucket/photos?endpoint_override=h:9000&scheme=http")
    joined = with_query.join("cats", "a.jpg")
    assert str(joined) == "s3://bucket/photos/cats/a.jpg?endpoint_override=h:9000&scheme=http"
    assert joined.path == f"{base.path}/cats/a.jpg"
