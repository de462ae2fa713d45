"""The head job's own helpers, without Ray."""

import numpy as np
import pytest

from catdog.heads import fit_head


class Chunked:
    """The one thing `_rows` asks of FeatureSplits: a split's rows in order, in chunks of 7."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def chunks(self, split):
        for start in range(0, len(self.y), 7):
            yield self.X[start : start + 7], self.y[start : start + 7]


def test_the_map_sample_is_the_same_rows_read_chunk_by_chunk():
    X = np.arange(23 * 4, dtype=np.float32).reshape(23, 4)
    y = np.arange(23) % 3
    rows = np.array([0, 6, 7, 13, 14, 20, 22])  # both ends of chunks, and the short last one
    got_X, got_y = fit_head._rows(Chunked(X, y), "test", rows)
    np.testing.assert_array_equal(got_X, X[rows])
    np.testing.assert_array_equal(got_y, y[rows])


@pytest.mark.slow  # trains a Keras model
def test_the_dense_head_is_seeded_without_touching_the_process_random_state(tmp_path):
    """fit_head(model="dense") twice gives the same weights, and the caller's Python, numpy and
    TensorFlow random streams go on as if it had not run."""
    import random

    import tensorflow as tf

    import catdog
    from catdog.heads import model_folder
    from tests.test_features import write_dataset

    out, _ = write_dataset(tmp_path, {("train", "a.parquet"): ([0, 1] * 10, 2), ("validation", "b.parquet"): ([0, 1] * 3, 3)})
    random.seed(7)
    np.random.seed(7)
    tf.random.set_seed(7)
    expected = (random.random(), np.random.random(), float(tf.random.uniform(())))
    random.seed(7)
    np.random.seed(7)
    tf.random.set_seed(7)
    weights = []
    for name in ("m1", "m2"):
        catdog.fit_head(out.path, str(tmp_path / name), model="dense", epochs=2)
        weights.append(model_folder.load(str(tmp_path / name)).model.model.get_weights())
    assert (random.random(), np.random.random(), float(tf.random.uniform(()))) == expected
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
