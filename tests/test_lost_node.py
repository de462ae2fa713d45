"""A worker node lost in the middle of a job: the job finishes on the node that remains, every image
once. A cluster of its own (the node is killed for real) and a driver in a process of its own."""

import json
import signal
import subprocess
import sys

import psutil
import pytest

from catdog import synthetic
from catdog.store import features
from tests.conftest import wait_for_shards, wait_until
from tests.test_job_submit import two_nodes

pytestmark = pytest.mark.slow

DRIVER = r"""
import json, os, sys
import catdog
done = catdog.extract(sys.argv[1], sys.argv[2], weights="none", image_size=32, shard_size=4, progress=False,
                      address=os.environ["CATDOG_TEST_RAY_ADDRESS"])
print(json.dumps({"images": done.images, "nodes": sorted({a["node"] for a in done.embedders})}))
"""


def _kill_node(temp: str) -> int:
    """SIGKILL every process of the node whose temp dir is `temp`: those naming it (its raylet, its
    agents) and their children (the workers, which name only themselves: "ray::Embedder")."""
    named = [p for p in psutil.process_iter(["cmdline"]) if any(temp in part for part in p.info["cmdline"] or [])]
    victims = {p.pid: p for p in named}
    for process in named:
        try:
            victims.update((c.pid, c) for c in process.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    for process in victims.values():
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    return len(victims)


def test_a_lost_worker_node_is_survived_and_every_image_is_written_once(tmp_path):
    """One fake GPU a node, one GPU actor each: the lost node's actor cannot come back anywhere (the
    other GPU is taken), so its shards must go to the actor that remains."""
    root, out = tmp_path / "in", tmp_path / "out"
    synthetic.make_demo_folder(str(root), per_class=120, size=40, splits={"train": 1.0})
    with two_nodes(gpus=1) as (env, temps):
        job = subprocess.Popen([sys.executable, "-c", DRIVER, str(root), str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
        try:
            wait_for_shards(out, 5, job, timeout=240)
            assert job.poll() is None, job.communicate()[1][-3000:]
            assert _kill_node(temps[1]) > 0
            killed_at = len(features.committed(str(out)))
            stdout, stderr = job.communicate(timeout=400)
        finally:
            job.kill()
    assert job.returncode == 0, stderr[-3000:]
    assert killed_at < 60, "the node should be lost mid-run"
    assert "an embedding actor was lost" in stderr, stderr[-3000:]
    paths = features.load(str(out)).paths
    expected = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert sorted(paths) == expected and len(set(paths)) == len(paths) == json.loads(stdout.splitlines()[-1])["images"]


def test_similar_survives_a_lost_worker_node_and_equals_the_search_in_one_process(s3, tmp_path):
    """`catdog similar --executor ray` on embeddings in a bucket, reached through a proxy that holds
    every write of a merged neighbour list: once all six merge tasks are caught writing, on both
    nodes, the second node is killed and the writes let through. Ray runs the lost node's tasks
    again on the head; the pairs equal the exact search in one process."""
    import re

    import catdog
    from catdog import storage
    from tests import generators
    from tests.faultproxy import Proxy
    from tests.test_sharded import write_embeddings

    data = generators.embeddings(6_000, 256, duplicates=60, clusters=50, seed=8)
    folder = write_embeddings(tmp_path / "emb", data.X, files=6, row_group=500)
    emb, report = s3.upload(folder, f"{s3.prefix}/emb"), f"s3://{s3.prefix}/similar"
    with two_nodes(gpus=0) as (env, temps), Proxy(s3.endpoint, hold=b"/neighbours/part-") as proxy:
        via = f"?endpoint_override=127.0.0.1:{proxy.port}&scheme=http"
        job = subprocess.Popen([sys.executable, "-m", "catdog.commands", "similar", emb + via, "--features-column",
                                "embedding", "--method", "exact", "--executor", "ray", "--task-memory", "1",
                                "--address", env["CATDOG_TEST_RAY_ADDRESS"], "--out", report + via],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**env, **s3.env})
        try:
            wait_until(lambda: proxy.held >= 6 or job.poll() is not None, 240)
            assert proxy.held >= 6, job.communicate()[1][-3000:]
            assert _kill_node(temps[1]) > 0
            proxy.release()
            stdout, stderr = job.communicate(timeout=300)
        finally:
            job.kill()
    assert job.returncode == 0, stderr[-3000:]
    assert re.search(r"ran on Ray \(--executor ray\): \d+ tasks on 2 nodes", stdout), stdout
    assert proxy.held > 6  # the lost node's merges wrote again, from the head
    here = catdog.similar(str(folder), features_column="embedding", method="exact", executor="local",
                          report_dir=str(tmp_path / "here"))
    theirs = storage.resolve(report).join("similar.csv").read_bytes().decode().splitlines()
    mine = open(tmp_path / "here" / "similar.csv").read().splitlines()
    assert len(mine) > 60 and sorted(r.rsplit(",", 2)[0] for r in theirs) == sorted(r.rsplit(",", 2)[0] for r in mine)
    assert here.images == 6_000
