"""List an image folder as a stream, work out its layout and labels, and cut it into fixed-size shards.

Layouts (decided from the folder's top levels, Keras-style):
  split:  ROOT/{train,validation,test}/CLASS/**/*.jpg   (or ROOT/SPLIT/*.jpg, unlabeled)
  class:  ROOT/CLASS/**/*.jpg                            (split "all")
  flat:   ROOT/**/*.jpg with images directly in ROOT     (split "unlabeled", no labels)
  webdataset: ROOT/*.tar, tar shards of KEY.jpg (.png, .webp, ...) and KEY.cls members, as img2dataset
          writes them (split "all"; classes given by --class-names, else unlabeled): each tar is
          one shard, its members found by the worker that reads it (`catdog.extraction.webdataset`)
Classes are the sorted class folder names, numbered from 0 as Keras numbers them (a class folder
without images is still a class, as in Keras).

The listing streams: the top levels decide the layout, then the folder is walked directory by
directory, a few listings ahead (`LOOKAHEAD`, in threads), and its images come out in sorted path
order while the rest is still being listed. Shards are cut from that stream (`cut_shards`), so
the first shards are decoded and embedded while ROOT is still being listed, and the same folder
always gives the same shards.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, NamedTuple

import pyarrow.fs as pafs

from catdog import storage
from catdog.errors import CatdogError
from catdog.storage import Location
from catdog.store.features import NO_LABEL

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
SPLIT_NAMES = frozenset({"train", "validation", "val", "test"})
LOOKAHEAD = 8  # directory listings in flight ahead of the walk: an object store's LIST calls overlap


class Listed(NamedTuple):
    """One image of a listing: where it is, its split and label, and its stamp (size and time)."""

    path: str  # POSIX, relative to the listing's root (a table's: as the table gives it)
    split: str
    label: int  # NO_LABEL where unlabeled
    size: int
    mtime_ns: int
    container: bool = False  # a tar of images (WebDataset): its members are found when it is read

    @property
    def key(self) -> tuple[str, str]:
        """A listing's order, and OUT's index's: by split, then path (a folder's split is its first
        folder, so this is plain path order there). A tar sorts as a folder does ("x.tar/"): just
        before the index rows of its members ("x.tar/KEY")."""
        return self.split, self.path + "/" * self.container


@dataclass(frozen=True)
class ImageSet:
    """Every image of a listing, held in memory, in (split, path) order, with its split and label."""

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

    def entries(self) -> Iterator[Listed]:
        stamps = self.stamps or ((0, 0),) * len(self.paths)
        for path, split, label, (size, mtime) in zip(self.paths, self.splits, self.labels, stamps):
            yield Listed(path, split, label, size, mtime)


@dataclass(frozen=True)
class Folder:
    """An image folder whose layout and classes are known, its images listed as they are needed."""

    root: Location
    layout: str
    classes: tuple[str, ...]
    local: bool
    labeled: bool  # split layout: the splits hold class folders
    top: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # the listings that decided the layout

    def entries(self) -> Iterator[Listed]:
        """Every visible image under ROOT in (split, path) order, while the walk goes on."""
        if self.layout == "webdataset":
            tars = sorted((c for c in self.top[""] if _is_tar(c)), key=lambda c: c.name + "/")
            yield from (Listed(c.name, "all", NO_LABEL, c.size, c.mtime_ns, True) for c in tars)
            return
        number = {c: i for i, c in enumerate(self.classes)}
        count = 0
        for rel, size, mtime in _walk(self.root, dict(self.top)):
            parts = rel.split("/")
            if self.layout == "flat":
                split, label = "unlabeled", NO_LABEL
            elif self.layout == "class":
                split, label = "all", self._number(number, parts[0])
            elif self.labeled and len(parts) > 2:
                split, label = parts[0], self._number(number, parts[1])
            elif not self.labeled and len(parts) == 2:
                split, label = parts[0], NO_LABEL
            else:  # the folder changed under the listing
                raise _some_splits_labeled([parts[0]])
            count += 1
            yield Listed(rel, split, label, size, mtime)
        if not count:
            raise CatdogError(f"no images under {self.root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)")


    def _number(self, number: dict[str, int], name: str) -> int:
        if name not in number:
            raise CatdogError(f"class folder {name!r} appeared in {self.root} while it was listed: run again")
        return number[name]


Source = Folder | ImageSet  # what an extraction lists: a folder, or a table's rows


@dataclass(frozen=True)
class Shard:
    """A fixed run of images of one split; the unit of work, of output files and of resume."""

    split: str
    index: int
    paths: tuple[str, ...]
    labels: tuple[int, ...]
    generation: int = 1  # the run that made it: 1 for the first, then one more per incremental run
    stamps: tuple[tuple[int, int], ...] = ()  # each image's (size, mtime_ns) in the listing, for OUT's index
    container: bool = False  # paths is one tar (WebDataset) whose members are the shard's images

    @functools.cached_property
    def digest(self) -> str:
        # The file name carries a digest of its contents, so a changed listing can never be
        # mistaken for a committed shard of an earlier one.
        text = "\n".join(f"{p}\t{y}" for p, y in zip(self.paths, self.labels))
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    @property
    def name(self) -> str:
        run = "" if self.generation == 1 else f"g{self.generation}-"  # first runs keep the names they always had
        return f"part-{run}{self.index:05d}-{self.digest}.parquet"


def open_folder(root: str | Location, class_names: tuple[str, ...] = ()) -> Folder:
    """ROOT checked, and its layout and classes read from its top levels; nothing deeper is listed yet.
    `class_names`: a WebDataset's classes (its KEY.cls values index them)."""
    root = storage.resolve(root)
    kind = root.kind()
    if kind == pafs.FileType.NotFound:
        raise CatdogError(f"input folder not found: {root}")
    if kind != pafs.FileType.Directory:
        raise CatdogError(f"input is not a folder: {root}")
    lister = _lister(root)
    top = {"": lister("")}
    files, folders = _split_entries(top[""])
    if not files and any(_is_tar(c) for c in top[""]):
        return Folder(root, "webdataset", tuple(class_names), root.is_local, bool(class_names), top)
    if class_names:
        raise CatdogError("--class-names is for WebDataset input (tar shards in ROOT); a folder's classes are its "
                          "class folders")
    if files:
        return Folder(root, "flat", (), root.is_local, False, top)
    with closing(_walk(root, dict(top))) as walk:  # a folder without images is one line before any work
        if next(walk, None) is None:
            raise CatdogError(f"no images under {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)")
    if not set(folders) <= SPLIT_NAMES:
        return Folder(root, "class", tuple(sorted(folders)), root.is_local, False, top)
    with ThreadPoolExecutor(LOOKAHEAD) as pool:
        top.update(zip(folders, pool.map(lister, folders)))
    inside = {split: _split_entries(top[split]) for split in folders}
    labeled = {split for split, (_, classes) in inside.items() if classes}
    unlabeled = {split for split, (images, _) in inside.items() if images}
    if labeled and unlabeled:
        raise _some_splits_labeled(sorted(unlabeled))
    classes = tuple(sorted({c for _, names in inside.values() for c in names}))
    return Folder(root, "split", classes, root.is_local, bool(labeled), top)


def scan(root: str | Location) -> ImageSet:
    """A folder's whole listing in memory (for jobs that need it all at once: training, prediction)."""
    folder = open_folder(root)
    listed = list(folder.entries())
    return ImageSet(folder.root, folder.layout, folder.classes, tuple(e.path for e in listed),
                    tuple(e.split for e in listed), tuple(e.label for e in listed),
                    tuple((e.size, e.mtime_ns) for e in listed), local=folder.local)


def inputs(names: list[str]) -> tuple[list[Location], list[Location]]:
    """Image files and folders named on a command line or in an API call, each checked to exist and
    to be a file or a folder (a FIFO or a device would block the read forever): (files, folders).
    One path alone is a list of one; nothing at all, or something else, is the caller's mistake."""
    if isinstance(names, str) or hasattr(names, "__fspath__"):
        names = [names]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) or hasattr(n, "__fspath__") for n in names):
        raise CatdogError(f"images are a list of paths or URIs, got {type(names).__name__}")
    if not names:
        raise CatdogError("no images given")
    located = [storage.resolve(os.fspath(n)) for n in names]
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
    """Every image under each folder, in listing order."""
    return [folder.join(e.path) for folder in folders for e in open_folder(folder).entries()]


def cut_shards(listed: Iterable[Listed], shard_size: int, generation: int = 1) -> Iterator[Shard]:
    """Fixed-size runs of each split's images, cut from a listing in (split, path) order as it
    streams: the same listing always gives the same shards (and file names)."""
    split, index, run = None, 0, []

    def shard() -> Shard:
        return Shard(split, index, tuple(e.path for e in run), tuple(e.label for e in run), generation,
                     tuple((e.size, e.mtime_ns) for e in run))

    for entry in listed:
        if entry.split != split:
            if run:
                yield shard()
            split, index, run = entry.split, 0, []
        if entry.container:  # a tar is a shard of its own
            yield Shard(split, index, (entry.path,), (NO_LABEL,), generation, ((entry.size, entry.mtime_ns),), True)
            index += 1
            continue
        run.append(entry)
        if len(run) == shard_size:
            yield shard()
            index, run = index + 1, []
    if run:
        yield shard()


def plan_shards(images: ImageSet, shard_size: int, only: set[str] | None = None, generation: int = 1) -> list[Shard]:
    """All of a listing's shards at once; `only` restricts them to some paths."""
    return list(cut_shards((e for e in images.entries() if only is None or e.path in only), shard_size, generation))


class PlanDigest:
    """A digest of a run's shard names, taken as they are cut."""

    def __init__(self) -> None:
        self.sha, self.shards, self.images = hashlib.sha1(), 0, 0

    def add(self, shard: Shard) -> None:
        self.sha.update(f"{'' if not self.shards else chr(10)}{shard.split}/{shard.name}".encode())
        self.shards, self.images = self.shards + 1, self.images + len(shard.paths)

    def record(self) -> dict:
        return {"images": self.images, "shards": self.shards, "digest": self.sha.hexdigest()[:16]}


def _is_tar(child) -> bool:
    return not child.folder and not child.name.startswith(".") and child.name.lower().endswith(".tar")


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


class _Child(NamedTuple):
    name: str
    folder: bool
    size: int
    mtime_ns: int


def _lister(root: Location) -> Callable[[str], list[_Child]]:
    """The children of a folder under ROOT (given relative to it), in no particular order."""
    if isinstance(root.fs, pafs.LocalFileSystem):
        return functools.partial(_local_children, root.path)
    return functools.partial(_store_children, root.fs, root.path)


def _local_children(base: str, rel: str) -> list[_Child]:
    children = []
    with os.scandir(os.path.join(base, rel) if rel else base) as entries:
        for entry in entries:
            try:
                info = entry.stat()  # follows symlinks
            except OSError:  # a broken symlink: listed if it names an image, so that its error row says so
                children.append(_Child(entry.name, False, 0, 0))
                continue
            if stat.S_ISDIR(info.st_mode):
                children.append(_Child(entry.name, True, 0, 0))
            elif stat.S_ISREG(info.st_mode):  # not a FIFO or a device: reading one would block
                children.append(_Child(entry.name, False, info.st_size, info.st_mtime_ns))
    return children


def _store_children(fs: pafs.FileSystem, base: str, rel: str) -> list[_Child]:
    path = storage.join(base, rel) if rel else base
    return [_Child(e.base_name, e.type == pafs.FileType.Directory, e.size or 0, e.mtime_ns or 0)
            for e in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
            if e.type in (pafs.FileType.File, pafs.FileType.Directory)]


def _split_entries(children: list[_Child]) -> tuple[list[str], list[str]]:
    """(visible image files, visible folders) among a folder's children."""
    return ([c.name for c in children if not c.folder and is_image_name(c.name)],
            sorted(c.name for c in children if c.folder and not c.name.startswith(".")))


def _walk(root: Location, listed: dict[str, list[_Child]]) -> Iterator[tuple[str, int, int]]:
    """(path relative to ROOT, size, mtime_ns) of every visible image under ROOT, in sorted path order.

    Each folder's children are visited in the order of their names, a folder's taken as "name/":
    then every path under it sorts between its neighbours, and the walk's order is the sorted order
    of the full paths. The next LOOKAHEAD folders to be visited are listed in threads meanwhile;
    `listed` holds listings already made (relative path -> children)."""
    lister = _lister(root)
    local = isinstance(root.fs, pafs.LocalFileSystem)
    seen: set[str] = set()
    upcoming = collections.deque([""])  # folders still to visit, in visiting order
    with ThreadPoolExecutor(LOOKAHEAD, thread_name_prefix="listing") as pool:
        running: dict[str, Future] = {}

        def children(rel: str) -> list[_Child]:
            for ahead in list(upcoming)[:LOOKAHEAD]:
                if ahead not in running and ahead not in listed:
                    running[ahead] = pool.submit(lister, ahead)
            upcoming.popleft()
            return listed.pop(rel) if rel in listed else running.pop(rel).result()

        def visit(rel: str) -> Iterator[tuple[str, int, int]]:
            found = children(rel)
            if local:  # a symlink loop: each real folder is walked once
                real = os.path.realpath(os.path.join(root.path, rel))
                if real in seen:
                    return
                seen.add(real)
            # Sorted as the paths will be stored (a name's undecodable bytes as \\xNN): OUT's index is in that order.
            found = sorted((c for c in found if not c.name.startswith(".")),
                           key=lambda c: storage.display_path(c.name) + "/" * c.folder)
            folders = [f"{rel}/{c.name}" if rel else c.name for c in found if c.folder]
            upcoming.extendleft(reversed(folders))
            for child in found:
                path = f"{rel}/{child.name}" if rel else child.name
                if child.folder:
                    yield from visit(path)
                elif is_image_name(child.name):
                    yield storage.display_path(path), child.size, child.mtime_ns

        try:
            yield from visit("")
        finally:
            for future in running.values():
                future.cancel()


def _some_splits_labeled(unlabeled: list[str]) -> CatdogError:
    return CatdogError("labels in some splits only: images directly in " + ", ".join(f"{s}/" for s in unlabeled)
                       + " have no class folder; put every split's images in class folders, or none")
