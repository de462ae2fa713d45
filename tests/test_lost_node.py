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
from tests.conftest import wait_for_shards
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
