"""Thumbnails of the images a report shows: decoded as their extraction decoded them (the source
recorded in OUT's manifest), scaled to SIZE px JPEGs named by a digest of the path, so a re-run after
an incremental extract makes only the new ones."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from catdog import storage
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


def make(recorded: dict | None, paths: list[str], folder: str, threads: int = 2) -> tuple[dict[str, str], str | None]:
    """{path: thumbnail name} for every image readable here (existing thumbnails kept), and a note
    when none could be read (images on another machine's disk, another tool's embeddings)."""
    os.makedirs(folder, exist_ok=True)
    wanted = sorted(set(paths))
    done = {p: name(p) for p in wanted if os.path.exists(os.path.join(folder, name(p)))}
    todo = [p for p in wanted if p not in done]
    notes: list[str] = []

    def batch(chunk: list[str]) -> dict[str, str]:
        pictures, note = originals.decode(recorded, chunk) if recorded else _read_as_given(chunk)
        if note:
            notes.append(note)
        made = {}
        for i, pixels in pictures.items():
            image = Image.fromarray(pixels).resize((SIZE, SIZE), Image.BILINEAR)
            data = io.BytesIO()
            image.save(data, "JPEG", quality=85)
            with open(os.path.join(folder, name(chunk[i])), "wb") as f:
                f.write(data.getvalue())
            made[chunk[i]] = name(chunk[i])
        return made

    with ThreadPoolExecutor(threads) as pool:
        for made in pool.map(batch, [todo[i : i + BATCH] for i in range(0, len(todo), BATCH)]):
            done.update(made)
    return done, (notes[0] if notes and not done else None)
