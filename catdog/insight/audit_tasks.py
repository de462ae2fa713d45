"""The audit in tasks, for vectors more than one process should hold: `findings`' methods, each task
reading its own rows of the Parquet (`sharded`'s pieces). The caller holds a label, a fold and the
K out-of-fold probabilities per row, and the flagged rows' names — never a vector.

1. Labels: a task per run of pieces reads the labels and splits, and which vectors are finite.
2. Folds: the rows are dealt into stratified folds here (`findings.fold_of`, as one process deals
   them); a task per fold reads the other folds' rows and fits the head — in memory
   (`findings.fold_head`: the same probabilities as one process) while those rows fit the task's
   memory, streamed beyond (StandardScaler and SGDClassifier(log_loss), a row group at a time,
   STREAM_EPOCHS passes) — and answers for its own fold's rows.
3. Outliers: a task per class holds that class's vectors (`findings.class_outliers`).
4. Near-duplicates: `sharded.search`, its neighbour lists kept in the report folder.
5. Names: a task per run of pieces holding flagged rows reads their paths and splits.

The tasks are plain functions run by whatever `map` the caller passes (`sharded.Mapper`): the
builtin one (`sharded.here`), or Ray tasks on a cluster (`catdog.cluster.tasks`).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catdog import storage
from catdog.errors import CatdogError
from catdog.insight import embeddings, findings, sharded
from catdog.store import features
from catdog.store.features import NO_LABEL

STREAM_EPOCHS = 5  # passes of a streamed fold head over the other folds' rows
STREAM_ALPHA = 1e-3  # its L2 penalty (as a streamed `catdog head` without validation)
RUN_ROWS = 65_536  # rows a labels or names task reads


@dataclass(frozen=True)
class Labelled:
    """A labels task's answer for a run of pieces, in row order."""

    start: int
    labels: pa.Array  # the label column as stored (null: unlabeled)
    splits: tuple[str, ...]  # the split names ...
    split_codes: np.ndarray  # ... and each row's, as an index into them
    finite: np.ndarray  # bool: the row's vector is finite


@dataclass(frozen=True)
class Plan:
    """What every fold and class task is given: each row's class (-1: not audited) and fold."""

    source: sharded.Source
    pieces: list[sharded.Piece]
    target: np.ndarray  # (n,) int16
    fold: np.ndarray  # (n,) int8
    classes: int
    width: int  # the vectors' length
    memory: int  # bytes of vectors a task holds in memory
    seed: int
    neighbours: int
    outlier_z: float


@dataclass(frozen=True)
class Found:
    """What the tasks found, for `audit` to report."""

    rows: int  # rows read, finite or not
    images: int  # labeled images audited
    classes: tuple[str, ...]
    issues: list[findings.LabelIssue]
    outliers: list[findings.Outlier]
    health: dict
    balance: dict
    folds: int
    notes: list[str]
    duplicates: sharded.Found
    streamed: bool  # the fold heads were streamed (their training rows exceeded a task's memory)
    tasks: dict[str, Counter]  # node -> {"tasks": n, "rows": rows read}


def labels(source: sharded.Source, label: str | None, run: list[sharded.Piece]) -> Labelled:
    """A task: the labels, splits and finite rows of a run of pieces."""
    columns = [source.column] + ([label] if label else []) + ([source.split_column] if source.split_column else [])
    parts, splits, finite = [], [], []
    for piece in run:
        table = sharded.read_piece(source, piece, columns)
        X = embeddings.vectors(table.column(source.column).combine_chunks(), source.column, source.location)
        finite.append(np.isfinite(X).all(axis=1))
        parts.append(table.column(label).combine_chunks() if label else pa.nulls(table.num_rows, pa.int64()))
        splits.append(sharded.piece_splits(source, piece, table))
    names, codes = np.unique(np.concatenate(splits), return_inverse=True)
    return Labelled(run[0].start, pa.concat_arrays(parts), tuple(names.tolist()), codes.astype(np.int16),
                    np.concatenate(finite))


def _rows(plan: Plan, piece: sharded.Piece, extra: list[str] = ()) -> tuple[np.ndarray, np.ndarray, pa.Table]:
    """A piece's vectors (float32, as stored) and row numbers, and its `extra` columns."""
    table = sharded.read_piece(plan.source, piece, [plan.source.column, *extra])
    X = embeddings.vectors(table.column(plan.source.column).combine_chunks(), plan.source.column, plan.source.location)
    return X, np.arange(piece.start, piece.start + len(X)), table


def fit_fold(plan: Plan, f: int) -> tuple[int, np.ndarray, np.ndarray, bool]:
    """A task: the head of fold `f`, fitted on the other folds' rows; (rows read, this fold's row
    numbers, their (m, K) probabilities, streamed)."""
    train = (plan.fold != f) & (plan.target >= 0)
    d = plan.width
    if int(train.sum()) * d * 4 > plan.memory:
        return _fit_fold_streamed(plan, f, train)
    X = np.empty((int(train.sum()), d), np.float32)
    tests, test_rows, filled = [], [], 0
    for piece in plan.pieces:
        Xp, numbers, _ = _rows(plan, piece)
        mine = train[numbers]
        X[filled : filled + mine.sum()] = Xp[mine]
        filled += int(mine.sum())
        held = plan.fold[numbers] == f
        held &= plan.target[numbers] >= 0
        tests.append(Xp[held])
        test_rows.append(numbers[held])
    head = findings.fold_head(X, plan.target[train].astype(np.int64), plan.seed)
    del X
    rows = np.concatenate(test_rows)
    return len(plan.target), rows, head.predict_proba(np.concatenate(tests)), False


def _fit_fold_streamed(plan: Plan, f: int, train: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, bool]:
    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    for piece in plan.pieces:
        Xp, numbers, _ = _rows(plan, piece)
        if train[numbers].any():
            scaler.partial_fit(Xp[train[numbers]])
    model = SGDClassifier(loss="log_loss", alpha=STREAM_ALPHA, random_state=plan.seed)
    rng = np.random.default_rng(plan.seed + f)
    classes = np.arange(plan.classes)
    for _ in range(STREAM_EPOCHS):
        for i in rng.permutation(len(plan.pieces)):
            Xp, numbers, _ = _rows(plan, plan.pieces[i])
            mine = train[numbers]
            if mine.any():
                model.partial_fit(scaler.transform(Xp[mine]), plan.target[numbers][mine].astype(np.int64), classes=classes)
    rows, P = [], []
    for piece in plan.pieces:
        Xp, numbers, _ = _rows(plan, piece)
        held = (plan.fold[numbers] == f) & (plan.target[numbers] >= 0)
        if held.any():
            rows.append(numbers[held])
            P.append(model.predict_proba(scaler.transform(Xp[held])))
    return len(plan.target) * (STREAM_EPOCHS + 2), np.concatenate(rows), np.concatenate(P), True


def class_outliers(plan: Plan, k: int) -> tuple[int, int, list[tuple[float, float, str, str]]]:
    """A task: class `k`'s outliers, (k, rows held, [(score, distance, path, split)])."""
    parts, paths, splits = [], [], []
    extra = [plan.source.path_column] + ([plan.source.split_column] if plan.source.split_column else [])
    for piece in plan.pieces:
        mine = plan.target[piece.start : piece.start + piece.rows] == k
        if not mine.any():
            continue
        X, _, table = _rows(plan, piece, extra)
        parts.append(X[mine])
        paths.append(table.column(plan.source.path_column).cast(pa.string()).to_numpy(zero_copy_only=False)[mine])
        splits.append(sharded.piece_splits(plan.source, piece, table)[mine])
    X = np.concatenate(parts)
    above, scores, distances = findings.class_outliers(X, plan.neighbours, plan.outlier_z)
    paths, splits = np.concatenate(paths), np.concatenate(splits)
    return k, len(X), [(float(s), float(d), str(paths[i]), str(splits[i])) for i, s, d in zip(above, scores, distances)]


def names(source: sharded.Source, job: tuple[list[sharded.Piece], np.ndarray]) -> dict[int, tuple[str, str]]:
    """A task: {row: (path, split)} of the wanted rows of a run of pieces."""
    run, wanted = job
    found = {}
    columns = [source.path_column] + ([source.split_column] if source.split_column else [])
    for piece in run:
        here = wanted[(wanted >= piece.start) & (wanted < piece.start + piece.rows)]
        if not len(here):
            continue
        table = sharded.read_piece(source, piece, columns)
        paths = table.column(source.path_column).cast(pa.string()).to_numpy(zero_copy_only=False)
        splits = sharded.piece_splits(source, piece, table)
        found.update({int(r): (str(paths[r - piece.start]), str(splits[r - piece.start])) for r in here})
    return found


def _row_labels(source: sharded.Source, label: str | None, listed: list[sharded.Piece], n: int, counted: sharded.Mapper,
                tasks: dict[str, Counter]) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, tuple[str, ...]]:
    """Every row's finiteness, split (an index into the split names) and label, and the classes,
    read by a task per run of pieces."""
    answers = []
    for where, done in counted(functools.partial(labels, source, label), sharded.split_runs(listed, RUN_ROWS)):
        tasks[where]["rows"] += len(done.finite)
        answers.append(done)
    answers.sort(key=lambda a: a.start)
    finite = np.concatenate([a.finite for a in answers])
    split_names = sorted({s for a in answers for s in a.splits})
    split = np.concatenate([np.searchsorted(split_names, np.array(a.splits, dtype=object))[a.split_codes]
                            if len(a.splits) else a.split_codes for a in answers])
    stored = pa.chunked_array([a.labels for a in answers])
    if source.features_column is None:
        y = stored.fill_null(NO_LABEL).to_numpy().astype(np.int64) if len(stored) else np.zeros(0, np.int64)
        classes_all = tuple(features.read_metadata(source.location).get("classes") or ())
    elif label:
        y, classes_all = embeddings.labels(stored)
    else:
        y, classes_all = np.full(n, NO_LABEL), ()
    return finite, split, split_names, y, classes_all


def find(source: sharded.Source, report: storage.Location, map_: sharded.Mapper, *, folds: int, seed: int,
         neighbours: int, outlier_z: float, duplicate_top: int, duplicate_threshold: float,
         memory: int) -> Found:
    """The audit of `source` by tasks that `map_` runs: label issues, outliers, class health and the
    near-duplicates (their lists under `report`/neighbours)."""
    tasks: dict[str, Counter] = {}
    counted = sharded.counting(map_, tasks)

    listed = sharded.pieces(source, counted)
    n = listed[-1].start + listed[-1].rows
    with source.location.fs.open_input_file(listed[0].file) as f:
        first = pq.ParquetFile(f)
        schema, width = first.schema_arrow, sharded.width(first, source)
    if source.features_column and source.split_column is None and "split" in schema.names:
        source = replace(source, split_column="split")  # as `embeddings.foreign` reads it
    label = "label" if source.features_column is None else source.label_column or ("label" if "label" in schema.names else None)
    if label and label not in schema.names:
        raise CatdogError(f"no column {label!r} in {source.location} (it has: {', '.join(schema.names)})")

    # 1. Labels, splits and finite rows, here as one value per row.
    finite, split, split_names, y, classes_all = _row_labels(source, label, listed, n, counted, tasks)
    notes = []
    if not finite.all():
        bad = names(source, (listed, np.flatnonzero(~finite)))
        notes.append(embeddings.left_out_note(np.array([bad[r][0] for r in sorted(bad)], dtype=object)))
    if int(finite.sum()) < 2:
        raise CatdogError(f"an audit needs at least two images with finite vectors; {source.location} has {int(finite.sum())}")

    audited = (y >= 0) & finite
    chosen = findings.audited(y[audited], classes_all, folds, source.location)
    classes, used = chosen.classes, chosen.folds
    notes += chosen.notes
    target = np.full(n, -1, np.int16)
    target[audited] = chosen.y
    fold = np.full(n, -1, np.int8)
    fold[audited] = findings.fold_of(target[audited], used, seed)
    balance = {s: {c: int(((split[audited] == i) & (target[audited] == k)).sum()) for k, c in enumerate(classes)}
               for i, s in enumerate(split_names) if (split[audited] == i).any()}

    # 2. The out-of-fold probabilities, a task per fold.
    plan = Plan(source, listed, target, fold, len(classes), width, memory, seed, neighbours, outlier_z)
    P, streamed = np.zeros((n, len(classes))), False
    for where, (read_rows, rows, probabilities, was_streamed) in counted(functools.partial(fit_fold, plan), list(range(used))):
        tasks[where]["rows"] += read_rows
        P[rows] = probabilities
        streamed |= was_streamed
    rows = np.flatnonzero(audited)
    y_audited, P_audited = target[rows].astype(np.int64), P[rows]
    ranked = findings.flagged(P_audited, y_audited)
    if streamed:
        notes.append(f"the fold heads were streamed (SGD logistic regression, {STREAM_EPOCHS} passes): the other "
                     "folds' vectors exceed a task's memory (--task-memory)")

    # 3. Outliers, a task per class.
    found_outliers = []
    for where, (k, held, found) in counted(functools.partial(class_outliers, plan), list(range(len(classes)))):
        tasks[where]["rows"] += held
        found_outliers += [(score, distance, path, split_name, classes[k]) for score, distance, path, split_name in found]

    # 5. The flagged rows' names.
    wanted = np.sort(rows[ranked])
    named: dict[int, tuple[str, str]] = {}
    runs = [r for r in sharded.split_runs(listed, RUN_ROWS)
            if ((wanted >= r[0].start) & (wanted < r[-1].start + r[-1].rows)).any()]
    for where, done in counted(functools.partial(names, source), [(r, wanted) for r in runs]):
        named.update(done)
    issues = [findings.LabelIssue(*named[int(rows[i])], classes[y_audited[i]], classes[int(P_audited[i].argmax())],
                                  round(float(P_audited[i, y_audited[i]]), 6), rank) for rank, i in enumerate(ranked, 1)]

    # 4. Near-duplicates among every row, labeled or not.
    duplicates = sharded.search(source, report, counted, top=duplicate_top, threshold=duplicate_threshold,
                                shard_bytes=memory)
    for where, t in duplicates.tasks.items():
        tasks.setdefault(where, Counter())["rows"] += t["rows"]
    return Found(n, len(rows), classes, issues, findings.ranked_outliers(found_outliers), findings.class_health(P_audited, y_audited, classes), balance, used,
                 notes, duplicates, streamed, tasks)
