"""catdog.heads.model_folder without Ray: a missing, incomplete or damaged model folder is one line
naming the file, and a logreg head file is data, never code."""

import json
import os
import shutil

import numpy as np
import pytest

import catdog
from catdog import commands
from catdog.errors import CatdogError
from catdog.heads import model_folder
from tests.test_features import write_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folder")
    out, _ = write_dataset(tmp, {("train", "a.parquet"): ([0, 1] * 10, 2), ("test", "b.parquet"): ([0, 1] * 5, 4)})
    catdog.fit_head(out.path, str(tmp / "model"))
    return tmp / "model"


@pytest.fixture
def model(trained, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(trained, copy)
    return copy


def refused(model, match: str) -> str:
    with pytest.raises(CatdogError, match=match) as caught:
        model_folder.load(str(model))
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_an_intact_folder_loads(model):
    assert model_folder.load(str(model)).classes == ["cats", "dogs"]


def test_a_missing_model_file_is_an_incomplete_folder(model):
    os.remove(model / "head.skops")
    refused(model, "is incomplete: it has no head.skops")


def test_a_truncated_model_file_is_named(model):
    data = (model / "head.skops").read_bytes()
    (model / "head.skops").write_bytes(data[: len(data) // 2])
    assert "head.skops is damaged (BadZipFile" in refused(model, "head.skops is damaged")


@pytest.mark.parametrize("text", ["{not json", '{"kind": "forest", "features": {}}', '{"features": {}}', "[]"])
def test_a_damaged_head_json_is_named(model, text):
    (model / "head.json").write_text(text)
    refused(model, "head.json is damaged")


def test_the_command_says_it_in_one_line(model, capsys):
    os.remove(model / "head.skops")
    assert commands.main(["predict", str(model), str(model / "curves.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catdog: error: ") and "has no head.skops" in err and err.count("\n") == 1


def test_a_head_file_naming_a_function_is_refused(model):
    """A FunctionTransformer in front of the head would have predict call whatever function it names."""
    import skops.io
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    head = skops.io.load(model / "head.skops", trusted=skops.io.get_untrusted_types(file=model / "head.skops"))
    crafted = make_pipeline(FunctionTransformer(np.save), *[step for _, step in head.steps])
    skops.io.dump(crafted, model / "head.skops")
    assert "numpy.save" in skops.io.get_untrusted_types(file=model / "head.skops")  # a function under numpy.
    refused(model, "holds types catdog does not load: numpy.save")
    info = json.loads((model / "head.json").read_text())
    assert info["kind"] == "logreg"  # the folder is otherwise intact: the type alone is refused


def test_features_an_extraction_did_not_finish_are_refused(tmp_path):
    """A head or a similarity search on an interrupted OUT would quietly miss images."""
    from catdog.store import manifest
    from catdog.store.manifest import Manifest

    out, _ = write_dataset(tmp_path, {("train", "a.parquet"): ([0, 1] * 4, 2), ("test", "b.parquet"): ([0, 1], 4)})
    manifest.write(out, Manifest(compat={}, features={}, config={}, status="running"))
    for call in (lambda: catdog.fit_head(out.path, str(tmp_path / "m")), lambda: catdog.similar(out.path)):
        with pytest.raises(CatdogError, match="is not complete: its last `catdog extract` was interrupted"):
            call()
    assert not (tmp_path / "m").exists()
    manifest.write(out, Manifest(compat={}, features={}, config={}, status="complete"))
    catdog.fit_head(out.path, str(tmp_path / "m"))


def _rewrite_head(model, change) -> None:
    import skops.io

    path = model / "head.skops"
    head = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    skops.io.dump(change(head), path)


def test_a_numpy_function_in_the_pipeline_is_refused_by_name(model):
    """skops trusts numpy's ufuncs and scikit-learn's FunctionTransformer by default: loaded, this head
    would answer negated features' probabilities."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    _rewrite_head(model, lambda head: make_pipeline(FunctionTransformer(np.negative), *[s for _, s in head.steps]))
    message = refused(model, "holds types catdog does not load")
    assert "numpy.negative" in message and "FunctionTransformer" in message


def test_an_estimator_catdog_does_not_write_is_refused(model):
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import make_pipeline

    def dummy(head):
        X = np.zeros((4, head.steps[0][1].n_features_in_))
        return make_pipeline(head.steps[0][1], DummyClassifier().fit(X, [0, 1, 0, 1]))

    _rewrite_head(model, dummy)
    assert "sklearn.dummy.DummyClassifier" in refused(model, "holds types catdog does not load")


def test_a_head_of_another_width_is_refused_naming_both(model, tmp_path):
    """Features of 8 values against a head.json of 16: predict would fail inside scikit-learn."""
    info = json.loads((model / "head.json").read_text())
    dim = info["features"]["feature_dim"]
    info["features"]["feature_dim"] = dim * 2
    (model / "head.json").write_text(json.dumps(info))
    message = refused(model, "does not fit head.json")
    assert f"{dim} features where head.json has {dim * 2}" in message


def test_a_head_with_other_classes_is_refused(model):
    info = json.loads((model / "head.json").read_text())
    info["features"]["classes"] = ["cats", "dogs", "birds"]
    (model / "head.json").write_text(json.dumps(info))
    assert "2 classes where head.json has 3" in refused(model, "does not fit head.json")


@pytest.mark.parametrize("path, value, said", [
    (("features", "feature_dim"), "16", "features.feature_dim must be a JSON int"),
    (("features", "classes"), "cats", "features.classes must be a JSON list"),
    (("features", "input_size"), [32, 32], "features.input_size must be [height, width, 3]"),
    (("features", "weights"), None, "features.weights must be a JSON dict"),
    (("head", "seed"), "0", "seed must be an integer"),
    (("head", "C"), 1.0, "unexpected keyword argument 'C'"),
    (("extract",), [], "extract must be a JSON dict"),
])
def test_a_wrong_type_in_head_json_is_named(model, path, value, said):
    info = json.loads((model / "head.json").read_text())
    node = info
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (model / "head.json").write_text(json.dumps(info))
    assert said in refused(model, "head.json is damaged")
