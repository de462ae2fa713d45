"""Head stage on synthetic two-class images whose classes separate even with random VGG16 weights."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from catdog import synthetic
from catdog.config import ExtractConfig, HeadConfig
from catdog.errors import CatdogError
from catdog.extraction import extract
from catdog.heads import fit_head, metrics, model_folder, predict
from catdog.store import features

pytestmark = pytest.mark.slow  # every test here reads features a conv base extracted

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads") / "images"
    synthetic.make_demo_folder(str(root), per_class=30, size=48)
    # One dog filed under cats: a guaranteed, confident mistake for the grid of wrong images.
    synthetic.synthetic_image(1, 48, np.random.default_rng(99)).save(root / "test" / "cats" / "misfiled.jpg")
    # Small shards, as a large dataset has many: streaming shuffles whole files, then rows within chunks.
    config = ExtractConfig(root=str(root), out=str(root.parent / "features"), weights="none", image_size=32, shard_size=8, progress=False,
                           executor="local")
    extract.run(config)
    return config


def fit(out, tmp_path, name, **changes):
    # Random-weight features are small in scale: the tutorial's 2e-5 would need hundreds of epochs.
    settings = dict(epochs=15, learning_rate=1e-2) if changes.get("model") == "dense" else {}
    config = HeadConfig(**{"features": out.out, "model_dir": str(tmp_path / name), **settings, **changes})
    return config, fit_head.run(config)


@pytest.mark.parametrize("model", ["logreg", "dense"])
def test_head_learns_reports_and_round_trips(out, tmp_path, model):
    config, result = fit(out, tmp_path, model, model=model)
    assert result.splits["test"]["accuracy"] >= 0.9
    n_test = sum(len(files) for _, _, files in os.walk(os.path.join(out.root, "test")))
    assert result.splits["test"]["n"] == n_test and result.streaming is False
    for name in ("report.json", "curves.png", "confusion.png", "wrong.png", "head.json"):
        assert os.path.getsize(os.path.join(config.model_dir, name)) > 0
    with Image.open(os.path.join(config.model_dir, "curves.png")) as img:
        assert img.size[0] > 500
    loaded = model_folder.load(config.model_dir)
    X, y, paths = features.load(out.out, "test")
    again = metrics.metrics(loaded.predict_proba(X), y, loaded.classes)
    reported = json.load(open(os.path.join(config.model_dir, "report.json")))["splits"]["test"]
    assert again["log_loss"] == pytest.approx(reported["log_loss"], abs=1e-6)
    assert again["confusion_matrix"] == reported["confusion_matrix"]
    assert 0 < reported["confusion_matrix"][0][1]  # the misfiled dog counts as a false "dog"
    assert loaded.info["features"]["input_size"] == [32, 32, 3]
    # wrong.png shows the most confidently wrong test images: the same picks, computed here from scratch.
    p = loaded.predict_proba(X)[:, 1]  # of dogs
    wrong = [i for i in range(len(y)) if (p[i] >= 0.5) != (y[i] == 1)]
    wrong.sort(key=lambda i: -abs(p[i] - 0.5))
    listed = json.load(open(os.path.join(config.model_dir, "report.json")))["wrong"]
    assert [w["path"] for w in listed] == [paths[i] for i in wrong[:16]]
    assert "test/cats/misfiled.jpg" in [w["path"] for w in listed]
    np.testing.assert_allclose([w["probability"] for w in listed], [max(p[i], 1 - p[i]) for i in wrong[:16]], rtol=1e-5)
    assert [w["predicted"] for w in listed] == ["dogs" if p[i] >= 0.5 else "cats" for i in wrong[:16]]


@pytest.mark.parametrize("model", ["logreg", "dense"])
def test_streaming_matches_in_memory(out, tmp_path, model):
    _, memory = fit(out, tmp_path, model + "-mem", model=model)
    _, streamed = fit(out, tmp_path, model + "-stream", model=model, max_memory=16 * 512 * 4 * 4)  # 16-row chunks
    assert streamed.streaming is True
    assert abs(streamed.splits["test"]["accuracy"] - memory.splits["test"]["accuracy"]) <= 0.02


def test_predict_agrees_with_evaluation(out, tmp_path):
    config, _ = fit(out, tmp_path, "logreg")
    loaded = model_folder.load(config.model_dir)
    X, _, paths = features.load(out.out, "test")
    expected = dict(zip(paths, loaded.predict_proba(X)[:, 1]))
    test_dir = os.path.join(out.root, "test")
    from_folder = {os.path.relpath(p.path, out.root): p.probabilities["dogs"] for p in predict.load_model(config.model_dir).predictions([test_dir])}
    assert from_folder.keys() == expected.keys()
    np.testing.assert_allclose([from_folder[p] for p in paths], [expected[p] for p in paths], rtol=1e-4, atol=1e-5)
    one = os.path.join(out.root, paths[0])
    (single,) = predict.load_model(config.model_dir).predictions([one])
    assert single.probabilities["dogs"] == pytest.approx(expected[paths[0]], rel=1e-4, abs=1e-5)
    assert single.label == ("dogs" if expected[paths[0]] >= 0.5 else "cats")
    assert single.probability == pytest.approx(max(expected[paths[0]], 1 - expected[paths[0]]), rel=1e-4, abs=1e-5)
    csv_path = tmp_path / "preds.csv"
    predict.write_csv([single], str(csv_path), ["cats", "dogs"])
    header, row = csv_path.read_text().splitlines()
    assert header == "path,label,probability,p_cats,p_dogs,error"
    assert float(row.split(",")[-2]) == pytest.approx(expected[paths[0]], abs=1e-6)
    assert row.endswith(",")  # no error


def test_missing_split_is_said(out, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(out.out, partial)
    shutil.rmtree(partial / "features" / "split=test")
    with pytest.raises(CatdogError, match="a file its index names is missing .*split=test.*--repair"):
        fit(out, tmp_path, "damaged", features=str(partial))
    os.remove(partial / "index.parquet")  # features without an index (another tool's): read as they are
    config, result = fit(out, tmp_path, "no-test", features=str(partial))
    assert list(result.splits) == ["train", "validation"]
    assert any("no test split" in n for n in result.notes)


def test_readme_reuse_example_runs(out):
    text = open(README).read()
    block = re.search(r"<!-- reuse-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) < 10
    namespace = {"OUT": out.out}
    exec(block, namespace)
    Xt, yt, _ = features.load(out.out, "test")
    assert namespace["model"].score(Xt, yt) >= 0.9
