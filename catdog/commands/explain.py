"""`catdog explain MODEL IMAGE_OR_DIR...`: Grad-CAM heatmaps, where the model looks."""

from __future__ import annotations

import argparse

import catdog


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("explain", parents=[common], help="Grad-CAM heatmaps: where the model looks, per image")
    p.add_argument("model_dir")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--out", default=None, help="folder for NAME.cam.png (photo | heatmap over the photo); "
                   "default MODEL_DIR/explain")
    p.add_argument("--class", dest="class_name", default=None, help="explain this class (default: the predicted one)")
    p.add_argument("--weights", help="where the conv base weights are now, if moved since training")
    p.add_argument("--layer", help="the conv base layer whose maps are explained (default: its last conv layer)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for e in catdog.explain(args.model_dir, args.inputs, args.out, args.class_name, args.weights, args.layer):
        print(f"{e.path}\t{e.explained}\t{e.probability:.4f}\t{e.figure}")
    return 0
