"""Which executor runs an extraction, decided without starting anything."""

import pytest

from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction import executor


def listing(n):
    calls = []

    def entries():
        calls.append(n)
        return iter(range(n))

    return entries, calls


@pytest.mark.parametrize("changes, images, expected", [
    ({}, 40, "local"),
    ({}, executor.LOCAL_MAX_IMAGES, "local"),
    ({}, executor.LOCAL_MAX_IMAGES + 1, "ray"),
    ({"address": "127.0.0.1:6379"}, 40, "ray"),
    ({"num_actors": 2}, 40, "ray"),
    ({"gpus_per_actor": 1.0}, 40, "ray"),
    ({"shared_fs": True}, 40, "ray"),
    ({"executor": "ray"}, 40, "ray"),
    ({"executor": "local"}, 10_000, "local"),
])
def test_auto_runs_small_inputs_here_and_the_rest_on_ray(monkeypatch, changes, images, expected):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(executor, "joined_ray", lambda: False)  # this test process may hold the suite's Ray
    entries, calls = listing(images)
    chosen = executor.choose(ExtractConfig(root="r", out="o", **changes), entries)
    assert chosen.name == expected, chosen
    assert len(calls) <= 1  # the listing is read once at most (and only for auto)


def test_a_ray_this_process_joined_is_used(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(executor, "joined_ray", lambda: True)
    assert executor.choose(ExtractConfig(root="r", out="o"), listing(3)[0]) == executor.Choice("ray", "this process's Ray")


def test_the_environment_s_ray_address_means_ray(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert executor.choose(ExtractConfig(root="r", out="o"), listing(3)[0]) == executor.Choice("ray", "a Ray address")
    with pytest.raises(CatdogError, match="--executor local runs in this process; it cannot use the Ray cluster"):
        executor.choose(ExtractConfig(root="r", out="o", executor="local"), listing(3)[0])


def test_an_unknown_executor_is_one_line():
    with pytest.raises(CatdogError, match="--executor must be one of auto, local, ray"):
        ExtractConfig(root="r", out="o", executor="spark")
