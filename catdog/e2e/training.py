"""End-to-end training on Ray Train: `train` starts the run; `datasets` decodes the images for it with
Ray Data; `train_worker` runs on each Ray Train worker and drives `catdog.e2e.model.Trainer` epoch by
epoch, checkpointing through Ray Train.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from catdog import cluster, quiet, storage
from catdog.cluster import Placement
from catdog.config import DecodeConfig, TrainConfig
from catdog.errors import CatdogError
from catdog.storage import Location
from catdog.vision import convbase, images

if TYPE_CHECKING:  # Ray is imported where a stage runs, not when this module is
    import ray.train

DECODE_BATCH = 64
RUN_NAME = "train-e2e"  # Ray Train's run folder under OUT: its checkpoints


def decode_stage(batch: dict, *, root: Location, config: DecodeConfig) -> dict:
    """paths -> raw pixels, with `ok` 0 where a file could not be read: the trainer gives those rows
    no weight and counts them, so every worker keeps the same number of steps."""
    paths = list(batch["path"])
    decoded = images.decode_files([root.join(p) for p in paths], config)
    size = config.image_size
    pixels = np.zeros((len(paths), size, size, 3), np.float32)
    pixels[list(decoded.ok)] = decoded.pixels
    ok = np.zeros(len(paths), np.float32)
    ok[list(decoded.ok)] = 1.0
    return {"image": pixels, "label": np.asarray(batch["label"], np.float32), "ok": ok}


def datasets(rows: dict[str, list[dict]], root: Location, config: DecodeConfig, placement: Placement) -> dict:
    import ray

    def dataset(split_rows: list[dict]):
        items = ray.data.from_items(split_rows)
        # Its own copy of Ray Data's context (the process's stays as it is): no progress bars and no
        # execution plan for every epoch of every split; the epoch lines are catdog's. --verbose shows them.
        items.context.enable_progress_bars = items.context.print_on_execution_start = quiet.verbose()
        # Workers hold the CPUs; decoding shares them unreserved, a few tasks at a time.
        return items.map_batches(decode_stage, fn_kwargs={"root": root, "config": config}, batch_size=DECODE_BATCH,
                                 num_cpus=0, compute=ray.data.TaskPoolStrategy(size=2),
                                 **cluster.on_node(placement.decode_node))

    return {split: dataset(r) for split, r in rows.items()}


def train(config: TrainConfig, rows: dict[str, list[dict]], root: Location, out: Location, weights: convbase.Weights,
          classes: int, placement: Placement) -> ray.train.Result:
    """Run `train_worker` on `config.num_workers` Ray Train workers; returns Ray Train's Result.
    Checkpoints go to OUT/train-e2e (in the bucket on a URI: any node can resume the run)."""
    import ray
    import ray.train
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from catdog.e2e import multiworker  # imports Ray Train: only when a run starts

    trainer = DataParallelTrainer(
        train_worker,
        backend_config=multiworker.MultiWorkerConfig(),
        train_loop_config={"config": asdict(config), "weights": ray.put(weights), "classes": classes, "out": out},
        scaling_config=ray.train.ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu),
        run_config=ray.train.RunConfig(
            name=RUN_NAME, storage_path=out.path, storage_filesystem=None if out.is_local else out.fs,
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            logging_config=ray.train.LoggingConfig("INFO" if quiet.verbose() else "WARNING"),
            # The workers keep Ray's niceness (no catdog.extraction.pipeline.EMBEDDER_ENV): unlike the
            # embedding actor, running them at the driver's priority did not make training faster.
        ),
        datasets=datasets(rows, root, config.decode, placement),
    )
    try:
        return trainer.fit()
    except Exception as exc:
        refusal = cluster.cause(exc, (CatdogError, OSError))
        if refusal is None:
            raise
        what = refusal if isinstance(refusal, (CatdogError, images.StoreError)) else \
            f"cannot write to {out}: {storage.store_error(refusal)}"
        raise CatdogError(f"{what}; the checkpoints written so far are kept: run the same command again to "
                          "resume") from None


def upload_checkpoint(out: Location, folder: str, name: str) -> ray.train.Checkpoint:
    """A checkpoint to OUT/train-e2e/NAME, file by file with every write checked and the trainer's
    state last (`catdog.storage.upload`): Ray Train's own upload (pyarrow's copy_files) reports
    success when a store refuses a file."""
    import ray.train

    from catdog.e2e import model as e2e_model

    dest = out.join(RUN_NAME, name)
    storage.upload(folder, dest, last=e2e_model.STATE)
    return ray.train.Checkpoint(dest.path, filesystem=dest.fs)


def train_worker(loop_config: dict) -> None:
    """Runs on every Ray Train worker: restore from Ray Train's checkpoint, train, report each epoch."""
    import ray
    import ray.train
    import tensorflow as tf

    from catdog.e2e import (
        model as e2e_model,  # on the worker: the driver never loads Keras for a run
    )

    if not quiet.verbose():  # this worker is the run's own process: TensorFlow's INFO lines (each all-reduce) are for --verbose
        tf.get_logger().setLevel("WARNING")
    config = TrainConfig(**loop_config["config"])
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    checkpoint = ray.train.get_checkpoint()
    weights = ray.get(loop_config["weights"])
    classes, out = loop_config["classes"], loop_config["out"]
    if checkpoint:
        with checkpoint.as_directory() as folder:
            trainer = e2e_model.Trainer(config, weights, strategy, folder, classes)
    else:
        trainer = e2e_model.Trainer(config, weights, strategy, None, classes)
    shards = {split: ray.train.get_dataset_shard(split) for split in ("train", "validation")}
    chief = ray.train.get_context().get_world_rank() == 0
    for epoch in trainer.remaining_epochs():
        batches = {split: ((b["image"], b["label"], b["ok"]) for b in shard.iter_tf_batches(batch_size=config.batch_size))
                   for split, shard in shards.items()}
        metrics = trainer.run_epoch(epoch, batches)
        with tempfile.TemporaryDirectory() as folder:
            trainer.save(folder, chief)  # every worker: saving weights is collective
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder) if chief else None,
                             checkpoint_upload_fn=lambda checkpoint, name: upload_checkpoint(out, checkpoint.path, name))
