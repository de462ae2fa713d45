"""How an image becomes features: `ImageSettings`, the one type that says it for extraction,
end-to-end training, a model folder and predict; and the two cuts of it the stages take, how a file
becomes pixels (`DecodeConfig`) and pixels features (`EmbedConfig`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from catdog.errors import CatdogError
from catdog.settings import Settings, choice, option, positive
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


@dataclass(frozen=True, kw_only=True)
class ImageSettings(Settings):
    """The network, its weights and the decoding and preprocessing in front of it. `ExtractConfig`
    and `TrainConfig` are ImageSettings with their jobs' own settings; a model folder records them
    (in its features' metadata) and gives them back to `predict` (`from_metadata`)."""

    weights: str = option("imagenet", "imagenet (Keras' download, hash checked), none (random, --seed), or a notop "
                          "weights file of the backbone")
    weights_mirror: str | None = option(None, "with --weights imagenet: a mirror of Keras' weight files, a base URL or "
                                        "folder (default: $CATDOG_WEIGHTS_MIRROR)", metavar="URL_OR_DIR")
    seed: int = option(0, "seed of the random weights with --weights none (and of training, where there is some)")
    backbone: str = option(backbones.DEFAULT, "the keras.applications conv base: vgg16 (default, the recipe's), "
                           "resnet50, efficientnetv2_b0, convnext_tiny, ... (docs/commands.md lists them)",
                           choices=tuple(backbones.BACKBONES), metavar="NAME")
    image_size: int | None = option(None, "input side S (default: the backbone's; vgg16: 150)")
    preprocess: str | None = option(None, "default: the backbone's own (vgg16 is Keras' caffe mode); rescale is the "
                                    "tutorial's 1/255", choices=PREPROCESSING)
    pooling: str | None = option(None, "flatten the conv map (vgg16's default: 4x4x512 = 8192 at 150 px) or pool it "
                                 "to one vector (avg, the others' default; max; gem)", choices=backbones.POOLINGS)
    interpolation: str = option("bilinear", "resizing filter (Pillow's)", choices=INTERPOLATIONS)
    max_pixels: int = option(PILLOW_MAX_PIXELS, "larger images are not decoded (decompression bombs): an error row "
                             "in extract, skipped in training")
    jpeg_draft: bool = option(False, "decode large JPEGs at 1/2, 1/4 or 1/8 scale (faster)")

    def _validate(self) -> None:
        """Settings left None take the backbone's own, and are recorded as such."""
        backbone = backbones.get(self.backbone)
        for name, default in (("image_size", backbone.size), ("preprocess", backbone.preprocess),
                              ("pooling", backbone.pooling)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)  # a frozen dataclass sets its own fields only here
        _ = self.decode  # building it validates it

    @property
    def decode(self) -> DecodeConfig:
        return DecodeConfig(self.image_size, self.interpolation, self.max_pixels, self.jpeg_draft)

    def image_options(self) -> dict:
        """These settings alone, as keyword arguments of any ImageSettings (ExtractConfig, TrainConfig)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ImageSettings)}

    @staticmethod
    def from_metadata(meta: dict, recorded: dict | None = None, weights: str | None = None) -> dict:
        """The settings that made features with this metadata (docs/output-format.md), as keyword
        arguments: what a model folder gives `predict`. `recorded`: the extraction settings a model
        folder keeps beside (the weights file as given, max_pixels); `weights` relocates the file."""
        recorded = recorded or {}
        return {
            "weights": weights or recorded.get("weights") or meta["weights"]["source"],
            "weights_mirror": recorded.get("weights_mirror"),
            "seed": meta["weights"].get("seed", 0),
            "backbone": meta.get("backbone", backbones.UNRECORDED["backbone"]),
            "image_size": meta["input_size"][0],
            "preprocess": meta["preprocess"],
            "pooling": meta.get("pooling", backbones.UNRECORDED["pooling"]),
            "interpolation": meta["interpolation"],
            "max_pixels": recorded.get("max_pixels", PILLOW_MAX_PIXELS),
            "jpeg_draft": meta.get("jpeg_draft", False),
        }
