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
