"""catdog on a real Ray head started here: `ray job submit`, fake GPUs, weights on clusters, cluster.yaml."""

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import numpy as np
import pytest
import yaml

from catdog import synthetic
from catdog.config import ExtractConfig
from catdog.extraction import extract
from catdog.store import features
from tests.conftest import fresh_extraction, wait_until
from tests.ports import free_port

pytestmark = pytest.mark.slow
PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _ray_start(args: list[str], env: dict) -> subprocess.Popen:
    """One `ray start --block` node in a session of its own, every port its own (the tests' own local
    Ray already holds the defaults; tests/ports.py says why not the kernel's choice), so the teardown
    stops this node only."""
    command = [f"{BIN}/ray", "start", "--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *args]
    for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                 "metrics-export-port", "node-manager-port", "object-manager-port"):
        command += [f"--{flag}", str(free_port())]
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(nodes: list[subprocess.Popen]) -> None:
    """Stop the nodes side by side; what has not stopped in 5 s is killed."""
    for process in nodes:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.time() + 5
    for process in nodes:
        try:
            process.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def two_nodes(gpus: int):
    """A two-node cluster on loopback: `ray start --head` and a second `ray start --address`, each
    with `gpus` fake GPUs, 4 CPUs, a custom resource naming it, its own temp dir; one auth token.
    Yields the environment to reach it and the nodes' temp dirs (every process of a node names its own)."""
    temps = [tempfile.mkdtemp(prefix="rh", dir="/tmp") for _ in range(2)]  # short: Ray's socket paths live under them
    port, dashboard = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("AWS_")}
    env.update(PATH=f"{BIN}:{os.environ['PATH']}", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), TF_CPP_MIN_LOG_LEVEL="2")
    nodes = [_ray_start(["--head", "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
                         "--ray-client-server-port", str(free_port()), "--temp-dir", temps[0], "--num-cpus", "4",
                         "--num-gpus", str(gpus), "--resources", '{"head_node": 1}'], env)]
    env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dashboard}"
    env["CATDOG_TEST_RAY_ADDRESS"] = f"127.0.0.1:{port}"
    try:
        _wait_until_ready(nodes[0], env, temps[0])
        nodes.append(_ray_start(["--address", f"127.0.0.1:{port}", "--temp-dir", temps[1], "--num-cpus", "4",
                                 "--num-gpus", str(gpus), "--resources", '{"second_node": 1}'], env))
        _wait_for_nodes(env, 2)
        yield env, temps
    finally:
        _stop(nodes)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def head():
    with two_nodes(gpus=2) as (env, _):
        yield env


def node_ids(env) -> dict[str, str]:
    """{'head_node' | 'second_node': Ray node id}, from the custom resource each node was given; from
    the state API `ray list nodes` reads, in this process (the command costs 1.5 s of CPU a call)."""
    import requests

    listed = requests.get(f"{env['RAY_API_SERVER_ADDRESS']}/api/v0/nodes", params={"detail": "1", "limit": "100"},
                          headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"}, timeout=60)
    listed.raise_for_status()
    found = {}
    for node in listed.json()["data"]["result"]["result"]:
        if node["state"] == "ALIVE":
            for name in ("head_node", "second_node"):
                if name in node["resources_total"]:
                    found[name] = node["node_id"]
    return found


def _wait_for_nodes(env, count: int) -> None:
    assert wait_until(lambda: len(node_ids(env)) >= count, 120, 0.5), "the second Ray node did not join"


def jobs(env):
    """Ray's job SDK in this process, for the head in `env`: following a job through it costs an
    HTTP call, where a `ray job status` process cost ~2 s of CPU on these 2 cores."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(env["RAY_API_SERVER_ADDRESS"], headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})


def _wait_until_ready(process, env, temp: str) -> None:
    problem = ["its first job did not succeed"]

    def takes_a_job() -> bool:  # ready when it takes a job: the dashboard answers before its job agent does
        assert process.poll() is None, f"the Ray head ended: {problem[-1]}\n{_agent_log(temp)}"
        try:
            client = jobs(env)
            return wait_for(client, client.submit_job(entrypoint="python -c pass"), 60) == "SUCCEEDED"
        except (ConnectionError, RuntimeError) as exc:  # the SDK's ways of saying the head is not up yet
            problem.append(exc)
            return False

    assert wait_until(takes_a_job, 120, 2), f"the Ray head did not come up: {problem[-1]}\n{_agent_log(temp)}"


def _agent_log(temp: str) -> str:
    """The errors in the head's dashboard agent log (or its end): why its job agent is missing, if it is."""
    path = os.path.join(temp, "session_latest", "logs", "dashboard_agent.log")
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
        problems = [line for line in lines if " ERROR " in line or " WARNING " in line or "Error" in line]
        return "dashboard_agent.log:\n" + "".join(problems[-15:] or lines[-5:])
    except OSError as exc:
        return f"no dashboard agent log: {exc}"


def wait_for(client, job_id: str, timeout: float) -> str | None:
    """The job's final status (SUCCEEDED, FAILED or STOPPED), or None if it has not ended in time."""
    if not wait_until(lambda: client.get_job_status(job_id).is_terminal(), timeout, 0.5):
        return None
    return client.get_job_status(job_id).value


def submit(env, script_args, working_dir=PROJECT, timeout=300, env_vars=None):
    """`ray job submit`, as a user submits a job; returns (status, logs), status None on a timeout.
    The job is followed from this process (`jobs`): the CLI's own wait, tailing the logs, ends ~6 s
    after the job does here (8.1 s for a job of 1.4 s)."""
    runtime_env = json.dumps({"excludes": [".venv", ".git", "demo"],
                              "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", **(env_vars or {})}})
    job_id = f"catdog_{secrets.token_hex(4)}"
    command = [f"{BIN}/ray", "job", "submit", "--no-wait", "--submission-id", job_id, "--working-dir", working_dir,
               "--runtime-env-json", runtime_env, "--", "python", *script_args]
    ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    client = jobs(env)
    status = wait_for(client, job_id, timeout)
    return status, client.get_job_logs(job_id)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster") / "images"
    synthetic.make_demo_folder(str(root), per_class=8, size=40)
    return root


@pytest.fixture(scope="module")
def local_out(images, tmp_path_factory) -> str:
    """The same folder extracted in this process, for the jobs to match."""
    out = str(tmp_path_factory.mktemp("local") / "features")
    extract.run(ExtractConfig(root=str(images), out=out, weights="none", image_size=32, shard_size=4, progress=False,
                              executor="local"))
    return out


@pytest.fixture(scope="module")
def local(local_out) -> features.Features:
    return features.load(local_out)


def test_job_submit_extract_matches_local_run_and_a_cpu_run_grows_it_with_its_shard_size(head, images, local, tmp_path):
    """No --shard-size: the GPU actor takes shards of 1024. A later run on this machine's CPU
    continues that OUT with them instead of refusing it for the CPU default."""
    root, out = tmp_path / "photos", tmp_path / "job"
    shutil.copytree(images, root)
    status, logs = submit(head, ["jobs/extract_features.py", str(root), "--out", str(out), "--weights", "none",
                                 "--image-size", "32", "--num-actors", "1", "--gpus-per-actor", "1"])
    assert status == "SUCCEEDED", logs
    assert "images      16" in logs and "images/s" in logs and "extract:" in logs  # summary and progress bar
    assert "actors      1 (GPUs " in logs
    job = features.load(str(out))
    assert list(job.paths) == list(local.paths) and list(job.y) == list(local.y)
    np.testing.assert_allclose(job.X, local.X, rtol=1e-4, atol=1e-4)
    assert json.load(open(out / "manifest.json"))["compat"]["shard_size"] == 1024

    shutil.copy(root / "train" / "cats" / sorted(os.listdir(root / "train" / "cats"))[0], root / "train" / "cats" / "new.jpg")
    summary = extract.run(ExtractConfig(root=str(root), out=str(out), weights="none", image_size=32, progress=False,
                                        executor="local"))
    assert summary.processed == 1 and summary.images == 17
    assert json.load(open(out / "manifest.json"))["compat"]["shard_size"] == 1024


def test_a_driver_joining_with_store_settings_hands_them_to_half_gpu_actors_on_s3(head, images, local, s3):
    """ROOT and OUT in a bucket; the cluster's nodes were started with no AWS_* variables, and a driver
    joining it (--address) with them set, the AWS way, passes them to its workers, which then read and
    write the bucket. Two actors of half a GPU each share one GPU. No secret in the output or the
    manifest. (Jobs given them in their runtime env: the audit and similar jobs below.)"""
    root, out = s3.upload(images, f"{s3.prefix}/photos"), f"s3://{s3.prefix}/features"
    done = subprocess.run([sys.executable, "-m", "catdog.commands", "extract", root, "--out", out, "--weights", "none",
                           "--image-size", "32", "--shard-size", "1", "--num-actors", "2", "--gpus-per-actor", "0.5",
                           "--no-progress", "--address", head["CATDOG_TEST_RAY_ADDRESS"]],
                          env={**head, **s3.env}, capture_output=True, text=True, timeout=300, cwd=PROJECT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "images      16" in done.stdout and "errors      0" in done.stdout
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
    mine = features.load(out)
    assert list(mine.paths) == list(local.paths)
    np.testing.assert_allclose(mine.X, local.X, rtol=1e-4, atol=1e-4)
    recorded = json.loads(features.storage.resolve(out).join("manifest.json").read_bytes())
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in json.dumps(recorded)
    assert set(recorded["written_by"].values()) <= set(node_ids(head).values())
    actors = recorded["totals"]["actors"]
    assert len(actors) == 2 and actors[0]["ray_gpu_ids"] == actors[1]["ray_gpu_ids"]
    assert len({a["pid"] for a in actors}) == 2


def test_job_submit_head_training_then_parquet_predictions_by_actors_on_both_nodes(head, images, local, local_out, tmp_path):
    model = tmp_path / "m"
    status, logs = submit(head, ["jobs/train_head.py", local_out, "--model", "logreg", "--model-dir", str(model)])
    assert status == "SUCCEEDED", logs
    assert "accuracy" in logs and (model / "report.json").exists() and (model / "head.skops").exists()

    # The folder's predictions by two actors of two GPUs each (one per node), the head in each: the
    # same answers as the head gives here on this process's features of the same images.
    preds = tmp_path / "preds"
    status, logs = submit(head, ["jobs/predict.py", str(model), str(images), "--out", str(preds), "--shard-size", "2",
                                 "--gpus-per-actor", "2", "--no-progress"])
    assert status == "SUCCEEDED", logs
    from catdog.heads import model_folder
    from catdog.store import predictions

    expected = dict(zip(local.paths, model_folder.load(str(model)).predict_proba(local.X)))
    table = predictions.read(str(preds)).to_pydict()
    assert sorted(table["path"]) == sorted(expected)
    for path, answered, predicted in zip(table["path"], table["probabilities"], table["predicted"]):
        np.testing.assert_allclose(answered, expected[path], atol=1e-3, err_msg=path)  # features from other batches
        assert predicted == ["cats", "dogs"][int(np.argmax(answered))]
    recorded = json.load(open(preds / "manifest.json"))
    assert {a["node"] for a in recorded["totals"]["actors"]} == set(node_ids(head).values())
    assert not (preds / "features").exists()


def test_default_actors_follow_gpus_on_both_nodes_with_weights_from_the_working_dir_and_local_out_on_the_driver_node(
        head, images, weights_file, tmp_path):
    """2 nodes x 2 fake GPUs: 4 actors by default, each seeing only the GPU id Ray gave it on its
    node. A relative --weights is found in the working dir the job uploaded: the features are those
    of the same file given by its path, computed in this process. OUT is a local path, so every
    shard is written on the driver's node (the head)."""
    workdir = tmp_path / "workdir"
    shutil.copytree(os.path.join(PROJECT, "catdog"), workdir / "catdog")
    shutil.copytree(os.path.join(PROJECT, "jobs"), workdir / "jobs")
    shutil.copy(weights_file, workdir / "vgg16.weights.h5")
    out = tmp_path / "gpu"
    status, logs = submit(head, ["jobs/extract_features.py", str(images), "--out", str(out), "--weights", "vgg16.weights.h5",
                                 "--image-size", "32", "--shard-size", "1"], working_dir=str(workdir))
    assert status == "SUCCEEDED", logs
    nodes = node_ids(head)
    recorded = json.load(open(out / "manifest.json"))
    actors = recorded["totals"]["actors"]
    by_node = {}
    for a in actors:
        by_node.setdefault(a["node"], []).append(a["ray_gpu_ids"][0])
    assert {n: sorted(g) for n, g in by_node.items()} == {nodes["head_node"]: ["0", "1"], nodes["second_node"]: ["0", "1"]}
    assert all(a["cuda_visible_devices"] == a["ray_gpu_ids"][0] for a in actors)
    assert re.search(r"actors      4 \(node \w{8}: GPUs 0, 1 \(TensorFlow saw no GPU: ran on the CPU\); "
                     r"node \w{8}: GPUs 0, 1 \(TensorFlow saw no GPU: ran on the CPU\)\)", logs), logs
    written = recorded["written_by"]
    assert len(written) == 16 and set(written.values()) == {nodes["head_node"]}
    weights = features.read_metadata(str(out))["weights"]
    assert weights["source"] == "file" and weights["sha256"] == hashlib.sha256(open(weights_file, "rb").read()).hexdigest()
    expected, _ = fresh_extraction(ExtractConfig(root=str(images), out="", weights=weights_file, image_size=32))
    job = features.load(str(out))
    np.testing.assert_allclose(job.X, [expected[p] for p in job.paths], rtol=1e-4, atol=1e-4)


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


def test_cpu_actors_on_both_nodes_read_a_local_root_through_the_driver_node(head, images, local, tmp_path):
    """CPU-only actors of 3 CPUs on two 4-CPU nodes: one per node. ROOT is the driver's disk, so the
    actors do not decode it themselves: decoding stays on the driver's node, every image is read."""
    out = tmp_path / "cpu"
    status, logs = submit(head, ["jobs/extract_features.py", str(images), "--out", str(out), "--weights", "none",
                                 "--image-size", "32", "--shard-size", "2", "--gpus-per-actor", "0", "--num-actors", "2",
                                 "--cpus-per-actor", "3"])
    assert status == "SUCCEEDED", logs
    assert "images      16" in logs and "errors      0" in logs
    recorded = json.load(open(out / "manifest.json"))
    assert {a["node"] for a in recorded["totals"]["actors"]} == set(node_ids(head).values())
    mine = features.load(str(out))
    assert list(mine.paths) == list(local.paths)
    np.testing.assert_allclose(mine.X, local.X, rtol=1e-4, atol=1e-4)


def test_audit_on_both_nodes_equals_the_audit_in_one_process(head, s3, tmp_path):
    """Labelled embeddings with 4 % of their labels changed, in a bucket, audited by jobs/audit.py under
    `ray job submit` on the two-node cluster (tasks of 1.5 MiB of vectors: the folds' heads in memory):
    the label issues, outliers, class health and near-duplicates equal the audit in one process; the
    summary says the tasks ran on both nodes."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    import catdog
    from catdog import storage
    from tests import generators

    data = generators.embeddings(6_000, 64, duplicates=30, clusters=4, spread=0.5, seed=9)
    rng = np.random.default_rng(9)
    labels = data.centres.copy()
    flipped = rng.choice(6_000, 240, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 4, 240)) % 4
    folder = tmp_path / "emb"
    folder.mkdir()
    for k, part in enumerate(np.array_split(np.arange(6_000), 6)):
        pq.write_table(pa.table({"path": [f"img{i:05d}.jpg" for i in part], "label": labels[part],
                                 "split": np.where(part % 5 == 0, "test", "train"),
                                 "embedding": pa.FixedSizeListArray.from_arrays(pa.array(data.X[part].ravel()), 64)}),
                       folder / f"part-{k}.parquet", row_group_size=500)
    emb, report = s3.upload(folder, f"{s3.prefix}/emb"), f"s3://{s3.prefix}/audit"
    status, logs = submit(head, ["jobs/audit.py", emb, "--features-column", "embedding", "--task-memory", "1.5",
                                 "--out", report], env_vars=s3.env)
    assert status == "SUCCEEDED", logs
    ran = re.search(r"ran on Ray \(a Ray address\): (\d+) tasks on 2 nodes \((.*)\)", logs)
    assert ran, logs
    here = tmp_path / "here"
    mine = catdog.audit(str(folder), features_column="embedding", executor="local", report_dir=str(here))
    assert len(mine.label_issues) > 100 and mine.duplicates

    def rows(folder_or_uri, name):
        text = (storage.resolve(folder_or_uri).join(name).read_bytes().decode())
        return sorted(csv.DictReader(text.splitlines()), key=lambda r: r.get("path") or r["path_a"])

    theirs, ours = rows(report, "label_issues.csv"), rows(str(here), "label_issues.csv")
    assert [(r["path"], r["given"], r["suggested"]) for r in theirs] == [(r["path"], r["given"], r["suggested"]) for r in ours]
    np.testing.assert_allclose([float(r["self_confidence"]) for r in theirs], [float(r["self_confidence"]) for r in ours],
                               atol=1e-3)  # the solver stops a rounding apart: BLAS on 1 thread there, 2 here
    assert rows(report, "outliers.csv") == rows(str(here), "outliers.csv")
    assert [(r["path_a"], r["path_b"]) for r in rows(report, "duplicates.csv")] == \
        [(r["path_a"], r["path_b"]) for r in rows(str(here), "duplicates.csv")]
    record = json.loads(storage.resolve(report).join("audit.json").read_bytes())
    assert record["health"] == mine.health and record["balance"] == mine.balance and record["executor"] == "ray"
    assert len(record["tasks"]) == 2 and sum(t["tasks"] for t in record["tasks"].values()) == int(ran.group(1))


def test_similar_on_both_nodes_equals_the_search_in_one_process(head, s3, tmp_path):
    """Embeddings in a bucket, searched exactly by jobs/find_similar.py under `ray job submit` on the
    two-node cluster, in tasks of 1 MiB of vectors (6 shards, 6 blocks): the pairs and every neighbour
    list equal the search in one process; the summary says the tasks ran on both nodes."""
    import pyarrow.parquet as pq

    import catdog
    from catdog import storage
    from tests import generators
    from tests.test_sharded import write_embeddings

    data = generators.embeddings(6_000, 256, duplicates=60, clusters=50, seed=7)
    splits = np.where(np.arange(6_000) % 4 == 0, "test", "train").astype(object)
    folder = write_embeddings(tmp_path / "emb", data.X, splits, files=6, row_group=500)
    emb, report = s3.upload(folder, f"{s3.prefix}/emb"), f"s3://{s3.prefix}/similar"
    status, logs = submit(head, ["jobs/find_similar.py", emb, "--features-column", "embedding", "--method", "exact",
                                 "--task-memory", "1", "--threshold", "0.95", "--out", report], env_vars=s3.env)
    assert status == "SUCCEEDED", logs
    # Under `ray job submit` (RAY_ADDRESS set) auto picks Ray.
    ran = re.search(r"ran on Ray \(a Ray address\): (\d+) tasks on 2 nodes \((.*)\)", logs)
    assert ran and int(ran.group(1)) == 1 + 6 + 6, logs  # footers, shards, blocks
    rows = [int(r.replace(",", "")) for r in re.findall(r"([\d,]+) rows", ran.group(2))]
    assert len(rows) == 2 and sum(rows) == 2 * 6_000  # each row searched in a shard and merged in a block
    catdog.similar(str(folder), features_column="embedding", method="exact", executor="local", threshold=0.95,
                          report_dir=str(tmp_path / "here"))
    theirs = storage.resolve(report).join("similar.csv").read_bytes().decode().splitlines()
    mine = open(tmp_path / "here" / "similar.csv").read().splitlines()
    # The same pairs (cosines equal but for the last bits, which may order two of them differently).
    assert len(mine) > 60 and sorted(r.rsplit(",", 2)[0] for r in theirs) == sorted(r.rsplit(",", 2)[0] for r in mine)
    lists = storage.resolve(report).join("neighbours")
    table = pq.read_table(lists.path, filesystem=lists.fs).sort_by("row")
    kept = pq.read_table(tmp_path / "here" / "neighbours.parquet")
    assert table.column("path").to_pylist() == kept.column("path").to_pylist()
    np.testing.assert_allclose(np.stack(table.column("similarity").to_numpy(zero_copy_only=False)),
                               np.stack(kept.column("similarity").to_numpy(zero_copy_only=False)), atol=1e-5)
