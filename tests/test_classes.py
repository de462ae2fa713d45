"""Ten classes through the whole path: extract -> head (logreg, dense) -> predict -> explain -> similar,
and the one-line refusals of folders a classifier cannot learn from."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from catdog import commands
from catdog.config import ExtractConfig, HeadConfig, SimilarConfig
from catdog.errors import CatdogError
from catdog.extraction import extract
from catdog.heads import explain, fit_head, metrics, model_folder, predict
from catdog.insight import similar
from catdog.store import features
from tests import generators

pytestmark = pytest.mark.slow  # every test here reads features a conv base extracted

CLASSES = generators.shape_classes(10)
COPY = "test/hue0-disc/copy-of-train-0000.jpg"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    base = tmp_path_factory.mktemp("classes")
    root = base / "images"
    generators.make_shapes_folder(str(root), classes=10, per_class=12, size=40)
    # A near-duplicate across splits, as the Kaggle set has: a train image saved again, re-encoded, under test.
    Image.open(root / "train" / "hue0-disc" / "0000.png").save(root / COPY, quality=95)
    config = ExtractConfig(root=str(root), out=str(base / "features"), weights="none", image_size=32, shard_size=32,
                           progress=False, executor="local")
    extract.run(config)
    return config


def fit(shapes, tmp_path, **changes):
    # Random-weight features of 32-pixel images differ little (std 0.014 around 0.045): the unscaled dense
    # head needs many small steps; the tutorial's 2e-5 would need thousands.
    settings = dict(epochs=150, learning_rate=3e-3) if changes.get("model") == "dense" else {}
    config = HeadConfig(**{"features": shapes.out, "model_dir": str(tmp_path / "model"), **settings, **changes})
    return config, fit_head.run(config)


@pytest.mark.parametrize("model", ["logreg", "dense"])
def test_heads_learn_ten_classes_and_report_each(shapes, tmp_path, model):
    config, report = fit(shapes, tmp_path, model=model)
    test = report.splits["test"]
    assert report.classes == CLASSES and test["n"] == 31
    assert test["accuracy"] >= 0.6  # chance is 0.1
    assert list(test["per_class"]) == CLASSES and sum(c["support"] for c in test["per_class"].values()) == 31
    assert np.array(test["confusion_matrix"]).shape == (10, 10) and test["top_5_accuracy"] >= test["accuracy"]
    loaded = model_folder.load(config.model_dir)
    X, y, _ = features.load(shapes.out, "test")
    P = loaded.predict_proba(X)
    assert P.shape == (31, 10)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)
    again = metrics.metrics(P, y, CLASSES)
    assert again["confusion_matrix"] == test["confusion_matrix"]
    assert again["log_loss"] == pytest.approx(test["log_loss"], abs=1e-6)
    if model == "dense":
        assert loaded.model.model.output_shape == (None, 10)  # softmax over the classes, not one sigmoid
    for name in ("curves.png", "confusion.png", "map.png"):
        assert os.path.getsize(os.path.join(config.model_dir, name)) > 0
    assert report.map["points"] == 31 and report.map["seconds"] >= 0
    with Image.open(os.path.join(config.model_dir, "confusion.png")) as figure:
        assert figure.size[0] >= 500  # grows with the classes so the labels stay readable


@pytest.mark.parametrize("model", ["logreg", "dense"])
def test_streaming_learns_ten_classes(shapes, tmp_path, model):
    _, report = fit(shapes, tmp_path, model=model, max_memory=24 * 512 * 4 * 4)  # 24-row chunks
    assert report.streaming is True and report.splits["test"]["accuracy"] >= 0.5


def test_predict_gives_every_class_or_the_top_k(shapes, tmp_path, capsys):
    config, _ = fit(shapes, tmp_path)
    loaded = model_folder.load(config.model_dir)
    X, _, paths = features.load(shapes.out, "test")
    expected = dict(zip(paths, loaded.predict_proba(X)))
    found = predict.load_model(config.model_dir).predictions([os.path.join(shapes.root, "test")])
    assert len(found) == len(paths)
    for p in found:
        row = expected[os.path.relpath(p.path, shapes.root)]
        assert list(p.probabilities) == CLASSES
        np.testing.assert_allclose(list(p.probabilities.values()), row, rtol=1e-4, atol=1e-5)
        assert p.label == CLASSES[int(row.argmax())] and p.probability == pytest.approx(row.max(), rel=1e-4, abs=1e-5)
    out = tmp_path / "top3.csv"
    folder = os.path.join(shapes.root, "test", "hue1-square")
    files = [os.path.join(folder, f) for f in sorted(os.listdir(folder))]  # files: no extraction job, unlike folders
    assert commands.main(["predict", config.model_dir, *files, "--top-k", "3", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["path", "label", "probability", "top1", "top1_probability", "top2", "top2_probability",
                             "top3", "top3_probability", "error"]
    for r in rows:
        assert r["error"] == ""
        row = expected[os.path.relpath(r["path"], shapes.root)]
        assert [r[f"top{i}"] for i in (1, 2, 3)] == [CLASSES[k] for k in np.argsort(-row)[:3]]
        assert r["top1"] == r["label"]
    capsys.readouterr()
    assert commands.main(["predict", config.model_dir, os.path.join(shapes.root, COPY)]) == 0
    assert capsys.readouterr().out.split("\t")[1] in CLASSES


def test_explain_any_class_of_ten(shapes, tmp_path):
    config, _ = fit(shapes, tmp_path)
    image = os.path.join(shapes.root, "test", "hue2-ring", "0010.png")
    (predicted,) = predict.load_model(config.model_dir).predictions([image])
    (mine,) = explain.explain(config.model_dir, [image], str(tmp_path / "cam"))
    (other,) = explain.explain(config.model_dir, [image], str(tmp_path / "cam-other"), class_name="hue5-disc")
    assert mine.explained == predicted.label and mine.probability == pytest.approx(predicted.probability, abs=1e-5)
    assert other.explained == "hue5-disc"
    assert other.probability == pytest.approx(predicted.probabilities["hue5-disc"], abs=1e-5)
    for e in (mine, other):
        assert e.heatmap.shape == (32, 32) and 0 <= e.heatmap.min() and e.heatmap.max() <= 1
        with Image.open(e.figure) as figure:
            assert figure.size[0] > figure.size[1]  # the photo and its overlay side by side
    with pytest.raises(CatdogError, match="--class 'zebra' is not one of the model's classes"):
        explain.explain(config.model_dir, [image], str(tmp_path / "x"), class_name="zebra")


def test_similar_finds_the_copy_across_splits(shapes, tmp_path):
    config = SimilarConfig(features=shapes.out, report_dir=str(tmp_path / "similar"), threshold=0.99, top=3)
    summary = similar.run(config)
    rows = list(csv.DictReader(open(tmp_path / "similar" / "similar.csv")))
    pair = {"train/hue0-disc/0000.png", COPY}
    assert any({r["path_a"], r["path_b"]} == pair and r["across_splits"] == "1" for r in rows)
    assert len(summary.pairs) == len(rows) and summary.across_splits == sum(r["across_splits"] == "1" for r in rows)
    assert summary.by_split_pair.get("test / train", 0) >= 1
    # Every pair listed is a real one: cosine computed here, from the stored features, over all splits.
    stored = {}
    for split in features.splits(shapes.out):
        X, _, paths = features.load(shapes.out, split)
        stored.update(zip(paths, X))
    for r in rows:
        a, b = stored[r["path_a"]], stored[r["path_b"]]
        cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        assert cosine >= 0.99 - 1e-6 and float(r["cosine"]) == pytest.approx(cosine, abs=1e-5)
    assert os.path.getsize(tmp_path / "similar" / "similar.png") > 0
    assert json.load(open(tmp_path / "similar" / "similar.json"))["pairs"] == len(rows)


def test_a_class_missing_from_test_is_said_not_fatal(tmp_path):
    root = tmp_path / "images"
    generators.make_shapes_folder(str(root), classes=3, per_class=8, size=40)
    shutil.rmtree(root / "test" / "hue2-ring")
    out = tmp_path / "features"
    extract.run(ExtractConfig(root=str(root), out=str(out), weights="none", image_size=32, progress=False,
                              executor="local"))
    report = fit_head.run(HeadConfig(features=str(out), model_dir=str(tmp_path / "model")))
    assert report.splits["test"]["absent"] == ["hue2-ring"]
    assert report.splits["test"]["per_class"]["hue2-ring"]["support"] == 0
    assert any("hue2-ring absent from test" in n for n in report.notes)


@pytest.mark.parametrize("layout, message", [
    ("one class", "only one class (hue0-disc)"),
    ("no labels", "have no labels (no class folders)"),
])
def test_folders_a_classifier_cannot_learn_from_are_one_line(tmp_path, capsys, layout, message):
    root = tmp_path / "images"
    generators.make_shapes_folder(str(root), classes=1, per_class=4, size=40)
    if layout == "no labels":
        for split in ("train", "validation", "test"):
            for f in (root / split / "hue0-disc").iterdir():
                f.rename(root / split / f.name)
            (root / split / "hue0-disc").rmdir()
    out = tmp_path / "features"
    extract.run(ExtractConfig(root=str(root), out=str(out), weights="none", image_size=32, progress=False,
                              executor="local"))
    code = commands.main(["head", str(out), "--model-dir", str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
