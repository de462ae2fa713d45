"""The Python API: the README's example runs as written; `load_model` is a scikit-learn-style
classifier whose answers equal the saved head's on the stored features; a folder without splits is
split seeded and stratified; `similar` and `explain` write to their default folders."""

import contextlib
import io
import json
import os
import re
import shutil

import numpy as np
import pytest

import catdog
from catdog import synthetic
from catdog.errors import CatdogError
from catdog.heads import metrics, model_folder
from catdog.heads.splits import holdout_masks
from catdog.store import features

pytestmark = pytest.mark.slow  # every test here reads features a conv base extracted

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def readme_example() -> str:
    text = open(README).read()
    after = text[text.index("<!-- api-example"):]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The README's example, run as written in a folder holding `photos` (the demo's layout)."""
    folder = tmp_path_factory.mktemp("api")
    synthetic.make_demo_folder(str(folder / "photos"), per_class=20)
    namespace, printed = {}, io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(printed):
            exec(readme_example(), namespace)
    finally:
        os.chdir(cwd)
    return folder, namespace, printed.getvalue()


def test_the_readme_example_runs_as_written(example):
    folder, ns, printed = example
    assert (ns["done"].images, ns["done"].errors) == (40, 0)
    assert ns["X"].shape == (20, 2048) and ns["data"].classes == ("cats", "dogs")
    assert len(ns["paths"]) == 20 and set(ns["data"].splits) == {"train"}
    assert ns["report"].splits["test"]["n"] == 10
    assert list(ns["model"].classes_) == ["cats", "dogs"]
    # Default folders: explain's under the model, similar's under the features.
    assert ns["cams"][0].figure == "model/explain/dog.15.cam.png" and (folder / ns["cams"][0].figure).stat().st_size > 0
    assert ns["dupes"].report_dir == "features/similar"
    for name in ("similar.csv", "similar.json"):
        assert (folder / "features" / "similar" / name).exists()
    assert json.load(open(folder / "features" / "similar" / "similar.json"))["pairs"] == len(ns["dupes"].pairs)
    assert "40 0" in printed.splitlines() and "output      features" in printed


def test_load_model_answers_as_the_saved_head_on_the_stored_features(example):
    folder, ns, _ = example
    stored = catdog.load(str(folder / "features"), "test")
    images = [str(folder / "photos" / p) for p in stored.paths]
    model = catdog.load_model(str(folder / "model"))
    expected = model_folder.load(str(folder / "model")).predict_proba(stored.X)  # from the Parquet rows
    np.testing.assert_allclose(model.predict_proba(images), expected, atol=1e-5)
    assert list(model.predict(images)) == [model.classes_[k] for k in expected.argmax(axis=1)]
    with pytest.raises(CatdogError, match="is a folder"):
        model.predict_proba([str(folder / "photos" / "test")])
    with pytest.raises(CatdogError, match="not found"):
        model.predict([str(folder / "photos" / "nowhere.jpg")])


def class_layout(root, per_class: int):
    """ROOT/CLASS/*.jpg: the demo's images without their split folders."""
    staged = synthetic.make_demo_folder(str(root) + "-staged", per_class=per_class, size=48)
    for split in os.listdir(staged):
        for name in os.listdir(os.path.join(staged, split)):
            os.makedirs(os.path.join(root, name), exist_ok=True)
            for f in os.listdir(os.path.join(staged, split, name)):
                shutil.move(os.path.join(staged, split, name, f), os.path.join(root, name, f))
    return str(root)


def test_a_folder_without_splits_is_split_seeded_and_stratified(tmp_path):
    root = class_layout(tmp_path / "photos", per_class=20)
    out = str(tmp_path / "features")
    catdog.extract(root, out, weights="none", image_size=32, progress=False, executor="local")
    first = catdog.fit_head(out, str(tmp_path / "m1"))
    again = catdog.fit_head(out, str(tmp_path / "m2"))
    other = catdog.fit_head(out, str(tmp_path / "m3"), seed=1, validation_split=0.25, test_split=0.25)
    assert first.holdout["counts"] == {"train": 24, "validation": 8, "test": 8}
    assert other.holdout["counts"] == {"train": 20, "validation": 10, "test": 10}
    assert first.splits == again.splits and first.holdout == again.holdout
    info = json.load(open(tmp_path / "m1" / "head.json"))
    assert info["holdout"] == first.holdout and json.load(open(tmp_path / "m1" / "report.json"))["holdout"] == first.holdout
    # The test rows the report scored are the held-out ones: recomputed here from the stored rows.
    X, y, _ = features.load(out, "all")
    test = holdout_masks(y, 0.2, 0.2, seed=0)["test"]
    again_scored = metrics.metrics(model_folder.load(str(tmp_path / "m1")).predict_proba(X[test]), y[test], ["cats", "dogs"])
    assert again_scored["log_loss"] == pytest.approx(first.splits["test"]["log_loss"], abs=1e-6)
    assert "splits: made here from the unsplit folder (train 24, validation 8, test 8; seed 0)" in first.lines()
