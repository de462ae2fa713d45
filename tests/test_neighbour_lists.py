"""Neighbour lists kept between runs: an update after rows were added, changed and removed equals a
full exact search (no Ray)."""

import numpy as np

from catdog import storage
from catdog.insight import neighbour_lists, neighbours

SETTINGS = {"top": 4, "method": "exact", "probes": 16, "pca_dims": None}


def rows(n, seed, dim=16):
    X = np.random.default_rng(seed).normal(0, 1, (n, dim)).astype(np.float32)
    return [("train", f"{seed}-{i}.jpg") for i in range(n)], neighbours.unit(X)


def lists_of(keys, U, top=4):
    indices, similarity, _ = neighbours.search(U, top, method="exact")
    return neighbour_lists.Lists(keys, neighbour_lists.digests(U), indices, similarity, SETTINGS)


def test_an_update_after_added_changed_and_removed_rows_equals_a_full_search(tmp_path):
    keys, U = rows(400, 0)
    neighbour_lists.write(str(tmp_path), lists_of(keys, U))
    previous = neighbour_lists.read(storage.resolve(str(tmp_path)), SETTINGS)
    assert previous.keys == keys and (previous.digests == neighbour_lists.digests(U)).all()
    # 10 rows gone, 5 changed in place, 12 new ones (at the end and between).
    new_keys, new_U = rows(12, 1)
    keep = np.ones(400, bool)
    keep[::40] = False
    now_keys = [k for k, kept in zip(keys, keep) if kept][:200] + new_keys + [k for k, kept in zip(keys, keep) if kept][200:]
    now_U = np.concatenate([U[keep][:200], new_U, U[keep][200:]])
    now_U[[3, 50, 120, 300, 380]] = rows(5, 2)[1]
    updated, similarity, update = neighbour_lists.update(previous, now_keys, neighbour_lists.digests(now_U), now_U, 4)
    expected, expected_similarity, _ = neighbours.search(now_U, 4, method="exact")
    np.testing.assert_array_equal(updated, expected)
    np.testing.assert_allclose(similarity, expected_similarity, atol=1e-5)
    assert (update.added, update.removed, update.kept) == (12 + 5, 10 + 5, 390 - 5)
    assert 0 < update.searched_again < 100  # kept rows that had a removed or changed row in their list


def test_no_update_when_settings_differ_or_much_changed(tmp_path):
    keys, U = rows(100, 0)
    neighbour_lists.write(str(tmp_path), lists_of(keys, U))
    assert neighbour_lists.read(storage.resolve(str(tmp_path)), {**SETTINGS, "top": 5}) is None
    assert neighbour_lists.read(storage.resolve(str(tmp_path / "nowhere")), SETTINGS) is None
    previous = neighbour_lists.read(storage.resolve(str(tmp_path)), SETTINGS)
    assert neighbour_lists.update(previous, keys, neighbour_lists.digests(U), U, 4).__class__ is tuple
    _, other = rows(100, 3)  # every vector changed: a full search is as cheap
    assert neighbour_lists.update(previous, keys, neighbour_lists.digests(other), other, 4) is None
    assert neighbour_lists.update(previous, keys + keys[:1], neighbour_lists.digests(np.vstack([U, U[:1]])),
                                  np.vstack([U, U[:1]]), 4) is None  # a key twice
