"""`catdog predict MODEL IMAGE_OR_DIR...`: classify images with a saved model; printed, as a CSV, or
(one folder, bucket or table, `--out DIR`) as Parquet written by extraction's job."""

from __future__ import annotations

import argparse
import sys

import catdog
from catdog.commands.arguments import add_options, options
from catdog.config import PredictConfig
from catdog.errors import CatdogError

# Flags of the Parquet output only (the folder's run); the others are the printed and CSV answers' too.
RUN_ONLY = ("executor", "from_table", "path_column", "label_column", "split_column", "shard_size", "num_actors",
            "gpus_per_actor", "cpus_per_actor", "shared_fs", "overwrite")


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("predict", parents=[common], help="classify images with a saved model",
                            description="Print the answers, write them as a CSV (--out FILE.csv), or, for one folder, "
                                        "bucket or table of any size, as Parquet (--out DIR): extraction's job with "
                                        "the head in its actors, resumable and incremental.")
    p.add_argument("model_dir")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--out", help="FILE.csv: a CSV; any other path or URI: a folder of Parquet predictions")
    p.add_argument("--weights", help="where the conv base weights are now, if moved since training")
    p.add_argument("--address", default=None, help="Ray address for folders (default: RAY_ADDRESS, else a local Ray "
                                                   "or this process)")
    p.add_argument("--top-k", type=int, default=None, help="the k most probable classes instead of all of them (printed "
                                                          "or CSV)")
    add_options(p, PredictConfig, "model_dir", "root", "out", "weights", "address")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.top_k is not None and args.top_k < 1:
        raise CatdogError(f"--top-k must be at least 1, got {args.top_k}")
    if args.out and not args.out.lower().endswith(".csv"):
        return _to_parquet(args)
    given = [name for name in RUN_ONLY if getattr(args, name) != PredictConfig.__dataclass_fields__[name].default]
    if given:
        raise CatdogError(f"--{given[0].replace('_', '-')} goes with Parquet predictions: give --out a folder "
                          "(not a CSV, not none)")
    model = catdog.load_model(args.model_dir, weights=args.weights, address=args.address)
    predictions = model.predictions(args.inputs)
    unreadable = sum(1 for p in predictions if p.error)
    if args.out:
        from catdog.heads.predict import write_csv  # the heads' modules load scikit-learn: not for every command

        write_csv(predictions, args.out, list(model.classes_), args.top_k)
        note = f" ({unreadable} could not be read: see the error column)" if unreadable else ""
        print(f"{len(predictions) - unreadable} predictions written to {args.out}{note}")
    else:
        for p in predictions:
            if p.error:
                print(f"{p.path}\terror: {p.error}")
                continue
            top = "".join(f"\t{name} {q:.4f}" for name, q in p.top(args.top_k)) if args.top_k else ""
            print(f"{p.path}\t{p.label}\t{p.probability:.4f}{top}")
        if unreadable:
            print(f"catdog: {unreadable} of {len(predictions)} images could not be read", file=sys.stderr)
    return 0


def _to_parquet(args: argparse.Namespace) -> int:
    if len(args.inputs) != 1:
        raise CatdogError(f"--out {args.out} writes Parquet predictions of one folder, bucket or table; got "
                          f"{len(args.inputs)} inputs (for image files, use --out FILE.csv)")
    if args.top_k is not None:
        raise CatdogError("--top-k is for printed or CSV answers; the Parquet predictions hold every class")
    result = catdog.predict(args.model_dir, args.inputs[0], args.out, weights=args.weights, address=args.address,
                            **options(PredictConfig, args, "model_dir", "root", "out", "weights", "address"))
    print("\n".join(result.lines()))
    return 0
