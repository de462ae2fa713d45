"""`catdog demo`: the whole recipe on a generated folder, start to finish on a local Ray, through the
Python API: extract the features, fit the logistic-regression head, report it, explain a test image,
and audit the data, in which the demo planted misfiled images and a copy across splits."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

import catdog
from catdog import synthetic
from catdog.vision import backbones


def add(commands, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("demo", parents=[common],
                            help="the whole recipe on a generated folder: extract, head, report, explain, audit "
                            "(local Ray)")
    p.add_argument("--dir", default="demo", help="where to put the images, features and model (default: ./demo)")
    p.add_argument("--per-class", type=int, default=20, help="images per class in all (default 20: under a minute)")
    p.add_argument("--weights", default="none", help="default none: random weights, works offline")
    p.add_argument("--image-size", type=int, default=None, help="default: the backbone's (vgg16: 150)")
    p.add_argument("--backbone", default=backbones.DEFAULT, choices=list(backbones.BACKBONES), metavar="NAME",
                   help="the conv base (default vgg16, the recipe's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print("\n".join(demo(args.dir, args.per_class, args.weights, args.image_size, args.backbone)))
    return 0


def demo(folder: str = "demo", per_class: int = 20, weights: str = "none", image_size: int | None = None,
         backbone: str = backbones.DEFAULT) -> list[str]:
    """The lines a user reads: what was made, the accuracy table, and where each figure is."""
    images, planted_file = os.path.join(folder, "images"), os.path.join(folder, "planted.json")
    if not os.path.isdir(images):
        synthetic.make_demo_folder(images, per_class=per_class)
        with open(planted_file, "w") as f:
            json.dump(asdict(synthetic.plant_problems(images)), f)
    planted = None  # a folder an older demo made holds no planted problems
    if os.path.exists(planted_file):
        with open(planted_file) as f:
            planted = json.load(f)
    said = f"; {len(planted['misfiled'])} misfiled and 1 copied across splits on purpose" if planted else ""
    lines = [f"demo images: {images} (synthetic, 2 classes, {per_class} per class{said})"]
    if weights == "none":
        lines.append("weights: none (random init, seed 0) - offline demo; features are not ImageNet features")
    features, model = os.path.join(folder, "features"), os.path.join(folder, "model")
    lines += catdog.extract(images, features, weights=weights, image_size=image_size, backbone=backbone,
                            overwrite=True).lines()
    report = catdog.fit_head(features, model)
    lines += ["", *report.lines()[:1]]
    test = os.path.join(images, "test", synthetic.CLASSES[1])
    (explained,) = catdog.explain(model, [os.path.join(test, sorted(os.listdir(test))[0])])
    lines += ["", "figures:", *(f"  {f}" for f in report.figures)]
    lines.append(f"  {explained.figure}  (Grad-CAM of {explained.explained}, p={explained.probability:.3f})")
    lines.append(f"model and report.json: {model}")
    # Random weights make every photo look alike: a copy stands out only above 0.995.
    audit = catdog.audit(features, duplicate_threshold=0.995 if weights == "none" else 0.95)
    lines += ["", *audit.lines(), *(found(audit, planted) if planted else [])]
    site = catdog.report(features, model=model)  # the audit just written is the one it shows
    return lines + ["", f"report: {site.index} (open it in a browser: label issues, outliers, near-duplicates, "
                        "the model's mistakes, the feature map)"]


def found(audit, planted: dict) -> list[str]:
    """Whether the audit found what the demo planted, a line each."""
    issues = {i.path: i for i in audit.label_issues}
    lines = ["planted:"]
    for path, shows in planted["misfiled"]:
        issue = issues.get(path)
        lines.append(f"  {path} shows {shows}: " + (f"found (rank {issue.rank}, suggested {issue.suggested})" if issue
                                                    else "not flagged"))
    original, copy = planted["duplicate"]
    pair = next((p for p in audit.duplicates if {p.a, p.b} == {original, copy}), None)
    lines.append(f"  {copy} copies {original}: " + (f"found (cosine {pair.cosine:.4f}, across splits)" if pair
                                                    else "not flagged"))
    return lines
