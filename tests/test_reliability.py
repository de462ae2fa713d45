"""Bad input, odd images, faults and misuse: nothing lost, nothing duplicated, clear errors."""

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from catdog import commands, storage, synthetic
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction import extract
from catdog.store import features, files, layout, manifest
from tests.conftest import embedder_pids, random_pixels, wait_for_shards

ROOT_USER = os.geteuid() == 0


def write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def odd_folder(root) -> tuple[set, dict]:
    """Every case of bad and odd input in one labeled folder: (paths that decode, {path: error})."""
    rgb = Image.fromarray(random_pixels(0, 30, 50))
    jpeg = encoded(rgb, "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    good = {
        "cats/alpha.png": encoded(Image.fromarray(random_pixels(1, 20, 20)).convert("RGBA"), "PNG"),
        "cats/sixteen.png": encoded(Image.fromarray((np.arange(400, dtype=np.uint16).reshape(20, 20) * 160)), "PNG"),
        "cats/gray.jpg": encoded(rgb.convert("L"), "JPEG"),
        "cats/palette.gif": encoded(rgb.convert("P"), "GIF"),
        "cats/cmyk.jpg": encoded(rgb.convert("CMYK"), "JPEG"),
        "cats/photo.webp": encoded(rgb, "WEBP"),
        "cats/UPPER.JPEG": jpeg,
        "cats/rotated.jpg": encoded(rgb, "JPEG", exif=exif),
        "cats/chat_été_猫.jpg": jpeg,
        os.fsdecode(b"cats/caf\xe9.jpg"): jpeg,  # not UTF-8: stored as "cats/caf\\xe9.jpg"
        "dogs/deep/er/nested.png": encoded(rgb, "PNG"),
        "dogs/locked.jpg": jpeg,
    }
    bad = {
        "dogs/empty.jpg": (b"", "UnidentifiedImageError"),
        "dogs/truncated.jpg": (jpeg[: len(jpeg) // 3], "OSError"),
        "dogs/text.jpg": (b"hello, I am text\n" * 20, "UnidentifiedImageError"),
        "dogs/noise.png": (np.random.default_rng(0).bytes(2048), "UnidentifiedImageError"),
        "dogs/bomb.png": (encoded(Image.new("L", (4000, 4000)), "PNG"), "ImageTooLarge"),
    }
    for path, data in good.items():
        write(os.path.join(root, path), data)
    for path, (data, _) in bad.items():
        write(os.path.join(root, path), data)
    os.chmod(os.path.join(root, "dogs/locked.jpg"), 0)
    os.symlink("..", os.path.join(root, "dogs", "deep", "loop"))
    os.symlink(os.path.join(root, "gone.jpg"), os.path.join(root, "dogs", "broken_link.jpg"))
    return ({storage.display_path(p) for p in good},
            {**{p: e for p, (_, e) in bad.items()}, "dogs/broken_link.jpg": "FileNotFoundError"})


@pytest.mark.slow
def test_odd_folder_gives_expected_rows_and_error_rows(tmp_path):
    root = tmp_path / "odd"
    good, bad = odd_folder(str(root))
    if not ROOT_USER:  # root reads any file; others cannot read this one
        good.discard("dogs/locked.jpg")
        bad["dogs/locked.jpg"] = "PermissionError"
    config = ExtractConfig(root=str(root), out=str(tmp_path / "out"), weights="none", image_size=32,
                           shard_size=4, max_pixels=4_000_000, progress=False, executor="local")
    summary = extract.run(config)
    X, y, paths = features.load(config.out)
    assert sorted(paths) == sorted(good) and len(set(paths)) == len(paths)
    assert np.isfinite(X).all()
    errors = features.dataset(config.out, "errors").to_table().to_pylist()
    assert {e["path"]: e["error"] for e in errors} == bad
    assert (summary.images, summary.errors) == (len(good), len(bad))
    assert all(not p.startswith(("/", "..")) and "/../" not in p for p in paths)
    assert extract.run(config).processed == 0  # every name, stored or not as it is on disk, is known again


AS_NOBODY = r"""
import os, sys
from catdog import storage
from catdog.config import DecodeConfig
from catdog.vision import images
readable, secret = (storage.resolve(p) for p in sys.argv[1:])
images.decode_files([readable], DecodeConfig(32))  # everything a decode loads, loaded as root
os.setgid(65534)
os.setuid(65534)
decoded = images.decode_files([secret], DecodeConfig(32))
print(repr(([e.error for e in decoded.errors], decoded.ok)))
"""


@pytest.mark.skipif(not ROOT_USER, reason="needs root to drop to another user")
def test_unreadable_file_is_an_error_row_for_a_user_without_access(tmp_path):
    """As root nothing is unreadable, so decode as `nobody`, for real: in a process of its own that
    gives up root (never a fork of this one, which may hold the suite's Ray and its gRPC threads)."""
    write(str(tmp_path / "in" / "secret.jpg"), encoded(Image.fromarray(random_pixels(3)), "JPEG"))
    write(str(tmp_path / "in" / "open.jpg"), encoded(Image.fromarray(random_pixels(4)), "JPEG"))
    os.chmod(tmp_path / "in" / "secret.jpg", 0)
    os.chmod(tmp_path, 0o755)
    done = subprocess.run([sys.executable, "-c", AS_NOBODY, str(tmp_path / "in" / "open.jpg"),
                           str(tmp_path / "in" / "secret.jpg")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "(['PermissionError'], ())"


KILLED_JOB = r"""
import json, sys
import catdog
done = catdog.extract(sys.argv[1], sys.argv[2], weights="none", image_size=32, shard_size=2, batch_size=2, progress=False,
                      executor="ray")
print(json.dumps({"images": done.images, "actors": sorted({a["pid"] for a in done.embedders})}))
"""


@pytest.mark.slow
def test_actor_killed_mid_run_is_restarted_exactly_once(tmp_path):
    """The job runs in a process of its own, with its own Ray: a killed actor never touches the Ray
    the other tests share."""
    import json

    root, out = tmp_path / "in", tmp_path / "out"
    synthetic.make_demo_folder(str(root), per_class=40, size=40, splits={"train": 1.0})
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    job = subprocess.Popen([sys.executable, "-c", KILLED_JOB, str(root), str(out)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_shards(out, 3, job, timeout=180)
        embedders = embedder_pids(job.pid)
        assert len(embedders) == 1, "one live embedding actor to kill"
        os.kill(embedders[0], signal.SIGKILL)
        killed_at = len(features.committed(str(out)))
        stdout, stderr = job.communicate(timeout=300)
    finally:
        job.kill()
    assert job.returncode == 0, stderr[-3000:]
    assert killed_at < 40, "the kill should land mid-run"
    summary = json.loads(stdout.strip().splitlines()[-1])
    X, y, paths = features.load(str(out))
    assert sorted(paths) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert len(set(paths)) == 80 and summary["images"] == 80
    assert embedders[0] in summary["actors"] and len(summary["actors"]) == 2  # the first actor and its restart


def test_crash_while_writing_leaves_nothing_visible(tmp_path, monkeypatch):
    out = storage.resolve(str(tmp_path / "out"))
    final = storage.join(out.path, "features", "split=train", "part-00000-x.parquet")

    def half_then_crash(tmp):
        with out.fs.open_output_stream(tmp) as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    with pytest.raises(OSError):
        files.commit(out, final, half_then_crash)
    assert not os.path.exists(final) and features.committed(out) == set()
    assert os.listdir(tmp_path / "out" / "_tmp")  # the half-written file is there, out of view
    manifest.prepare(out, {}, overwrite=False)  # the next run clears the leftovers
    assert not (tmp_path / "out" / "_tmp").exists()


def run_cli(capsys, *argv):
    code = commands.main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture
def labeled(tmp_path):
    root = tmp_path / "in"
    synthetic.make_demo_folder(str(root), per_class=2, size=32)
    return root


def test_wrong_usage_is_one_line_and_non_zero(capsys, tmp_path, labeled):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    mixed = tmp_path / "mixed"
    synthetic.make_demo_folder(str(mixed), per_class=2, size=32)
    Image.fromarray(random_pixels(0)).save(mixed / "test" / "loose.jpg")
    (tmp_path / "file").write_text("x")
    cases = [
        (["extract", tmp_path / "empty", "--out", tmp_path / "o"], "no images under"),
        (["extract", tmp_path / "docs", "--out", tmp_path / "o"], "no images under"),
        (["extract", mixed, "--out", tmp_path / "o"], "labels in some splits only"),
        (["extract", labeled, "--out", tmp_path / "file" / "out", "--weights", "none"], "cannot create output folder"),
        (["extract", labeled, "--out", tmp_path / "o", "--address", "127.0.0.1:1"], "cannot reach Ray at 127.0.0.1:1"),
        (["predict", tmp_path / "docs", labeled / "test"], "is not a catdog model folder"),
        (["head", tmp_path / "empty", "--model-dir", tmp_path / "m"], "no features under"),
    ]
    for argv, message in cases:
        code, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


# `catdog` with Ctrl-C as in a terminal, however pytest was started: a non-interactive shell starts
# `cmd &` with SIGINT ignored, the ignore is inherited, and Python then installs no KeyboardInterrupt
# handler (the job ran to the end and exited 0 under a CI started in the background). Set in the job
# itself, not in a preexec_fn: that would run Python in a fork of this process, which holds Ray's threads.
INTERRUPTIBLE = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                 "from catdog.commands import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.slow
@pytest.mark.parametrize("signals, code, said, resume", [
    ((signal.SIGINT, signal.SIGINT, signal.SIGINT), 130, "interrupted", True),  # three quick Ctrl-Cs are one
    ((signal.SIGTERM,), 143, "terminated", False),  # as Ctrl-C, whatever Ray installs for itself; same resume
])
def test_ctrl_c_and_sigterm_stop_in_one_line_and_the_job_resumes(tmp_path, signals, code, said, resume):
    root = tmp_path / "in"
    synthetic.make_demo_folder(str(root), per_class=75, size=40)
    out = tmp_path / "out"
    # The signal follows the first committed shard; 150 photos in shards of 2 leave the job seconds of
    # work after it: on two cores, 2 to 4 shards of the 75 had been committed when it stopped.
    argv = [sys.executable, "-c", INTERRUPTIBLE, "extract", str(root), "--out", str(out), "--weights", "none",
            "--image-size", "32", "--shard-size", "2", "--no-progress", "--executor", "ray"]
    job = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_shards(out, 1, job, 180)
        for sent in signals:
            job.send_signal(sent)
            time.sleep(0.2)  # a user's pace between presses, not a wait for anything: signals do not queue
        stdout, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert job.returncode == code, err[-3000:]
    assert err.strip().splitlines()[-1] == f"catdog: {said}; committed shards are kept, re-run the same command to resume"
    assert "Traceback" not in err and "SIGTERM received" not in err and "raylet" not in err, err[-3000:]
    assert stdout == ""  # no summary, and no Ray line either
    assert not (out / layout.LOCK).exists()
    kept = len(features.load(str(out)).paths)
    assert 0 < kept < 150
    if not resume:
        return
    # The re-run as a user runs it, in a process of its own; in that process (what resumes is the
    # executors' shared code, and a second Ray would cost the suite its start-up).
    again = subprocess.run([*argv[:-1], "local"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    paths = features.load(str(out)).paths
    assert 0 < kept < len(paths) == len(set(paths)) == 150
    assert "images      150\n" in again.stdout and f"resumed     {kept // 2} shards already committed" in again.stdout


def test_a_job_that_stops_moving_is_stopped_in_one_line_then_resumes(ray_local, tmp_path):
    """An actor that asks for a GPU this Ray does not have is never placed, and Ray waits for it for
    ever: the watchdog stops the job; the same job without the GPU then completes it, every image once."""
    root = tmp_path / "in"
    synthetic.make_demo_folder(str(root), per_class=6, size=40)
    config = ExtractConfig(root=str(root), out=str(tmp_path / "out"), weights="none", image_size=32, shard_size=4,
                           progress=False, stall_timeout=6)
    with pytest.raises(CatdogError, match="no shard finished in 6 s: the cluster is not making progress"):
        extract.run(config.replace(gpus_per_actor=1))  # a hang would be ended by the test's timeout
    assert not (tmp_path / "out" / layout.LOCK).exists()
    again = extract.run(config.replace(executor="local"))  # no Ray start-up again for 12 images
    paths = features.load(config.out).paths
    assert len(paths) == len(set(paths)) == len(list(root.rglob("*.jpg"))) == again.images


FULL_DISK = r"""
set -u
mount -t tmpfs -o size=160k tmpfs "$DISK"
python -m catdog.commands extract "$ROOT" --out "$DISK/out" $ARGS > "$WORK/first.out" 2> "$WORK/first.err"
echo $? > "$WORK/first.rc"
python -m catdog.commands head "$ROOT_FEATURES" --model-dir "$DISK/model" > "$WORK/head.out" 2> "$WORK/head.err"
echo $? > "$WORK/head.rc"
mount -o remount,size=64m tmpfs "$DISK"
python -m catdog.commands extract "$ROOT" --out "$DISK/out" $ARGS > "$WORK/second.out" 2> "$WORK/second.err"
echo $? > "$WORK/second.rc"
python -c "import sys, catdog; p = catdog.load(sys.argv[1]).paths; print(len(p), len(set(p)))" "$DISK/out" > "$WORK/rows"
"""


def _can_mount_tmpfs() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs a mount namespace (root) for a small tmpfs")
def test_a_full_disk_is_one_line_and_the_run_after_freeing_space_is_exactly_once(tmp_path):
    """A tmpfs of 160 KiB, in a mount namespace of the test's own: the extraction fills it, then a
    head's model folder; each stops in one line with no success line; once the disk is larger, the
    same command completes with every image once."""
    root = tmp_path / "in"
    synthetic.make_demo_folder(str(root), per_class=60, size=40)
    features_out = tmp_path / "features"
    extract.run(ExtractConfig(root=str(root), out=str(features_out), weights="none", image_size=32, progress=False,
                              executor="local"))
    disk = tmp_path / "disk"
    disk.mkdir()
    env = {**os.environ, "DISK": str(disk), "ROOT": str(root), "WORK": str(tmp_path), "ROOT_FEATURES": str(features_out),
           "ARGS": "--weights none --image-size 32 --shard-size 4 --no-progress"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(["unshare", "--mount", "sh", "-c", FULL_DISK], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = {name: (int((tmp_path / f"{name}.rc").read_text()), (tmp_path / f"{name}.out").read_text(),
                     (tmp_path / f"{name}.err").read_text()) for name in ("first", "head", "second")}
    code, out, err = result["first"]
    assert code == 2 and out == "", err[-3000:]
    assert err.strip().splitlines()[-1].startswith("catdog: error: cannot write to ") and "No space left on device" in err
    assert "Traceback" not in err
    code, out, err = result["head"]
    assert code in (1, 2) and "model, report.json" not in out and "Traceback" not in err, err[-3000:]
    assert "No space left on device" in err.strip().splitlines()[-1]
    code, out, err = result["second"]
    assert code == 0 and "images      120" in out, err[-3000:]
    assert (tmp_path / "rows").read_text().split() == ["120", "120"]
