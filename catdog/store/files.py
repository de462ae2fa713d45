"""Writing files under OUT so that readers see each one whole or not at all."""

from __future__ import annotations

import uuid
from typing import Callable

from catdog.storage import Location, join
from catdog.store.layout import TMP_DIR


def commit(out: Location, final: str, write: Callable[[str], None]) -> None:
    """Make `final` appear whole or not at all, written through `write(path)`.

    On a filesystem: under a temporary name in OUT/_tmp, then renamed onto `final`, so a crash
    mid-write leaves nothing half-written in view. On an object store a PUT (multipart included)
    is already atomic, and a rename would be a copy plus a delete: the object is written in place.
    """
    if out.is_object_store:
        write(final)
        return
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
