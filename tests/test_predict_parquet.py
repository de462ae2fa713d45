"""`catdog predict MODEL ROOT --out DIR`: Parquet predictions from extraction's job with the head in
its actors. Each answer is checked against the head applied, in this process, to the features a
plain extraction of the same images stored; a run, a re-run, a grown folder and a killed run each
leave every image once."""

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import catdog
from catdog import commands, synthetic
from catdog.errors import CatdogError
from catdog.heads import model_folder
from catdog.store import features, layout
from tests.conftest import demo_with_a_broken_file, random_pixels, save_image, wait_until

pytestmark = pytest.mark.slow  # builds conv bases
SIZE = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A demo folder with a broken photo, its features (this process, no Ray), a logreg head on them."""
    base = tmp_path_factory.mktemp("predict-parquet")
    root = demo_with_a_broken_file(base / "images")
    out = str(base / "features")
    catdog.extract(str(root), out, weights="none", image_size=SIZE, executor="local", progress=False)
    catdog.fit_head(out, str(base / "model"))
    return root, out, str(base / "model")


def expected_answers(features_out: str, model_dir: str) -> dict[str, np.ndarray]:
    """{path: probabilities}: the model folder applied here to the stored features of the images."""
    stored = features.load(features_out)
    return dict(zip(stored.paths, model_folder.load(model_dir).predict_proba(stored.X)))


def check(table, expected: dict[str, np.ndarray], classes: list[str]) -> None:
    rows = table.to_pydict()
    assert sorted(rows["path"]) == sorted(expected)  # every readable image, once
    for path, predicted, probability, probabilities, label_name in zip(
            rows["path"], rows["predicted"], rows["probability"], rows["probabilities"], rows["label_name"]):
        np.testing.assert_allclose(probabilities, expected[path], rtol=1e-5, atol=1e-6, err_msg=path)
        assert predicted == classes[int(np.argmax(expected[path]))]
        assert probability == pytest.approx(max(probabilities))
        assert label_name == path.split("/")[1]  # the class the folder gives it


def test_predictions_equal_the_head_on_stored_features_and_a_rerun_or_a_grown_folder_adds_each_image_once(trained, tmp_path):
    photos, features_out, model_dir = trained
    root = tmp_path / "photos"  # a copy: it grows below
    shutil.copytree(photos, root)
    out = str(tmp_path / "preds")
    classes = model_folder.load(model_dir).classes
    first = catdog.predict(model_dir, str(root), out, executor="local", progress=False)
    expected = expected_answers(features_out, model_dir)
    assert first.images == len(expected) and first.errors == 1 and first.processed == len(expected) + 1
    check(catdog.read_predictions(out), expected, classes)
    assert [p for p, _, _ in features.read_errors(out)] == ["train/cats/broken.jpg"]
    assert not os.path.exists(os.path.join(out, layout.FEATURES_DIR))  # answers only, never the features

    said = catdog.status(out).lines()
    assert any(line.startswith("predictions logreg model's answers") and line.endswith("classes cats, dogs")
               for line in said), said
    files = len(list((tmp_path / "preds" / layout.PREDICTIONS_DIR).rglob("*.parquet")))
    assert f"rows        {len(expected)} images, 1 errors, {files} files" in said, said
    again = catdog.predict(model_dir, str(root), out, executor="local", progress=False)
    assert again.processed == 0
    check(catdog.read_predictions(out), expected, classes)

    for seed in (1, 2):
        save_image(root / "test" / "dogs" / f"new-{seed}.jpg", random_pixels(seed))
    grown = catdog.predict(model_dir, str(root), out, executor="local", progress=False)
    assert grown.processed == 2 and "added 2" in grown.changes
    grown_features = str(tmp_path / "grown-features")
    catdog.extract(str(root), grown_features, weights="none", image_size=SIZE, executor="local", progress=False)
    check(catdog.read_predictions(out), expected_answers(grown_features, model_dir), classes)


def test_another_model_is_refused_then_replaced_with_overwrite_and_a_pandas_table_is_read(trained, tmp_path):
    root, features_out, model_dir = trained
    out = str(tmp_path / "preds")
    catdog.predict(model_dir, str(root), out, executor="local", progress=False)
    other = str(tmp_path / "dense")
    catdog.fit_head(features_out, other, model="dense", epochs=2)
    with pytest.raises(CatdogError, match="made with other settings .*predictions"):
        catdog.predict(other, str(root), out, executor="local", progress=False)
    catdog.predict(other, str(root), out, executor="local", progress=False, overwrite=True)
    check(catdog.read_predictions(out), expected_answers(features_out, other), model_folder.load(other).classes)

    # A table of some of the photos, as pandas writes it (large_string columns in pandas 3).
    chosen = sorted(str(p) for p in (root / "test").rglob("*.jpg"))
    table = tmp_path / "photos.parquet"
    pd.DataFrame({"path": chosen, "label": [p.split("/")[-2] for p in chosen]}).to_parquet(table)
    catdog.predict(model_dir, str(table), str(tmp_path / "from-table"), from_table=True, executor="local", progress=False)
    answers = catdog.read_predictions(str(tmp_path / "from-table"))
    by_name = {f"test/{p.split('/')[-2]}/{p.split('/')[-1]}": p for p in chosen}
    expected = {by_name[k]: v for k, v in expected_answers(features_out, model_dir).items() if k in by_name}
    assert sorted(answers.column("path").to_pylist()) == sorted(expected)
    for path, probabilities in zip(answers.column("path").to_pylist(), answers.column("probabilities").to_pylist()):
        np.testing.assert_allclose(probabilities, expected[path], rtol=1e-5, atol=1e-6)


def test_on_ray_the_answers_equal_this_process(ray_local, trained, tmp_path):
    root, features_out, model_dir = trained
    result = catdog.predict(model_dir, str(root), str(tmp_path / "preds"), executor="ray", shard_size=4, progress=False)
    assert result.executor.startswith("ray") and len(result.embedders) >= 1
    check(catdog.read_predictions(str(tmp_path / "preds")), expected_answers(features_out, model_dir),
          model_folder.load(model_dir).classes)


def test_a_killed_run_resumes_to_every_image_once(trained, tmp_path):
    """Killed (SIGKILL) after its first committed shard, as a user's job dies; the same command again."""
    _, _, model_dir = trained
    root = tmp_path / "photos"
    synthetic.make_demo_folder(str(root), per_class=40, size=40)
    out = tmp_path / "preds"
    argv = [sys.executable, "-m", "catdog.commands", "predict", model_dir, str(root), "--out", str(out),
            "--shard-size", "2", "--no-progress", "--executor", "local"]
    job = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Once it writes, shards come fast: look often, and freeze the job the moment one is seen.
        wait_until(lambda: job.poll() is not None or features.committed(str(out), layout.PREDICTIONS_DIR), 300,
                   interval=0.01)
        os.killpg(job.pid, signal.SIGSTOP)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    kept = len(features.committed(str(out), layout.PREDICTIONS_DIR))
    assert job.returncode == -signal.SIGKILL and 1 <= kept < 40, "the kill should land mid-run"
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    paths = catdog.read_predictions(str(out)).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == len(list(root.rglob("*.jpg")))
    assert f"resumed     {kept} shards already committed" in again.stdout


def test_wrong_uses_are_one_line(trained, tmp_path, capsys):
    root, _, model_dir = trained
    cases = [
        (["predict", model_dir, root / "train", root / "test", "--out", tmp_path / "p"], "got 2 inputs"),
        (["predict", model_dir, root / "test", "--out", tmp_path / "p", "--top-k", "1"], "--top-k is for printed"),
        (["predict", model_dir, root / "test", "--out", tmp_path / "p.csv", "--overwrite"], "--overwrite goes with"),
        (["predict", model_dir, root / "test", "--from-table"], "--from-table goes with"),
    ]
    for argv, message in cases:
        code = commands.main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "p").exists()
