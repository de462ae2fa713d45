"""The conv bases catdog extracts with: every `keras.applications` network, by catdog's name.

Each with the input side Keras trained it at (VGG16's default is the recipe's 150), the smallest
side Keras accepts, its preprocessing (`catdog.vision.layers.preprocess`: the mode of that network's own
`preprocess_input`, or "none" where Keras builds it into the model — EfficientNet, EfficientNetV2,
ConvNeXt, MobileNetV3 take 0–255 pixels), and its default pooling: the recipe flattens VGG's 4×4×512
map; the others' maps are pooled to one vector per image, as Keras' `pooling="avg"` does.
No TensorFlow here: the driver reads this table without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from catdog.errors import CatdogError

POOLINGS = ("flatten", "avg", "max", "gem")  # gem: generalized mean, p = 3 (Radenović et al. 2018)
GEM_P = 3.0
# Settings recorded with features since catdog 0.2, with the value every earlier OUT and model had:
# an earlier OUT resumes, and an earlier model takes its features, as before.
UNRECORDED = {"backbone": "vgg16", "pooling": "flatten"}


@dataclass(frozen=True)
class Backbone:
    name: str
    keras_name: str  # the class in keras.applications
    module: str  # its module there, whose preprocess_input the preprocessing matches
    size: int  # default input side
    min_size: int  # smallest input side Keras builds it for
    preprocess: str  # catdog.vision.layers.preprocess mode
    pooling: str = "avg"


def _family(names: list[str], keras_names: list[str], module: str, sizes: list[int], preprocess: str,
            min_size: int = 32) -> list[Backbone]:
    return [Backbone(n, k, module, s, min_size, preprocess) for n, k, s in zip(names, keras_names, sizes)]


_ALL = [
    Backbone("vgg16", "VGG16", "vgg16", 150, 32, "vgg16", "flatten"),
    Backbone("vgg19", "VGG19", "vgg19", 224, 32, "vgg16", "flatten"),
    *_family(["resnet50", "resnet101", "resnet152"], ["ResNet50", "ResNet101", "ResNet152"], "resnet", [224] * 3, "vgg16"),
    *_family(["resnet50v2", "resnet101v2", "resnet152v2"], ["ResNet50V2", "ResNet101V2", "ResNet152V2"], "resnet_v2",
             [224] * 3, "tf"),
    Backbone("inception_v3", "InceptionV3", "inception_v3", 299, 75, "tf"),
    Backbone("xception", "Xception", "xception", 299, 71, "tf"),
    Backbone("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32, "tf"),
    *_family(["mobilenet_v3_small", "mobilenet_v3_large"], ["MobileNetV3Small", "MobileNetV3Large"], "mobilenet_v3",
             [224] * 2, "none"),
    *_family(["densenet121", "densenet169", "densenet201"], ["DenseNet121", "DenseNet169", "DenseNet201"], "densenet",
             [224] * 3, "torch"),
    *_family([f"efficientnet_b{i}" for i in range(8)], [f"EfficientNetB{i}" for i in range(8)], "efficientnet",
             [224, 240, 260, 300, 380, 456, 528, 600], "none"),
    *_family([f"efficientnetv2_{v}" for v in ("b0", "b1", "b2", "b3", "s", "m", "l")],
             [f"EfficientNetV2{v.upper()}" for v in ("b0", "b1", "b2", "b3", "s", "m", "l")], "efficientnet_v2",
             [224, 240, 260, 300, 384, 480, 480], "none"),
    *_family([f"convnext_{v}" for v in ("tiny", "small", "base", "large")],
             [f"ConvNeXt{v.title()}" for v in ("tiny", "small", "base", "large")], "convnext", [224] * 4, "none"),
]
BACKBONES = {b.name: b for b in _ALL}
DEFAULT = "vgg16"


def get(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise CatdogError(f"--backbone {name!r} is not one of: {', '.join(BACKBONES)}") from None
