"""`catdog predict MODEL IMAGE_OR_DIR...`: classify images with a saved model."""

from __future__ import annotations

import argparse
import sys

import catdog
from catdog.errors import CatdogError
from catdog.heads.predict import write_csv


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("predict", parents=[common], help="classify images with a saved model")
    p.add_argument("model_dir")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--out", help="write a CSV here instead of printing")
    p.add_argument("--weights", help="where the conv base weights are now, if moved since training")
    p.add_argument("--address", default=None, help="Ray address for folders (default: local Ray)")
    p.add_argument("--top-k", type=int, default=None, help="the k most probable classes instead of all of them")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.top_k is not None and args.top_k < 1:
        raise CatdogError(f"--top-k must be at least 1, got {args.top_k}")
    model = catdog.load_model(args.model_dir, weights=args.weights, address=args.address)
    predictions = model.predictions(args.inputs)
    unreadable = sum(1 for p in predictions if p.error)
    if args.out:
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
