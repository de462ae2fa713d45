"""`catdog audit` on a generated folder with planted problems: misfiled images are flagged as label
issues, the outliers are those an independent computation finds, a copied image is a near-duplicate
across splits, and the report's numbers agree; the same features written by another tool give the
same report."""

import csv
import json
import os
import re
import shutil

import numpy as np
import pytest

from catdog import commands
from catdog.config import AuditConfig, ExtractConfig, SimilarConfig
from catdog.errors import CatdogError
from catdog.insight import audit
from catdog.store import features
from tests import generators

# Floors measured on this set (4 shape classes, 40 each, 5 % misfiled, random-weight VGG16 at 32 px,
# 5 folds): precision 0.89 (8 of 9 flagged), recall 1.00 (8 of 8) when this test was written; the floors
# leave room for other CPUs' rounding, not for a worse method.
PRECISION_FLOOR, RECALL_FLOOR = 0.8, 0.75


def plant(root, classes, fraction: float, seed: int) -> dict[str, str]:
    """Move `fraction` of the images into another class folder of their split: {new path: true class}."""
    rng = np.random.default_rng(seed)
    files = sorted(p for p in root.rglob("*.png"))
    moved = {}
    for path in rng.choice(files, size=round(fraction * len(files)), replace=False):
        true = path.parent.name
        wrong = classes[(classes.index(true) + 1 + int(rng.integers(len(classes) - 1))) % len(classes)]
        dest = path.parent.parent / wrong / f"moved-{path.name}"
        shutil.move(path, dest)
        moved[dest.relative_to(root).as_posix()] = true
    return moved


def kth_neighbour_outliers(data, config: AuditConfig) -> dict[str, float]:
    """Outliers computed here with numpy alone: per class, the cosine distance to the k-th nearest
    image of the class; robust z-scores (median, 1.4826 MAD) above the threshold."""
    found = {}
    for label in np.unique(data.y):
        X = data.X[data.y == label].astype(np.float64)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        distances = np.sort(1 - X @ X.T, axis=1)  # column 0: the image itself
        kth = distances[:, min(config.neighbours, len(X) - 1)]
        z = (kth - np.median(kth)) / (1.4826 * np.median(np.abs(kth - np.median(kth))))
        found.update({str(p): float(v) for p, v in zip(data.paths[data.y == label], z) if v > config.outlier_z})
    return found


@pytest.mark.slow
def test_planted_label_errors_and_outliers_are_found(tmp_path, capsys):
    from catdog.extraction import extract

    root = tmp_path / "shapes"
    generators.make_shapes_folder(str(root), classes=4, per_class=40, size=40, seed=3)
    classes = generators.shape_classes(4)
    moved = plant(root, classes, 0.05, seed=1)
    original = next(p for p in sorted((root / "train" / classes[0]).iterdir()) if not p.name.startswith("moved"))
    copy = root / "test" / classes[0] / "copy.png"
    shutil.copy(original, copy)  # leakage: a train image in test too
    out = str(tmp_path / "out")
    extract.run(ExtractConfig(root=str(root), out=out, weights="none", image_size=32, shard_size=32, progress=False,
                              executor="local"))

    assert commands.main(["audit", out]) == 0
    printed = capsys.readouterr().out
    report = os.path.join(out, "audit")
    with open(os.path.join(report, "label_issues.csv")) as f:
        issues = list(csv.DictReader(f))
    flagged = {row["path"] for row in issues}
    hits = flagged & set(moved)
    precision, recall = len(hits) / max(len(flagged), 1), len(hits) / len(moved)
    assert precision >= PRECISION_FLOOR and recall >= RECALL_FLOOR, (precision, recall, len(moved))
    assert list(issues[0]) == ["path", "split", "given", "suggested", "self_confidence", "rank"]
    assert [int(r["rank"]) for r in issues] == list(range(1, len(issues) + 1))
    confidences = [float(r["self_confidence"]) for r in issues]
    assert confidences == sorted(confidences)  # the least confident first
    right = [r for r in issues if r["path"] in moved]
    assert sum(r["suggested"] == moved[r["path"]] for r in right) >= 0.8 * len(right)

    with open(os.path.join(report, "outliers.csv")) as f:
        rows = list(csv.DictReader(f))
    outliers = [row["path"] for row in rows]
    expected = kth_neighbour_outliers(features.load(out), AuditConfig(features=out))
    assert {r["path"]: float(r["score"]) for r in rows} == pytest.approx(expected, abs=1e-2)
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)

    record = json.load(open(os.path.join(report, "audit.json")))
    assert record["label_issues"] == len(issues) and record["outliers"] == len(outliers)
    total = sum(sum(row) for row in record["health"]["confusion"])
    assert total == record["images"] == 4 * 40 + 1
    diagonal = sum(record["health"]["confusion"][k][k] for k in range(4))
    assert record["health"]["accuracy"] == pytest.approx(diagonal / total, abs=1e-4)
    assert sum(sum(per.values()) for per in record["balance"].values()) == total
    assert os.path.getsize(os.path.join(report, "label_issues.png")) > 0 and os.path.getsize(os.path.join(report, "outliers.png")) > 0
    assert f"label issues {len(issues)} " in printed and "label_issues.csv" in printed

    with open(os.path.join(report, "duplicates.csv")) as f:
        pairs = list(csv.DictReader(f))
    planted = {original.relative_to(root).as_posix(), copy.relative_to(root).as_posix()}
    found = [p for p in pairs if {p["path_a"], p["path_b"]} == planted]
    assert found and float(found[0]["cosine"]) > 0.9999 and found[0]["across_splits"] == "1"
    assert record["duplicates"] == len(pairs) and record["across_splits"] == sum(p["across_splits"] == "1" for p in pairs) >= 1

    # The same vectors as another tool writes them (clip-retrieval style columns): the same report.
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = features.load(out)
    foreign = tmp_path / "img_emb.parquet"
    pq.write_table(pa.table({"image_path": data.paths.astype(str), "embedding": pa.array(list(data.X), pa.list_(pa.float32())),
                             "label": [data.classes[k] for k in data.y], "split": data.splits.astype(str)}), foreign)
    assert commands.main(["audit", str(foreign), "--features-column", "embedding", "--path-column", "image_path",
                          "--out", str(tmp_path / "foreign")]) == 0
    for name in ("label_issues.csv", "outliers.csv", "duplicates.csv"):
        with open(tmp_path / "foreign" / name) as a, open(os.path.join(report, name)) as b:
            assert list(csv.reader(a)) == list(csv.reader(b)), name


def test_settings_are_checked_in_one_line():
    with pytest.raises(CatdogError, match="--folds must be at least 2, got 1"):
        AuditConfig(features="f", folds=1)
    with pytest.raises(CatdogError, match="--outlier-z must be positive"):
        AuditConfig(features="f", outlier_z=0)


def test_foreign_embeddings_are_read_as_catdog_reads_its_own(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from catdog.insight import embeddings
    from catdog.store.features import NO_LABEL

    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    pq.write_table(pa.table({"uri": ["s3://b/a.jpg", "s3://b/b.jpg", "c.jpg", "d.jpg"],
                             "vec": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 3),
                             "y": pa.array([10, 2, None, 2], pa.int64())}), tmp_path / "e.parquet")
    config = AuditConfig(features=str(tmp_path / "e.parquet"), features_column="vec", path_column="uri", label_column="y")
    data = embeddings.load(config)
    np.testing.assert_array_equal(data.X, X)
    assert data.classes == ("2", "10") and list(data.y) == [1, 0, NO_LABEL, 0] and set(data.splits) == {"all"}
    pq.write_table(pa.table({"path": ["a", "b"], "vec": pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32()))}),
                   tmp_path / "ragged.parquet")
    with pytest.raises(CatdogError, match="vectors of different lengths"):
        embeddings.load(AuditConfig(features=str(tmp_path / "ragged.parquet"), features_column="vec"))
    with pytest.raises(CatdogError, match=r"no column 'emb' in .*ragged.parquet \(it has: path, vec\)"):
        embeddings.load(AuditConfig(features=str(tmp_path / "ragged.parquet"), features_column="emb"))
    with pytest.raises(CatdogError, match="go with --features-column"):
        AuditConfig(features="f", label_column="y")


def test_an_audit_after_a_change_searches_only_the_changed_images_for_duplicates(tmp_path, monkeypatch):
    """Embeddings read in batches of 64 rows; the second audit's duplicates equal a fresh audit's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from catdog.insight import audit, embeddings

    monkeypatch.setattr(embeddings, "BATCH_ROWS", 64)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 150)
    X = np.maximum(rng.normal(0, 1, (300, 24)) + y[:, None] * 0.8, 0).astype(np.float32)
    X[250] = X[3] * 1.5  # a duplicate from the start

    def audited(X, paths, report):
        pq.write_table(pa.table({"path": paths, "label": y[: len(X)], "vec": list(X)}), tmp_path / "e.parquet")
        return audit.run(AuditConfig(features=str(tmp_path / "e.parquet"), features_column="vec", report_dir=str(report)))

    paths = [f"{i}.jpg" for i in range(300)]
    first = audited(X, paths, tmp_path / "r")
    assert first.duplicate_update is None and [(p.a, p.b) for p in first.duplicates] == [("3.jpg", "250.jpg")]
    X[100] = X[200]  # changed: now a copy of another
    second = audited(X, paths, tmp_path / "r")
    assert second.duplicate_update.added == 1 and second.duplicate_search is None
    fresh = audited(X, paths, tmp_path / "fresh")
    assert fresh.duplicate_update is None and second.duplicates == fresh.duplicates
    assert {(p.a, p.b) for p in second.duplicates} == {("3.jpg", "250.jpg"), ("100.jpg", "200.jpg")}
    # Vectors of another length in a later batch are refused in one line, as in the first.
    pq.write_table(pa.table({"path": paths[:100], "vec": list(X[:64]) + list(X[64:100, :10])}), tmp_path / "mixed.parquet")
    with pytest.raises(CatdogError, match="vectors of different lengths"):
        embeddings.load(AuditConfig(features=str(tmp_path / "mixed.parquet"), features_column="vec"))


def _embeddings(tmp_path, X, labels, name="e.parquet"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": [f"{i}.jpg" for i in range(len(X))], "label": labels, "vec": list(X)}), tmp_path / name)
    return str(tmp_path / name)


def test_rows_with_nan_or_infinite_vectors_are_left_out_counted_and_named(tmp_path):
    """Such a row has no cosine with anything and no head can be fitted on it: similar and audit leave
    it out and say which, and find on the rest what they find without it."""
    from catdog.insight import similar

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 30)
    X = np.maximum(rng.normal(0, 1, (60, 16)) + y[:, None], 0).astype(np.float32)
    X[40] = X[5] * 2  # a near-duplicate pair among the finite rows
    bad = X.copy()
    bad[7, 3], bad[12, 0] = np.nan, np.inf
    keep = np.setdiff1d(np.arange(60), [7, 12])
    dirty = _embeddings(tmp_path, bad, y)
    clean = _embeddings(tmp_path, X[keep], y[keep], "clean.parquet")
    for run, config in ((similar.run, SimilarConfig), (audit.run, AuditConfig)):
        report = run(config(features=dirty, features_column="vec", report_dir=str(tmp_path / run.__module__)))
        (note,) = [n for n in report.notes if "left out" in n]
        assert note.startswith("2 images left out") and "7.jpg" in note and "12.jpg" in note
        pairs = report.pairs if run is similar.run else report.duplicates
        assert [(p.a, p.b) for p in pairs] == [("5.jpg", "40.jpg")]
    reference = audit.run(AuditConfig(features=clean, features_column="vec", report_dir=str(tmp_path / "ref")))
    dirty_audit = audit.run(AuditConfig(features=dirty, features_column="vec", report_dir=str(tmp_path / "d")))
    # The same 58 images audited: the clean file names them 0..57, the dirty one by their own numbers.
    assert dirty_audit.images == reference.images == 58
    renamed = {f"{j}.jpg": f"{i}.jpg" for j, i in enumerate(keep)}
    assert [renamed[i.path] for i in reference.label_issues] == [i.path for i in dirty_audit.label_issues]


def test_one_image_is_one_line_for_similar_and_audit(tmp_path):
    from catdog.insight import similar

    one = _embeddings(tmp_path, np.ones((1, 4), np.float32), [0])
    for run, config in ((similar.run, SimilarConfig), (audit.run, AuditConfig)):
        with pytest.raises(CatdogError, match=r"needs at least two images with finite vectors; .*e.parquet has 1$"):
            run(config(features=one, features_column="vec"))


def test_a_class_without_images_is_left_out_and_said(tmp_path):
    """An empty class folder is a class of OUT with no rows: the audit runs on the others and says so."""
    from catdog import storage
    from catdog.extraction.imagefolder import ImageSet
    from catdog.extraction.metadata import feature_metadata
    from catdog.store import features
    from tests.test_features import DIM

    classes = ("birds", "cats", "dogs")
    config = ExtractConfig(root="r", out="o", image_size=32)
    meta = feature_metadata(config, ImageSet(storage.resolve("r"), "split", classes, (), (), ()), {"source": "none", "seed": 0})
    out = storage.resolve(str(tmp_path / "out"))
    writer = features.ShardWriter(out, features.feature_schema(meta), classes)
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 2], 12)  # cats and dogs; no birds
    X = (rng.random((24, DIM)) + labels[:, None]).astype(np.float32)
    writer.write("train", "a.parquet", [f"train/{classes[k]}/{i}.jpg" for i, k in enumerate(labels)], labels, X, [])
    report = audit.run(AuditConfig(features=out.path))
    assert report.classes == ("cats", "dogs") and report.images == 24
    assert "classes without labeled images left out: birds" in report.notes
    assert {i.given for i in report.label_issues} <= {"cats", "dogs"}


def test_the_summary_names_only_files_that_exist(tmp_path):
    """Another tool's embeddings get no contact sheets, and the summary does not claim them."""
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 20)
    path = _embeddings(tmp_path, (rng.random((40, 8)) + y[:, None]).astype(np.float32), y)
    report = audit.run(AuditConfig(features=path, features_column="vec", report_dir=str(tmp_path / "r")))
    assert report.sheets == () and not list((tmp_path / "r").glob("*.png"))
    text = "\n".join(report.lines())
    assert "and contact sheets" not in text
    for named in re.findall(r"(/\S+\.(?:csv|json|png))", text):
        assert os.path.exists(named), named
