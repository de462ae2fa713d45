"""Metrics against independent computations, for two classes and for many."""

import numpy as np

from catdog.heads import metrics


def two_columns(p):
    return np.column_stack([1 - p, p])


def pairwise_auc(pos, neg):
    pairs = [(a, b) for a in pos for b in neg]
    return sum((a > b) + 0.5 * (a == b) for a, b in pairs) / len(pairs)


def test_two_classes_by_hand():
    p = np.array([0.9, 0.2, 0.6, 0.4, 1.0])
    y = np.array([1, 0, 0, 1, 0])
    m = metrics.metrics(two_columns(p), y, ["cats", "dogs"])
    assert m["n"] == 5 and m["accuracy"] == 2 / 5
    assert m["confusion_matrix"] == [[1, 2], [1, 1]]  # [[tn fp] [fn tp]]
    clipped = np.clip(p, metrics.CLIP, 1 - metrics.CLIP)
    expected = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    assert abs(m["log_loss"] - expected) < 1e-6 and np.isfinite(m["log_loss"])
    assert m["roc_auc"] == pairwise_auc(p[y == 1], p[y == 0])
    assert m["balanced_accuracy"] == (1 / 3 + 1 / 2) / 2  # recall of cats 1/3, of dogs 1/2
    assert m["per_class"]["dogs"] == {"precision": 1 / 3, "recall": 1 / 2, "f1": 0.4, "support": 2}
    assert m["top_5_accuracy"] is None and m["absent"] == []
    assert metrics.metrics(two_columns(p[:1]), y[:1], ["cats", "dogs"])["roc_auc"] is None  # one class: no AUC
    table = metrics.table({"test": m}, ["cats", "dogs"])
    assert "[[1, 2], [1, 1]]" in table and "per class" not in table


def test_many_classes_by_hand():
    rng = np.random.default_rng(0)
    classes = [f"c{k}" for k in range(7)]
    y = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1])  # c6 never occurs
    P = rng.dirichlet(np.ones(7), size=len(y))
    P[np.arange(8), y[:8]] += 2  # the first 8 are surely right
    P /= P.sum(axis=1, keepdims=True)
    m = metrics.metrics(P, y, classes)
    predicted = P.argmax(axis=1)
    assert m["accuracy"] == np.mean(predicted == y)
    for k in range(6):
        tp = np.sum((predicted == k) & (y == k))
        precision = tp / max(np.sum(predicted == k), 1)
        recall = tp / np.sum(y == k)
        assert abs(m["per_class"][f"c{k}"]["precision"] - precision) < 1e-12
        assert abs(m["per_class"][f"c{k}"]["recall"] - recall) < 1e-12
    assert m["absent"] == ["c6"]
    recalls = [m["per_class"][f"c{k}"]["recall"] for k in range(6)]
    assert abs(m["balanced_accuracy"] - np.mean(recalls)) < 1e-12 and abs(m["macro_recall"] - np.mean(recalls)) < 1e-12
    auc = np.mean([pairwise_auc(P[y == k, k], P[y != k, k]) for k in range(6)])
    assert abs(m["roc_auc"] - auc) < 1e-12
    top5 = np.mean([y[i] in np.argsort(-P[i])[:5] for i in range(len(y))])
    assert m["top_5_accuracy"] == top5
    assert abs(m["log_loss"] - -np.mean(np.log(P[np.arange(len(y)), y]))) < 1e-6
    assert np.array(m["confusion_matrix"]).shape == (7, 7) and np.trace(m["confusion_matrix"]) == np.sum(predicted == y)
    table = metrics.table({"test": m}, classes)
    assert "per class, test" in table and "absent from test: c6" in table and "top-5" in table


def test_most_confidently_wrong_picks_wrong_ones_most_confident_first():
    p = np.array([0.99, 0.01, 0.7, 0.45, 0.6, 0.02])
    y = np.array([0, 0, 1, 1, 0, 1])
    # Wrong: index 0 (0.49 off the line), 3 (0.05), 4 (0.1), 5 (0.48); right: 1, 2.
    assert list(metrics.most_confidently_wrong(two_columns(p), y)) == [0, 5, 4, 3]
    assert list(metrics.most_confidently_wrong(two_columns(p), y, k=2)) == [0, 5]
    assert len(metrics.most_confidently_wrong(two_columns(np.array([0.9])), np.array([1]))) == 0
    P = np.array([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.4, 0.35, 0.25]])
    assert list(metrics.most_confidently_wrong(P, np.array([1, 2, 0, 0]))) == [2, 1]
