"""Bad inputs and damaged files as a stranger tries them: each case runs `catdog` (or a Python API
call) in a process of its own and is clean when it ends as promised — a one-line error and a
non-zero exit for a mistake, a note for data left out, no traceback, and no file named that is not
there. Run it alone (`python -m tests.probes`) or through tests/test_probes.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]  # after `python -m catdog.commands` (or `-c CODE` for the API)
    exit: int  # the exit code promised
    says: str  # a regular expression the output must match
    api: bool = False


@dataclass(frozen=True)
class Outcome:
    case: Case
    code: int
    out: str
    err: str
    missing: tuple[str, ...]  # files the output names that were not there when the command ended

    @property
    def problems(self) -> list[str]:
        found = []
        if self.code != self.case.exit:
            found.append(f"exit {self.code}, not {self.case.exit}")
        if "Traceback" in self.err or "Traceback" in self.out:
            found.append("a traceback")
        if self.case.exit and (self.err.strip().count("\n") or not self.err.strip()):
            found.append(f"{len(self.err.strip().splitlines())} lines on stderr, not one")
        if not re.search(self.case.says, self.out + self.err):
            found.append(f"nothing matching {self.case.says!r}")
        found += [f"names {named}, which does not exist" for named in self.missing]
        return found


def _rewrite_head(model: Path, change) -> None:
    import skops.io

    path = model / "head.skops"
    skops.io.dump(change(skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))), path)


def _edit_json(model: Path, change) -> None:
    info = json.loads((model / "head.json").read_text())
    change(info)
    (model / "head.json").write_text(json.dumps(info))


def _embeddings(path: Path, X: np.ndarray, labels) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": [f"img/{i}.jpg" for i in range(len(X))], "label": labels, "vec": list(X)}), path)
    return str(path)


def cases(tmp: Path) -> list[Case]:
    """The cases, with the folders and files they need made under `tmp` (no Ray, no TensorFlow model)."""
    import shutil

    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    import catdog
    from tests.test_features import write_dataset

    out, _ = write_dataset(tmp, {("train", "a.parquet"): ([0, 1] * 10, 2), ("test", "b.parquet"): ([0, 1] * 5, 4)})
    model = tmp / "model"
    catdog.fit_head(out.path, str(model))
    from catdog.vision import convbase

    # The features written here name random weights as an older catdog did; a model folder made now
    # names them as `--weights none` does today, so that loading it gets as far as the images.
    _edit_json(model, lambda i: i["features"].update(weights=convbase.resolve_weights("none", 0, 32).identity))
    image = tmp / "photo.png"
    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)

    def variant(name, change, edit=_rewrite_head):
        copy = tmp / name
        shutil.copytree(model, copy)
        edit(copy, change)
        return str(copy)

    negated = variant("negated", lambda h: make_pipeline(FunctionTransformer(np.negative), *[s for _, s in h.steps]))
    dummy = variant("dummy", lambda h: make_pipeline(h.steps[0][1], DummyClassifier().fit(
        np.zeros((2, h.steps[0][1].n_features_in_)), [0, 1])))
    wider = variant("wider", lambda i: i["features"].update(feature_dim=i["features"]["feature_dim"] + 1), _edit_json)
    wrong_type = variant("wrong-type", lambda i: i["head"].update(seed="0"), _edit_json)
    rng = np.random.default_rng(0)
    one = _embeddings(tmp / "one.parquet", np.ones((1, 8), np.float32), ["cats"])
    X = (rng.random((40, 8)) + np.repeat([0, 1], 20)[:, None]).astype(np.float32)
    clean = _embeddings(tmp / "clean.parquet", X, ["cats", "dogs"] * 20)
    X[3, 1], X[9, 0] = np.nan, np.inf
    dirty = _embeddings(tmp / "dirty.parquet", X, ["cats", "dogs"] * 20)
    emb = ["--features-column", "vec"]
    api = "import catdog\n"
    return [
        Case("a numpy function in head.skops", ["predict", negated, str(image)], 2, r"holds types catdog does not load: .*numpy\.negative"),
        Case("a DummyClassifier head", ["predict", dummy, str(image)], 2, r"sklearn\.dummy\.DummyClassifier"),
        Case("head.skops narrower than head.json", ["predict", wider, str(image)], 2, r"does not fit head\.json"),
        Case("a string for an integer in head.json", ["predict", wrong_type, str(image)], 2, r"head\.json is damaged \(.*seed must be an integer"),
        Case("similar on one row", ["similar", one, *emb, "--out", str(tmp / "s1")], 2, r"needs at least two images"),
        Case("audit on one row", ["audit", one, *emb, "--out", str(tmp / "a1")], 2, r"needs at least two images"),
        Case("similar with NaN and inf", ["similar", dirty, *emb, "--out", str(tmp / "s2")], 0, r"2 images left out: .*img/3\.jpg, img/9\.jpg"),
        Case("audit with NaN and inf", ["audit", dirty, *emb, "--out", str(tmp / "a2")], 0, r"2 images left out: .*img/3\.jpg, img/9\.jpg"),
        Case("audit of another tool's embeddings", ["audit", clean, *emb, "--out", str(tmp / "a3")], 0, r"report +\S+audit\.json\n"),
        Case("extract(123, None)", ["-c", api + "catdog.extract(123, None)"], 1, r"root must be a string", api=True),
        Case("batch_size=2.5", ["-c", api + "catdog.extract('p', 'o', batch_size=2.5)"], 1, r"batch_size must be an integer", api=True),
        Case("predict([])", ["-c", api + f"catdog.load_model({str(model)!r}).predict([])"], 1, r"no images given", api=True),
    ]


API_RUNNER = """
import sys
import catdog
try:
    exec(sys.argv[1])
except catdog.CatdogError as exc:
    print(f"CatdogError: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def run(case: Case) -> Outcome:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = ([sys.executable, "-c", API_RUNNER, case.argv[1]] if case.api
            else [sys.executable, "-m", "catdog.commands", *case.argv])
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    err = "\n".join(line for line in done.stderr.splitlines() if not _library_chatter(line))
    named = re.findall(r"(/\S+\.(?:csv|json|png|parquet))", done.stdout)
    return Outcome(case, done.returncode, done.stdout, err, tuple(n for n in named if not os.path.exists(n)))


def _library_chatter(line: str) -> bool:
    """TensorFlow's start-up lines, which no setting silences where it loads (README: The commands)."""
    return bool(re.match(r"^(E0000|W0000|I0000|WARNING: All log messages)", line))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="catdog-probes-") as tmp:
        outcomes = [run(c) for c in cases(Path(tmp))]
    for o in outcomes:
        print(f"{'clean' if not o.problems else 'DIRTY'}  {o.case.name}" + "".join(f"\n       {p}" for p in o.problems))
    dirty = sum(bool(o.problems) for o in outcomes)
    print(f"{len(outcomes) - dirty} clean, {dirty} dirty")
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
