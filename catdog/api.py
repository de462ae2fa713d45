"""catdog's Python API: the functions the `catdog` command calls, with the same options.

    import catdog

    done = catdog.extract("photos", "features", weights="none", image_size=64)
    X, y, paths = catdog.load("features", split="train")
    report = catdog.fit_head("features", "model")
    model = catdog.load_model("model")
    model.predict(["photos/test/dogs/dog.1.jpg"])

Every function takes the settings of its command as keyword arguments (the fields of the config
dataclasses in `catdog.config`), raises `catdog.CatdogError` with a one-line message for a mistake or
an unusable input, and returns a typed result whose `lines()` are what the command prints. The heavy
libraries (TensorFlow, Ray, scikit-learn) are imported by the call that needs them, not by `import catdog`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterator

from catdog.config import (
    PILLOW_MAX_PIXELS,
    AuditConfig,
    ExtractConfig,
    HeadConfig,
    PredictConfig,
    ReportConfig,
    SearchConfig,
    SimilarConfig,
    TrainConfig,
)
from catdog.vision import backbones

if TYPE_CHECKING:  # for type checkers only: importing catdog stays cheap
    import numpy as np
    import pyarrow as pa

    from catdog.e2e.fit_e2e import TrainResult
    from catdog.extraction.cost import Estimate
    from catdog.extraction.extract import ExtractResult
    from catdog.extraction.status import Status
    from catdog.heads.explain import Explanation
    from catdog.heads.fit_head import HeadReport
    from catdog.heads.predict import Model
    from catdog.html.build import ReportResult
    from catdog.insight.audit import AuditReport
    from catdog.insight.search import SearchResult
    from catdog.insight.similar import SimilarReport
    from catdog.store.features import Features


def extract(
    root: str, out: str, *,
    weights: str = "imagenet", weights_mirror: str | None = None, seed: int = 0, backbone: str = backbones.DEFAULT,
    image_size: int | None = None, batch_size: int | None = None, preprocess: str | None = None,
    pooling: str | None = None, interpolation: str = "bilinear", dtype: str = "float32", precision: str = "fp32",
    shard_size: int | None = None, max_pixels: int = PILLOW_MAX_PIXELS, jpeg_draft: bool = False,
    num_actors: int | None = None, gpus_per_actor: float | None = None, cpus_per_actor: float | None = None,
    address: str | None = None, executor: str = "auto", shared_fs: bool = False, verify_content: bool = False,
    overwrite: bool = False, progress: bool = True, stall_timeout: float | None = None, repair: bool = False,
    from_table: bool = False, path_column: str = "path", label_column: str | None = None,
    split_column: str | None = None, class_names: tuple[str, ...] = (),
) -> ExtractResult:
    """Extract conv-base features of every image under `root` into the Parquet dataset `out`, on
    Ray (the cluster of `address=` or RAY_ADDRESS, else a local Ray started for the call). A re-run
    resumes, or extracts only what changed in `root`.

    >>> catdog.extract("photos", "features", weights="none", image_size=64).images
    40
    With `from_table=True`, `root` is a Parquet or CSV table with a row per image (`path_column`,
    `label_column`, `split_column`).
    """
    from catdog.extraction import extract as job

    return job.run(ExtractConfig(**_settings(locals())))


def estimate(
    root: str, *,
    weights: str = "imagenet", weights_mirror: str | None = None, seed: int = 0, backbone: str = backbones.DEFAULT,
    image_size: int | None = None, batch_size: int | None = None, preprocess: str | None = None,
    pooling: str | None = None, interpolation: str = "bilinear", dtype: str = "float32", precision: str = "fp32",
    shard_size: int | None = None, max_pixels: int = PILLOW_MAX_PIXELS, jpeg_draft: bool = False,
    num_actors: int | None = None, gpus_per_actor: float | None = None, cpus_per_actor: float | None = None,
    address: str | None = None, executor: str = "auto", shared_fs: bool = False, verify_content: bool = False,
    overwrite: bool = False, progress: bool = True, stall_timeout: float | None = None, repair: bool = False,
    from_table: bool = False, path_column: str = "path", label_column: str | None = None,
    split_column: str | None = None, class_names: tuple[str, ...] = (),
) -> Estimate:
    """What `extract(root, ...)` would take on this cluster: a sample of its shards is run (into a
    temporary folder, not an OUT) and the whole input projected: wall time, CPU- and GPU-hours.

    >>> catdog.estimate("photos", weights="none").wall_seconds
    31.4
    """
    from catdog.extraction import extract as job

    return job.estimate(ExtractConfig(out="", **_settings(locals())))


def audit(
    features: str, *,
    report_dir: str | None = None, folds: int = 5, neighbours: int = 10, outlier_z: float = 3.5, seed: int = 0,
    duplicate_threshold: float = 0.95, features_column: str | None = None, path_column: str = "path",
    label_column: str | None = None, split_column: str | None = None, executor: str = "auto",
    address: str | None = None, task_memory: float = 512.0, shared_fs: bool = False,
) -> AuditReport:
    """Likely label errors (confident learning on out-of-fold probabilities), outliers within each
    class, and each class's health, written to `report_dir` (default OUT/audit). `executor` "ray"
    (or auto beyond 1 GiB of vectors, or with `address`) runs it in Ray tasks that each read their
    own rows (`task_memory` MiB of vectors each): this process holds no vector.

    >>> report = catdog.audit("features")
    >>> [(i.path, i.given, i.suggested) for i in report.label_issues[:3]]
    """
    from catdog.insight import audit as job

    return job.run(AuditConfig(**_settings(locals())))


def status(out: str, root: str | None = None, verify: bool = False) -> Status:
    """What `out` holds and how it was made; given `root`, what a re-run would do (nothing is run);
    with `verify`, every committed file is read whole and the damaged or missing ones are named
    (`damage`; `intact` is False if any).

    >>> catdog.status("features", "photos").rerun.added
    0
    >>> catdog.status("features", verify=True).intact
    True
    """
    from catdog.extraction import status as job

    return job.status(out, root, verify)


def load(out: str, split: str | None = None) -> Features:
    """The stored features of one split (or all) as numpy arrays, with paths, splits, class names
    and the feature metadata.

    >>> X, y, paths = catdog.load("features", "train")
    >>> catdog.load("features").classes
    ('cats', 'dogs')
    """
    from catdog.store import features

    return features.load(out, split)


def stream(out: str, split: str, chunk_rows: int = 4096, seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, y) chunks of one split, one file read at a time, for sets larger than memory; with a
    seed, shuffled.

    >>> for X, y in catdog.stream("features", "train", chunk_rows=1024, seed=0):
    ...     model.partial_fit(X, y, classes=[0, 1])
    """
    from catdog.store import features

    return features.stream(out, split, chunk_rows, seed)


def fit_head(
    features: str, model_dir: str, *,
    model: str = "logreg", epochs: int = 30, batch_size: int = 20, learning_rate: float = 2e-05, units: int = 256,
    dropout: float = 0.5, max_memory: int = 2 * 1024**3, seed: int = 0, validation_split: float | None = None,
    test_split: float | None = None,
) -> HeadReport:
    """Train a classifier on the features of `features` (an extract output), select it on the
    validation split, evaluate every labelled split, and write the model folder `model_dir` with
    report.json and figures. A folder without splits is split here (validation_split, test_split).

    >>> catdog.fit_head("features", "model").splits["test"]["accuracy"]
    0.97
    """
    from catdog.heads import fit_head as job

    return job.run(HeadConfig(**_settings(locals())))


def load_model(model_dir: str, weights: str | None = None, address: str | None = None) -> Model:
    """A model folder of `fit_head` or `fit_e2e` as a classifier of image files, scikit-learn style:
    `classes_`, `predict(paths)`, `predict_proba(paths)`, and `predictions(files_or_folders)`.
    `weights` relocates the conv base weights file it was trained with; folders are extracted on
    the Ray of `address`.

    >>> model = catdog.load_model("model")
    >>> model.predict(["cat.jpg"])
    array(['cats'], dtype=object)
    """
    from catdog.heads import predict

    return predict.load_model(model_dir, weights, address)


def predict(model_dir: str, root: str, out: str, *, weights: str | None = None, address: str | None = None,
            executor: str = "auto", from_table: bool = False, path_column: str = "path", label_column: str | None = None,
            split_column: str | None = None, shard_size: int | None = None, num_actors: int | None = None,
            gpus_per_actor: float | None = None, cpus_per_actor: float | None = None, shared_fs: bool = False,
            overwrite: bool = False, progress: bool = True) -> ExtractResult:
    """Every image of a folder, bucket or table classified by a head of `fit_head`, written as Parquet
    under OUT/predictions (read it back with `read_predictions`): extraction's job with the head in
    its actors, resumable, exactly once, and incremental (a later run classifies only new or changed
    images) like `extract`. For a few files, `load_model(...).predictions` answers in memory.

    >>> catdog.predict("model", "s3://bucket/photos", "s3://bucket/predictions").images
    1000000
    """
    from catdog.heads import predict_parquet as job

    return job.run(PredictConfig(**_settings(locals())))


def read_predictions(out: str, split: str | None = None) -> pa.Table:
    """The predictions `predict` wrote (path, label, label_name, predicted, probability, probabilities,
    split), sorted by split and path; `table.to_pandas()` for a DataFrame."""
    from catdog.store import predictions

    return predictions.read(out, split)


def explain(model_dir: str, images: list[str], out_dir: str | None = None, class_name: str | None = None,
            weights: str | None = None, layer: str | None = None) -> list[Explanation]:
    """Grad-CAM heatmaps of images (files or folders) under a saved model, each saved as
    OUT_DIR/NAME.cam.png (default OUT_DIR: MODEL_DIR/explain); `layer` overrides the conv base's
    last conv layer.

    >>> (e,) = catdog.explain("model", ["cat.jpg"])
    >>> e.explained, e.heatmap.shape
    ('cats', (150, 150))
    """
    from catdog.heads import explain as job

    return job.explain(model_dir, images, out_dir, class_name, weights, layer)


def similar(
    features: str, *,
    report_dir: str | None = None, threshold: float = 0.95, top: int = 5, method: str = "auto", probes: int = 16,
    pca_dims: int | None = None, full: bool = False, executor: str = "auto", address: str | None = None,
    task_memory: float = 512.0, shared_fs: bool = False, features_column: str | None = None, path_column: str = "path",
    label_column: str | None = None, split_column: str | None = None,
) -> SimilarReport:
    """Near-duplicate images by cosine similarity of their stored features, and the pairs that leak
    across splits; writes similar.csv, similar.json and similar.png (default: FEATURES/similar), and
    the neighbour lists that let the next run into the same folder search only what changed. Past
    1 GiB of vectors (or with `executor="ray"`) Ray tasks search, each holding a slice of them.

    >>> catdog.similar("features", threshold=0.98).across_splits
    3

    >>> catdog.similar("clip/img_emb", features_column="embedding", path_column="image_path")
    """
    from catdog.insight import similar as job

    return job.run(SimilarConfig(**_settings(locals())))


def fit_e2e(
    root: str, out: str, *,
    num_workers: int = 2, use_gpu: bool = False, epochs: int = 30, batch_size: int = 20,
    learning_rate: float = 2e-05, weights: str = "imagenet", weights_mirror: str | None = None, seed: int = 0,
    backbone: str = backbones.DEFAULT, image_size: int | None = None, preprocess: str | None = None,
    pooling: str | None = None, interpolation: str = "bilinear", max_pixels: int = PILLOW_MAX_PIXELS,
    jpeg_draft: bool = False, fine_tune_from: str | None = None, fine_tune_epochs: int = 10,
    fine_tune_learning_rate: float = 1e-05, max_failures: int = 3, address: str | None = None,
    shared_fs: bool = False,
) -> TrainResult:
    """Train the frozen conv base and the recipe's head end to end on augmented images of
    ROOT/train (validated on ROOT/validation) on Ray Train; a re-run with the same `out` resumes.

    >>> catdog.fit_e2e("photos", "run", epochs=2, weights="none", image_size=64).model_dir
    'run/model'
    """
    from catdog.e2e import fit_e2e as job

    return job.run(TrainConfig(**_settings(locals())))


def report(features: str, *, model: str | None = None, report_dir: str | None = None, map_points: int = 2000,
           neighbours: int = 5, seed: int = 0, executor: str = "auto", address: str | None = None,
           shared_fs: bool = False, features_column: str | None = None, path_column: str = "path",
           label_column: str | None = None, split_column: str | None = None) -> ReportResult:
    """A static site of what catdog found in `features` (an OUT): an overview, label issues and
    outliers beside their nearest images (running `audit` when it has not run), near-duplicates and
    leakage, with `model` its metrics and most confidently wrong images with Grad-CAM, the feature
    map and the unreadable images; written to `report_dir` (default OUT/report), opened from disk.
    Another tool's embeddings Parquet too (`features_column`, ...): its paths read as they are.

    >>> catdog.report("features", model="model").index
    'features/report/index.html'
    """
    from catdog.html import build as job

    return job.run(ReportConfig(**_settings(locals())))


def search(features: str, images: list[str], *, top: int = 5, out: str | None = None,
           weights: str | None = None) -> SearchResult:
    """The stored images of `features` nearest to each photo in `images` (files or folders), the
    photos' features made exactly as the stored ones were; `out` writes a CSV (query, rank, path,
    cosine).

    >>> [(m.rank, m.path) for m in catdog.search("features", ["new_cat.jpg"], top=3).matches]
    """
    from catdog.insight import search as job

    return job.run(SearchConfig(**_settings({**locals(), "images": tuple(images) if isinstance(images, (list, tuple)) else (images,)})))


def _settings(arguments: dict) -> dict:
    """A call's arguments as a config's fields (the job module each function imports is left out)."""
    return {k: v for k, v in arguments.items() if k != "job"}


def _document(function, cls, *skip: str) -> None:
    """The function's docstring ends with its parameters, from the config fields that define them for
    the command line too (scikit-learn's layout)."""
    lines = ["", "    Parameters", "    ----------"]
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.metadata:
            continue
        default = "" if field.default is dataclasses.MISSING else f", default={field.default!r}"
        lines += [f"    {field.name} : {field.type}{default}", f"        {field.metadata['help']}"]
    function.__doc__ = (function.__doc__ or "").rstrip() + "\n" + "\n".join(lines) + "\n"


for _function, _cls, _skip in ((extract, ExtractConfig, ()), (estimate, ExtractConfig, ("out",)), (audit, AuditConfig, ()),
                               (fit_head, HeadConfig, ()), (similar, SimilarConfig, ()), (fit_e2e, TrainConfig, ()),
                               (report, ReportConfig, ()), (search, SearchConfig, ()),
                               (predict, PredictConfig, ())):
    _document(_function, _cls, *_skip)
