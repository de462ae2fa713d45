"""The audit's methods on arrays, against scikit-learn's own cross-validation."""

import numpy as np

from catdog.heads.models import logreg_pipeline
from catdog.insight import findings


def test_out_of_fold_equals_scikit_learns_cross_val_predict_on_the_same_folds():
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    X = (rng.normal(0, 1, (300, 8)) + y[:, None] * 0.7).astype(np.float32)
    fold = findings.fold_of(y, 5, seed=4)
    assert sorted(np.bincount(fold)) == [60] * 5  # stratified: every class spread over every fold
    for f in range(5):
        assert set(y[fold == f]) == {0, 1, 2}
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=4)
    expected = cross_val_predict(logreg_pipeline(1.0, 4), X, y, cv=cv, method="predict_proba")
    np.testing.assert_allclose(findings.out_of_fold(X, y, fold, seed=4), expected, rtol=1e-6, atol=1e-9)


def test_a_far_row_is_its_class_outlier_and_small_classes_have_none():
    rng = np.random.default_rng(1)
    X = np.abs(rng.normal(0, 0.1, (60, 6))) + np.array([1, 1, 1, 0, 0, 0])
    X[17] = [0, 0, 0, 1, 1, 1]  # pointing elsewhere
    rows, scores, distances = findings.class_outliers(X, 5, 3.5)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    kth = np.sort(1 - unit @ unit.T, axis=1)[:, 5]  # column 0: the row itself
    z = (kth - np.median(kth)) / (1.4826 * np.median(np.abs(kth - np.median(kth))))
    assert rows.tolist() == np.flatnonzero(z > 3.5).tolist() and 17 in rows.tolist()
    np.testing.assert_allclose(scores, z[rows], rtol=1e-4)
    np.testing.assert_allclose(distances, kth[rows], atol=1e-6)
    assert rows[np.argmax(scores)] == 17
    assert [len(a) for a in findings.class_outliers(X[:2], 5, 3.5)] == [0, 0, 0]
    ranked = findings.ranked_outliers([(4.0, 0.5, "b.jpg", "train", "cats"), (9.0, 0.7, "a.jpg", "test", "dogs")])
    assert [(o.path, o.rank) for o in ranked] == [("a.jpg", 1), ("b.jpg", 2)]
