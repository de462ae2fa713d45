"""The audit cut into tasks (run here one after another by `sharded.here`): its findings equal the
audit of one process holding every vector; streamed fold heads find what the in-memory ones find."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catdog import storage
from catdog.config import AuditConfig
from catdog.errors import CatdogError
from catdog.insight import audit, audit_tasks, sharded
from tests import generators

SETTINGS = dict(folds=5, seed=0, neighbours=10, outlier_z=3.5, duplicate_top=5, duplicate_threshold=0.95)


def same_findings(local, found):
    assert found.images == local.images and found.classes == local.classes
    assert [(i.path, i.split, i.given, i.suggested, i.rank) for i in found.issues] == \
        [(i.path, i.split, i.given, i.suggested, i.rank) for i in local.label_issues]
    np.testing.assert_allclose([i.self_confidence for i in found.issues],
                               [i.self_confidence for i in local.label_issues], atol=1e-6)
    assert found.outliers == local.outliers and found.health == local.health and found.balance == local.balance
    assert [(a, b) for a, _, b, _, _ in found.duplicates.pairs] == [(p.a, p.b) for p in local.duplicates]


def test_tasks_on_catdogs_out_find_what_one_process_finds(tmp_path):
    out = generators.features_out(tmp_path, 3_000, dim=16, classes=3)
    local = audit.run(AuditConfig(features=out.path, report_dir=str(tmp_path / "here"), executor="local"))
    assert len(local.label_issues) > 50 and local.outliers  # overlapping classes: plenty to find
    ran = []

    def recorded(fn, items, whole_node=False):
        ran.append((fn.func.__name__, len(items)))
        yield from sharded.here(fn, items, whole_node)

    found = audit_tasks.find(sharded.Source(out), storage.resolve(str(tmp_path / "tasks")), recorded,
                             memory=2_400 * 16 * 4, **SETTINGS)  # the folds' 2,400 training rows: in memory
    same_findings(local, found)
    assert not found.streamed and found.rows == 3_000
    assert ran[:5] == [("row_groups", 1), ("labels", 1), ("fit_fold", 5), ("class_outliers", 3), ("names", 1)]
    assert found.tasks["this process"]["tasks"] == sum(n for _, n in ran)


def test_another_tools_embeddings_with_names_for_labels_a_nan_row_and_unlabeled_rows(tmp_path):
    data = generators.embeddings(1_200, 12, duplicates=6, clusters=3, spread=0.8, seed=5)
    labels = np.array(["ant", "bee", "cow"], dtype=object)[data.centres]
    flipped = np.random.default_rng(0).choice(1_194, 40, replace=False)
    labels[flipped] = np.array(["ant", "bee", "cow"], dtype=object)[(data.centres[flipped] + 1) % 3]
    labels[[3, 900]] = None  # unlabeled: searched for duplicates, not audited
    data.X[11] = np.nan
    split = np.where(np.arange(1_200) % 5 == 0, "test", "train")
    folder = tmp_path / "emb"
    folder.mkdir()
    for k, part in enumerate(np.array_split(np.arange(1_200), 3)):
        pq.write_table(pa.table({"path": [f"img{i:05d}.jpg" for i in part], "class": pa.array(labels[part], pa.string()),
                                 "split": split[part], "vec": pa.FixedSizeListArray.from_arrays(pa.array(data.X[part].ravel()), 12)}),
                       folder / f"part-{k}.parquet", row_group_size=150)
    config = AuditConfig(features=str(folder), features_column="vec", label_column="class", report_dir=str(tmp_path / "here"),
                         executor="local")
    local = audit.run(config)
    found = audit_tasks.find(sharded.Source(storage.resolve(str(folder)), "vec", label_column="class"),
                             storage.resolve(str(tmp_path / "tasks")), sharded.here, memory=1 << 20, **SETTINGS)
    same_findings(local, found)
    assert found.images == 1_197 and found.classes == ("ant", "bee", "cow")
    assert {p for p in (i.path for i in found.issues)} & {f"img{i:05d}.jpg" for i in flipped}
    assert [n for n in found.notes if "left out" in n] == [n for n in local.notes if "left out" in n]
    assert "img00011.jpg" in found.notes[0]


def test_streamed_fold_heads_find_most_of_what_the_in_memory_ones_find(tmp_path):
    out = generators.features_out(tmp_path, 3_000, dim=16, classes=3)
    source, report = sharded.Source(out), storage.resolve(str(tmp_path / "r"))
    whole = audit_tasks.find(source, report, sharded.here, memory=1 << 20, **SETTINGS)
    streamed = audit_tasks.find(source, report, sharded.here, memory=2_000 * 16 * 4, **SETTINGS)  # < 2,400 training rows
    assert streamed.streamed and not whole.streamed
    assert any("streamed" in n for n in streamed.notes)
    agreed = {i.path for i in whole.issues} & {i.path for i in streamed.issues}
    assert len(agreed) >= 0.6 * len(whole.issues)
    assert abs(streamed.health["accuracy"] - whole.health["accuracy"]) < 0.03
    assert streamed.outliers == whole.outliers  # the outliers do not depend on the heads


def test_fewer_than_two_classes_is_one_line(tmp_path):
    X = generators.embeddings(50, 4, seed=1).X
    pq.write_table(pa.table({"path": [f"{i}.jpg" for i in range(50)], "label": [0] * 50, "vec": list(X)}),
                   tmp_path / "e.parquet")
    with pytest.raises(CatdogError, match="fewer than two classes with labeled images: nothing to audit"):
        audit_tasks.find(sharded.Source(storage.resolve(str(tmp_path / "e.parquet")), "vec"),
                         storage.resolve(str(tmp_path / "r")), sharded.here, memory=1 << 20, **SETTINGS)
