"""WebDataset tar shards (img2dataset's output): the members of one tar, grouped by sample.

A sample is the members sharing a KEY (the member's name up to the first dot of its base name):
KEY.jpg (or .jpeg, .png, .webp, ...) is its image, KEY.cls its class number; other members
(.json, .txt captions) are not read. A tar is read once, in order, as a stream (tarfile's "r|"
mode: no seeking, so from an object store too). Each sample's path is `shard.tar/KEY`.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass

from catdog.extraction.imagefolder import IMAGE_EXTENSIONS
from catdog.storage import Location
from catdog.store.features import NO_LABEL


@dataclass(frozen=True)
class Sample:
    key: str
    image: bytes | Exception  # the image member's bytes, or why there is none
    label: int  # NO_LABEL without a class


class NoImage(ValueError):
    """A sample without an image member (its other members name it)."""


class BadLabel(ValueError):
    """A KEY.cls that is not the number of one of the classes."""


def samples(tar: Location, classes: int) -> tuple[list[Sample], Exception | None]:
    """The tar's samples in KEY order, and the error that cut the read short, if any (a truncated or
    damaged tar keeps the samples read before it). `classes`: how many there are (0: unlabeled, the
    .cls members are not read)."""
    images: dict[str, bytes] = {}
    labels: dict[str, bytes] = {}
    seen: set[str] = set()
    failure = None
    try:
        with tar.fs.open_input_stream(tar.path) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                folder, name = os.path.split(member.name)
                stem, dot, extension = name.partition(".")
                if not dot or stem.startswith("._"):  # macOS metadata of a tar made on a Mac
                    continue
                key = f"{folder}/{stem}" if folder else stem
                extension = "." + extension.lower()
                if extension in IMAGE_EXTENSIONS:
                    images[key] = archive.extractfile(member).read()
                elif extension == ".cls" and classes:
                    labels[key] = archive.extractfile(member).read()
                seen.add(key)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError)):
            raise  # a store that did not answer is the store's fault, not the tar's (the shard fails)
        failure = exc
    found = []
    for key in sorted(seen):
        image = images.get(key) or NoImage(f"no image member for {key} (members: KEY.jpg|png|webp|...)")
        label = NO_LABEL
        if key in labels:
            text = labels[key].decode("utf-8", "replace").strip()
            if not text.isdigit() or int(text) >= classes:
                image = BadLabel(f"{key}.cls holds {text[:20]!r}, not one of the class numbers 0..{classes - 1}")
            else:
                label = int(text)
        found.append(Sample(key, image, label))
    return found, failure
