"""How an image becomes pixels (`DecodeConfig`) and pixels become features (`EmbedConfig`): the
settings the vision layer takes, cut from a job's config (extraction, end-to-end training, a model
folder)."""

from __future__ import annotations

from dataclasses import dataclass

from catdog.errors import CatdogError
from catdog.settings import Settings, choice, positive
from catdog.vision import backbones

# catdog.vision.layers.preprocess: vgg16 is Keras' "caffe" mode, tf [-1, 1], torch ImageNet mean/std, none
# 0-255 as they are (the model preprocesses), rescale the tutorial's 1/255.
PREPROCESSING = ("vgg16", "rescale", "tf", "torch", "none")
INTERPOLATIONS = ("bilinear", "nearest")
DTYPES = ("float32", "float16")
COMPUTE_PRECISIONS = ("fp32", "bf16", "fp16")
PRECISIONS = (*COMPUTE_PRECISIONS, "auto")  # auto: decided per run from the devices (catdog.vision.convbase.auto_precision)

MIN_IMAGE_SIZE = 32  # five 2x2 poolings (or strides): below 32 pixels nothing is left
PILLOW_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit


@dataclass(frozen=True)
class DecodeConfig(Settings):
    """How an image file becomes an S x S x 3 uint8 array."""

    image_size: int = 150
    interpolation: str = "bilinear"
    max_pixels: int = PILLOW_MAX_PIXELS
    jpeg_draft: bool = False  # let libjpeg scale down while decoding (1/2, 1/4, 1/8) when the photo is 2x the size or more

    def _validate(self) -> None:
        check_image_size(self.image_size)
        choice("interpolation", self.interpolation, INTERPOLATIONS)
        positive(self, "max_pixels")


@dataclass(frozen=True)
class EmbedConfig(Settings):
    """How the conv base turns pixels into features."""

    image_size: int = 150
    batch_size: int | None = None  # None: 32 on a CPU, larger on a GPU (convbase.default_batch_size)
    preprocess: str = "vgg16"
    precision: str = "fp32"  # "auto" is resolved before a stage gets its config
    backbone: str = backbones.DEFAULT
    pooling: str = "flatten"

    def _validate(self) -> None:
        check_image_size(self.image_size, backbones.get(self.backbone))
        if self.batch_size is not None:
            positive(self, "batch_size")
        choice("preprocess", self.preprocess, PREPROCESSING)
        choice("precision", self.precision, COMPUTE_PRECISIONS)
        choice("pooling", self.pooling, backbones.POOLINGS)


def check_image_size(size: int, backbone: backbones.Backbone | None = None) -> None:
    smallest = backbone.min_size if backbone else MIN_IMAGE_SIZE
    if size < smallest:
        which = f" for {backbone.name}" if backbone and backbone.min_size > MIN_IMAGE_SIZE else ""
        raise CatdogError(f"--image-size must be at least {smallest}{which}, got {size}")
