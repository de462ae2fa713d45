"""What extracted features say of how they were made (the `catdog` key of every features file's
Parquet metadata, docs/output-format.md), and which of it pins an OUT."""

from __future__ import annotations

from catdog.config import ExtractConfig
from catdog.extraction.imagefolder import Source
from catdog.storage import Location
from catdog.version import __version__
from catdog.vision import backbones, convbase


def feature_metadata(config: ExtractConfig, source: Source, weights_identity: dict) -> dict:
    """What every features file says of how it was made (the `catdog` key of its Parquet metadata)."""
    backbone = backbones.get(config.backbone)
    return {
        "model": f"{backbone.keras_name} conv base (keras.applications.{backbone.keras_name}, include_top=False)",
        "backbone": config.backbone,
        "pooling": config.pooling,
        "weights": weights_identity,
        "input_size": [config.image_size, config.image_size, 3],
        "preprocess": config.preprocess,
        "interpolation": config.interpolation,
        "jpeg_draft": config.jpeg_draft,
        "feature_shape": list(convbase.feature_shape(config.image_size, config.backbone, config.pooling)),
        "feature_dim": convbase.feature_dim(config.image_size, config.backbone, config.pooling),
        "flatten_order": "C",  # numpy reshape(n, -1) of the (n, h, w, c) Keras output (pooled: (n, c))
        "dtype": config.dtype,
        "precision": config.precision,
        "classes": list(source.classes),
        "layout": source.layout,
        "catdog_version": __version__,
        "keras_version": convbase.keras_version(),
    }


def compat_settings(config: ExtractConfig, metadata: dict, root: Location) -> dict:
    """What must match for a later run to continue an OUT (version numbers may move on)."""
    skip = {"catdog_version", "keras_version"}
    pinned = {k: v for k, v in metadata.items() if k not in skip and backbones.UNRECORDED.get(k, ...) != v}
    # The same numbers from Keras' address or a mirror: where the file came from does not pin OUT.
    pinned["weights"] = {k: v for k, v in metadata["weights"].items() if k != "origin"}
    return {**pinned, "root": root.path, "shard_size": config.shard_size, "max_pixels": config.max_pixels}
