"""Which executor runs an extraction's stages: Ray (actors on a cluster, or on a local Ray started
for the job) or this process (`catdog.extraction.local`). Ray wherever a cluster, an address, a Ray
this process already joined, actor options or more than a few shards are involved; this process for
small inputs on a machine of its own, where Ray's start-up would be most of the job."""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass

from catdog.config import ExtractConfig
from catdog.errors import CatdogError

LOCAL_MAX_IMAGES = 512  # auto: at most this many images (two CPU shards) run in this process


@dataclass(frozen=True)
class Choice:
    name: str  # "local" or "ray"
    why: str


def joined_ray() -> bool:
    """This process already joined a Ray (a notebook's `ray.init()`): its jobs go there. Ray is
    asked only if whoever called imported it: catdog does not import it to find out."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def choose(config: ExtractConfig, entries) -> Choice:
    """`entries`: a callable listing the input (only called for auto, and read no further than
    LOCAL_MAX_IMAGES + 1 entries)."""
    address = config.address or os.environ.get("RAY_ADDRESS")
    if config.executor == "ray":
        return Choice("ray", "--executor ray")
    if config.executor == "local":
        if address:
            raise CatdogError(f"--executor local runs in this process; it cannot use the Ray cluster at {address}")
        return Choice("local", "--executor local")
    if address:
        return Choice("ray", "a Ray address")
    if joined_ray():
        return Choice("ray", "this process's Ray")
    if config.num_actors not in (None, 1) or config.gpus_per_actor or config.cpus_per_actor or config.shared_fs:
        return Choice("ray", "actor options")
    seen = sum(1 for _ in itertools.islice(entries(), LOCAL_MAX_IMAGES + 1))
    if seen > LOCAL_MAX_IMAGES:
        return Choice("ray", f"more than {LOCAL_MAX_IMAGES:,} images")
    return Choice("local", f"{seen:,} images, at most {LOCAL_MAX_IMAGES:,}: no Ray start-up")
