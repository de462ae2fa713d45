"""`catdog extract ROOT --out OUT` (or `--from-table TABLE`): images -> conv-base features in Parquet, on Ray."""

from __future__ import annotations

import argparse

import catdog
from catdog.errors import CatdogError
from catdog.commands.arguments import SHARED_FS_HELP, options
from catdog import backbones
from catdog.config import (
    DTYPES,
    EXECUTORS,
    INTERPOLATIONS,
    PRECISIONS,
    PREPROCESSING,
    ExtractConfig,
)


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("extract", parents=[common], help="images -> conv-base features in Parquet, on Ray")
    p.add_argument("root", nargs="?", help="image folder (local path or s3://, gs://, ... URI)")
    p.add_argument("--from-table", metavar="TABLE", help="instead of ROOT: a Parquet or CSV table with a row per "
                   "image (a path or URI, optionally a class and a split)")
    p.add_argument("--path-column", default="path", help="with --from-table: the column of image paths or URIs")
    p.add_argument("--label-column", help="with --from-table: the class column (default: label, if there)")
    p.add_argument("--split-column", help="with --from-table: the split column (default: split, if there)")
    p.add_argument("--class-names", type=lambda text: tuple(text.split(",")), default=(), metavar="A,B,...",
                   help="WebDataset input (ROOT/*.tar): the classes of the KEY.cls values 0, 1, ... (without it: unlabeled)")
    p.add_argument("--out", help="output folder (path or URI)")
    p.add_argument("--estimate", action="store_true", help="run a sample of the shards (not into OUT) and project "
                   "the whole job's wall time and CPU/GPU-hours on this cluster")
    d = ExtractConfig(root="", out="")
    p.add_argument("--backbone", default=d.backbone, choices=list(backbones.BACKBONES), metavar="NAME",
                   help="the keras.applications conv base: vgg16 (default, the recipe's), resnet50, efficientnetv2_b0, "
                        "convnext_tiny, ... (docs/commands.md lists them)")
    p.add_argument("--pooling", choices=backbones.POOLINGS, default=None,
                   help="flatten the conv map (vgg16's default: 4x4x512 = 8192 at 150 px) or pool it to one vector "
                        "(avg, the others' default; max; gem)")
    p.add_argument("--weights", default=d.weights, help="imagenet (default), none (random, --seed), or a notop weights "
                   "file of the backbone")
    p.add_argument("--weights-mirror", default=None, metavar="URL_OR_DIR",
                   help="with --weights imagenet: a mirror of Keras' weight files, a base URL or folder (default: $CATDOG_WEIGHTS_MIRROR)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the random weights with --weights none")
    p.add_argument("--image-size", type=int, default=None, help="input side S (default: the backbone's; vgg16: 150)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per model call (default 32 on a CPU, up to 256 on a GPU)")
    p.add_argument("--preprocess", choices=PREPROCESSING, default=None, help="default: the backbone's own (vgg16 is "
                   "Keras' caffe mode); rescale is the tutorial's 1/255")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default=d.interpolation)
    p.add_argument("--dtype", choices=DTYPES, default=d.dtype, help="stored feature type")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="compute precision of the conv base; auto: fp16 on GPUs, bf16 on CPUs with bf16 instructions, else fp32")
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="images per output file and per unit of resume "
                   "(default 256 on CPU actors, 1024 on GPU ones; a resume keeps its run's)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="refuse larger images (decompression bombs)")
    p.add_argument("--jpeg-draft", action="store_true", help="decode large JPEGs at 1/2, 1/4 or 1/8 scale (faster)")
    p.add_argument("--num-actors", type=int, default=None, help="default: one per GPU, else CPU actors filling the cluster")
    p.add_argument("--gpus-per-actor", type=float, default=None, help="fractions share a GPU (default 1 when the cluster has GPUs)")
    p.add_argument("--cpus-per-actor", type=float, default=None)
    p.add_argument("--address", default=None, help="Ray address; 'auto' joins a running cluster (default: RAY_ADDRESS, else local Ray)")
    p.add_argument("--executor", choices=EXECUTORS, default=d.executor,
                   help="ray (actors, on a cluster or a local Ray), local (this process), auto (default: this process "
                        "for up to 512 images with no cluster, address or actor options; else Ray)")
    p.add_argument("--shared-fs", action="store_true", help=SHARED_FS_HELP)
    p.add_argument("--verify-content", action="store_true",
                   help="on a re-run, also hash every image to find content changed under the same size and time")
    p.add_argument("--overwrite", action="store_true", help="replace an OUT made with other settings")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--repair", action="store_true", help="read every file OUT holds first, delete those that are "
                   "damaged and extract their images again")
    p.add_argument("--stall-timeout", type=float, default=None, metavar="SECONDS",
                   help="stop (resumable) when no shard has finished for this long (default: 30 min for the first "
                        "shard, then the longer of 10 min and 20 times the longest wait between shards)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.root is None) == (args.from_table is None):
        raise CatdogError("give an image folder ROOT or --from-table TABLE (one of them)")
    chosen = options(ExtractConfig, args, "root", "out", "from_table")
    source = args.root or args.from_table
    if args.estimate:
        print("\n".join(catdog.estimate(source, from_table=args.from_table is not None, **chosen).lines()))
        return 0
    if not args.out:
        raise CatdogError("give --out OUT: where the features go")
    result = catdog.extract(source, args.out, from_table=args.from_table is not None, **chosen)
    print("\n".join(result.lines()))
    return 0
