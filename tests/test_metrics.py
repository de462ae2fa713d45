"""Metrics against independent computations."""

import numpy as np

from catdog import metrics


def test_metrics_by_hand():
    p = np.array([0.9, 0.2, 0.6, 0.4, 1.0])
    y = np.array([1, 0, 0, 1, 0])
    m = metrics.metrics(p, y)
    assert m["n"] == 5 and m["accuracy"] == 2 / 5
    assert m["confusion_matrix"] == [[1, 2], [1, 1]]  # [[tn fp] [fn tp]]
    clipped = np.clip(p, metrics.CLIP, 1 - metrics.CLIP)
    expected = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    assert abs(m["log_loss"] - expected) < 1e-9 and np.isfinite(m["log_loss"])
    pairs = [(a, b) for a in p[y == 1] for b in p[y == 0]]
    assert m["roc_auc"] == sum(a > b for a, b in pairs) / len(pairs)
    assert metrics.metrics(p[:1], y[:1])["roc_auc"] is None  # one class: no AUC
    assert "accuracy" in metrics.table({"test": m})


def test_most_confidently_wrong_picks_wrong_ones_most_confident_first():
    p = np.array([0.99, 0.01, 0.7, 0.45, 0.6, 0.02])
    y = np.array([0, 0, 1, 1, 0, 1])
    # Wrong: index 0 (0.49 off the line), 3 (0.05), 4 (0.1), 5 (0.48); right: 1, 2.
    assert list(metrics.most_confidently_wrong(p, y)) == [0, 5, 4, 3]
    assert list(metrics.most_confidently_wrong(p, y, k=2)) == [0, 5]
    assert len(metrics.most_confidently_wrong(np.array([0.9]), np.array([1]))) == 0
