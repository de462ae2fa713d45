"""The `catdog train-e2e` job: the tutorial's second method, distributed with Ray Train.

Ray Data lists and decodes the images once and shards them to the workers; each worker trains
`catdog.e2e.Trainer` under MultiWorkerMirroredStrategy; every epoch is reported to Ray Train with a
checkpoint, and a run started again with the same OUT resumes from the last one. Unreadable images
are skipped (they weigh nothing in training) and counted in the result.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict

from catdog import cluster, figures, storage
from catdog.config import TrainConfig
from catdog.e2e import model as e2e_model
from catdog.e2e import training
from catdog.errors import CatdogError
from catdog.extraction import convbase, imagefolder, metadata


def run(config: TrainConfig) -> dict:
    """Train on ROOT/train, validate on ROOT/validation; write OUT/model and curves; resume if OUT has a run."""
    cluster.check_address(config.address)
    root, out = storage.resolve(config.root), storage.resolve(config.out)
    image_set = imagefolder.scan(root)
    rows = _training_rows(image_set, root)
    weights = convbase.resolve_weights(config.weights, config.seed, config.image_size)
    with cluster.ray_session(config.address):
        placement = cluster.placement(root.is_local, out.is_local, config.shared_fs)
        if out.is_local and not config.shared_fs and placement.nodes > 1:
            raise CatdogError(f"on a cluster of {placement.nodes} nodes every worker writes checkpoints to --out: "
                              "give a URI (s3://...) or a folder all nodes share (and --shared-fs)")
        result = training.train(config, rows, root, out, weights, len(image_set.classes), placement)
    model_folder = out.join("model")
    with result.checkpoint.as_directory() as folder, storage.writable_folder(model_folder) as model_dir:
        with open(os.path.join(folder, e2e_model.STATE)) as f:
            state = json.load(f)
        shutil.copy(os.path.join(folder, e2e_model.MODEL_FILE), os.path.join(model_dir, model_folder.PixelModel.file))
        extract_config = config.extract_config()
        feature_meta = metadata.feature_metadata(extract_config, image_set, weights.identity)
        model_folder.write_info(model_dir, model_folder.E2E_KIND, asdict(config), feature_meta, asdict(extract_config))
        history = {**state["history"], "epoch": list(range(1, state["epoch"] + 1)), "x": "epoch"}
        figures.plot_curves(history, os.path.join(model_dir, "curves.png"), "end-to-end")
    return {"epochs": state["epoch"], "history": state["history"], "starts": state["starts"], "replicas": state["replicas"],
            "model_dir": str(model_folder),
            "unreadable": state["unreadable"], "checkpoint": result.checkpoint.path}


def _training_rows(image_set: imagefolder.ImageSet, root: storage.Location) -> dict[str, list[dict]]:
    """{"train" | "validation": [{"path", "label"}]}, or a one-line refusal of a folder it cannot train on."""
    rows = {s: [{"path": p, "label": y} for p, y, t in zip(image_set.paths, image_set.labels, image_set.splits) if t == s]
            for s in ("train", "validation")}
    if image_set.layout != "split" or not rows["train"] or not rows["validation"] or len(image_set.classes) < 2:
        raise CatdogError("train-e2e needs ROOT/train/CLASS/* and ROOT/validation/CLASS/* with at least two classes")
    missing = sorted(set(range(len(image_set.classes))) - {r["label"] for r in rows["train"]})
    if missing:
        raise CatdogError(f"no train images of class {', '.join(image_set.classes[k] for k in missing)} in {root}: "
                          "every class needs training images")
    return rows
