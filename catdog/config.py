"""Every stage's configuration: frozen dataclasses, validated when built, passed down.

`ExtractConfig`, `HeadConfig`, `SimilarConfig` and `TrainConfig` are what the commands take; `DecodeConfig` and
`EmbedConfig` are the few settings the decode and embed stages use, cut from the job's config.
"""

from __future__ import annotations

from dataclasses import dataclass

from catdog.errors import CatdogError
from catdog.settings import Settings, choice, flag, option, positive, same_as
from catdog.vision.settings import (  # noqa: F401  (the stage configs and choices, named here with the rest)
    COMPUTE_PRECISIONS,
    DTYPES,
    INTERPOLATIONS,
    MIN_IMAGE_SIZE,
    PILLOW_MAX_PIXELS,
    PRECISIONS,
    PREPROCESSING,
    DecodeConfig,
    EmbedConfig,
    ImageSettings,
    check_image_size,
)

HEAD_MODELS = ("logreg", "dense")
EXECUTORS = ("auto", "local", "ray")  # catdog.extraction.executor
SHARED_FS_HELP = ("local ROOT/OUT paths are on a filesystem every node mounts at the same path; without it, "
                  "tasks reading or writing local paths run on this node")


@dataclass(frozen=True)
class ExtractConfig(ImageSettings):
    root: str = option(positional="image folder (local path or s3://, gs://, ... URI), or with from_table a table")
    out: str = option(positional="output folder (path or URI)")
    batch_size: int | None = option(None, "images per model call (default 32 on a CPU, up to 256 on a GPU)")
    dtype: str = option("float32", "stored feature type", choices=DTYPES)
    precision: str = option("fp32", "compute precision of the conv base; auto: fp16 on GPUs, bf16 on CPUs with fast "
                            "bf16, else fp32", choices=PRECISIONS)
    shard_size: int | None = option(None, "images per output file and per unit of resume (default 256 on CPU actors, "
                                    "1024 on GPU ones; a resume keeps its run's)")
    num_actors: int | None = option(None, "default: one per GPU, else CPU actors filling the cluster")
    gpus_per_actor: float | None = option(None, "fractions share a GPU (default 1 when the cluster has GPUs)")
    cpus_per_actor: float | None = option(None, "CPUs each embedding actor reserves (default: by the cluster)")
    address: str | None = option(None, "Ray address; 'auto' joins a running cluster (default: RAY_ADDRESS, else a "
                                 "local Ray or this process)")
    executor: str = option("auto", "ray (actors, on a cluster or a local Ray), local (this process), auto (this "
                           "process for up to 512 images with no cluster, address or actor options; else Ray)",
                           choices=EXECUTORS)
    shared_fs: bool = option(False, SHARED_FS_HELP)
    verify_content: bool = option(False, "on a re-run, also hash every image to find content changed under the same "
                                  "size and time")
    overwrite: bool = option(False, "replace an OUT made with other settings")
    progress: bool = option(True, "a progress bar on stderr")
    stall_timeout: float | None = option(None, "stop (resumable) when no shard has finished for this long (default: "
                                         "30 min for the first shard, then the longer of 10 min and 20 times the "
                                         "longest wait between shards)", metavar="SECONDS")
    repair: bool = option(False, "read every file OUT holds first, delete those that are damaged and extract their "
                          "images again")
    from_table: bool = option(False, "ROOT is a Parquet or CSV table with a row per image (a path or URI, optionally "
                              "a class and a split), not a folder", flag=False)
    path_column: str = option("path", "with --from-table: the column of image paths or URIs")
    label_column: str | None = option(None, "with --from-table: the class column (default: label, if there)")
    split_column: str | None = option(None, "with --from-table: the split column (default: split, if there)")
    class_names: tuple[str, ...] = option((), "WebDataset input (ROOT/*.tar): the classes of the KEY.cls values 0, 1, "
                                          "... (without it: unlabeled)", metavar="A,B,...")

    def _validate(self) -> None:
        super()._validate()
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if any(not n or "," in n for n in self.class_names) or len(set(self.class_names)) < len(self.class_names):
            raise CatdogError(f"--class-names must be distinct non-empty names, got {','.join(self.class_names)!r}")
        choice("precision", self.precision, PRECISIONS)
        _ = self.decode, self.replace(precision="fp32").embed if self.precision == "auto" else self.embed  # validates both
        choice("dtype", self.dtype, DTYPES)
        choice("executor", self.executor, EXECUTORS)
        if self.shard_size is not None:
            positive(self, "shard_size")
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
                raise CatdogError(f"--{flag(name)} cannot be negative")

    @property
    def embed(self) -> EmbedConfig:
        return EmbedConfig(self.image_size, self.batch_size, self.preprocess, self.precision, self.backbone, self.pooling)


@dataclass(frozen=True)
class HeadConfig(Settings):
    features: str = option(positional="the OUT folder of `catdog extract`")
    model_dir: str = option(positional="where the model, report and figures go", flag="--model-dir")
    model: str = option("logreg", "logreg (scikit-learn) or dense (the recipe's Dense(256) -> Dropout -> Dense)",
                        choices=HEAD_MODELS)
    epochs: int = option(30, "dense: epochs (the best on validation is kept); logreg streaming: passes")
    batch_size: int = option(20, "dense: images per step")
    learning_rate: float = option(2e-5, "dense: RMSprop's learning rate (the recipe's)")
    units: int = option(256, "dense: units of the hidden layer")
    dropout: float = option(0.5, "dense: dropout before the output layer")
    max_memory: int = option(2 * 1024**3, "e.g. 2G; features above it are streamed from Parquet", parse="bytes")
    seed: int = option(0, "seed of the head's initialisation, shuffling and folds")
    # A folder without splits (ROOT/CLASS/*.jpg) is split here, stratified and seeded: these fractions
    # (None: 0.2 each, catdog.heads.splits). A folder with its own splits keeps them.
    validation_split: float | None = option(None, "a folder without splits (ROOT/CLASS/*): the share held out for "
                                            "validation (default 0.2)")
    test_split: float | None = option(None, "a folder without splits: the share held out for test (default 0.2)")

    def _validate(self) -> None:
        choice("model", self.model, HEAD_MODELS)
        for name in ("epochs", "batch_size", "units", "max_memory", "learning_rate"):
            positive(self, name)
        if not 0 <= self.dropout < 1:
            raise CatdogError(f"--dropout must be in [0, 1), got {self.dropout}")
        for name in ("validation_split", "test_split"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise CatdogError(f"--{flag(name)} must be in [0, 1), got {value}")
        if (self.validation_split or 0) + (self.test_split or 0) >= 1:
            raise CatdogError("--validation-split and --test-split leave no training images")


@dataclass(frozen=True, kw_only=True)
class EmbeddingColumns(Settings):
    """FEATURES may be another tool's embeddings Parquet rather than catdog's OUT: its columns."""

    features_column: str | None = option(None, "FEATURES is another tool's embeddings Parquet: its column of vectors "
                                         "(a list of floats, e.g. clip-retrieval's 'embedding')")
    path_column: str = option("path", "with --features-column: the column of image paths or URIs")
    label_column: str | None = option(None, "with --features-column: the class column (default: label, if there)")
    split_column: str | None = option(None, "with --features-column: the split column (default: split, if there)")

    def _validate(self) -> None:
        """The columns of a foreign embeddings file are named only with its features column."""
        if self.features_column is None and (self.label_column or self.split_column or self.path_column != "path"):
            raise CatdogError("--path-column, --label-column and --split-column go with --features-column (embeddings "
                              "written by another tool)")


SIMILAR_METHODS = ("auto", "exact", "approximate")


@dataclass(frozen=True)
class SimilarConfig(EmbeddingColumns):
    features: str = option(positional="the OUT folder of `catdog extract` (or, with --features-column, embeddings "
                           "another tool wrote)")
    report_dir: str | None = option(None, "folder for similar.csv, similar.json, similar.png (default OUT/similar)",
                                    flag="--out")
    threshold: float = option(0.95, "cosine similarity at or above which two images are near-duplicates")
    top: int = option(5, "nearest neighbours looked at per image")
    method: str = option("auto", "exact search, an approximate index (faiss IVF, re-ranked exactly, recall "
                         "measured), or auto: exact while it is quick", choices=SIMILAR_METHODS)
    probes: int = option(16, "approximate: index cells looked in per image (more: higher recall, slower)")
    pca_dims: int | None = option(None, "approximate: PCA components searched (default 256 for vectors wider than "
                                  "512; 0: none)")
    full: bool = option(False, "search every image again (default: only what changed since the last run into the "
                        "same --out)")
    executor: str = option("auto", "local (every vector in this process; later runs search only what changed), ray "
                           "(tasks on the cluster each holding a slice: the driver holds none; every run searches "
                           "all), auto (Ray beyond 1 GiB of vectors or with a Ray address)",
                           choices=EXECUTORS)
    address: str | None = option(None, "Ray address for --executor ray (default: RAY_ADDRESS, else a local Ray)")
    task_memory: float = option(512.0, "on Ray: MiB of vectors each search task holds (its worker peaks at about 4 "
                                "to 5 times this); smaller: more, smaller tasks", metavar="MIB")
    shared_fs: bool = option(False, SHARED_FS_HELP)

    def _validate(self) -> None:
        super()._validate()
        choice("executor", self.executor, EXECUTORS)
        positive(self, "task_memory")
        if not -1 <= self.threshold <= 1:
            raise CatdogError(f"--threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        positive(self, "top")
        positive(self, "probes")
        if self.method not in SIMILAR_METHODS:
            raise CatdogError(f"--method is one of {', '.join(SIMILAR_METHODS)}, got {self.method!r}")
        if self.pca_dims is not None and self.pca_dims < 0:
            raise CatdogError(f"--pca-dims must be 0 (no PCA) or more, got {self.pca_dims}")


@dataclass(frozen=True)
class AuditConfig(EmbeddingColumns):
    features: str = option(positional="the OUT folder of `catdog extract` (or, with --features-column, embeddings "
                           "another tool wrote)")
    report_dir: str | None = option(None, "folder for label_issues.csv, outliers.csv, duplicates.csv, audit.json and "
                                    "contact sheets (default OUT/audit)", flag="--out")
    folds: int = option(5, "folds of the out-of-fold probabilities (fewer if the smallest class has fewer images)")
    neighbours: int = option(10, "k: an outlier's distance is to its k-th nearest image of its class")
    outlier_z: float = option(3.5, "robust z-score of that distance within the class above which it is an outlier")
    seed: int = option(0, "seed of the folds and the heads")
    duplicate_threshold: float = option(0.95, "cosine similarity of a near-duplicate pair (as `catdog similar`'s)")
    executor: str = option("auto", "local (every vector in this process; later runs search only the duplicates that "
                           "changed), ray (tasks on the cluster each reading their own rows: the driver holds no "
                           "vector), auto (Ray beyond 1 GiB of vectors or with a Ray address)", choices=EXECUTORS)
    address: str | None = same_as(SimilarConfig, "address")
    task_memory: float = option(512.0, "on Ray: MiB of vectors a task holds: a fold's head is fitted in memory up to "
                                "this and streamed beyond (SGD logistic regression), the duplicates' search tasks "
                                "hold as much; a class's outliers are found by one task holding that class",
                                metavar="MIB")
    shared_fs: bool = same_as(SimilarConfig, "shared_fs")

    def _validate(self) -> None:
        super()._validate()
        choice("executor", self.executor, EXECUTORS)
        positive(self, "task_memory")
        if not -1 <= self.duplicate_threshold <= 1:
            raise CatdogError(f"--duplicate-threshold is a cosine similarity in [-1, 1], got {self.duplicate_threshold}")
        if self.folds < 2:
            raise CatdogError(f"--folds must be at least 2, got {self.folds}")
        positive(self, "neighbours")
        positive(self, "outlier_z")


@dataclass(frozen=True)
class TrainConfig(ImageSettings):
    root: str = option(positional="image folder with train/ and validation/ class folders")
    out: str = option(positional="run folder: checkpoints, model/ and curves", flag="--out")
    num_workers: int = option(2, "Ray Train workers")
    use_gpu: bool = option(False, "a GPU per worker")
    epochs: int = option(30, "epochs with the conv base frozen")
    batch_size: int = option(20, "images per step per worker")
    learning_rate: float = option(2e-5, "RMSprop's learning rate (the recipe's)")
    fine_tune_from: str | None = option(None, "e.g. block5_conv1: then unfreeze from there for --fine-tune-epochs")
    fine_tune_epochs: int = option(10, "epochs after unfreezing")
    fine_tune_learning_rate: float = option(1e-5, "learning rate after unfreezing")
    max_failures: int = option(3, "worker failures Ray Train recovers from (from the last checkpoint)")
    address: str | None = option(None, "Ray address (default: RAY_ADDRESS, else a local Ray)")
    shared_fs: bool = option(False, SHARED_FS_HELP)

    def _validate(self) -> None:
        super()._validate()
        _ = self.embed  # building it validates it
        for name in ("num_workers", "epochs", "batch_size", "learning_rate", "fine_tune_epochs", "fine_tune_learning_rate"):
            positive(self, name)
        if self.max_failures < 0:
            raise CatdogError("--max-failures cannot be negative")

    @property
    def embed(self) -> EmbedConfig:
        return EmbedConfig(self.image_size, self.batch_size, self.preprocess, backbone=self.backbone, pooling=self.pooling)

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.fine_tune_epochs if self.fine_tune_from else 0)

    def extract_config(self) -> ExtractConfig:
        """The extraction settings the same images would have, recorded for `catdog predict`."""
        return ExtractConfig(root=self.root, out=self.out, **self.image_options())


@dataclass(frozen=True)
class ReportConfig(EmbeddingColumns):
    features: str = option(positional="the OUT folder of `catdog extract`")
    model: str | None = option(None, "a model folder of `catdog head` (or train-e2e): adds its metrics, the most "
                               "confidently wrong images and their Grad-CAM heatmaps", metavar="M")
    report_dir: str | None = option(None, "folder of the site: index.html, thumbnails and data (default OUT/report; "
                                    "a URI writes it to a store)", flag="--out")
    map_points: int = option(2000, "images on the feature map (a sample, every class in proportion)")
    neighbours: int = option(5, "nearest images shown beside each flagged one")
    seed: int = option(0, "seed of the feature map's sample and projection")
    executor: str = option("auto", "where thumbnails are made: ray (tasks on the cluster), local (threads here), auto "
                           f"(Ray beyond {4096:,} new thumbnails, or with an address or this process's Ray)",
                           choices=EXECUTORS)
    address: str | None = option(None, "Ray address for the thumbnails (default: RAY_ADDRESS, else a local Ray)")
    shared_fs: bool = option(False, SHARED_FS_HELP)

    def _validate(self) -> None:
        super()._validate()
        choice("executor", self.executor, EXECUTORS)
        positive(self, "map_points")
        positive(self, "neighbours")


@dataclass(frozen=True)
class PredictConfig(Settings):
    """`catdog predict MODEL ROOT --out DIR`: every image of a folder, bucket or table classified by
    extraction's pipeline with the model's head in its actors, written as Parquet (resumable,
    incremental); the settings of the images' features are the model's own."""

    model_dir: str = option(positional="a model folder of `catdog head`")
    root: str = option(positional="image folder (local path or URI), or with from_table a table")
    out: str = option(positional="folder of the Parquet predictions (path or URI)", flag="--out")
    weights: str | None = option(None, "where the conv base weights are now, if moved since training")
    # The run's settings are extraction's own (the same job runs): defined there.
    address: str | None = same_as(ExtractConfig, "address")
    executor: str = same_as(ExtractConfig, "executor")
    from_table: bool = same_as(ExtractConfig, "from_table", flag=None)
    path_column: str = same_as(ExtractConfig, "path_column")
    label_column: str | None = same_as(ExtractConfig, "label_column")
    split_column: str | None = same_as(ExtractConfig, "split_column")
    shard_size: int | None = same_as(ExtractConfig, "shard_size")
    num_actors: int | None = same_as(ExtractConfig, "num_actors")
    gpus_per_actor: float | None = same_as(ExtractConfig, "gpus_per_actor")
    cpus_per_actor: float | None = same_as(ExtractConfig, "cpus_per_actor")
    shared_fs: bool = same_as(ExtractConfig, "shared_fs")
    overwrite: bool = option(False, "replace a DIR written by another model or with other settings")
    progress: bool = same_as(ExtractConfig, "progress")

    def _validate(self) -> None:
        choice("executor", self.executor, EXECUTORS)

    def extract_options(self) -> dict:
        """The settings an extraction of ROOT into DIR takes from these (the image settings are the model's)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("model_dir", "weights")}


@dataclass(frozen=True)
class SearchConfig(Settings):
    features: str = option(positional="the OUT folder of `catdog extract` to search")
    images: tuple[str, ...] = option(positional="photos (files or folders) to search for", flag=False)
    top: int = option(5, "stored images listed per photo, the nearest first")
    out: str | None = option(None, "write the results as a CSV (query, rank, path, cosine) here instead of printing")
    weights: str | None = option(None, "where OUT's conv base weights file is now, if moved since the extraction")

    def _validate(self) -> None:
        positive(self, "top")
