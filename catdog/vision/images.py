"""Decode image files into fixed-size RGB uint8 arrays, the way Keras' own image loading does.

Runs in decode tasks and actors spread over the CPUs, so it must not import TensorFlow.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageOps

from catdog import storage
from catdog.storage import Location
from catdog.vision.settings import DecodeConfig

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
MAX_MESSAGE = 500
_OBJECT_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-f]+>")
# Files fetched at once per call: on an object store each read is a request with its own latency,
# and a shard read one GET at a time would wait for the sum of them.
FETCH_THREADS = 16


class ImageTooLarge(ValueError):
    """Refused before decoding: more pixels than the configured limit (a decompression bomb)."""


class DecodeError(NamedTuple):
    index: int  # position in the list of files asked for
    error: str  # the exception's class name
    message: str


@dataclass(frozen=True)
class Decoded:
    """The files that decoded, in the order asked, and an error for each one that did not."""

    pixels: np.ndarray  # (len(ok), S, S, 3) uint8
    ok: tuple[int, ...]  # positions of the decoded files in the list asked for
    errors: tuple[DecodeError, ...]
    digests: tuple[str, ...] = ()  # SHA-1 of each file's bytes, in the order asked ("" where unreadable)


def decode(data: bytes, config: DecodeConfig) -> np.ndarray:
    """Bytes of any common image format -> (S, S, 3) uint8, EXIF orientation applied."""
    with warnings.catch_warnings():
        # The limit is checked below, from the header alone, with our own threshold.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > config.max_pixels:
                raise ImageTooLarge(f"{width}x{height} pixels is over the limit of {config.max_pixels}")
            if config.jpeg_draft and img.format == "JPEG":
                img.draft("RGB", (config.image_size, config.image_size))  # DCT-domain scaling, never below the size
            # In place: otherwise an upright photo is copied whole, 6 % of a 150 px decode here.
            ImageOps.exif_transpose(img, in_place=True)
            size = (config.image_size, config.image_size)
            rgb = to_rgb(img).resize(size, RESAMPLE[config.interpolation])
            return np.asarray(rgb, dtype=np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own convert("RGB") clips 16-bit values at 255 (a white image); scale instead.
        wide = np.asarray(img, dtype=np.int64)
        img = Image.fromarray(np.clip(wide >> 8, 0, 255).astype(np.uint8), "L")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_files(files: Sequence[Location], config: DecodeConfig, threads: int = 1) -> Decoded:
    """Read and decode each file; a failure of one file is that file's error, never the caller's.

    Every caller (extraction, end-to-end training, predict, figures) decides in a line what an
    error means to it: a recorded row, a count, a refusal, a note. With `threads`, contiguous parts
    of the list decode side by side.
    """
    return _in_parts(files, lambda part: _decoded_in_order(_fetched(part), len(part), config), threads)


def decode_blobs(blobs: Sequence[bytes | Exception], config: DecodeConfig, threads: int = 1) -> Decoded:
    """`decode_files` for images already read (a tar's members); an exception is that image's error."""
    return _in_parts(blobs, lambda part: _decoded_in_order(part, len(part), config), threads)


def _in_parts(items: Sequence, decode_part, threads: int) -> Decoded:
    """With `threads`, contiguous parts of the list decode side by side (Pillow lets go of the GIL
    while it decodes and resizes)."""
    if threads <= 1 or len(items) < 2 * threads:
        return decode_part(items)
    starts = [len(items) * t // threads for t in range(threads + 1)]
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        parts = list(pool.map(lambda a, b: decode_part(items[a:b]), starts[:-1], starts[1:]))
    return Decoded(np.concatenate([p.pixels for p in parts]),
                   tuple(start + i for start, p in zip(starts, parts) for i in p.ok),
                   tuple(e._replace(index=start + e.index) for start, p in zip(starts, parts) for e in p.errors),
                   tuple(d for p in parts for d in p.digests))


def _decoded_in_order(blobs: Iterable[bytes | Exception], count: int, config: DecodeConfig) -> Decoded:
    size = config.image_size
    pixels = np.empty((count, size, size, 3), dtype=np.uint8)
    ok: list[int] = []
    errors: list[DecodeError] = []
    digests = [""] * count
    for i, data in enumerate(blobs):
        try:
            if isinstance(data, Exception):
                raise data
            digests[i] = hashlib.sha1(data).hexdigest()  # what incremental runs compare content by
            pixels[len(ok)] = decode(data, config)
            ok.append(i)
        except Exception as exc:  # any failure of one file: unreadable, truncated, foreign, a bomb
            message = _OBJECT_ADDRESS.sub("", str(exc) or repr(exc))  # Pillow names the BytesIO it read
            errors.append(DecodeError(i, type(exc).__name__, message[:MAX_MESSAGE]))
    return Decoded(pixels[: len(ok)], tuple(ok), tuple(errors), tuple(digests))


def _fetched(files: Sequence[Location]) -> Iterator[bytes | Exception]:
    """Each file's bytes (or its read error), in order. Remote filesystems: FETCH_THREADS reads in
    flight, a window at a time, so at most that many files' bytes are held at once. Local disks: one
    after another in this thread: handing each file over from a reading thread costs a GIL hand-over
    per file, as much as reading it from a page-cached disk."""
    if all(f.is_local for f in files):
        yield from map(_fetch, files)
        return
    with ThreadPoolExecutor(min(FETCH_THREADS, len(files)), thread_name_prefix="fetch") as pool:  # never empty here
        for start in range(0, len(files), FETCH_THREADS):
            yield from pool.map(_fetch, files[start:start + FETCH_THREADS])


def digests(files: Sequence[Location]) -> list[str]:
    """SHA-1 of each file's bytes, read as decoding reads them ("" where unreadable)."""
    return ["" if isinstance(data, Exception) else hashlib.sha1(data).hexdigest() for data in _fetched(files)]


class StoreError(OSError):
    """An object store that did not answer a read, after its retries (`catdog.storage.s3_filesystem`):
    the store's fault, not the file's. Extraction stops on it rather than record the image as bad."""


def _fetch(file: Location) -> bytes | Exception:
    try:
        if not file.is_local:
            try:
                return file.read_bytes()
            except (FileNotFoundError, PermissionError):
                raise
            except OSError as exc:
                raise StoreError(f"cannot read {file}: {storage.store_error(exc)}") from None
        path = storage.os_path(file.path)  # a name that is not UTF-8 is listed by its display_path
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OSError(f"not a regular file: {file}")  # a FIFO put in its place would block the read forever
        with open(path, "rb") as f:
            return f.read()
    except Exception as exc:  # the caller records it against this file
        return exc
