"""The job's configuration: one frozen dataclass, built by the CLI or by callers, passed down."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from catdog.errors import CatdogError

PREPROCESSING = ("vgg16", "rescale")
INTERPOLATIONS = ("bilinear", "nearest")
DTYPES = ("float32", "float16")
PRECISIONS = ("fp32", "bf16", "fp16")
MIN_IMAGE_SIZE = 32  # VGG16 has five 2x2 poolings: below 32 pixels nothing is left


@dataclass(frozen=True)
class ExtractConfig:
    root: str
    out: str
    weights: str = "imagenet"  # "imagenet", "none" or a path/URI of a VGG16 notop weights file
    seed: int = 0  # random init seed, used with weights="none"
    image_size: int = 150
    batch_size: int = 32
    preprocess: str = "vgg16"
    interpolation: str = "bilinear"
    dtype: str = "float32"
    precision: str = "fp32"
    shard_size: int = 256
    max_pixels: int = 89_478_485  # Pillow's own decompression-bomb limit
    num_actors: int | None = None  # None: follow the cluster's GPUs (or CPUs)
    gpus_per_actor: float | None = None
    cpus_per_actor: float | None = None
    address: str | None = None  # None: RAY_ADDRESS if set, else an embedded local Ray
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        _choice("preprocess", self.preprocess, PREPROCESSING)
        _choice("interpolation", self.interpolation, INTERPOLATIONS)
        _choice("dtype", self.dtype, DTYPES)
        _choice("precision", self.precision, PRECISIONS)
        if self.image_size < MIN_IMAGE_SIZE:
            raise CatdogError(f"--image-size must be at least {MIN_IMAGE_SIZE}, got {self.image_size}")
        for name in ("batch_size", "shard_size", "max_pixels"):
            if getattr(self, name) < 1:
                raise CatdogError(f"--{name.replace('_', '-')} must be positive")
        if self.num_actors is not None and self.num_actors < 1:
            raise CatdogError("--num-actors must be at least 1")
        for name in ("gpus_per_actor", "cpus_per_actor"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise CatdogError(f"--{name.replace('_', '-')} cannot be negative")

    def replace(self, **changes) -> "ExtractConfig":
        return dataclasses.replace(self, **changes)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CatdogError(f"--{name} must be one of {', '.join(allowed)}; got {value!r}")
