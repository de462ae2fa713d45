"""Local paths and filesystem URIs (s3://, gs://, ...) behind one pyarrow FileSystem interface.

A location is resolved once, where the user names it, and passed down as a `Location`: pyarrow
filesystems pickle, so the same object reaches Ray tasks on other nodes. Object stores are
configured the AWS way (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, profiles, instance roles, ...) or by
pyarrow's URI query (`s3://bucket/path?endpoint_override=host:port&scheme=http`); a pickled
filesystem carries the endpoint but never the credentials, which each worker finds in its own
environment (`credentials_env` is what the driver hands to Ray's workers).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import stat
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

import pyarrow.fs as pafs

from catdog.errors import CatdogError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads

T = TypeVar("T")

# What a worker needs to reach the same object store as the driver (never printed or recorded).
CREDENTIAL_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                        "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_MAX_ATTEMPTS",
                        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE", "GOOGLE_APPLICATION_CREDENTIALS")
S3 = getattr(pafs, "S3FileSystem", ())  # () when pyarrow was built without S3: isinstance is then always False
DEFAULT_MAX_ATTEMPTS = 5
FLUSH_FAILURE = "Failed to flush response stream"  # aws-sdk-cpp's name for an answer larger than the read's buffer
BACKOFF_S, MAX_BACKOFF_S = 0.1, 20.0  # AWS's standard back-off: base and cap
OBJECT_STORES = tuple(getattr(pafs, name) for name in ("S3FileSystem", "GcsFileSystem") if hasattr(pafs, name))


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
        return Location(self.fs, join(self.path, *parts), join_name(self.name, *parts))

    def parent(self) -> "Location":
        name, query = self.name.partition("?")[::2]
        parent = name.rstrip("/").rsplit("/", 1)[0] if "/" in name.rstrip("/") else "."
        return Location(self.fs, self.path.rstrip("/").rsplit("/", 1)[0], parent + (f"?{query}" if query else ""))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def is_object_store(self) -> bool:
        """Objects appear whole or not at all on a PUT, and there is no rename."""
        return isinstance(self.fs, OBJECT_STORES)

    def __reduce__(self):
        # pyarrow pickles an S3 filesystem without its retry strategy: rebuilt with catdog's on arrival.
        if isinstance(self.fs, S3):
            return _s3_location, (self.fs.__reduce__()[1][0], self.path, self.name)
        return Location, (self.fs, self.path, self.name)

    def kind(self) -> pafs.FileType:
        """What is here: File, Directory, NotFound, or Unknown (a FIFO, a device). A local name that
        is not UTF-8 (a `display_path`) is looked up by its bytes, which pyarrow cannot take."""
        if not self.is_local:
            return self.fs.get_file_info(self.path).type
        try:
            mode = os.stat(os_path(self.path)).st_mode
        except FileNotFoundError:
            return pafs.FileType.NotFound
        if stat.S_ISDIR(mode):
            return pafs.FileType.Directory
        return pafs.FileType.File if stat.S_ISREG(mode) else pafs.FileType.Unknown

    def exists(self) -> bool:
        return self.kind() != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.kind() == pafs.FileType.Directory

    def read_bytes(self) -> bytes:
        """The whole file (a small file read through throttling is read again: `small_reads_retried`)."""
        def read() -> bytes:
            with self.fs.open_input_stream(self.path) as stream:
                return stream.read()

        return small_reads_retried(read, self.is_object_store)

    def write_bytes(self, data: bytes) -> None:
        """This file, whole or not at all (a local file is written beside it and renamed onto it; an
        object store's PUT is whole); a refusal is one line naming the file."""
        try:
            if not self.is_object_store:
                tmp = f"{self.path}.{uuid.uuid4().hex[:8]}.tmp"
                try:
                    with self.fs.open_output_stream(tmp) as stream:
                        stream.write(data)
                    self.fs.move(tmp, self.path)
                finally:
                    if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                        self.fs.delete_file(tmp)
                return
            with self.fs.open_output_stream(self.path) as stream:
                stream.write(data)
        except OSError as exc:
            raise CatdogError(f"cannot write {self}: {store_error(exc)}") from None

    def delete(self) -> None:
        """Remove a folder (recursively) or a file, if there."""
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type != pafs.FileType.NotFound:
            self.fs.delete_file(self.path)


def store_of(uri: str) -> str:
    """The bucket a URI is in, as a URI with the same query: s3://bucket?endpoint_override=..."""
    rest, _, query = uri.partition("?")
    scheme, _, key = rest.partition("://")
    return f"{scheme}://{key.partition('/')[0]}" + (f"?{query}" if query else "")


class Resolver:
    """The Location of each of many paths (an image table's rows): a URI on its store, each store's
    filesystem opened once (a bucket is checked once, not per image); an absolute local path as it
    is; any other path under `base`."""

    def __init__(self, base: Location) -> None:
        self.base = base
        self._stores: dict[str, Location] = {}

    def __call__(self, path: str) -> Location:
        if is_uri(path):
            store = store_of(path)
            if store not in self._stores:  # the driver checked each bucket once (catdog.extraction.table)
                self._stores[store] = resolve(store, check=False)
            found = self._stores[store]
            inside = path.partition("?")[0].split("://", 1)[1].partition("/")[2]
            return Location(found.fs, join(found.path, inside), path)
        if os.path.isabs(path):
            return resolve(path)
        return self.base.join(path)

    def __reduce__(self):
        return Resolver, (self.base,)


def resolve(location: "str | Location", check: bool = True) -> Location:
    """The filesystem and the path inside it for a local path or a URI (a bucket is checked to exist
    unless `check` is False)."""
    if isinstance(location, Location):
        return location
    if hasattr(location, "__fspath__"):  # a pathlib.Path
        location = os.fspath(location)
    if not isinstance(location, str) or not location:
        raise CatdogError(f"a path or URI is a non-empty string, got {location!r} ({type(location).__name__})")
    if is_uri(location):
        try:
            fs, path = pafs.FileSystem.from_uri(location)
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise CatdogError(f"cannot open {location}: {str(exc).splitlines()[0]}") from None
        if isinstance(fs, S3):
            fs = s3_filesystem(fs.__reduce__()[1][0])
        resolved = Location(fs, path, location)
        if check and resolved.is_object_store:
            _check_bucket(resolved)
        return resolved
    path = display_path(os.path.abspath(os.path.expanduser(location)).replace(os.sep, "/"))
    return Location(pafs.LocalFileSystem(), path, display_path(location))



def small_reads_retried(read: Callable[[], T], object_store: bool) -> T:
    """`read()`, tried again where an object store's throttling broke a small read. A 503 SlowDown
    answering a read smaller than the answer's own XML body (a lock, a manifest, a small index, a
    small column of a shard) overflows the buffer aws-sdk-cpp preallocates for it, which it then
    reports as a non-retryable INTERNAL_FAILURE, "Failed to flush response stream" (the same SDK flaw
    apache/doris#66557 works around): its retry strategy never sees the 503. Such a read is tried
    again here as the strategy would have (AWS_MAX_ATTEMPTS tries, exponential back-off with full
    jitter); the read must be one that can be done twice."""
    attempts = max_attempts() if object_store else 1
    for attempt in range(1, attempts + 1):
        try:
            return read()
        except OSError as exc:
            if FLUSH_FAILURE not in str(exc) or attempt == attempts:
                raise
            time.sleep(random.uniform(0, min(MAX_BACKOFF_S, BACKOFF_S * 2**attempt)))
    raise AssertionError("unreachable")


def read_dataset(data: pads.Dataset, columns: list[str] | None = None, filter_: pads.Expression | None = None) -> pa.Table:
    """A pyarrow dataset's rows, read in parallel; where an object store's throttling broke a small
    read (`small_reads_retried`), read again a file at a time, each file's read tried again on its
    own: the whole of a dataset of many small files, read again, would meet another throttled read."""
    try:
        return data.to_table(columns=columns, filter=filter_)
    except OSError as exc:
        if FLUSH_FAILURE not in str(exc):
            raise
    import pyarrow as pa

    parts = [small_reads_retried(lambda f=f: f.to_table(schema=data.schema, columns=columns, filter=filter_), True)
             for f in data.get_fragments(filter=filter_)]
    empty = data.schema.empty_table()
    return pa.concat_tables(parts) if parts else (empty.select(columns) if columns is not None else empty)


def s3_filesystem(options: dict) -> pafs.FileSystem:
    """An S3 filesystem with catdog's retry strategy: AWS's standard one (exponential back-off with
    jitter, retrying throttling such as 503 SlowDown, 500/502/504 answers, connection resets and
    timeouts), bounded by AWS_MAX_ATTEMPTS attempts a request (default 5; pyarrow's own is 3)."""
    return pafs.S3FileSystem(**options, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts()))


def max_attempts() -> int:
    value = os.environ.get("AWS_MAX_ATTEMPTS") or str(DEFAULT_MAX_ATTEMPTS)
    if not value.isdigit() or int(value) < 1:
        raise CatdogError(f"AWS_MAX_ATTEMPTS must be a whole number of attempts, at least 1, got {value!r}")
    return int(value)


def _s3_location(options: dict, path: str, name: str) -> Location:
    return Location(s3_filesystem(options), path, name)


def _check_bucket(location: Location) -> None:
    """One request up front, so wrong credentials, an unreachable endpoint or a missing bucket are
    a one-line error before any work (some stores, SeaweedFS among them, create buckets on a PUT)."""
    bucket = location.path.split("/", 1)[0]
    try:
        info = location.fs.get_file_info(bucket)
    except OSError as exc:
        raise CatdogError(f"cannot reach {location}: {store_error(exc)}") from None
    if info.type == pafs.FileType.NotFound:
        raise CatdogError(f"bucket {bucket!r} not found ({location})")


STORE_HINTS = {
    "ACCESS_DENIED": "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, the instance role)",
    "NETWORK_CONNECTION": "check the endpoint (AWS_ENDPOINT_URL or ?endpoint_override=host:port&scheme=http)",
}


def store_error(exc: OSError) -> str:
    """The useful part of an object store's error: the AWS/GCS code and its detail, on one line."""
    text = " ".join(str(exc).split())
    for marker in ("AWS Error ", "GCS Error "):
        if marker in text:
            text = text[text.index(marker):]
    hint = next((h for code, h in STORE_HINTS.items() if code in text), None)
    return f"{text} ({hint})" if hint else text


def credentials_env() -> dict[str, str]:
    """The object-store settings in this process's environment, to hand to Ray's workers."""
    return {k: os.environ[k] for k in CREDENTIAL_VARIABLES if os.environ.get(k)}


_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


def display_path(path: str) -> str:
    """A local path as text that can be stored: the bytes of a file name that are not UTF-8 (which
    Python keeps as lone surrogates, and Parquet and CSV cannot hold) written as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def os_path(path: str) -> str:
    """The file a `display_path` names: the path itself if it exists, else its \\xNN escapes as bytes."""
    if os.path.lexists(path):
        return path
    return _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), path)


def join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts if p)


def join_name(name: str, *parts: str) -> str:
    """A path or URI with parts added; a URI's query (?endpoint_override=...) stays at the end."""
    name, query = name.partition("?")[::2]
    return join(name, *parts) + (f"?{query}" if query else "")


@contextmanager
def writable_folder(folder: Location, last: str | None = None) -> Iterator[str]:
    """A local folder to write into; on a remote location its contents are uploaded at the end, file
    `last` after all the others (a folder without it is visibly incomplete)."""
    if folder.is_local:
        existed = os.path.isdir(folder.path)
        os.makedirs(folder.path, exist_ok=True)
        try:
            yield folder.path
        except BaseException:
            if not existed and not os.listdir(folder.path):
                os.rmdir(folder.path)  # a failed job leaves no empty folder behind
            raise
        return
    staging = tempfile.mkdtemp(prefix="catdog-")
    try:
        yield staging
        upload(staging, folder, last)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def upload(local: str, folder: Location, last: str | None = None) -> None:
    """Every file under `local` to `folder`, one at a time, each stream closed here: a store that
    refuses a write (or its close, where a multipart upload completes) stops the upload with a
    one-line error. pyarrow's copy_files only logs a failed close, and reports success."""
    names = sorted(os.path.relpath(os.path.join(d, f), local) for d, _, files in os.walk(local) for f in files)
    for name in sorted(names, key=lambda n: n == last):
        dest = folder.join(name.replace(os.sep, "/"))
        try:
            if folder.is_local:
                os.makedirs(os.path.dirname(dest.path), exist_ok=True)
            with open(os.path.join(local, name), "rb") as source, folder.fs.open_output_stream(dest.path) as stream:
                shutil.copyfileobj(source, stream, 1 << 20)
        except OSError as exc:
            raise CatdogError(f"cannot write {dest}: {store_error(exc)}; {folder} is incomplete") from None


def check_writable(folder: Location) -> None:
    """Write and delete a small file in `folder`: a store or disk that refuses is one line before a
    job starts, rather than an error deep inside the job's framework."""
    probe = folder.join(".catdog-write-check")
    try:
        if folder.is_local:
            os.makedirs(folder.path, exist_ok=True)
        with folder.fs.open_output_stream(probe.path) as stream:
            stream.write(b"catdog")
        probe.fs.delete_file(probe.path)
    except OSError as exc:
        raise CatdogError(f"cannot write to {folder}: {store_error(exc)}") from None


@contextmanager
def readable_folder(folder: Location) -> Iterator[str]:
    """A local folder with the contents of `folder` (downloaded first when it is remote)."""
    if folder.is_local:
        yield folder.path
        return
    staging = tempfile.mkdtemp(prefix="catdog-")
    try:
        if folder.is_dir():
            pafs.copy_files(folder.path, staging, source_filesystem=folder.fs, destination_filesystem=pafs.LocalFileSystem())
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
