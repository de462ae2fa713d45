"""Every stage's configuration: frozen dataclasses, validated when built, passed down.

`ExtractConfig`, `HeadConfig`, `SimilarConfig` and `TrainConfig` are what the commands take; `DecodeConfig` and
`EmbedConfig` are the few settings the decode and embed stages use, cut from the job's config.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass

from catdog import backbones
from catdog.errors import CatdogError

# catdog.layers.preprocess: vgg16 is Keras' "caffe" mode, tf [-1, 1], torch ImageNet mean/std, none
# 0-255 as they are (the model preprocesses), rescale the tutorial's 1/255.
PREPROCESSING = ("vgg16", "rescale", "tf", "torch", "none")
INTERPOLATIONS = ("bilinear", "nearest")
DTYPES = ("float32", "float16")
COMPUTE_PRECISIONS = ("fp32", "bf16", "fp16")
PRECISIONS = (*COMPUTE_PRECISIONS, "auto")  # auto: decided per run from the devices (catdog.extraction.convbase.auto_precision)
HEAD_MODELS = ("logreg", "dense")
EXECUTORS = ("auto", "local", "ray")  # catdog.extraction.executor
MIN_IMAGE_SIZE = 32  # five 2x2 poolings (or strides): below 32 pixels nothing is left
PILLOW_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit


class _Config:
    """Every field is checked against its annotation before the class's own checks (`_validate`):
    a wrong type from the Python API or a hand-edited head.json is one line, not a TypeError deep
    inside a job."""

    def __post_init__(self) -> None:
        _check_types(self)
        self._validate()

    def _validate(self) -> None:
        pass

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DecodeConfig(_Config):
    """How an image file becomes an S x S x 3 uint8 array."""

    image_size: int = 150
    interpolation: str = "bilinear"
    max_pixels: int = PILLOW_MAX_PIXELS
    jpeg_draft: bool = False  # let libjpeg scale down while decoding (1/2, 1/4, 1/8) when the photo is 2x the size or more

    def _validate(self) -> None:
        _image_size(self.image_size)
        _choice("interpolation", self.interpolation, INTERPOLATIONS)
        _positive(self, "max_pixels")


@dataclass(frozen=True)
class EmbedConfig(_Config):
    """How the conv base turns pixels into features."""

    image_size: int = 150
    batch_size: int | None = None  # None: 32 on a CPU, larger on a GPU (convbase.default_batch_size)
    preprocess: str = "vgg16"
    precision: str = "fp32"  # "auto" is resolved before a stage gets its config
    backbone: str = backbones.DEFAULT
    pooling: str = "flatten"

    def _validate(self) -> None:
        _image_size(self.image_size, backbones.get(self.backbone))
        if self.batch_size is not None:
            _positive(self, "batch_size")
        _choice("preprocess", self.preprocess, PREPROCESSING)
        _choice("precision", self.precision, COMPUTE_PRECISIONS)
        _choice("pooling", self.pooling, backbones.POOLINGS)


@dataclass(frozen=True)
class ExtractConfig(_Config):
    root: str
    out: str
    weights: str = "imagenet"  # "imagenet", "none" or a path/URI of a notop weights file of the backbone
    weights_mirror: str | None = None  # imagenet from a mirror of Keras' files (URL or folder; None: $CATDOG_WEIGHTS_MIRROR)
    seed: int = 0  # random init seed, used with weights="none"
    backbone: str = backbones.DEFAULT  # a catdog.backbones name: the keras.applications network
    image_size: int | None = None  # None: the backbone's (the recipe's 150 for vgg16)
    batch_size: int | None = None  # None: 32 on a CPU, larger on a GPU
    preprocess: str | None = None  # None: the backbone's own (catdog.config.PREPROCESSING)
    pooling: str | None = None  # None: the backbone's (flatten for VGG, the recipe's; avg for the others)
    interpolation: str = "bilinear"
    dtype: str = "float32"
    precision: str = "fp32"
    shard_size: int | None = None  # None: by device (catdog.cluster.default_shard_size), or what OUT's run used
    max_pixels: int = PILLOW_MAX_PIXELS
    jpeg_draft: bool = False
    num_actors: int | None = None  # None: follow the cluster's GPUs (or CPUs)
    gpus_per_actor: float | None = None
    cpus_per_actor: float | None = None
    address: str | None = None  # None: RAY_ADDRESS if set, else an embedded local Ray
    executor: str = "auto"  # "ray", "local" (this process) or "auto" (catdog.extraction.executor)
    shared_fs: bool = False  # local paths are the same on every node (NFS, ...): tasks may run anywhere
    verify_content: bool = False  # an incremental run also compares the images' bytes, not only size and time
    overwrite: bool = False
    progress: bool = True
    stall_timeout: float | None = None  # seconds without a finished shard before the job stops (None: derived)
    repair: bool = False  # read every committed file whole first; extract the images of damaged ones again
    from_table: bool = False  # root is a table of image paths/URIs (Parquet or CSV), not a folder
    path_column: str = "path"  # with from_table: the column of image paths or URIs
    label_column: str | None = None  # with from_table: the class column (None: "label" if the table has it)
    split_column: str | None = None  # with from_table: the split column (None: "split" if the table has it)
    class_names: tuple[str, ...] = ()  # WebDataset input: a member's KEY.cls holding k is of class class_names[k]

    def _validate(self) -> None:
        _resolve_backbone(self)
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if any(not n or "," in n for n in self.class_names) or len(set(self.class_names)) < len(self.class_names):
            raise CatdogError(f"--class-names must be distinct non-empty names, got {','.join(self.class_names)!r}")
        _choice("precision", self.precision, PRECISIONS)
        _ = self.decode, self.replace(precision="fp32").embed if self.precision == "auto" else self.embed  # validates both
        _choice("dtype", self.dtype, DTYPES)
        _choice("executor", self.executor, EXECUTORS)
        if self.shard_size is not None:
            _positive(self, "shard_size")
        if self.num_actors is not None and self.num_actors < 1:
            raise CatdogError("--num-actors must be at least 1")
        if self.stall_timeout is not None and self.stall_timeout <= 0:
            raise CatdogError("--stall-timeout must be positive")
        if self.from_table and self.class_names:
            raise CatdogError("--class-names is for WebDataset input (tar shards in ROOT), not --from-table")
        if not self.from_table and (self.label_column or self.split_column or self.path_column != "path"):
            raise CatdogError("--path-column, --label-column and --split-column go with --from-table")
        for name in ("gpus_per_actor", "cpus_per_actor"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise CatdogError(f"--{_flag(name)} cannot be negative")

    @property
    def decode(self) -> DecodeConfig:
        return DecodeConfig(self.image_size, self.interpolation, self.max_pixels, self.jpeg_draft)

    @property
    def embed(self) -> EmbedConfig:
        return EmbedConfig(self.image_size, self.batch_size, self.preprocess, self.precision, self.backbone, self.pooling)


@dataclass(frozen=True)
class HeadConfig(_Config):
    features: str
    model_dir: str
    model: str = "logreg"
    epochs: int = 30
    batch_size: int = 20
    learning_rate: float = 2e-5
    units: int = 256
    dropout: float = 0.5
    max_memory: int = 2 * 1024**3
    seed: int = 0
    # A folder without splits (ROOT/CLASS/*.jpg) is split here, stratified and seeded: these fractions
    # (None: 0.2 each, catdog.heads.splits). A folder with its own splits keeps them.
    validation_split: float | None = None
    test_split: float | None = None

    def _validate(self) -> None:
        _choice("model", self.model, HEAD_MODELS)
        for name in ("epochs", "batch_size", "units", "max_memory", "learning_rate"):
            _positive(self, name)
        if not 0 <= self.dropout < 1:
            raise CatdogError(f"--dropout must be in [0, 1), got {self.dropout}")
        for name in ("validation_split", "test_split"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise CatdogError(f"--{_flag(name)} must be in [0, 1), got {value}")
        if (self.validation_split or 0) + (self.test_split or 0) >= 1:
            raise CatdogError("--validation-split and --test-split leave no training images")


def _check_columns(config) -> None:
    """The columns of a foreign embeddings file are named only with its features column."""
    if config.features_column is None and (config.label_column or config.split_column or config.path_column != "path"):
        raise CatdogError("--path-column, --label-column and --split-column go with --features-column (embeddings "
                          "written by another tool)")


SIMILAR_METHODS = ("auto", "exact", "approximate")


@dataclass(frozen=True)
class SimilarConfig(_Config):
    features: str  # the OUT folder of `catdog extract`, or any embeddings Parquet file or folder (features_column)
    report_dir: str | None = None  # where similar.csv, similar.json and similar.png go (None: OUT/similar)
    threshold: float = 0.95  # cosine similarity at or above which two images are near-duplicates
    top: int = 5  # neighbours looked at per image
    method: str = "auto"  # "exact", "approximate" (an IVF index, re-ranked exactly), "auto": exact while it is quick
    probes: int = 16  # approximate: index cells looked in per image (more: higher recall, slower)
    pca_dims: int | None = None  # approximate: PCA components searched (None: 256 for vectors wider than 512; 0: none)
    full: bool = False  # search every image again, ignoring the neighbour lists a previous run left in report_dir
    features_column: str | None = None  # embeddings written by another tool: the column of vectors (list of floats)
    path_column: str = "path"  # ... its column of image paths or URIs
    label_column: str | None = None  # ... its class column, if any
    split_column: str | None = None  # ... its split column, if any

    def _validate(self) -> None:
        _check_columns(self)
        if not -1 <= self.threshold <= 1:
            raise CatdogError(f"--threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        _positive(self, "top")
        _positive(self, "probes")
        if self.method not in SIMILAR_METHODS:
            raise CatdogError(f"--method is one of {', '.join(SIMILAR_METHODS)}, got {self.method!r}")
        if self.pca_dims is not None and self.pca_dims < 0:
            raise CatdogError(f"--pca-dims must be 0 (no PCA) or more, got {self.pca_dims}")


@dataclass(frozen=True)
class AuditConfig(_Config):
    features: str  # the OUT folder of `catdog extract`, or any embeddings Parquet file or folder (features_column)
    report_dir: str | None = None  # where label_issues.csv, outliers.csv, audit.json go (None: OUT/audit)
    folds: int = 5  # of the out-of-fold probabilities (fewer if the smallest class has fewer images)
    neighbours: int = 10  # an outlier's distance is to its k-th nearest image of the same class
    outlier_z: float = 3.5  # robust z-score of that distance within the class above which it is an outlier
    seed: int = 0
    duplicate_threshold: float = 0.95  # cosine similarity of a near-duplicate pair (as `catdog similar`'s)
    features_column: str | None = None  # embeddings written by another tool: the column of vectors (list of floats)
    path_column: str = "path"  # ... its column of image paths or URIs
    label_column: str | None = None  # ... its class column ("label" if it has one)
    split_column: str | None = None  # ... its split column ("split" if it has one)

    def _validate(self) -> None:
        _check_columns(self)
        if not -1 <= self.duplicate_threshold <= 1:
            raise CatdogError(f"--duplicate-threshold is a cosine similarity in [-1, 1], got {self.duplicate_threshold}")
        if self.folds < 2:
            raise CatdogError(f"--folds must be at least 2, got {self.folds}")
        _positive(self, "neighbours")
        _positive(self, "outlier_z")


@dataclass(frozen=True)
class TrainConfig(_Config):
    root: str
    out: str
    num_workers: int = 2
    use_gpu: bool = False
    epochs: int = 30
    batch_size: int = 20
    learning_rate: float = 2e-5
    weights: str = "imagenet"
    weights_mirror: str | None = None  # as ExtractConfig's
    seed: int = 0
    backbone: str = backbones.DEFAULT  # the frozen conv base (catdog.backbones)
    image_size: int | None = None  # None: the backbone's (vgg16: the recipe's 150)
    preprocess: str | None = None  # None: the backbone's own
    pooling: str | None = None  # None: the backbone's (vgg16: flatten, the recipe's)
    interpolation: str = "bilinear"
    max_pixels: int = PILLOW_MAX_PIXELS
    jpeg_draft: bool = False
    fine_tune_from: str | None = None  # e.g. block5_conv1: unfreeze from there after `epochs`
    fine_tune_epochs: int = 10
    fine_tune_learning_rate: float = 1e-5
    max_failures: int = 3
    address: str | None = None
    shared_fs: bool = False

    def _validate(self) -> None:
        _resolve_backbone(self)
        _ = self.decode, self.embed  # building both validates them
        for name in ("num_workers", "epochs", "batch_size", "learning_rate", "fine_tune_epochs", "fine_tune_learning_rate"):
            _positive(self, name)
        if self.max_failures < 0:
            raise CatdogError("--max-failures cannot be negative")

    @property
    def decode(self) -> DecodeConfig:
        return DecodeConfig(self.image_size, self.interpolation, self.max_pixels, self.jpeg_draft)

    @property
    def embed(self) -> EmbedConfig:
        return EmbedConfig(self.image_size, self.batch_size, self.preprocess, backbone=self.backbone, pooling=self.pooling)

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.fine_tune_epochs if self.fine_tune_from else 0)

    def extract_config(self) -> ExtractConfig:
        """The extraction settings the same images would have, recorded for `catdog predict`."""
        return ExtractConfig(root=self.root, out=self.out, weights=self.weights, weights_mirror=self.weights_mirror,
                             seed=self.seed, backbone=self.backbone,
                             image_size=self.image_size, preprocess=self.preprocess, pooling=self.pooling,
                             interpolation=self.interpolation, max_pixels=self.max_pixels, jpeg_draft=self.jpeg_draft)


def _resolve_backbone(config) -> None:
    """Settings left None take the backbone's own, and are recorded as such."""
    backbone = backbones.get(config.backbone)
    for name, default in (("image_size", backbone.size), ("preprocess", backbone.preprocess), ("pooling", backbone.pooling)):
        if getattr(config, name) is None:
            object.__setattr__(config, name, default)  # a frozen dataclass sets its own fields only here


_TYPES = {"int": (numbers.Integral,), "float": (numbers.Real,), "str": (str,), "bool": (bool,)}  # numpy's numbers too
_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _check_types(config) -> None:
    """Each field's value is of its annotated type (`int`, `float`, `str`, `bool`, `X | None`,
    `tuple[str, ...]`); bools are not integers here, integers are numbers."""
    for field in dataclasses.fields(config):
        value, kinds = getattr(config, field.name), [k.strip() for k in str(field.type).split("|")]
        if "str" in kinds and hasattr(value, "__fspath__"):  # a pathlib.Path for a path: its string
            value = os.fspath(value)
            object.__setattr__(config, field.name, value)
        if value is None and "None" in kinds:
            continue
        if "tuple[str, ...]" in kinds and isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
            continue
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
        if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
            continue
        words = [_TYPE_WORDS.get(k, k.replace("tuple[str, ...]", "a list of strings")) for k in kinds if k != "None"]
        expected = " or ".join(words) + (" or None" if "None" in kinds else "")
        raise CatdogError(f"{field.name} must be {expected}, got {value!r} ({type(value).__name__})")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CatdogError(f"--{_flag(name)} must be one of {', '.join(allowed)}; got {value!r}")


def _positive(config, name: str) -> None:
    if getattr(config, name) <= 0:
        raise CatdogError(f"--{_flag(name)} must be positive, got {getattr(config, name)}")


def _image_size(size: int, backbone: backbones.Backbone | None = None) -> None:
    smallest = backbone.min_size if backbone else MIN_IMAGE_SIZE
    if size < smallest:
        which = f" for {backbone.name}" if backbone and backbone.min_size > MIN_IMAGE_SIZE else ""
        raise CatdogError(f"--image-size must be at least {smallest}{which}, got {size}")
