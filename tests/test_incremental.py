"""Incremental runs: OUT follows ROOT as photos are added, changed, removed and fixed, with work
proportional to the change; every state checked against a fresh full extraction of the same ROOT,
computed image by image in the test's process (`fresh_extraction`)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from catdog import commands, storage, synthetic
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction import extract
from catdog.store import features, layout, manifest
from tests.conftest import (
    assert_rows_match,
    fresh_extraction,
    random_pixels,
    save_image,
    wait_until,
)

pytestmark = pytest.mark.slow


def config_for(root, out, **changes) -> ExtractConfig:
    # In this process: what is under test (listing, index, commits) is the code both executors share
    # (a killed job on Ray: tests/test_resume.py).
    return ExtractConfig(**{**dict(root=str(root), out=str(out), weights="none", image_size=32, shard_size=4,
                                   progress=False, executor="local"), **changes})


def rows(out) -> dict:
    X, _, paths = features.load(str(out))
    return dict(zip(paths, X))


def error_paths(out) -> list:
    if not features.committed(str(out), layout.ERRORS_DIR):
        return []
    return sorted(features.dataset(str(out), layout.ERRORS_DIR).to_table(columns=["path"]).column("path").to_pylist())


def assert_same_as_fresh(out, root) -> None:
    """Every readable image exactly once with its current content's features, as a fresh run gives."""
    expected, unreadable = fresh_extraction(config_for(root, out))
    X, _, paths = features.load(str(out))
    assert len(set(paths)) == len(paths), "a row twice"
    assert_rows_match(paths, X, expected)
    assert error_paths(out) == unreadable


def touch_later(path) -> None:
    """A new modification time even on filesystems with coarse timestamps."""
    later = os.stat(path).st_mtime + 10
    os.utime(path, (later, later))


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    synthetic.make_demo_folder(str(root), per_class=10, size=40)
    (root / "train" / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")
    return root


def test_add_change_remove_and_fix_then_nothing(photos, tmp_path, capsys):
    out = tmp_path / "out"
    first = extract.run(config_for(photos, out))
    assert first.images == 20 and first.errors == 1 and first.changes == ""
    assert error_paths(out) == ["train/cats/broken.jpg"]

    for i in range(3):
        save_image(photos / "train" / "dogs" / f"new.{i}.png", random_pixels(100 + i))
    for path in ("train/cats/cat.0.jpg", "test/dogs/dog.9.jpg"):
        save_image(photos / path, random_pixels(hash(path) % 1000, 30, 30))
        touch_later(photos / path)
    os.remove(photos / "train" / "dogs" / "dog.1.jpg")
    os.remove(photos / "validation" / "cats" / "cat.6.jpg")
    save_image(photos / "train" / "cats" / "broken.jpg", random_pixels(7), format="JPEG")  # fixed
    touch_later(photos / "train" / "cats" / "broken.jpg")

    assert commands.main(["status", str(out), str(photos)]) == 0
    said = capsys.readouterr().out
    assert "would read 6 images: added 3, changed 3, removed 2, unchanged 16" in said and "complete" in said
    save_image(out.parent / "other" / "cats" / "a.png", random_pixels(1))
    assert commands.main(["status", str(out), str(out.parent / "other")]) == 2  # extract would refuse it too
    assert "was made from" in capsys.readouterr().err

    second = extract.run(config_for(photos, out))
    assert second.changes == "added 3, changed 3, removed 2, unchanged 16"
    assert second.processed == 6  # only the new and changed images were read
    assert second.images == 22 and second.errors == 0
    assert not (out / layout.STAGING).exists()
    assert_same_as_fresh(out, photos)
    recorded = manifest.read(storage.resolve(str(out)))
    assert recorded.generation == 2 and recorded.status == "complete"

    third = extract.run(config_for(photos, out))
    assert third.processed == 0 and third.changes == "added 0, changed 0, removed 0, unchanged 22"
    assert "actors      none (nothing to extract)" in third.lines()
    assert_same_as_fresh(out, photos)


def test_verify_content_finds_a_change_under_the_same_size_and_time(photos, tmp_path):
    out = tmp_path / "out"
    extract.run(config_for(photos, out))
    target = photos / "train" / "dogs" / "dog.2.jpg"
    stat = os.stat(target)
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes (inside the JPEG's scan: it still decodes)
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert extract.run(config_for(photos, out)).processed == 0  # size and time alone cannot see it
    verified = extract.run(config_for(photos, out, verify_content=True))
    assert verified.changes == "added 0, changed 1, removed 0, unchanged 20" and verified.processed == 1
    assert_same_as_fresh(out, photos)


def test_a_commit_cut_short_is_finished_by_the_next_run(photos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    extract.run(config_for(photos, out))
    os.remove(photos / "train" / "cats" / "cat.1.jpg")
    save_image(photos / "train" / "cats" / "added.png", random_pixels(5))

    def killed(*args):
        raise KeyboardInterrupt  # stands in for a kill once the commit has begun, before the new index is in

    monkeypatch.setattr(features, "write_without", killed)
    with pytest.raises(KeyboardInterrupt):
        extract.run(config_for(photos, out))
    monkeypatch.undo()
    assert manifest.read(storage.resolve(str(out))).committing["generation"] == 2
    assert commands.main(["status", str(out)]) == 0
    assert "interrupted while committing generation 2" in capsys.readouterr().out
    done = extract.run(config_for(photos, out))
    assert done.processed == 0  # the commit is finished, nothing is read again
    assert_same_as_fresh(out, photos)


def test_killed_incremental_run_keeps_the_previous_state_then_resumes(photos, tmp_path):
    out = tmp_path / "out"
    extract.run(config_for(photos, out, shard_size=2))
    before = rows(out)
    added = 60  # 30 shards: the job is frozen long before the last
    for i in range(added):
        save_image(photos / "train" / "cats" / f"more.{i:02d}.png", random_pixels(200 + i))
    os.remove(photos / "train" / "dogs" / "dog.0.jpg")
    command = [sys.executable, "-m", "catdog.commands", "extract", str(photos), "--out", str(out), "--weights", "none",
               "--image-size", "32", "--shard-size", "2", "--no-progress", "--executor", "local"]
    stage = out / layout.STAGING / "gen-2" / "features"
    job = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # A loaded 2-core machine takes a while to load TensorFlow and the model; once it writes, shards
        # come fast: look often, and freeze every process of the job (SIGSTOP) the moment 3 are seen.
        wait_until(lambda: job.poll() is not None or len(list(stage.rglob("*.parquet"))) >= 3, 420, interval=0.01)
        os.killpg(job.pid, signal.SIGSTOP)
        staged = len(list(stage.rglob("*.parquet")))
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert 3 <= staged < added // 2, "the kill should land mid-run"
    assert rows(out).keys() == before.keys()  # readers still see the previous complete state
    resumed = extract.run(config_for(photos, out, shard_size=2))
    assert resumed.resumed_shards >= staged and resumed.processed == added - 2 * resumed.resumed_shards
    assert resumed.changes == f"added {added}, changed 0, removed 1, unchanged 20"
    assert_same_as_fresh(out, photos)


def test_a_damaged_file_is_named_and_repair_extracts_its_images_again(photos, tmp_path, capsys):
    out = tmp_path / "out"
    extract.run(config_for(photos, out))
    os.remove(photos / "train" / "dogs" / "dog.1.jpg")
    extract.run(config_for(photos, out))  # a second generation: the damaged file is one of its rewritten ones
    files = sorted((out / "features").rglob("*.parquet"))
    damaged = files[len(files) // 2]
    lost = features.read_file(storage.resolve(str(out)), str(damaged.relative_to(out)), ["path"]).num_rows
    damaged.write_bytes(damaged.read_bytes()[:200])  # cut short from outside: no footer
    assert commands.main(["head", str(out), "--model-dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and damaged.name in err and "--repair" in err
    with pytest.raises(CatdogError, match=f"cannot read .*{damaged.name}.*--repair"):
        features.load(str(out))
    # A re-run reads no committed file (its totals come from the index): only --repair looks at them all.
    assert extract.run(config_for(photos, out)).processed == 0
    repaired = extract.run(config_for(photos, out, repair=True))
    assert repaired.repaired == (str(damaged.relative_to(out)),) and repaired.processed == lost
    assert "repaired    1 damaged or missing files, their images extracted again" in repaired.lines()
    assert_same_as_fresh(out, photos)


def test_status_verify_names_a_damaged_file_and_a_re_run_that_must_rewrite_it_says_so(photos, tmp_path, capsys):
    """`status` reads no data file; `status --verify` reads them all, names the damaged one and exits
    1. A plain re-run whose commit must rewrite that file (one of its images was removed) stops in
    one line naming it and --repair, and --repair then finishes that commit and extracts it again."""
    out = tmp_path / "out"
    extract.run(config_for(photos, out))
    assert commands.main(["status", str(out), "--verify"]) == 0
    assert "all intact" in capsys.readouterr().out
    files = sorted((out / "features").rglob("*.parquet"))
    damaged = files[len(files) // 2]
    inside = features.read_file(storage.resolve(str(out)), str(damaged.relative_to(out)), ["path"]).column("path").to_pylist()
    damaged.write_bytes(damaged.read_bytes()[:200])
    assert commands.main(["status", str(out), str(photos)]) == 0  # without --verify the files are not read
    assert "has nothing to do" in capsys.readouterr().out
    assert commands.main(["status", str(out), str(photos), "--verify"]) == 1
    said = capsys.readouterr().out
    assert f"damaged     {damaged.relative_to(out)}" in said and "--repair" in said and "1 damaged, 0 missing" in said
    assert "has nothing to do" not in said and "leaves the damage: use --repair" in said
    os.remove(photos / inside[0])
    args = ["extract", str(photos), "--out", str(out), "--weights", "none", "--image-size", "32", "--shard-size", "4", "--executor", "local"]
    assert commands.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and damaged.name in err and "--repair" in err
    assert commands.main([*args, "--repair"]) == 0
    capsys.readouterr()
    assert_same_as_fresh(out, photos)
    assert commands.main(["status", str(out), "--verify"]) == 0


READER = r"""
import json, sys, time
from pathlib import Path
import catdog
out, stop = sys.argv[1], Path(sys.argv[2])
while not stop.exists():
    try:
        paths = list(catdog.load(out).paths)
        print(json.dumps({"rows": len(paths), "unique": len(set(paths))}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


def test_a_reader_during_commits_sees_the_previous_or_the_next_state_never_a_failure(photos, tmp_path):
    """A reader loops over catdog.load in a process of its own while three incremental runs each
    remove an image (their commits rewrite the files that held them): every read succeeds and sees
    one whole state, never a mix of two."""
    out = tmp_path / "out"
    first = extract.run(config_for(photos, out))
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(out), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        reads = [json.loads(reader.stdout.readline())]  # reading before the first commit begins
        states = {first.images}
        for name in ("cat.2.jpg", "cat.3.jpg", "cat.4.jpg"):
            os.remove(photos / "train" / "cats" / name)
            states.add(extract.run(config_for(photos, out)).images)
    finally:
        stop.touch()
        stdout, _ = reader.communicate(timeout=120)
    reads += [json.loads(line) for line in stdout.splitlines()]
    assert len(reads) >= 5, "the reader should have read several times during the runs"
    assert [r for r in reads if "error" in r] == []
    assert {r["rows"] for r in reads} <= states and all(r["rows"] == r["unique"] for r in reads)
