"""The images behind stored features, decoded as their extraction decoded them: for the figures
that show them (wrong predictions, the feature map, near-duplicates). Where the images are not
reachable from here (a cluster's own disk), a note says so and the figure is left out."""

from __future__ import annotations

import numpy as np

from catdog import storage
from catdog.extraction import listing, webdataset
from catdog.store import manifest
from catdog.vision.images import decode_blobs, decode_files


def settings(out: storage.Location) -> dict | None:
    """The extraction settings recorded beside the features (manifest.json), if any."""
    recorded = manifest.read(out)
    return recorded.config if recorded else None


def decode(recorded: dict | None, paths: list[str]) -> tuple[dict[int, np.ndarray], str | None]:
    """{position in `paths`: pixels} for the images readable here, and a note if there are none. A
    WebDataset row (`shard.tar/KEY`) is read from inside its tar, each tar once."""
    if not recorded:
        return {}, "no manifest.json beside the features"
    config = listing.recorded_config(recorded)
    root = storage.resolve(config.root)
    locate = storage.Resolver(root.parent() if config.from_table else root)
    members = {i: p.split(TAR, 1) for i, p in enumerate(paths) if TAR in p}
    files = [i for i in range(len(paths)) if i not in members]
    pictures: dict[int, np.ndarray] = {}
    try:
        decoded = decode_files([locate(paths[i]) for i in files], config.decode)
        pictures.update({files[k]: pixels for k, pixels in zip(decoded.ok, decoded.pixels)})
        for tar in sorted({t for t, _ in members.values()}):
            wanted = [(i, key) for i, (t, key) in members.items() if t == tar]
            found, _ = webdataset.samples(locate(tar + ".tar"), len(config.class_names))
            blobs = {s.key: s.image for s in found}
            got = decode_blobs([blobs.get(key, KeyError(key)) for _, key in wanted], config.decode)
            pictures.update({wanted[k][0]: pixels for k, pixels in zip(got.ok, got.pixels)})
    except Exception as exc:  # the image folder may live where this machine cannot reach
        return {}, f"images under {root} not reachable here ({type(exc).__name__})"
    if not pictures:
        return {}, f"images under {root} not readable here"
    return pictures, None


TAR = ".tar/"  # a WebDataset row's path: the tar, then the sample's key
