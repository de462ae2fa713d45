"""Decode image files into fixed-size RGB uint8 arrays, the way Keras' own image loading does.

Runs in Ray tasks spread over every CPU, so it must not import TensorFlow.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from catdog import storage

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class ImageTooLarge(ValueError):
    """Refused before decoding: more pixels than the configured limit (a decompression bomb)."""


def decode(data: bytes, size: int, interpolation: str, max_pixels: int) -> np.ndarray:
    """Bytes of any common image format -> (size, size, 3) uint8, EXIF orientation applied."""
    with warnings.catch_warnings():
        # The limit is checked below, from the header alone, with our own threshold.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"{width}x{height} pixels is over the limit of {max_pixels}")
            upright = ImageOps.exif_transpose(img)
            rgb = to_rgb(upright).resize((size, size), RESAMPLE[interpolation])
            return np.asarray(rgb, dtype=np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own convert("RGB") clips 16-bit values at 255 (a white image); scale instead.
        wide = np.asarray(img, dtype=np.int64)
        img = Image.fromarray(np.clip(wide >> 8, 0, 255).astype(np.uint8), "L")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_shard(row: dict, *, root: str, size: int, interpolation: str, max_pixels: int) -> dict:
    """Ray Data stage: a shard row -> its decoded pixels plus one error record per bad file."""
    fs, base = storage.resolve(root)
    paths = list(row["paths"])
    pixels = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    ok: list[int] = []
    errors: list[tuple[str, str, str]] = []
    for i, path in enumerate(paths):
        try:
            pixels[len(ok)] = decode(storage.read_bytes(fs, storage.join(base, path)), size, interpolation, max_pixels)
            ok.append(i)
        except Exception as exc:  # any failure of one file is that file's error row, never the job's
            errors.append((path, type(exc).__name__, (str(exc) or repr(exc))[:500]))
    return {
        "split": row["split"],
        "name": row["name"],
        "paths": [paths[i] for i in ok],
        "labels": [int(row["labels"][i]) for i in ok],
        "pixels": pixels[: len(ok)].tobytes(),
        "error_paths": [e[0] for e in errors],
        "error_types": [e[1] for e in errors],
        "error_messages": [e[2] for e in errors],
    }
