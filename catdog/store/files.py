"""Files under OUT written so that readers see each one whole or not at all, and read so too."""

from __future__ import annotations

import uuid
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

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


def read_parquet(location: Location, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
    """A Parquet file that is replaced by name (OUT's index), read in one request: a reader sees the old
    file or the new one. pyarrow's own readers read the footer, then open the file again for the data,
    which after a replacement pairs one file's footer with the other's pages."""
    table = pq.ParquetFile(pa.BufferReader(location.read_bytes())).read(columns=columns)
    return table if schema is None else table.cast(schema)
