"""`catdog train-e2e ROOT --out RUN`: the frozen conv base and head trained end to end on Ray Train."""

from __future__ import annotations

import argparse

import catdog
from catdog import backbones
from catdog.commands.arguments import SHARED_FS_HELP, options
from catdog.config import INTERPOLATIONS, PREPROCESSING, TrainConfig


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("train-e2e", parents=[common],
                            help="train a frozen conv base + head end-to-end on augmented images, on Ray Train")
    p.add_argument("root", help="image folder with train/ and validation/ class folders")
    p.add_argument("--out", required=True, help="run folder: checkpoints, model/ and curves")
    t = TrainConfig(root="", out="")
    p.add_argument("--num-workers", type=int, default=t.num_workers)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--batch-size", type=int, default=t.batch_size)
    p.add_argument("--learning-rate", type=float, default=t.learning_rate)
    p.add_argument("--weights", default=t.weights)
    p.add_argument("--weights-mirror", default=None, metavar="URL_OR_DIR",
                   help="with --weights imagenet: a mirror of Keras' weight files, a base URL or folder (default: $CATDOG_WEIGHTS_MIRROR)")
    p.add_argument("--seed", type=int, default=t.seed)
    p.add_argument("--backbone", default=t.backbone, choices=list(backbones.BACKBONES), metavar="NAME",
                   help="the conv base (default vgg16, the recipe's; any `catdog extract --backbone` name)")
    p.add_argument("--pooling", choices=backbones.POOLINGS, default=None, help="default: the backbone's (vgg16: flatten)")
    p.add_argument("--image-size", type=int, default=None, help="default: the backbone's (vgg16: 150)")
    p.add_argument("--preprocess", choices=PREPROCESSING, default=None, help="default: the backbone's own")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default=t.interpolation)
    p.add_argument("--max-pixels", type=int, default=t.max_pixels, help="skip larger images (decompression bombs)")
    p.add_argument("--jpeg-draft", action="store_true", help="decode large JPEGs at reduced scale, as extract does")
    p.add_argument("--fine-tune-from", default=None, help="e.g. block5_conv1: then unfreeze from there")
    p.add_argument("--fine-tune-epochs", type=int, default=t.fine_tune_epochs)
    p.add_argument("--fine-tune-learning-rate", type=float, default=t.fine_tune_learning_rate)
    p.add_argument("--address", default=None)
    p.add_argument("--shared-fs", action="store_true", help=SHARED_FS_HELP)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = catdog.fit_e2e(args.root, args.out, **options(TrainConfig, args, "root", "out"))
    print("\n".join(result.lines()))
    return 0
