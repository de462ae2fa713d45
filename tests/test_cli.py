"""The command line: thin over the library, one-line errors for user mistakes."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest

from catdog import commands
from catdog.store import features
from tests.conftest import random_pixels, save_image


@pytest.fixture
def tiny_root(tmp_path):
    save_image(str(tmp_path / "in" / "cats" / "a.jpg"), random_pixels(0))
    return str(tmp_path / "in")


def run(capsys, *argv):
    code = commands.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["extract", "/nonexistent/images", "--out", "/tmp/x"], "input folder not found"),
        (["extract", "ROOT", "--out", "/tmp/x", "--image-size", "16"], "--image-size must be at least 32"),
        (["extract", "ROOT", "--out", "/tmp/x", "--weights", "/nonexistent/w.h5"], "weights file not found"),
        (["extract", "ROOT", "--out", "ROOT", "--weights", "none"], "is inside the input folder"),
        (["extract", "ROOT", "--out", "ROOT/cats/features", "--weights", "none"], "is inside the input folder"),
    ],
)
def test_user_mistakes_are_one_line(capsys, tiny_root, argv, message):
    code, _, err = run(capsys, *[a.replace("ROOT", tiny_root) for a in argv])
    assert code == 2
    assert err.startswith("catdog: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("files, message", [
    (["cats/a.jpg", "dogs/b.jpg"], "train-e2e needs ROOT/train/CLASS/* and ROOT/validation/CLASS/*"),
    (["train/cats/a.jpg", "train/dogs/b.jpg"], "train-e2e needs ROOT/train/CLASS/* and ROOT/validation/CLASS/*"),
    (["train/cats/a.jpg", "validation/cats/b.jpg"], "at least two classes"),
    (["train/cats/a.jpg", "validation/cats/b.jpg", "validation/dogs/c.jpg"], "no train images of class dogs in "),
])
def test_train_e2e_refuses_a_folder_it_cannot_train_on(capsys, tmp_path, files, message):
    for i, name in enumerate(files):
        save_image(str(tmp_path / "in" / name), random_pixels(i))
    code, _, err = run(capsys, "train-e2e", str(tmp_path / "in"), "--out", str(tmp_path / "run"), "--weights", "none")
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # refused before Ray or any output


def test_weights_file_that_is_not_vgg16_is_refused(capsys, tiny_root, tmp_path):
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(str(tmp_path / "other.weights.h5"))
    code, _, err = run(capsys, "extract", tiny_root, "--out", str(tmp_path / "o"),
                       "--weights", str(tmp_path / "other.weights.h5"), "--image-size", "32")
    assert code == 2 and "is not a VGG16 notop weights file" in err and err.count("\n") == 1


@pytest.mark.slow
def test_demo_runs_end_to_end_and_quietly(tmp_path):
    """The README's first command, as a user runs it: a fresh process with its own embedded Ray."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "TF_CPP_MIN_LOG_LEVEL", "CATDOG_VERBOSE")}
    done = subprocess.run([sys.executable, "-m", "catdog.commands", "demo", "--dir", str(tmp_path / "demo"), "--per-class", "4",
                           "--image-size", "32"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "weights: none" in done.stdout and "images      9" in done.stdout  # 8 and the planted copy
    assert len(features.load(str(tmp_path / "demo" / "features")).paths) == 9
    # The audit, and a line for each planted problem, found or not, as its CSVs say.
    audit = tmp_path / "demo" / "features" / "audit"
    flagged = {row["path"] for row in csv.DictReader(open(audit / "label_issues.csv"))}
    planted = json.load(open(tmp_path / "demo" / "planted.json"))
    for path, shows in planted["misfiled"]:
        said = "found" if path in flagged else "not flagged"
        assert re.search(rf"^  {re.escape(path)} shows {shows}: {said}", done.stdout, re.M), done.stdout
    original, copy = planted["duplicate"]
    pairs = {frozenset((r["path_a"], r["path_b"])) for r in csv.DictReader(open(audit / "duplicates.csv"))}
    said = "found" if frozenset((original, copy)) in pairs else "not flagged"
    assert f"  {copy} copies {original}: {said}" in done.stdout and "audited     9 labeled images" in done.stdout
    # The whole recipe: the head's table for every split, then the figures it names, each written.
    report = json.load(open(tmp_path / "demo" / "model" / "report.json"))
    for split, m in report["splits"].items():
        assert re.search(rf"^{split}\s+{m['n']}\s+{m['accuracy']:.3f}", done.stdout, re.M), done.stdout
    named = re.findall(r"^  (\S+\.png)", done.stdout, re.M)
    assert any(n.endswith(".cam.png") for n in named) and any(n.endswith("confusion.png") for n in named)
    assert all(os.path.getsize(n) > 0 for n in named)
    # No Ray internals and nothing forwarded from the actors: the progress bar, and the start-up lines
    # TensorFlow's native code writes to this process's stderr when explain loads it (catdog leaves
    # file descriptor 2 alone, so that a fatal error there is never hidden).
    for chatter in ("INFO", "streaming_executor", "Progress bars disabled", "Token authentication", "core_worker",
                    "constructor arguments", "pid="):
        assert chatter not in done.stderr, done.stderr
    lines = [line for line in done.stderr.replace("\r", "\n").split("\n") if line.strip()]
    assert "extract: 100%" in done.stderr, done.stderr
    native = re.compile(r"^[IWE]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] |^WARNING: All log messages before absl")
    assert all(line.startswith("extract:") or native.match(line) for line in lines), done.stderr


@pytest.mark.parametrize("argv, message", [
    (["explain", "NOWHERE", "x.jpg", "--out", "cams"], "is not a catdog model folder"),
    (["similar", "NOWHERE", "--out", "dupes"], "no features under"),
    (["similar", "NOWHERE", "--out", "dupes", "--threshold", "2"], "--threshold is a cosine similarity in [-1, 1]"),
    (["predict", "NOWHERE", "x.jpg", "--top-k", "0"], "--top-k must be at least 1"),
])
def test_explain_similar_predict_mistakes_are_one_line(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *[str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in argv])
    assert code == 2 and message in err and err.count("\n") == 1


def test_the_command_line_starts_without_the_heavy_libraries():
    """`catdog --help` and the parser of every command load no TensorFlow, Ray or scikit-learn: a
    command loads what it runs, when it runs it (a user's mistake is said in well under a second)."""
    probe = ("import sys; from catdog import commands; commands.build_parser(); "
             "print(sorted({'tensorflow', 'keras', 'ray', 'sklearn', 'faiss'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
