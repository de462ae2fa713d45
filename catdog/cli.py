"""The `catdog` command: a thin argparse layer over the library functions."""

from __future__ import annotations

import argparse
import os
import sys

from catdog import quiet
from catdog.config import (
    DTYPES,
    HEAD_MODELS,
    INTERPOLATIONS,
    PRECISIONS,
    PREPROCESSING,
    ExtractConfig,
    HeadConfig,
    SimilarConfig,
    TrainConfig,
)
from catdog.errors import CatdogError

UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_bytes(text: str) -> int:
    number, unit = text.upper().rstrip("IB"), ""
    if number and number[-1] in UNITS:
        number, unit = number[:-1], number[-1]
    try:
        return int(float(number) * UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 2G)") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet.set_verbose(args.verbose)
    if not args.verbose:
        # TensorFlow's documented switch for its C++ INFO and WARNING lines, for this process and,
        # through the runtime env, for Ray's workers; a user's own setting is kept.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with quiet.info_lines_dropped(enabled=not args.verbose):
            return args.func(args)
    except CatdogError as exc:
        print(f"catdog: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("catdog: interrupted; committed shards are kept, re-run the same command to resume", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catdog", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show TensorFlow's and Ray's own log lines too")

    extract = commands.add_parser("extract", parents=[common], help="image folder -> VGG16 features in Parquet, on Ray")
    extract.add_argument("root", help="image folder (local path or s3://, gs://, ... URI)")
    extract.add_argument("--out", required=True, help="output folder (path or URI)")
    add_extract_options(extract)
    extract.set_defaults(func=cmd_extract)

    fit = commands.add_parser("head", parents=[common], help="train and evaluate a classifier on extracted features")
    fit.add_argument("features", help="the OUT folder of `catdog extract`")
    fit.add_argument("--model", choices=HEAD_MODELS, default="logreg")
    fit.add_argument("--model-dir", required=True, help="where the model, report and figures go")
    h = HeadConfig(features="", model_dir="")
    fit.add_argument("--epochs", type=int, default=h.epochs)
    fit.add_argument("--batch-size", type=int, default=h.batch_size)
    fit.add_argument("--learning-rate", type=float, default=h.learning_rate)
    fit.add_argument("--units", type=int, default=h.units)
    fit.add_argument("--dropout", type=float, default=h.dropout)
    fit.add_argument("--max-memory", type=parse_bytes, default=h.max_memory, help="e.g. 2G; above it, stream from Parquet")
    fit.add_argument("--seed", type=int, default=h.seed)
    fit.set_defaults(func=cmd_head)

    predict = commands.add_parser("predict", parents=[common], help="classify images with a saved model")
    predict.add_argument("model_dir")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    predict.add_argument("--out", help="write a CSV here instead of printing")
    predict.add_argument("--weights", help="where the conv base weights are now, if moved since training")
    predict.add_argument("--address", default=None, help="Ray address for folders (default: local Ray)")
    predict.add_argument("--top-k", type=int, default=None, help="the k most probable classes instead of all of them")
    predict.set_defaults(func=cmd_predict)

    explain = commands.add_parser("explain", parents=[common], help="Grad-CAM heatmaps: where the model looks, per image")
    explain.add_argument("model_dir")
    explain.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    explain.add_argument("--out", required=True, help="folder for NAME.cam.png (photo | heatmap over the photo)")
    explain.add_argument("--class", dest="class_name", default=None, help="explain this class (default: the predicted one)")
    explain.add_argument("--weights", help="where the conv base weights are now, if moved since training")
    explain.set_defaults(func=cmd_explain)

    similar = commands.add_parser("similar", parents=[common], help="near-duplicate images and leakage across splits")
    similar.add_argument("features", help="the OUT folder of `catdog extract`")
    similar.add_argument("--out", dest="report_dir", required=True, help="folder for similar.csv, similar.json, similar.png")
    s = SimilarConfig(features="", report_dir="")
    similar.add_argument("--threshold", type=float, default=s.threshold, help="cosine similarity of a near-duplicate")
    similar.add_argument("--top", type=int, default=s.top, help="nearest neighbours looked at per image")
    similar.add_argument("--working-memory-mb", type=int, default=s.working_memory_mb,
                         help="size of the distance-matrix block computed at once")
    similar.set_defaults(func=cmd_similar)

    e2e = commands.add_parser("train-e2e", parents=[common], help="train frozen VGG16 + head end-to-end on augmented images, on Ray Train")
    e2e.add_argument("root", help="image folder with train/ and validation/ class folders")
    e2e.add_argument("--out", required=True, help="run folder: checkpoints, model/ and curves")
    t = TrainConfig(root="", out="")
    e2e.add_argument("--num-workers", type=int, default=t.num_workers)
    e2e.add_argument("--use-gpu", action="store_true")
    e2e.add_argument("--epochs", type=int, default=t.epochs)
    e2e.add_argument("--batch-size", type=int, default=t.batch_size)
    e2e.add_argument("--learning-rate", type=float, default=t.learning_rate)
    e2e.add_argument("--weights", default=t.weights)
    e2e.add_argument("--seed", type=int, default=t.seed)
    e2e.add_argument("--image-size", type=int, default=t.image_size)
    e2e.add_argument("--preprocess", choices=PREPROCESSING, default=t.preprocess)
    e2e.add_argument("--interpolation", choices=INTERPOLATIONS, default=t.interpolation)
    e2e.add_argument("--max-pixels", type=int, default=t.max_pixels, help="skip larger images (decompression bombs)")
    e2e.add_argument("--jpeg-draft", action="store_true", help="decode large JPEGs at reduced scale, as extract does")
    e2e.add_argument("--fine-tune-from", default=None, help="e.g. block5_conv1: then unfreeze from there")
    e2e.add_argument("--fine-tune-epochs", type=int, default=t.fine_tune_epochs)
    e2e.add_argument("--fine-tune-learning-rate", type=float, default=t.fine_tune_learning_rate)
    e2e.add_argument("--address", default=None)
    e2e.add_argument("--shared-fs", action="store_true", help=SHARED_FS_HELP)
    e2e.set_defaults(func=cmd_train_e2e)

    status = commands.add_parser("status", parents=[common], help="what OUT holds and, given ROOT, what a re-run would do")
    status.add_argument("out")
    status.add_argument("root", nargs="?", default=None, help="the image folder: compare it with OUT, changing nothing")
    status.set_defaults(func=cmd_status)

    demo = commands.add_parser("demo", parents=[common],
                               help="the whole recipe on a generated folder: extract, head, report, explain (local Ray)")
    demo.add_argument("--dir", default="demo", help="where to put the images and features (default: ./demo)")
    demo.add_argument("--per-class", type=int, default=20, help="images per class in all (default 20: under a minute)")
    demo.add_argument("--weights", default="none", help="default none: random weights, works offline")
    demo.add_argument("--image-size", type=int, default=150)
    demo.set_defaults(func=cmd_demo)
    return parser


SHARED_FS_HELP = ("local ROOT/OUT paths are on a filesystem every node mounts at the same path; without it, "
                  "tasks reading or writing local paths run on this node")


def add_extract_options(p: argparse.ArgumentParser) -> None:
    d = ExtractConfig(root="", out="")
    p.add_argument("--weights", default=d.weights, help="imagenet (default), none (random, --seed), or a VGG16 notop weights file")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the random weights with --weights none")
    p.add_argument("--image-size", type=int, default=d.image_size, help="input side S (default 150: 4x4x512 = 8192 features)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per model call (default 32 on a CPU, up to 256 on a GPU)")
    p.add_argument("--preprocess", choices=PREPROCESSING, default=d.preprocess, help="vgg16 (caffe, for ImageNet weights) or rescale (1/255, the tutorial's)")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default=d.interpolation)
    p.add_argument("--dtype", choices=DTYPES, default=d.dtype, help="stored feature type")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="compute precision of the conv base; auto: fp16 on GPUs, bf16 on CPUs with bf16 instructions, else fp32")
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="images per output file and per unit of resume (default 256 on CPU actors, 1024 on GPU ones; "
                        "a resume keeps its run's)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="refuse larger images (decompression bombs)")
    p.add_argument("--jpeg-draft", action="store_true", help="decode large JPEGs at 1/2, 1/4 or 1/8 scale (faster; see BENCHMARKS.md)")
    p.add_argument("--num-actors", type=int, default=None, help="default: one per GPU, else CPU actors filling the cluster")
    p.add_argument("--gpus-per-actor", type=float, default=None, help="fractions share a GPU (default 1 when the cluster has GPUs)")
    p.add_argument("--cpus-per-actor", type=float, default=None)
    p.add_argument("--address", default=None, help="Ray address; 'auto' joins a running cluster (default: RAY_ADDRESS, else local Ray)")
    p.add_argument("--shared-fs", action="store_true", help=SHARED_FS_HELP)
    p.add_argument("--verify-content", action="store_true",
                   help="on a re-run, also hash every image to find content changed under the same size and time")
    p.add_argument("--overwrite", action="store_true", help="replace an OUT made with other settings")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def config_from_args(cls, args: argparse.Namespace, **fixed):
    """The command's config from its parsed flags: every field that has a flag, plus `fixed`."""
    names = cls.__dataclass_fields__.keys() - fixed.keys()
    return cls(**fixed, **{n: getattr(args, n) for n in names if hasattr(args, n)})


def cmd_extract(args: argparse.Namespace) -> int:
    from catdog.extraction import extract

    summary = extract.run(config_from_args(ExtractConfig, args))
    print("\n".join(summary.lines()))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from catdog.extraction import status

    print("\n".join(status.status(args.out, args.root).lines()))
    return 0


def cmd_head(args: argparse.Namespace) -> int:
    from catdog.heads import fit_head, metrics

    config = config_from_args(HeadConfig, args)
    result = fit_head.run(config)
    print(metrics.table(result["splits"], result["classes"]))
    print(f"chosen: {result['chosen']}")
    if result["map"].get("seconds") is not None:
        print(f"map.png: {result['map']['points']} {result['map']['split']} images, t-SNE in {result['map']['seconds']} s")
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"model, report.json and figures in {config.model_dir}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from catdog.heads import predict

    if args.top_k is not None and args.top_k < 1:
        raise CatdogError(f"--top-k must be at least 1, got {args.top_k}")
    predictions = predict.predict(args.model_dir, args.inputs, weights=args.weights, address=args.address)
    if args.out:
        predict.write_csv(predictions, args.out, args.top_k)
        print(f"{len(predictions)} predictions written to {args.out}")
    else:
        for p in predictions:
            top = "".join(f"\t{name} {q:.4f}" for name, q in p.top(args.top_k)) if args.top_k else ""
            print(f"{p.path}\t{p.label}\t{p.probability:.4f}{top}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from catdog.heads import explain

    for e in explain.explain(args.model_dir, args.inputs, args.out, args.class_name, args.weights):
        print(f"{e.path}\t{e.explained}\t{e.probability:.4f}\t{e.figure}")
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from catdog.insight import similar

    config = config_from_args(SimilarConfig, args)
    print("\n".join(similar.lines(similar.run(config))))
    print(f"pairs in {config.report_dir}/similar.csv, contact sheet similar.png")
    return 0


def cmd_train_e2e(args: argparse.Namespace) -> int:
    from catdog.e2e import fit_e2e

    result = fit_e2e.run(config_from_args(TrainConfig, args))
    for epoch, (loss, acc, val_loss, val_acc) in enumerate(zip(*(result["history"][k] for k in ("loss", "acc", "val_loss", "val_acc"))), 1):
        print(f"epoch {epoch:>3}  loss {loss:.4f}  acc {acc:.3f}  val_loss {val_loss:.4f}  val_acc {val_acc:.3f}")
    unreadable = sum(result["unreadable"].values())
    if unreadable:
        print(f"skipped {unreadable} unreadable images ({', '.join(f'{k} {v}' for k, v in result['unreadable'].items())}); "
              "`catdog extract` records which and why")
    print(f"model (for catdog predict) and curves.png in {result['model_dir']}; checkpoint {result['checkpoint']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from catdog import recipe

    config = recipe.DemoConfig(folder=args.dir, per_class=args.per_class, weights=args.weights, image_size=args.image_size)
    print("\n".join(recipe.run(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
