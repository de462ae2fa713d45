"""catdog on a real S3-compatible server (SeaweedFS on loopback, started by the tests): every
command on URIs, exactly once under kills, the lock object, and bad input as one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.dataset as pads
import pytest

from catdog import cluster, commands, storage, synthetic
from catdog.config import DecodeConfig, ExtractConfig, HeadConfig
from catdog.errors import CatdogError
from catdog.extraction import extract
from catdog.heads import fit_head, predict
from catdog.store import features, files, layout, lock
from catdog.store.lock import locked
from catdog.vision import images
from tests.conftest import (
    assert_rows_match,
    demo_with_a_broken_file,
    embedder_pids,
    fresh_extraction,
    random_pixels,
    save_image,
    wait_for_shards,
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return demo_with_a_broken_file(tmp_path_factory.mktemp("s3photos") / "images")


def test_files_are_written_in_place_and_folders_round_trip(s3, tmp_path):
    out = storage.resolve(f"s3://{s3.prefix}/out")
    files.write_text(out, "sub/note.txt", "hi")
    assert out.join("sub", "note.txt").read_bytes() == b"hi"
    assert s3.keys(s3.prefix) == ["out/sub/note.txt"]  # no temporary object, no copy: a PUT is atomic
    with storage.writable_folder(out.join("model")) as local:
        open(os.path.join(local, "a.json"), "w").write("{}")
        os.makedirs(os.path.join(local, "deep"))
        open(os.path.join(local, "deep", "b.bin"), "wb").write(b"\x00" * 1000)
    assert s3.keys(f"{s3.prefix}/out/model") == ["a.json", "deep/b.bin"]
    with storage.readable_folder(out.join("model")) as local:
        assert open(os.path.join(local, "deep", "b.bin"), "rb").read() == b"\x00" * 1000


def test_decode_reads_objects_as_it_reads_files(s3, tmp_path):
    for i in range(20):
        save_image(tmp_path / "img" / f"{i:02d}.png", random_pixels(i))
    uri = s3.upload(tmp_path / "img", f"{s3.prefix}/img")
    names = [f"{i:02d}.png" for i in range(20)] + ["missing.png"]
    config = DecodeConfig(image_size=32)
    remote = images.decode_files([storage.resolve(uri).join(n) for n in names], config)
    local = images.decode_files([storage.resolve(str(tmp_path / "img")).join(n) for n in names], config)
    np.testing.assert_array_equal(remote.pixels, local.pixels)
    assert remote.ok == tuple(range(20)) and [e.index for e in remote.errors] == [20]
    assert remote.errors[0].error == "FileNotFoundError"


def test_bad_object_store_input_is_one_line_and_writes_nothing(s3, photos, capsys, monkeypatch):
    root = s3.upload(photos, f"{s3.prefix}/photos")
    cases = {
        ("extract", root, "--out", "s3://no-such-bucket/x"): "bucket 'no-such-bucket' not found",
        ("extract", f"s3://{s3.prefix}/nothing-here", "--out", f"s3://{s3.prefix}/o1"): "input folder not found",
        ("head", f"s3://{s3.prefix}/none", "--model-dir", f"s3://{s3.prefix}/m"): "no features under",
        ("predict", f"s3://{s3.prefix}/none", root): "is not a catdog model folder",
    }
    for argv, message in cases.items():
        assert commands.main(list(argv)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)
    s3.filesystem().create_dir(f"{s3.prefix}/empty/sub")
    s3.filesystem().open_output_stream(f"{s3.prefix}/empty/sub/readme.txt").close()
    assert commands.main(["extract", f"s3://{s3.prefix}/empty", "--out", f"s3://{s3.prefix}/o3"]) == 2
    assert "no images under" in capsys.readouterr().err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert commands.main(["extract", root, "--out", f"s3://{s3.prefix}/o4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ACCESS_DENIED" in err and "check the credentials" in err
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert commands.main(["extract", root, "--out", f"s3://{s3.prefix}/o5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NETWORK_CONNECTION" in err and "check the endpoint" in err
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
    assert [k for k in s3.keys(s3.prefix) if not k.startswith(("photos/", "empty/"))] == []


def test_lock_object_refuses_a_second_job_and_a_stale_one_is_taken_over(s3, monkeypatch):
    out = storage.resolve(f"s3://{s3.prefix}/out")
    monkeypatch.setattr(lock, "SETTLE_S", 0.1)
    with locked(out):
        held = json.loads(out.join(layout.LOCK).read_bytes())
        assert held["pid"] == os.getpid() and time.time() - held["heartbeat"] < 60
        with pytest.raises(CatdogError, match="another catdog job is writing to s3://"):
            with locked(out):
                pass
    assert not out.join(layout.LOCK).exists()  # released
    stale = {"owner": "dead", "host": "elsewhere", "pid": 1, "heartbeat": time.time() - lock.STALE_S - 1}
    files.write_text(out, layout.LOCK, json.dumps(stale))
    with locked(out):
        assert json.loads(out.join(layout.LOCK).read_bytes())["owner"] != "dead"
    fresh_elsewhere = {**stale, "heartbeat": time.time()}
    files.write_text(out, layout.LOCK, json.dumps(fresh_elsewhere))
    with pytest.raises(CatdogError, match="held|another catdog job"):
        with locked(out):
            pass
    out.join(layout.LOCK).delete()
    assert s3.keys(s3.prefix) == []


def test_workers_get_the_store_settings_but_not_twice_under_a_job(monkeypatch):
    for key in storage.CREDENTIAL_VARIABLES + cluster.LOG_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert cluster.worker_runtime_env() is None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://h:1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("UNRELATED", "x")
    assert cluster.worker_runtime_env() == {"env_vars": {"AWS_ACCESS_KEY_ID": "k", "AWS_ENDPOINT_URL": "http://h:1",
                                                         "TF_CPP_MIN_LOG_LEVEL": "2"}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # inside `ray job submit`: the job's env reaches workers
    assert cluster.worker_runtime_env() is None


@pytest.mark.slow
def test_killed_s3_job_resumes_to_exactly_once_with_the_features_of_each_image(s3, ray_local, tmp_path):
    root_dir = tmp_path / "many"
    synthetic.make_demo_folder(str(root_dir), per_class=30, size=40, splits={"train": 1.0})
    root, out = s3.upload(root_dir, f"{s3.prefix}/photos"), f"s3://{s3.prefix}/features"
    command = [sys.executable, "-m", "catdog.commands", "extract", root, "--out", out, "--weights", "none",
               "--image-size", "32", "--shard-size", "2", "--no-progress", "--executor", "ray"]
    job = subprocess.Popen(command, start_new_session=True, env={**os.environ, **s3.env},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_shards(out, 3, job, 240)
        actors = embedder_pids(job.pid)
        assert actors, "the job's embedding actor, to kill"
        for pid in actors:
            os.kill(pid, signal.SIGKILL)  # an actor first: Ray restarts it and the job goes on
        wait_for_shards(out, 8, job, 240)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # then the driver, with its embedded Ray
        job.wait()
    before = len(features.committed(out))
    assert 8 <= before < 30, "the kill should land mid-run"
    assert out.endswith("/features") and storage.resolve(out).join(layout.LOCK).exists()  # left by the killed job

    # Its lock is fresh, but its owner ran here and is gone: taken over at once.
    summary = extract.run(ExtractConfig(root=root, out=out, weights="none", image_size=32, shard_size=2, progress=False))
    X, y, paths = features.load(out)
    expected = sorted(p.relative_to(root_dir).as_posix() for p in root_dir.rglob("*.jpg"))
    assert sorted(paths) == expected and len(set(paths)) == 60
    assert summary.resumed_shards >= before and summary.images == 60
    keys = s3.keys(f"{s3.prefix}/features")
    assert sorted(k for k in keys if k not in ("manifest.json", "index.parquet")) == sorted(f"features/split={s}/{n}" for s, n in features.committed(out))
    written = json.loads(storage.resolve(out).join("manifest.json").read_bytes())["written_by"]
    # Every shard, from this run or the killed one, with the node that wrote it: the killed run's
    # own embedded Ray for the first ones (read back from their files), the tests' Ray for the rest.
    assert len(written) == 30 and len(set(written.values())) == 2
    assert ray_local.get_runtime_context().get_node_id() in written.values()

    expected, unreadable = fresh_extraction(ExtractConfig(root=str(root_dir), out="", weights="none", image_size=32))
    mine = features.load(out)
    assert not unreadable
    assert_rows_match(mine.paths, mine.X, expected)
    # Other readers see the same rows straight from the bucket.
    table = pads.dataset(f"{s3.prefix}/features/features", filesystem=storage.resolve(out).fs, format="parquet",
                         partitioning="hive").to_table(columns=["path"])
    assert table.num_rows == 60


@pytest.mark.slow
def test_head_and_predict_from_and_to_the_bucket(s3, photos, weights_file, tmp_path):
    root, out = s3.upload(photos, f"{s3.prefix}/photos"), f"s3://{s3.prefix}/features"
    os.makedirs(tmp_path / "w")
    os.symlink(weights_file, tmp_path / "w" / "vgg16.weights.h5")
    weights = s3.upload(tmp_path / "w", f"{s3.prefix}/weights") + "/vgg16.weights.h5"
    summary = extract.run(ExtractConfig(root=root, out=out, weights=weights, image_size=32, shard_size=4, progress=False,
                                        executor="local"))  # Ray on a bucket: the killed job and throttling tests
    assert summary.images == len(list(photos.rglob("*.jpg"))) - 1 and summary.errors == 1
    model = f"s3://{s3.prefix}/model"
    report = fit_head.run(HeadConfig(features=out, model_dir=model, model="logreg"))
    assert set(s3.keys(f"{s3.prefix}/model")) >= {"head.json", "head.skops", "report.json", "curves.png"}
    assert json.loads(storage.resolve(model).join("report.json").read_bytes())["splits"] == report.splits
    assert not os.path.exists("s3:")
    one = f"{root}/test/cats/" + sorted(p.name for p in (photos / "test" / "cats").iterdir())[0]
    from_files = predict.load_model(model).predictions([one])
    from_folder = {p.path: p.probabilities["dogs"] for p in predict.load_model(model).predictions([f"{root}/test"])}
    assert from_files[0].path == one and from_files[0].probabilities["dogs"] == pytest.approx(from_folder[one], abs=1e-6)
    assert len(from_folder) == len(list((photos / "test").rglob("*.jpg")))


@pytest.mark.slow
def test_the_first_shard_of_a_bucket_is_written_before_its_listing_ends(s3, ray_local, tmp_path, monkeypatch):
    """A folder of 32 sub-folders on the bucket, listed through a proxy that holds the answers to its
    LIST calls after the first 12 until a shard's file is written, and each for 0.5 s after that (a large
    bucket's listing, still going on): the run does not wait for its listing to end, and writes every
    image once with the features a run on the local copy gives."""
    from tests.faultproxy import Proxy

    for k in range(32):
        save_image(tmp_path / "in" / ("cats" if k % 2 else "dogs") / f"{k:02d}" / "a.png", random_pixels(k), format="PNG")
    root, out = s3.upload(tmp_path / "in", f"{s3.prefix}/photos"), f"s3://{s3.prefix}/features"
    monkeypatch.setattr("catdog.extraction.imagefolder.LOOKAHEAD", 2)
    # The first 12 of ROOT: the layout's look at it, then the walk's first folders (a shard of 2 needs two).
    with Proxy(s3.endpoint, list_delay_s=0.5, hold_listings_after=12, listing_pattern=b"photos",
               release_on=b"/features/split") as proxy:
        query = f"?endpoint_override=127.0.0.1:{proxy.port}&scheme=http"
        config = ExtractConfig(root=root + query, out=out + query, weights="none", image_size=32, shard_size=2,
                               progress=False)
        done = extract.run(config)
    assert proxy.listings >= 34  # the bucket, two classes, 32 folders
    assert done.timeline["first_shard"] < done.timeline["listed"], done.timeline
    assert done.cost.stages["listing"] > 5  # 20 and more listings after the first shard's file, 0.5 s each, 2 at a time
    expected, _ = fresh_extraction(config.replace(root=str(tmp_path / "in"), out=str(tmp_path / "local")))
    stored = features.load(out)
    assert len(stored.paths) == len(set(stored.paths)) == 32
    assert_rows_match(list(stored.paths), stored.X, expected)


@pytest.mark.slow
def test_incremental_run_on_the_bucket(s3, photos, tmp_path):
    """In this process: the listing's comparison with the bucket's index is the executors' shared code."""
    root, out = s3.upload(photos, f"{s3.prefix}/photos"), f"s3://{s3.prefix}/features"
    config = ExtractConfig(root=root, out=out, weights="none", image_size=32, shard_size=4, progress=False, executor="local")
    first = extract.run(config)
    fs = s3.filesystem()
    fs.delete_file(f"{s3.prefix}/photos/test/cats/" + sorted(p.name for p in (photos / "test" / "cats").iterdir())[0])
    save_image(tmp_path / "new" / "train" / "dogs" / "new.png", random_pixels(3))
    s3.upload(tmp_path / "new", f"{s3.prefix}/photos")
    second = extract.run(config)
    assert second.changes == f"added 1, changed 0, removed 1, unchanged {first.images + first.errors - 1}"
    assert second.processed == 1 and second.images == first.images
    keys = s3.keys(f"{s3.prefix}/features")
    assert not [k for k in keys if k.startswith("_staging") or k.startswith("_tmp")]
    paths = set(features.load(out).paths)
    assert "train/dogs/new.png" in paths and len(paths) == first.images


def test_a_store_that_refuses_writes_gets_no_model_and_no_success_line(s3, tmp_path, monkeypatch, capsys):
    """Every PUT answered 500 (a store with no space left): one line naming the store's error, exit 2,
    no success line, and no head.json in the bucket (a model folder without it is visibly incomplete)."""
    from tests.faultproxy import Proxy
    from tests.test_features import write_dataset

    out, _ = write_dataset(tmp_path, {("train", "a.parquet"): ([0, 1] * 10, 2), ("test", "b.parquet"): ([0, 1] * 5, 4)})
    with Proxy(s3.endpoint, refuse_writes=True) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        code = commands.main(["head", out.path, "--model-dir", f"s3://{s3.prefix}/m"])
    captured = capsys.readouterr()
    assert code == 2 and proxy.refused >= 1
    assert captured.err.startswith(f"catdog: error: cannot write s3://{s3.prefix}/m/") and captured.err.count("\n") == 1
    assert "InternalError" in captured.err or "INTERNAL" in captured.err.upper()
    assert "model, report.json" not in captured.out
    assert not [k for k in s3.keys(s3.prefix) if k.endswith("head.json")]


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["ray", "local"])
def test_an_extraction_whose_shard_writes_are_refused_stops_in_one_line_then_resumes(s3, ray_local, tmp_path,
                                                                                      monkeypatch, capsys, executor):
    """The store takes the lock and the manifest but refuses the shards: one line, exit 2, no summary;
    once it takes them again, the same command finishes with every image once."""
    from tests.faultproxy import Proxy

    root = synthetic.make_demo_folder(str(tmp_path / "in"), per_class=6, size=40, splits={"train": 1.0})
    out = f"s3://{s3.prefix}/features"
    argv = ["extract", root, "--weights", "none", "--image-size", "32", "--shard-size", "4", "--no-progress",
            "--executor", executor]
    with Proxy(s3.endpoint, refuse_writes=True, pattern=b"/features/split") as proxy:  # "=" is percent-encoded in the path
        # The endpoint in the URI, not the environment: the writers (Ray workers) must go through the proxy too.
        through_proxy = f"{out}?endpoint_override=127.0.0.1:{proxy.port}&scheme=http"
        code = commands.main([*argv, "--out", through_proxy])
    captured = capsys.readouterr()
    assert code == 2 and proxy.refused >= 1, captured.err
    assert captured.err.startswith(f"catdog: error: cannot write to {out}") and captured.err.count("\n") == 1, captured.err
    assert "run the same command again to resume" in captured.err and "images " not in captured.out
    assert commands.main([*argv, "--out", out]) == 0
    paths = list(features.load(out).paths)
    assert len(paths) == len(set(paths)) == 12


@pytest.mark.slow
def test_throttling_and_resets_are_retried_transparently(s3, ray_local, photos, tmp_path, monkeypatch):
    """5 % of requests answered 503 SlowDown and 3 % reset, reading ROOT and writing OUT on the store,
    then a head uploaded through it: every step succeeds, every image once, as without faults."""
    from tests.faultproxy import Proxy

    s3.upload(photos, f"{s3.prefix}/photos")
    with Proxy(s3.endpoint, slow_down=0.05, reset=0.03, seed=7) as proxy:
        query = f"?endpoint_override=127.0.0.1:{proxy.port}&scheme=http"
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        done = extract.run(ExtractConfig(root=f"s3://{s3.prefix}/photos{query}", out=f"s3://{s3.prefix}/features{query}",
                                         weights="none", image_size=32, shard_size=4, progress=False))
        assert commands.main(["head", f"s3://{s3.prefix}/features{query}", "--model-dir", f"s3://{s3.prefix}/m{query}"]) == 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # the proxy is gone
    assert proxy.faults >= 5, proxy.requests
    out = f"s3://{s3.prefix}/features"
    good = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg") if p.name != "broken.jpg")
    assert sorted(features.load(out).paths) == good and done.images == len(good) and done.errors == 1
    assert [k for k in s3.keys(f"{s3.prefix}/m") if k.endswith("head.json")]


def test_a_small_file_read_through_throttling_is_read_again(s3):
    """A 503 SlowDown answering the read of a file smaller than the answer's own body (a lock, a
    manifest): aws-sdk-cpp overflows the read's buffer and reports a non-retryable INTERNAL_FAILURE
    ("Failed to flush response stream"); catdog reads the file again, as the retry strategy would."""
    from tests.faultproxy import Proxy

    data = b'{"owner": "host", "pid": 1}'
    with s3.filesystem().open_output_stream(f"{s3.prefix}/small.json") as stream:
        stream.write(data)
    with Proxy(s3.endpoint, slow_down=0.3, seed=1) as throttling:
        small = storage.resolve(f"s3://{s3.prefix}/small.json?endpoint_override=127.0.0.1:{throttling.port}&scheme=http")
        assert [small.read_bytes() for _ in range(30)] == [data] * 30
    assert throttling.faults >= 5


def test_a_dataset_of_many_small_files_is_read_whole_through_throttling(s3, tmp_path):
    """96 small shard files read through a store answering 5 % of requests with 503 SlowDown. A
    throttled small read (one file's labels) cannot be retried by the store's client (see
    `storage.small_reads_retried`), and the whole dataset read again would meet another one almost
    every time: each file is read again on its own. The rows, the labels alone, the stream and the
    row groups similar and audit read equal a read without faults."""
    from catdog.insight import sharded
    from tests.faultproxy import Proxy
    from tests.test_features import write_dataset

    out, _ = write_dataset(tmp_path, {("train", f"part-{k:03d}.parquet"): ([0, 1, 1], k) for k in range(96)})
    uri = s3.upload(out.path, f"{s3.prefix}/out")
    expected = features.load(uri)
    with Proxy(s3.endpoint, slow_down=0.05, seed=5) as proxy:
        via = f"{uri}?endpoint_override=127.0.0.1:{proxy.port}&scheme=http"
        stored = features.load(via)
        labels = features.read_labels(via, "train")
        streamed = list(features.stream(via, "train", chunk_rows=4))
        # The same files as another tool's embeddings, read a row group at a time as similar and audit do.
        source = sharded.Source(storage.resolve(f"{uri}/features?{via.split('?')[1]}"), features_column="features")
        pieces = sharded.read(source, sharded.pieces(source, sharded.here), with_vectors=False)
    assert proxy.faults >= 5, proxy.requests
    assert sorted(pieces.paths) == sorted(expected.paths)
    assert list(stored.paths) == list(expected.paths) and len(expected.paths) == 288
    np.testing.assert_array_equal(stored.X, expected.X)
    np.testing.assert_array_equal(labels, expected.y)
    np.testing.assert_array_equal(np.concatenate([X for X, _ in streamed]), expected.X)
    np.testing.assert_array_equal(np.concatenate([y for _, y in streamed]), expected.y)


def test_a_store_that_does_not_answer_a_read_fails_the_shard_not_the_image(s3, photos, monkeypatch):
    """After AWS_MAX_ATTEMPTS tries, a read the store never answers is the store's error: the shard
    stops (its images are not recorded as bad); a missing object is still the image's own error."""
    from catdog.extraction import stages
    from tests.faultproxy import Proxy

    s3.upload(photos, f"{s3.prefix}/photos")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with Proxy(s3.endpoint) as healthy:
        root = storage.resolve(f"s3://{s3.prefix}/photos?endpoint_override=127.0.0.1:{healthy.port}&scheme=http")
        row = {"split": "train", "name": "p.parquet", "paths": ["train/cats/cat.0.jpg"], "labels": [0]}
        for fault in ("reset", "stall"):  # from here on, every request is reset, or stalls
            setattr(healthy, fault, 1.0)
            healthy.faults = 0
            with pytest.raises(images.StoreError, match=r"cannot read s3://.*cat.0.jpg\?endpoint_override=.*: AWS Error NETWORK_CONNECTION"):
                stages.decode_stage(row, root=root, config=DecodeConfig(32))
            assert 2 <= healthy.faults <= 3, fault  # AWS_MAX_ATTEMPTS tries (curl resends one on a reset connection)
            setattr(healthy, fault, 0.0)
    decoded = images.decode_files([storage.resolve(f"s3://{s3.prefix}/photos/train/cats/nowhere.jpg")], DecodeConfig(32))
    assert [e.error for e in decoded.errors] == ["FileNotFoundError"]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "many")
    with pytest.raises(CatdogError, match="AWS_MAX_ATTEMPTS must be a whole number"):
        storage.resolve(f"s3://{s3.prefix}/photos")


@pytest.mark.slow
def test_a_full_store_gets_no_model_and_no_features_and_no_success_line(tmp_path, capsys, monkeypatch):
    """A SeaweedFS of its own with room for one volume: a bucket that has it, and a second that has
    none. Its own refusal (not a proxy's), for head and extract alike; the first bucket still works."""
    from tests import s3server
    from tests.test_features import write_dataset

    server = s3server.start(str(tmp_path / "full"), volumes=1)
    try:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        server.make_bucket("first")
        server.make_bucket("second")
        out, _ = write_dataset(tmp_path, {("train", "a.parquet"): ([0, 1] * 10, 2), ("test", "b.parquet"): ([0, 1] * 5, 4)})
        assert commands.main(["head", out.path, "--model-dir", "s3://first/m"]) == 0  # takes the one volume
        capsys.readouterr()
        assert commands.main(["head", out.path, "--model-dir", "s3://second/m"]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("catdog: error: cannot write s3://second/m/") and captured.err.count("\n") == 1
        assert "model, report.json" not in captured.out and not server.keys("second")
        assert [k for k in server.keys("first/m") if k == "head.json"]
    finally:
        server.stop()
