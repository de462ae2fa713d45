"""The `catdog demo` job: the whole recipe on a generated folder, start to finish on local Ray —
extract the VGG16 features, fit the logistic-regression head, report it, explain one test image."""

from __future__ import annotations

import os
from dataclasses import dataclass

from catdog import synthetic
from catdog.config import ExtractConfig, HeadConfig
from catdog.extraction import extract
from catdog.heads import explain, fit_head, metrics


@dataclass(frozen=True)
class DemoConfig:
    folder: str = "demo"
    per_class: int = 20  # 10 train, 5 validation, 5 test per class: the whole recipe in under a minute
    weights: str = "none"  # random weights: works offline
    image_size: int = 150


def run(config: DemoConfig) -> list[str]:
    """The lines a user reads: what was made, the accuracy table, and where each figure is."""
    images = os.path.join(config.folder, "images")
    if not os.path.isdir(images):
        synthetic.make_demo_folder(images, per_class=config.per_class)
    lines = [f"demo images: {images} (synthetic, 2 classes, {config.per_class} per class)"]
    if config.weights == "none":
        lines.append("weights: none (random init, seed 0) - offline demo; features are not ImageNet features")
    extracted = ExtractConfig(root=images, out=os.path.join(config.folder, "features"), weights=config.weights,
                              image_size=config.image_size, overwrite=True)
    lines += extract.run(extracted).lines()
    head = HeadConfig(features=extracted.out, model_dir=os.path.join(config.folder, "model"))
    report = fit_head.run(head)
    lines += ["", metrics.table(report["splits"], report["classes"])]
    one = os.path.join(images, "test", synthetic.CLASSES[1], sorted(os.listdir(os.path.join(images, "test", synthetic.CLASSES[1])))[0])
    (explained,) = explain.explain(head.model_dir, [one], os.path.join(config.folder, "explain"))
    figures = [os.path.join(head.model_dir, f) for f in ("curves.png", "confusion.png", "map.png", "wrong.png")]
    lines += ["", "figures:"] + [f"  {f}" for f in figures if os.path.exists(f)]
    lines.append(f"  {explained.figure}  (Grad-CAM of {explained.explained}, p={explained.probability:.3f})")
    lines.append(f"model and report.json: {head.model_dir}")
    return lines
