"""Local paths and filesystem URIs (s3://, gs://, ...) behind one pyarrow FileSystem interface.

A location is resolved once, where the user names it, and passed down as a `Location`: pyarrow
filesystems pickle, so the same object reaches Ray tasks on other nodes.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Callable

import pyarrow.fs as pafs

from catdog.errors import CatdogError

TMP_DIR = "_tmp"


def is_uri(location: str) -> bool:
    return "://" in location


@dataclass(frozen=True)
class Location:
    """A folder or file: the filesystem it lives on, the path inside it, and the name the user gave."""

    fs: pafs.FileSystem
    path: str
    name: str

    def __str__(self) -> str:
        return self.name

    def join(self, *parts: str) -> "Location":
        return Location(self.fs, join(self.path, *parts), join(self.name, *parts))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def delete(self) -> None:
        """Remove a folder (recursively) or a file, if there."""
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type != pafs.FileType.NotFound:
            self.fs.delete_file(self.path)


def resolve(location: "str | Location") -> Location:
    """The filesystem and the path inside it for a local path or a URI."""
    if isinstance(location, Location):
        return location
    if is_uri(location):
        try:
            fs, path = pafs.FileSystem.from_uri(location)
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise CatdogError(f"cannot open {location}: {str(exc).splitlines()[0]}") from None
        return Location(fs, path, location)
    path = os.path.abspath(os.path.expanduser(location)).replace(os.sep, "/")
    return Location(pafs.LocalFileSystem(), path, location)


def join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts if p)


def commit(out: Location, final: str, write: Callable[[str], None]) -> None:
    """Write through `write(tmp_path)` under a temporary name in OUT/_tmp, then rename onto `final`.

    Readers only ever list final names, so a crash mid-write leaves nothing half-written in view.
    """
    fs = out.fs
    tmp_dir = join(out.path, TMP_DIR)
    fs.create_dir(tmp_dir, recursive=True)
    tmp = join(tmp_dir, f"{uuid.uuid4().hex}-{final.rsplit('/', 1)[-1]}")
    write(tmp)
    fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
    fs.move(tmp, final)


def write_text(out: Location, name: str, text: str) -> None:
    def write(tmp: str) -> None:
        with out.fs.open_output_stream(tmp) as stream:
            stream.write(text.encode())

    commit(out, join(out.path, name), write)
