"""Local paths and filesystem URIs (s3://, gs://, ...) behind one pyarrow FileSystem interface."""

from __future__ import annotations

import os
import uuid
from typing import Callable

import pyarrow.fs as pafs

TMP_DIR = "_tmp"


def is_uri(location: str) -> bool:
    return "://" in location


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it for a local path or a URI."""
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location)).replace(os.sep, "/")


def join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts if p)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.read()


def commit(fs: pafs.FileSystem, out_root: str, final: str, write: Callable[[str], None]) -> None:
    """Write through `write(tmp_path)` under a temporary name in OUT/_tmp, then rename onto `final`.

    Readers only ever list final names, so a crash mid-write leaves nothing half-written in view.
    """
    tmp_dir = join(out_root, TMP_DIR)
    fs.create_dir(tmp_dir, recursive=True)
    tmp = join(tmp_dir, f"{uuid.uuid4().hex}-{final.rsplit('/', 1)[-1]}")
    write(tmp)
    fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
    fs.move(tmp, final)


def write_text(fs: pafs.FileSystem, out_root: str, name: str, text: str) -> None:
    def write(tmp: str) -> None:
        with fs.open_output_stream(tmp) as stream:
            stream.write(text.encode())

    commit(fs, out_root, join(out_root, name), write)
