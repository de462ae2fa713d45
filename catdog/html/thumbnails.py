"""Thumbnails of the images a report shows: decoded as their extraction decoded them (the source
recorded in OUT's manifest), scaled to SIZE px JPEGs named by a digest of the path, so a re-run after
an incremental extract makes only the new ones."""

from __future__ import annotations

import functools
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from catdog import cluster, storage
from catdog.errors import CatdogError
from catdog.extraction import originals

SIZE = 128
BATCH = 64  # images decoded per task


def name(path: str) -> str:
    """The thumbnail's file name (relative to the report's thumbs/ folder)."""
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:20] + ".jpg"


def _read_as_given(paths: list[str]) -> tuple[dict, str | None]:
    """Another tool's embeddings: their paths read as they are (local paths or URIs)."""
    from catdog.vision.images import decode_files
    from catdog.vision.settings import DecodeConfig

    try:
        decoded = decode_files([storage.resolve(p) for p in paths], DecodeConfig(SIZE))
    except CatdogError as exc:
        return {}, f"the embeddings' paths are not images readable here ({exc})"
    if not decoded.ok:
        return {}, "the embeddings' paths are not images readable here"
    return dict(zip(decoded.ok, decoded.pixels)), None


def missing(paths, folder: str) -> list[str]:
    """The paths without a thumbnail in `folder` yet."""
    return [p for p in sorted(set(paths)) if not os.path.exists(os.path.join(folder, name(p)))]


def render(recorded: dict | None, chunk: list[str]) -> tuple[list[tuple[str, bytes]], str | None]:
    """A chunk of images as (path, JPEG bytes) thumbnails, and why none could be read, if none could.
    Plain code, run in a thread here or in a Ray task on the cluster (`make`)."""
    pictures, note = originals.decode(recorded, chunk) if recorded else _read_as_given(chunk)
    made = []
    for i, pixels in sorted(pictures.items()):
        data = io.BytesIO()
        Image.fromarray(pixels).resize((SIZE, SIZE), Image.BILINEAR).save(data, "JPEG", quality=85)
        made.append((chunk[i], data.getvalue()))
    return made, note


def make(recorded: dict | None, paths: list[str], folder: str, on_ray: bool = False, address: str | None = None,
         local_disk: bool = True, threads: int = 2) -> tuple[dict[str, str], str | None]:
    """{path: thumbnail name} for every image readable here (existing thumbnails kept), and a note
    when none could be read (images on another machine's disk, another tool's embeddings). `on_ray`:
    the chunks are rendered in Ray tasks (on this node where the images are its own disk), else in
    threads of this process; the files are written here either way."""
    os.makedirs(folder, exist_ok=True)
    todo = missing(paths, folder)
    new = set(todo)
    done = {p: name(p) for p in set(paths) if p not in new}
    chunks = [todo[i : i + BATCH] for i in range(0, len(todo), BATCH)]
    notes: list[str] = []
    chunk_thumbnails = functools.partial(render, recorded)
    with ThreadPoolExecutor(threads) as pool:  # its threads start only if it is given work
        results = (cluster.map_in_tasks(chunk_thumbnails, chunks, address, local_disk) if on_ray
                   else pool.map(chunk_thumbnails, chunks))
        for made, note in results:
            notes += [note] if note else []
            for path, data in made:
                with open(os.path.join(folder, name(path)), "wb") as f:
                    f.write(data)
                done[path] = name(path)
    return done, (notes[0] if notes and not done else None)
