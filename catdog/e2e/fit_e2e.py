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
from dataclasses import asdict, dataclass

from catdog import cluster, figures, storage
from catdog.config import TrainConfig
from catdog.e2e import model as e2e_model
from catdog.e2e import training
from catdog.errors import CatdogError
from catdog.extraction import imagefolder, metadata
from catdog.heads import model_folder
from catdog.vision import convbase


@dataclass(frozen=True)
class TrainResult:
    """What `catdog train-e2e` reports."""

    model_dir: str  # the model folder (for `catdog predict`, `catdog explain`) and curves.png
    checkpoint: str  # Ray Train's last checkpoint, from which a re-run resumes
    epochs: int  # epochs trained in all, resumed runs included
    history: dict[str, list[float]]  # loss, acc, val_loss, val_acc per epoch
    starts: list[int]  # the epoch each (re)start began from: [0] for one run, [0, 1] once resumed after one epoch
    replicas: list[int]  # the workers of each start
    unreadable: dict[str, int]  # split -> images that could not be read (they weigh nothing)

    def lines(self) -> list[str]:
        h = self.history
        lines = [f"epoch {epoch:>3}  loss {loss:.4f}  acc {acc:.3f}  val_loss {val_loss:.4f}  val_acc {val_acc:.3f}"
                 for epoch, (loss, acc, val_loss, val_acc) in enumerate(zip(h["loss"], h["acc"], h["val_loss"], h["val_acc"]), 1)]
        skipped = sum(self.unreadable.values())
        if skipped:
            lines.append(f"skipped {skipped} unreadable images ({', '.join(f'{k} {v}' for k, v in self.unreadable.items())}); "
                         "`catdog extract` records which and why")
        return lines + [f"model (for catdog predict) and curves.png in {self.model_dir}; checkpoint {self.checkpoint}"]


def run(config: TrainConfig) -> TrainResult:
    """Train on ROOT/train, validate on ROOT/validation; write OUT/model and curves; resume if OUT has a run."""
    cluster.check_address(config.address)
    root, out = storage.resolve(config.root), storage.resolve(config.out)
    image_set = imagefolder.scan(root)
    rows = _training_rows(image_set, root)
    weights = convbase.resolve_weights(config.weights, config.seed, config.image_size, config.backbone, config.pooling,
                                       config.weights_mirror)
    storage.check_writable(out.join(training.RUN_NAME))
    with cluster.ray_session(config.address, state_api=True):
        placement = cluster.placement(root.is_local, out.is_local, config.shared_fs)
        if out.is_local and not config.shared_fs and placement.nodes > 1:
            raise CatdogError(f"on a cluster of {placement.nodes} nodes every worker writes checkpoints to --out: "
                              "give a URI (s3://...) or a folder all nodes share (and --shared-fs)")
        result = training.train(config, rows, root, out, weights, len(image_set.classes), placement)
    model_out = out.join("model")
    with result.checkpoint.as_directory() as folder, storage.writable_folder(model_out, last=model_folder.HEAD_JSON) as model_dir:
        with open(os.path.join(folder, e2e_model.STATE)) as f:
            state = json.load(f)
        shutil.copy(os.path.join(folder, e2e_model.MODEL_FILE), os.path.join(model_dir, model_folder.PixelModel.file))
        extract_config = config.extract_config()
        feature_meta = metadata.feature_metadata(extract_config, image_set, weights.identity)
        model_folder.write_info(model_dir, model_folder.E2E_KIND, asdict(config), feature_meta, asdict(extract_config))
        history = {**state["history"], "epoch": list(range(1, state["epoch"] + 1)), "x": "epoch"}
        figures.plot_curves(history, os.path.join(model_dir, "curves.png"), "end-to-end")
    return TrainResult(model_dir=str(model_out), checkpoint=result.checkpoint.path, epochs=state["epoch"],
                       history=state["history"], starts=state["starts"], replicas=state["replicas"],
                       unreadable=state["unreadable"])


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
