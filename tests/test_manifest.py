"""OUT's own state: which settings differ, what --overwrite clears, and the lock between processes."""

import json
import os
import signal
import subprocess
import sys

import pytest

from catdog import storage, synthetic
from catdog.errors import CatdogError
from catdog.store import layout, manifest
from catdog.store.lock import locked
from catdog.store.manifest import Manifest
from tests.conftest import wait_until


def test_differences_name_each_changed_setting():
    before = {"preprocess": "vgg16", "input_size": [150, 150, 3], "dtype": "float32", "gone": 1}
    after = {"preprocess": "rescale", "input_size": [150, 150, 3], "dtype": "float16", "new": 2}
    assert manifest.differences(before, after) == ["dtype", "gone", "new", "preprocess"]
    assert manifest.differences(before, dict(before)) == []


def test_prepare_resumes_same_settings_refuses_others_and_overwrite_clears(tmp_path):
    out = storage.resolve(str(tmp_path / "out"))
    manifest.write(out, Manifest(compat={"preprocess": "vgg16", "shard_size": 256}, features={}, config={}))
    (tmp_path / "out" / "features" / "split=train").mkdir(parents=True)
    (tmp_path / "out" / "features" / "split=train" / "part-00000-x.parquet").write_bytes(b"x")
    (tmp_path / "out" / "_tmp" / "leftover.parquet").write_bytes(b"half")
    manifest.prepare(out, {"preprocess": "vgg16", "shard_size": 256}, overwrite=False)
    assert not (tmp_path / "out" / "_tmp").exists() and (tmp_path / "out" / "features").exists()
    with pytest.raises(CatdogError, match=r"other settings \(preprocess, shard_size differ\)"):
        manifest.prepare(out, {"preprocess": "rescale", "shard_size": 64}, overwrite=False)
    manifest.prepare(out, {"preprocess": "rescale"}, overwrite=True)
    assert sorted(os.listdir(tmp_path / "out")) == [] and manifest.read(out) is None


def test_features_without_a_manifest_are_not_adopted(tmp_path):
    (tmp_path / "out" / "features").mkdir(parents=True)
    with pytest.raises(CatdogError, match="holds features but no manifest.json"):
        manifest.prepare(storage.resolve(str(tmp_path / "out")), {}, overwrite=False)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = storage.resolve(str(tmp_path / "out"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.makedirs(out.path)
    (tmp_path / "out" / layout.LOCK).write_text(f"{os.uname().nodename} {dead.pid}")
    with locked(out):
        assert (tmp_path / "out" / layout.LOCK).read_text().endswith(str(os.getpid()))
    assert not (tmp_path / "out" / layout.LOCK).exists()


@pytest.mark.parametrize("taken_by", [None, "otherhost 12345"])
def test_a_lock_deleted_during_the_run_is_not_an_error_and_anothers_lock_stays(tmp_path, taken_by):
    out = storage.resolve(str(tmp_path / "out"))
    lock = tmp_path / "out" / layout.LOCK
    with locked(out):
        lock.unlink()  # an `rm -rf OUT` while the job runs
        if taken_by:
            lock.write_text(taken_by)  # ... and another job took OUT since
    assert (lock.read_text() if lock.exists() else None) == taken_by


@pytest.mark.slow
def test_second_extract_process_is_refused_while_the_first_runs(tmp_path):
    root = tmp_path / "in"
    synthetic.make_demo_folder(str(root), per_class=30, size=40)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "catdog.commands", "extract", str(root), "--out", str(out), "--weights", "none",
               "--image-size", "32", "--shard-size", "2", "--no-progress"]
    first = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (out / layout.LOCK).exists() or first.poll() is not None, 120)
        assert first.poll() is None, "the first job should still be running"
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the refusal must come while the first job holds the lock"
        assert second.returncode == 2, second.stderr
        assert "another catdog job is writing to" in second.stderr and "Traceback" not in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


@pytest.mark.parametrize("text", ["{not json", '{"compat": {}}', '{"compat": {}, "features": {}, "config": {}, "status": "odd"}'])
def test_a_damaged_manifest_is_one_line_naming_the_file(tmp_path, text):
    out = storage.resolve(str(tmp_path / "out"))
    os.makedirs(out.path)
    (tmp_path / "out" / "manifest.json").write_text(text)
    with pytest.raises(CatdogError, match=r"manifest.json is damaged .*--overwrite") as caught:
        manifest.read(out)
    assert "\n" not in str(caught.value)
    manifest.prepare(out, {}, overwrite=True)  # --overwrite replaces it without reading it
    assert manifest.read(out) is None


def test_the_manifest_round_trips_and_ignores_keys_it_does_not_know(tmp_path):
    out = storage.resolve(str(tmp_path / "out"))
    record = Manifest(compat={"shard_size": 8}, features={"dtype": "float32"}, config={"root": "r"}, status="complete",
                      generation=3, totals={"images": 5}, committing=None, last_changes="added 1")
    manifest.write(out, record)
    again = manifest.read(out)
    assert again.replace(updated="") == record and again.updated
    raw = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (tmp_path / "out" / "manifest.json").write_text(json.dumps({**raw, "from_a_newer_version": 1}))
    assert manifest.read(out) == again
