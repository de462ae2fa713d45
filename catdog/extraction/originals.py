"""The images behind stored features, decoded as their extraction decoded them: for the figures
that show them (wrong predictions, the feature map, near-duplicates). Where the images are not
reachable from here (a cluster's own disk), a note says so and the figure is left out."""

from __future__ import annotations

import numpy as np

from catdog import storage
from catdog.extraction import listing
from catdog.store import manifest
from catdog.vision.images import decode_files


def settings(out: storage.Location) -> dict | None:
    """The extraction settings recorded beside the features (manifest.json), if any."""
    recorded = manifest.read(out)
    return recorded.config if recorded else None


def decode(recorded: dict | None, paths: list[str]) -> tuple[dict[int, np.ndarray], str | None]:
    """{position in `paths`: pixels} for the images readable here, and a note if there are none."""
    if not recorded:
        return {}, "no manifest.json beside the features"
    config = listing.recorded_config(recorded)
    root = storage.resolve(config.root)
    locate = storage.Resolver(root.parent() if config.from_table else root)
    try:
        decoded = decode_files([locate(p) for p in paths], config.decode)
    except Exception as exc:  # the image folder may live where this machine cannot reach
        return {}, f"images under {root} not reachable here ({type(exc).__name__})"
    if not decoded.ok:
        return {}, f"images under {root} not readable here"
    return dict(zip(decoded.ok, decoded.pixels)), None
