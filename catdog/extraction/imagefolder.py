"""Scan an image folder, work out its layout and labels, and cut it into fixed-size shards.

Layouts (decided from the folder itself, Keras-style):
  split:  ROOT/{train,validation,test}/CLASS/**/*.jpg   (or ROOT/SPLIT/*.jpg, unlabeled)
  class:  ROOT/CLASS/**/*.jpg                            (split "all")
  flat:   ROOT/**/*.jpg with images directly in ROOT     (split "unlabeled", no labels)
Classes are the sorted class folder names, numbered from 0 as Keras numbers them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Iterator

import pyarrow.fs as pafs

from catdog import storage
from catdog.errors import CatdogError
from catdog.storage import Location
from catdog.store.features import NO_LABEL

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
SPLIT_NAMES = frozenset({"train", "validation", "val", "test"})


@dataclass(frozen=True)
class ImageSet:
    """Every image under ROOT in a deterministic order, with its split and label."""

    root: Location
    layout: str
    classes: tuple[str, ...]
    paths: tuple[str, ...]  # POSIX, relative to root
    splits: tuple[str, ...]
    labels: tuple[int, ...]  # NO_LABEL where unlabeled
    stamps: tuple[tuple[int, int], ...] = ()  # (size in bytes, modification time in ns) per path, from the listing
    local: bool = False  # some images are local files (read on the node that holds them, unless --shared-fs)

    def __len__(self) -> int:
        return len(self.paths)

    @functools.cached_property
    def stamp_of(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns), built once: the driver looks up every written shard's paths in it,
        and building it per shard made a job's bookkeeping grow with shards x images."""
        return dict(zip(self.paths, self.stamps))


@dataclass(frozen=True)
class Shard:
    """A fixed run of images of one split; the unit of work, of output files and of resume."""

    split: str
    index: int
    paths: tuple[str, ...]
    labels: tuple[int, ...]
    generation: int = 1  # the run that made it: 1 for the first, then one more per incremental run

    @property
    def digest(self) -> str:
        # The file name carries a digest of its contents, so a changed listing can never be
        # mistaken for a committed shard of an earlier one.
        text = "\n".join(f"{p}\t{y}" for p, y in zip(self.paths, self.labels))
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    @property
    def name(self) -> str:
        run = "" if self.generation == 1 else f"g{self.generation}-"  # first runs keep the names they always had
        return f"part-{run}{self.index:05d}-{self.digest}.parquet"


def scan(root: str | Location) -> ImageSet:
    root = storage.resolve(root)
    kind = root.kind()
    if kind == pafs.FileType.NotFound:
        raise CatdogError(f"input folder not found: {root}")
    if kind != pafs.FileType.Directory:
        raise CatdogError(f"input is not a folder: {root}")
    listed = dict(_list_images(root.fs, root.path))
    files = sorted(listed)
    if not files:
        raise CatdogError(
            f"no images under {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)"
        )
    return dataclasses.replace(_label(root, files), stamps=tuple(listed[f] for f in files), local=root.is_local)


def inputs(names: list[str]) -> tuple[list[Location], list[Location]]:
    """Image files and folders named on a command line, each checked to exist and to be a file or a
    folder (a FIFO or a device would block the read forever): (files, folders)."""
    located = [storage.resolve(n) for n in names]
    kinds = [loc.kind() for loc in located]
    missing = [str(loc) for loc, kind in zip(located, kinds) if kind == pafs.FileType.NotFound]
    if missing:
        raise CatdogError(f"not found: {', '.join(missing)}")
    odd = [str(loc) for loc, kind in zip(located, kinds) if kind not in (pafs.FileType.File, pafs.FileType.Directory)]
    if odd:
        raise CatdogError(f"not a file or a folder: {', '.join(odd)}")
    return ([loc for loc, kind in zip(located, kinds) if kind == pafs.FileType.File],
            [loc for loc, kind in zip(located, kinds) if kind == pafs.FileType.Directory])


def files_in(folders: list[Location]) -> list[Location]:
    """Every image under each folder, in scan order."""
    return [folder.join(p) for folder in folders for p in scan(folder).paths]


def plan_shards(images: ImageSet, shard_size: int, only: set[str] | None = None, generation: int = 1) -> list[Shard]:
    """Fixed-size runs of each split's images in listing order; `only` restricts them to some paths
    (an incremental run's new and changed images)."""
    shards: list[Shard] = []
    for split in sorted(set(images.splits)):
        members = [i for i, s in enumerate(images.splits) if s == split and (only is None or images.paths[i] in only)]
        for index, start in enumerate(range(0, len(members), shard_size)):
            chunk = members[start : start + shard_size]
            shards.append(
                Shard(
                    split=split,
                    index=index,
                    paths=tuple(images.paths[i] for i in chunk),
                    labels=tuple(images.labels[i] for i in chunk),
                    generation=generation,
                )
            )
    return shards


def plan_digest(shards: list[Shard]) -> str:
    return hashlib.sha1("\n".join(f"{s.split}/{s.name}" for s in shards).encode()).hexdigest()[:16]


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _list_images(fs: pafs.FileSystem, base: str) -> Iterator[tuple[str, tuple[int, int]]]:
    """(path relative to base, (size, mtime in ns)) of every visible image file."""
    if isinstance(fs, pafs.LocalFileSystem):
        yield from _walk_local(base)
        return
    selector = pafs.FileSelector(base, recursive=True)
    for entry in fs.get_file_info(selector):
        rel = entry.path[len(base) :].lstrip("/")
        if entry.type == pafs.FileType.File and _visible_image(rel):
            yield rel, (entry.size, entry.mtime_ns or 0)


def _walk_local(base: str) -> Iterator[tuple[str, tuple[int, int]]]:
    # os.walk instead of pyarrow's recursive selector: pyarrow follows a symlink loop until the
    # path is too long, listing the same files many times over.
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = os.path.relpath(dirpath, base).replace(os.sep, "/")
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not _visible_image(rel):
                continue
            try:
                info = os.stat(os.path.join(dirpath, name))
            except OSError:  # a broken symlink: listed, so that its error row says so
                info = None
            if info is None or stat.S_ISREG(info.st_mode):
                yield storage.display_path(rel), (info.st_size, info.st_mtime_ns) if info else (0, 0)


def _visible_image(rel: str) -> bool:
    parts = rel.split("/")
    return all(not p.startswith(".") for p in parts) and is_image_name(parts[-1])


def _label(base: Location, files: list[str]) -> ImageSet:
    parts = [f.split("/") for f in files]
    if any(len(p) == 1 for p in parts):
        return _build(base, "flat", files, ["unlabeled"] * len(files), [None] * len(files))
    if {p[0] for p in parts} <= SPLIT_NAMES:
        labeled = {p[0]: len(p) > 2 for p in parts}
        mixed = {p[0] for p in parts if (len(p) > 2) != labeled[p[0]]}
        if mixed or len(set(labeled.values())) > 1:
            unlabeled = sorted({p[0] for p in parts if len(p) == 2})
            raise CatdogError(
                "labels in some splits only: images directly in "
                + ", ".join(f"{s}/" for s in unlabeled)
                + " have no class folder; put every split's images in class folders, or none"
            )
        names = [p[1] if len(p) > 2 else None for p in parts]
        return _build(base, "split", files, [p[0] for p in parts], names)
    return _build(base, "class", files, ["all"] * len(files), [p[0] for p in parts])


def _build(base: Location, layout: str, files: list[str], splits: list[str], names: list) -> ImageSet:
    classes = tuple(sorted({n for n in names if n is not None}))
    index = {c: i for i, c in enumerate(classes)}
    labels = tuple(NO_LABEL if n is None else index[n] for n in names)
    return ImageSet(base, layout, classes, tuple(files), tuple(splits), labels)
