"""Exactly once across a real crash: kill the job mid-run, re-run it, count the rows."""

import os
import signal
import subprocess
import sys

import pytest

from catdog import synthetic
from catdog.config import ExtractConfig
from catdog.extraction import extract
from catdog.store import features
from tests.conftest import wait_for_shards


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_once(tmp_path):
    root = tmp_path / "in"
    synthetic.make_demo_folder(str(root), per_class=30, size=40)
    out = tmp_path / "out"
    config = ExtractConfig(root=str(root), out=str(out), weights="none", image_size=32, shard_size=2, progress=False)
    command = [sys.executable, "-m", "catdog.commands", "extract", config.root, "--out", config.out,
               "--weights", "none", "--image-size", "32", "--shard-size", "2", "--no-progress", "--executor", "ray"]
    # A session of its own, so the kill takes the embedded Ray (raylet, workers) down with it.
    job = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_shards(config.out, 3, job, 240)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    before = len(features.committed(config.out))
    assert 3 <= before < 30, "the kill should land mid-run"

    summary = extract.run(config.replace(executor="local"))  # what resumes is the executors' shared code
    X, y, paths = features.load(config.out)
    expected = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert sorted(paths) == expected and len(set(paths)) == len(expected) == 60
    # Workers of the killed job may commit a shard or two more while they die: never twice.
    assert summary.resumed_shards >= before and summary.processed == 60 - 2 * summary.resumed_shards
    assert not (out / "_tmp").exists()
