"""Backbones side by side on this machine: per network and precision, `catdog extract` images/s after
warm-up against the same network called through tf.function on ready batches (the steady ratio),
the feature dimension and the Parquet bytes per image; with --weights-dir, the linear-probe accuracy
of each network's ImageNet features on the cats/dogs photos (logreg head, test split).

    python benchmarks/backbones.py ../shared/data/cats_and_dogs_small --json benchmarks/backbones.json
    python benchmarks/backbones.py PHOTOS --weights-dir DIR   # DIR/<backbone>.weights.h5: ImageNet notop files
    python benchmarks/backbones.py --table benchmarks/backbones.json

Each measurement runs in its own process. Random weights (--weights none) unless --weights-dir
gives files: speed does not depend on the numbers, accuracy does — without ImageNet weights (not
downloadable where these ran) the probe column stays empty.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PROJECT = os.path.dirname(os.path.abspath(os.path.dirname(__file__)))
sys.path.insert(0, PROJECT)

BACKBONES = ("vgg16", "resnet50", "efficientnetv2_b0", "convnext_tiny", "mobilenet_v3_large")
PRECISIONS = ("fp32", "bf16")
PER_CLASS = 150  # train photos per class in the sample: 300 images per run
BATCH = 32


def sample(photos: str, into: str, per_class: int) -> str:
    """A split/class folder of the first photos of each split and class, by symlink."""
    for split in ("train", "validation", "test"):
        for cls in ("cats", "dogs"):
            os.makedirs(f"{into}/{split}/{cls}")
            count = per_class if split == "train" else per_class // 3
            for name in sorted(os.listdir(f"{photos}/{split}/{cls}"))[:count]:
                os.symlink(f"{photos}/{split}/{cls}/{name}", f"{into}/{split}/{cls}/{name}")
    return into


def reference(root: str, backbone: str, precision: str) -> dict:
    """The network alone: catdog's conv base (the same graph: preprocessing, network, pooling) on
    ready uint8 batches, decoded beforehand, through its tf.function."""
    from catdog import storage
    from catdog.config import ExtractConfig
    from catdog.extraction import imagefolder
    from catdog.vision import convbase, images

    config = ExtractConfig(root=root, out="", backbone=backbone, weights="none", precision=precision, batch_size=BATCH)
    folder = storage.resolve(root)
    pixels = images.decode_files([folder.join(p) for p in imagefolder.scan(folder).paths], config.decode).pixels
    base = convbase.ConvBase(convbase.resolve_weights("none", 0, config.image_size, backbone, config.pooling), config.embed)
    base.embed(pixels[:BATCH])  # trace and warm up
    start = time.perf_counter()
    base.embed(pixels)
    return {"images_per_second": len(pixels) / (time.perf_counter() - start), "dim": base.dim}


def extract(root: str, backbone: str, precision: str, out: str, weights: str) -> dict:
    from catdog.config import ExtractConfig
    from catdog.extraction import extract as job

    config = ExtractConfig(root=root, out=out, backbone=backbone, weights=weights, precision=precision,
                           batch_size=BATCH, shard_size=32, overwrite=True, progress=False)
    summary = job.run(config)
    files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(out, "features")) for f in fs]
    return {"images_per_second": summary.steady_images_per_second, "images": summary.images,
            "parquet_bytes_per_image": sum(os.path.getsize(f) for f in files) / summary.images,
            "image_size": config.image_size, "bound": summary.cost.bottleneck if summary.cost else ""}


def probe(out: str, model_dir: str) -> dict:
    from catdog.config import HeadConfig
    from catdog.heads import fit_head

    report = fit_head.run(HeadConfig(features=out, model_dir=model_dir))
    return {"test_accuracy": report.splits["test"]["accuracy"]}


def part(name: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--part", name, *args], capture_output=True, text=True, cwd=PROJECT)
    if done.returncode != 0:
        raise RuntimeError(f"{name} {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(photos: str, backbones: list[str], precisions: list[str], weights_dir: str | None,
            per_class: int = PER_CLASS) -> dict:
    from benchmarks.throughput import machine

    work = tempfile.mkdtemp(prefix="catdog-backbones-")
    root = sample(photos, f"{work}/photos", per_class)
    rows = []
    for backbone in backbones:
        weights = os.path.join(weights_dir, f"{backbone}.weights.h5") if weights_dir else "none"
        for precision in precisions:
            out = f"{work}/{backbone}-{precision}"
            ref = part("reference", root, backbone, precision)
            run = part("extract", root, backbone, precision, out, weights)
            row = {"backbone": backbone, "precision": precision, "reference": ref, "extract": run,
                   "ratio": run["images_per_second"] / ref["images_per_second"]}
            if weights_dir and precision == "fp32":
                row["probe"] = part("probe", out, f"{work}/{backbone}-model")
            rows.append(row)
    return {"machine": machine(), "photos": sum(len(fs) for _, _, fs in os.walk(root)), "rows": rows,
            "weights": "files from --weights-dir" if weights_dir else "none (random)"}


def table(r: dict) -> str:
    lines = [f"machine: {r['machine']['cpu']}, {r['machine']['cpus']} CPUs; {r['photos']} photos; weights {r['weights']}",
             f"{'backbone':<20}{'prec':<6}{'side':>5}{'D':>7}{'extract img/s':>15}{'tf.function img/s':>19}"
             f"{'ratio':>7}{'bytes/img':>11}{'bound':>8}{'probe acc':>11}"]
    for row in r["rows"]:
        x, ref = row["extract"], row["reference"]
        acc = f"{row['probe']['test_accuracy']:.3f}" if "probe" in row else "-"
        lines.append(f"{row['backbone']:<20}{row['precision']:<6}{x['image_size']:>5}{ref['dim']:>7,}"
                     f"{x['images_per_second']:>15.1f}{ref['images_per_second']:>19.1f}{row['ratio']:>7.2f}"
                     f"{x['parquet_bytes_per_image']:>11,.0f}{x['bound']:>8}{acc:>11}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("photos", nargs="?")
    parser.add_argument("--json", default="benchmarks/backbones.json")
    parser.add_argument("--table", metavar="RESULTS_JSON")
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--per-class", type=int, default=PER_CLASS, help="train photos per class (a third as many "
                        "for validation and test)")
    parser.add_argument("--weights-dir", help="ImageNet notop weights files, DIR/<backbone>.weights.h5 (for the probe)")
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        name, rest = args.part[0], args.part[1:]
        result = {"reference": reference, "extract": extract, "probe": probe}[name](*rest)
        print(json.dumps(result))
        return
    if args.table:
        print(table(json.load(open(args.table))))
        return
    if not args.photos:
        parser.error("give the photo folder")
    r = measure(os.path.abspath(args.photos), args.backbones.split(","), args.precisions.split(","), args.weights_dir,
                args.per_class)
    with open(args.json, "w") as f:
        json.dump(r, f, indent=2)
    print(table(r))


if __name__ == "__main__":
    main()
