"""The head job's own helpers, without Ray."""

import numpy as np

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
