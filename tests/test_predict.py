"""A model refuses features and weights other than its own, for single files and folders alike,
checked with real extractions (not hand-edited metadata)."""

import os
import shutil

import keras
import numpy as np
import pytest

from catdog import synthetic
from catdog.config import ExtractConfig, HeadConfig
from catdog.errors import CatdogError
from catdog.extraction import extract
from catdog.heads import fit_head, model_folder, predict
from catdog.store import features

pytestmark = pytest.mark.slow  # every test here reads features a conv base extracted

SIZE = 32


@pytest.fixture(scope="module")
def trained(weights_file, tmp_path_factory):
    """Features from a weights file, and a logreg head trained on them."""
    base = tmp_path_factory.mktemp("predict")
    synthetic.make_demo_folder(str(base / "images"), per_class=6, size=40)
    config = ExtractConfig(root=str(base / "images"), out=str(base / "features"), weights=weights_file, image_size=SIZE,
                           progress=False, executor="local")
    extract.run(config)
    fit_head.run(HeadConfig(features=config.out, model_dir=str(base / "model")))
    return config, str(base / "model")


def test_features_made_with_other_settings_are_refused(trained, tmp_path):
    config, model_dir = trained
    other = config.replace(out=str(tmp_path / "rescaled"), preprocess="rescale")
    extract.run(other)
    model = model_folder.load(model_dir)
    model.check(features.read_metadata(config.out))  # its own features pass
    with pytest.raises(CatdogError, match="preprocess is 'rescale' in the features, 'vgg16' in the model"):
        model.check(features.read_metadata(other.out))


def test_other_weights_are_refused_for_files_and_folders(trained, tmp_path):
    config, model_dir = trained
    keras.utils.set_random_seed(999)
    other = tmp_path / "other_notop.weights.h5"
    keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3)).save_weights(str(other))
    folder = os.path.join(config.root, "test", "cats")
    one = os.path.join(folder, sorted(os.listdir(folder))[0])
    for inputs in ([one], [folder]):
        with pytest.raises(CatdogError, match="not the ones the model was trained on"):
            predict.load_model(model_dir, weights=str(other)).predictions(inputs)


def test_a_renamed_weights_file_is_the_same_weights_for_files_and_folders(trained, weights_file, tmp_path):
    config, model_dir = trained
    renamed = tmp_path / "moved_and_renamed.weights.h5"
    shutil.copy(weights_file, renamed)
    folder = os.path.join(config.root, "test", "cats")
    one = os.path.join(folder, sorted(os.listdir(folder))[0])
    X, _, paths = features.load(config.out, "test")
    expected = dict(zip(paths, model_folder.load(model_dir).predict_proba(X)[:, 1]))
    by_file = predict.load_model(model_dir, weights=str(renamed)).predictions([one])
    by_folder = predict.load_model(model_dir, weights=str(renamed)).predictions([folder])
    rel = lambda p: os.path.relpath(p, config.root)  # noqa: E731
    assert by_file[0].probabilities["dogs"] == pytest.approx(expected[rel(one)], rel=1e-4, abs=1e-5)
    assert sorted(rel(p.path) for p in by_folder) == sorted(p for p in paths if p.startswith("test/cats/"))
    np.testing.assert_allclose([p.probabilities["dogs"] for p in by_folder], [expected[rel(p.path)] for p in by_folder],
                               rtol=1e-4, atol=1e-5)


def test_every_image_gets_a_row_and_the_unreadable_ones_their_error(trained, tmp_path):
    """A folder and files holding a non-image, a broken symlink and a photo whose name is not UTF-8:
    every one is answered, the photo as its original is, the others with the reason."""
    config, model_dir = trained
    source = os.path.join(config.root, "test", "cats")
    folder = tmp_path / "mixed"
    shutil.copytree(source, folder)
    first = sorted(os.listdir(source))[0]
    shutil.copy(os.path.join(source, first), os.fsdecode(bytes(folder) + b"/caf\xe9.jpg"))
    (folder / "bad.jpg").write_bytes(b"not an image")
    os.symlink(tmp_path / "gone.jpg", folder / "link.jpg")
    model = predict.load_model(model_dir)
    expected = model.predict_proba([os.path.join(source, first)])[0]
    for inputs in ([str(folder)], [str(folder / n) for n in sorted(os.listdir(folder)) if n != "link.jpg"]):
        found = {os.path.basename(p.path): p for p in model.predictions(inputs)}
        assert found["caf\\xe9.jpg"].error == "" and not found[first].error
        assert list(found["caf\\xe9.jpg"].probabilities.values()) == pytest.approx(list(expected), rel=1e-4, abs=1e-5)
        assert found["bad.jpg"].error == "UnidentifiedImageError: cannot identify image file"
        assert found["bad.jpg"].label == "" and np.isnan(found["bad.jpg"].probability)
    assert len(found) == len(os.listdir(folder)) - 1
    by_folder = {os.path.basename(p.path): p for p in model.predictions([str(folder)])}
    assert len(by_folder) == len(os.listdir(folder)) and by_folder["link.jpg"].error.startswith("FileNotFoundError")
    csv_path = tmp_path / "p.csv"
    predict.write_csv(list(by_folder.values()), str(csv_path), list(model.classes_))
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 1 + len(by_folder) and sum(1 for r in rows[1:] if not r.endswith(",")) == 2
    with pytest.raises(CatdogError, match="cannot read image .*bad.jpg: UnidentifiedImageError"):
        model.predict_proba([str(folder / "bad.jpg")])
    with pytest.raises(CatdogError, match="not found: .*nowhere.jpg"):
        model.predictions([str(tmp_path / "nowhere.jpg")])


def test_predict_on_a_faulty_store(trained, s3, monkeypatch, capsys):
    """The model folder and the images on a store answering 5 % of requests 503 SlowDown and resetting
    3 %: the same predictions as from disk, the CSV written to the store. A store that refuses the CSV:
    one line, no success line, no CSV. A store that resets every request: one line, nothing written."""
    from catdog import commands
    from tests.faultproxy import Proxy

    config, model_dir = trained
    images, model = s3.upload(config.root, f"{s3.prefix}/images"), s3.upload(model_dir, f"{s3.prefix}/model")
    names = sorted(f"{c}/{n}" for c in ("cats", "dogs") for n in os.listdir(os.path.join(config.root, "test", c)))
    expected = predict.load_model(model_dir).predict_proba([os.path.join(config.root, "test", n) for n in names])
    argv = ["predict", model, *[f"{images}/test/{n}" for n in names]]
    with Proxy(s3.endpoint, slow_down=0.05, reset=0.03, seed=3) as flaky:
        monkeypatch.setenv("AWS_ENDPOINT_URL", flaky.endpoint)
        assert commands.main([*argv, "--out", f"s3://{s3.prefix}/p.csv"]) == 0
        assert capsys.readouterr().out == f"{len(names)} predictions written to s3://{s3.prefix}/p.csv\n"
    with Proxy(s3.endpoint, refuse_writes=True) as refusing:
        monkeypatch.setenv("AWS_ENDPOINT_URL", refusing.endpoint)
        refused = commands.main([*argv, "--out", f"s3://{s3.prefix}/q.csv"])
        refused_output = capsys.readouterr()
    with Proxy(s3.endpoint, reset=1.0) as silent:
        monkeypatch.setenv("AWS_ENDPOINT_URL", silent.endpoint)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        unanswered = commands.main([*argv, "--out", f"s3://{s3.prefix}/r.csv"])
        silent_output = capsys.readouterr()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    assert flaky.faults >= 1 and refusing.refused >= 1 and silent.faults >= 2
    rows = s3.filesystem().open_input_stream(f"{s3.prefix}/p.csv").read().decode().splitlines()
    assert len(rows) == 1 + len(names) and all(r.endswith(",") for r in rows[1:])  # no error column filled
    got = np.array([[float(v) for v in r.split(",")[3:-1]] for r in rows[1:]])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert refused == 2 and refused_output.err.startswith(f"catdog: error: cannot write s3://{s3.prefix}/q.csv: AWS Error")
    assert refused_output.err.count("\n") == 1 and "predictions written" not in refused_output.out
    assert unanswered != 0 and silent_output.err.startswith("catdog: error: ") and silent_output.err.count("\n") == 1
    assert "predictions written" not in silent_output.out
    assert sorted(k for k in s3.keys(s3.prefix) if k.endswith(".csv")) == ["p.csv"]
