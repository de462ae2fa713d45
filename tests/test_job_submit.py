"""catdog on a real Ray head started here: `ray job submit`, fake GPUs, weights on clusters, cluster.yaml."""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import yaml

from catdog import demo, extract, features
from catdog.config import ExtractConfig

pytestmark = pytest.mark.slow
PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """`ray start --head` on loopback with 4 fake GPUs, its own ports, temp dir and auth token."""
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths live under it
    port, dashboard = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PATH=f"{BIN}:{os.environ['PATH']}", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), TF_CPP_MIN_LOG_LEVEL="2")
    command = [f"{BIN}/ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--temp-dir", temp,
               "--num-cpus", "8", "--num-gpus", "4", "--disable-usage-stats"]
    # Every fixed default port moved too: the tests' own local Ray already holds them.
    for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                 "metrics-export-port", "ray-client-server-port"):
        command += [f"--{flag}", str(free_port())]
    # --block and a session of its own: the teardown stops this head only, not the tests' own Ray.
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{dashboard}"
    env["RAY_API_SERVER_ADDRESS"] = api
    try:
        _wait_until_ready(process, env)
        yield env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_until_ready(process, env) -> None:
    deadline = time.time() + 120
    # Ready when it takes a job: the dashboard answers before its job agent does.
    while (probe := subprocess.run([f"{BIN}/ray", "job", "submit", "--", "python", "-c", "pass"], env=env,
                                   capture_output=True, text=True, timeout=120)).returncode != 0:
        assert time.time() < deadline and process.poll() is None, f"the Ray head did not come up: {probe.stderr[-2000:]}"
        time.sleep(2)


def submit(env, script_args, working_dir=PROJECT, timeout=300):
    """`ray job submit` and wait; returns (status, logs)."""
    runtime_env = json.dumps({"excludes": [".venv", ".git", "demo"], "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}})
    job_id = f"catdog_{secrets.token_hex(4)}"
    submitted = subprocess.run([f"{BIN}/ray", "job", "submit", "--no-wait", "--submission-id", job_id, "--working-dir", working_dir,
                                "--runtime-env-json", runtime_env, "--", "python", *script_args], env=env, capture_output=True, text=True,
                               timeout=120)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    deadline = time.time() + timeout
    while True:
        status = subprocess.run([f"{BIN}/ray", "job", "status", job_id], env=env, capture_output=True, text=True,
                                timeout=120).stdout
        found = re.search(rf"Job '{job_id}' (succeeded|failed|stopped)", status)  # printed once it has ended
        done = found.group(1).upper() if found else None
        if done or time.time() > deadline:
            break
        time.sleep(2)
    logs = subprocess.run([f"{BIN}/ray", "job", "logs", job_id], env=env, capture_output=True, text=True, timeout=120).stdout
    return done, logs


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster") / "images"
    demo.make_demo_folder(str(root), per_class=8, size=40)
    return root


def test_job_submit_extract_matches_local_run(head, images, ray_local, tmp_path):
    out = tmp_path / "job"
    status, logs = submit(head, ["jobs/extract_features.py", str(images), "--out", str(out), "--weights", "none",
                                 "--image-size", "32", "--shard-size", "4", "--num-actors", "1", "--gpus-per-actor", "1"])
    assert status == "SUCCEEDED", logs
    assert "images      16" in logs and "images/s" in logs and "extract:" in logs  # summary and progress bar
    assert "actors      1 (GPUs " in logs
    local = ExtractConfig(root=str(images), out=str(tmp_path / "local"), weights="none", image_size=32, shard_size=4, progress=False)
    extract.run(local)
    X_job, y_job, p_job = features.load(str(out))
    X_loc, y_loc, p_loc = features.load(local.out)
    assert list(p_job) == list(p_loc) and list(y_job) == list(y_loc)
    np.testing.assert_allclose(X_job, X_loc, rtol=1e-4, atol=1e-4)


def test_job_submit_head_training(head, images, ray_local, tmp_path):
    out = tmp_path / "f"
    extract.run(ExtractConfig(root=str(images), out=str(out), weights="none", image_size=32, progress=False))
    status, logs = submit(head, ["jobs/train_head.py", str(out), "--model", "logreg", "--model-dir", str(tmp_path / "m")])
    assert status == "SUCCEEDED", logs
    assert "accuracy" in logs and (tmp_path / "m" / "report.json").exists() and (tmp_path / "m" / "head.skops").exists()


def test_default_actors_follow_gpus_each_pinned_to_its_own(head, images, tmp_path):
    """4 fake GPUs: 4 actors by default, each seeing only the GPU id Ray gave it."""
    out = tmp_path / "gpu"
    status, logs = submit(head, ["jobs/extract_features.py", str(images), "--out", str(out), "--weights", "none",
                                 "--image-size", "32", "--shard-size", "1"])
    assert status == "SUCCEEDED", logs
    actors = json.load(open(out / "manifest.json"))["totals"]["actors"]
    assert len(actors) == 4
    assert sorted(a["ray_gpu_ids"][0] for a in actors) == ["0", "1", "2", "3"]
    assert all(a["cuda_visible_devices"] == a["ray_gpu_ids"][0] for a in actors)


def test_half_gpu_actors_share_one_gpu(head, images, tmp_path):
    out = tmp_path / "half"
    status, logs = submit(head, ["jobs/extract_features.py", str(images), "--out", str(out), "--weights", "none",
                                 "--image-size", "32", "--shard-size", "1", "--gpus-per-actor", "0.5", "--num-actors", "2"])
    assert status == "SUCCEEDED", logs
    actors = json.load(open(out / "manifest.json"))["totals"]["actors"]
    assert len(actors) == 2 and actors[0]["ray_gpu_ids"] == actors[1]["ray_gpu_ids"]
    assert len({a["pid"] for a in actors}) == 2


def test_weights_file_in_working_dir_and_on_shared_storage(head, images, weights_file, tmp_path):
    workdir = tmp_path / "workdir"
    shutil.copytree(os.path.join(PROJECT, "catdog"), workdir / "catdog")
    shutil.copytree(os.path.join(PROJECT, "jobs"), workdir / "jobs")
    shutil.copy(weights_file, workdir / "vgg16.weights.h5")
    args = ["--image-size", "32", "--num-actors", "1", "--gpus-per-actor", "1"]
    status, logs = submit(head, ["jobs/extract_features.py", str(images), "--out", str(tmp_path / "a"),
                                 "--weights", "vgg16.weights.h5", *args], working_dir=str(workdir))
    assert status == "SUCCEEDED", logs
    status, logs = submit(head, ["jobs/extract_features.py", str(images), "--out", str(tmp_path / "b"),
                                 "--weights", weights_file, *args])
    assert status == "SUCCEEDED", logs
    a, b = features.read_metadata(str(tmp_path / "a")), features.read_metadata(str(tmp_path / "b"))
    assert a["weights"]["sha256"] == b["weights"]["sha256"] and a["weights"]["source"] == "file"
    np.testing.assert_array_equal(features.load(str(tmp_path / "a")).X, features.load(str(tmp_path / "b")).X)


def test_no_way_to_get_weights_fails_fast_on_the_driver(head, images, tmp_path):
    started = time.time()
    status, logs = submit(head, ["jobs/extract_features.py", str(images), "--out", str(tmp_path / "x"), "--weights", "imagenet"])
    assert status == "FAILED"
    assert "catdog: error: cannot get the ImageNet weights" in logs and "--weights PATH" in logs
    assert "Traceback" not in logs and "Embedder" not in logs  # no worker was ever started
    assert time.time() - started < 120


def test_cluster_yaml_is_valid_and_installs_this_project():
    import jsonschema
    import ray

    schema_path = os.path.join(os.path.dirname(ray.__file__), "autoscaler", "ray-schema.json")
    config = yaml.safe_load(open(os.path.join(PROJECT, "cluster.yaml")))
    jsonschema.validate(config, json.load(open(schema_path)))
    assert config["file_mounts"]["~/catdog"] == "."
    assert any("-e ~/catdog" in c for c in config["setup_commands"])
    assert any("tensorflow[and-cuda]" in c for c in config["setup_commands"])
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert config["available_node_types"][config["head_node_type"]]["resources"]["GPU"] == 0
    assert any(t["resources"].get("GPU", 0) >= 1 and t["min_workers"] == 0 for t in workers)
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in yaml.safe_dump(config)
