"""Actor planning from cluster sizes, the device line of the summary, and the address check (no Ray needed)."""


import pytest

from catdog import cluster
from catdog.cluster import ClusterSize
from catdog.config import ExtractConfig
from catdog.errors import CatdogError


def plan(cpus, gpus, largest, **flags):
    return cluster.plan_resources(ExtractConfig(root="", out="", **flags), ClusterSize(cpus, gpus, largest))


def test_one_actor_per_gpu_with_decode_in_tasks_of_half_a_cpu():
    r = plan(32, 4, 8)
    assert (r.num_actors, r.gpus_per_actor, r.cpus_per_actor, r.decode_cpus) == (4, 1.0, 1.0, 0.5)
    # 28 CPUs left by the actors: 56 decode tasks, 14 per actor, and the shard being embedded
    assert r.shards_in_flight == 15
    assert plan(2, 1, 2).shards_in_flight == 3  # one CPU left: two decode tasks
    assert plan(1, 1, 1).shards_in_flight == 2  # none left: still one decoding ahead


def test_fractional_gpus_double_the_actors():
    assert plan(32, 4, 8, gpus_per_actor=0.5).num_actors == 8
    assert plan(32, 4, 8, gpus_per_actor=0.5, num_actors=3).num_actors == 3


def test_cpu_only_actors_fill_the_cluster_up_to_the_thread_cap():
    r = plan(2, 0, 2)
    assert (r.num_actors, r.cpus_per_actor, r.gpus_per_actor, r.decode_cpus, r.shards_in_flight) == (1, 2.0, 0.0, 0.0, 2)
    r = plan(64, 0, 32)  # 8 threads at most per actor: 8 actors over 64 cores
    assert (r.num_actors, r.cpus_per_actor) == (8, 8.0)
    r = plan(8, 0, 8, num_actors=3)
    assert (r.num_actors, r.cpus_per_actor, r.shards_in_flight) == (3, 2.0, 2)
    assert plan(8, 0, 8, cpus_per_actor=4).num_actors == 2


def test_devices_never_merge_gpu_ids_across_nodes():
    one = {"node": "aaaaaaaaaa", "ray_gpu_ids": ["0"], "intra_op_threads": 1, "tf_gpus": ["/physical_device:GPU:0"]}
    two = {"node": "bbbbbbbbbb", "ray_gpu_ids": ["0"], "intra_op_threads": 1, "tf_gpus": ["/physical_device:GPU:0"]}
    assert cluster.devices((one,)) == "GPUs 0"
    assert cluster.devices((one, {**one, "ray_gpu_ids": ["1"]})) == "GPUs 0, 1"
    assert cluster.devices((one, two)) == "node aaaaaaaa: GPUs 0; node bbbbbbbb: GPUs 0"
    cpu = {"node": "c", "ray_gpu_ids": [], "intra_op_threads": 2}
    assert cluster.devices((cpu, cpu)) == "CPU, 4 threads"
    # Ray's GPU without a device TensorFlow can use (a fake GPU resource, a driver that failed): said.
    assert cluster.devices(({**one, "tf_gpus": []},)) == "GPUs 0 (TensorFlow saw no GPU: ran on the CPU)"


def test_unreachable_address_fails_in_seconds():
    with pytest.raises(CatdogError, match="cannot reach Ray at 127.0.0.1:1"):
        cluster.check_address("127.0.0.1:1")
    cluster.check_address(None)
    cluster.check_address("auto")
