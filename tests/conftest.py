import collections
import functools
import os
import time

import numpy as np
import psutil
import pytest
from PIL import Image

from catdog import storage, synthetic
from catdog.config import EmbedConfig, ExtractConfig
from catdog.extraction import imagefolder
from catdog.store import features
from catdog.vision import convbase, images

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
# Ray Train's controller polls its workers every 2 s by default: each run in the tests would wait for
# it to see a finished epoch. Propagated by Ray to the controller; it changes no result.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")


def pytest_collection_modifyitems(items):
    """A test that needs the embedded Ray or the S3 server is slow by definition; others mark themselves. Files with
    the most slow tests run first, so that the two test processes end on short files together
    rather than one on a long file alone (within a file, and between equals, the order stays)."""
    for item in items:
        if {"ray_local", "s3", "s3_server"} & set(getattr(item, "fixturenames", ())):  # Ray, or a real S3 server
            item.add_marker(pytest.mark.slow)
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One embedded Ray for the in-process tests; the library reuses it instead of starting its own.
    Its workers can reach the test S3 server, as `catdog.cluster.ray_session` would arrange. Their own
    output (TensorFlow's start-up lines) stays in Ray's log files: Ray would forward it to this
    process's stderr whenever it arrives, into whichever test's captured output runs then."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             runtime_env={"env_vars": s3_server.env})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (SeaweedFS) on loopback for the whole session."""
    from tests import s3server

    server = s3server.start(str(tmp_path_factory.mktemp("seaweedfs")))
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, request):
    """The server, with this process configured the AWS way, and a prefix of its own for this test:
    `s3.prefix` is BUCKET/TEST-NAME (one bucket per session: each bucket costs the server volumes)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    if not getattr(s3_server, "bucket", None):
        s3_server.bucket = s3_server.make_bucket("catdog-tests")
    s3_server.prefix = f"{s3_server.bucket}/" + "".join(c if c.isalnum() else "-" for c in request.node.name)
    return s3_server


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory):
    """A VGG16 notop weights file made here, independently of catdog, with its own seed."""
    import keras

    keras.utils.set_random_seed(1234)
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(64, 64, 3))
    path = tmp_path_factory.mktemp("weights") / "vgg16_test_notop.weights.h5"
    model.save_weights(str(path))
    return str(path)


def demo_with_a_broken_file(root) -> "os.PathLike":
    """The cats-vs-dogs demo folder (8 per class, 40 px) with one truncated JPEG under train/cats."""
    synthetic.make_demo_folder(str(root), per_class=8, size=40)
    (root / "train" / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")
    return root


def save_image(path, pixels: np.ndarray, **kwargs) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return str(path)


def random_pixels(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def fresh_extraction(config: ExtractConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """What a fresh extraction of config.root holds, computed in this process from catdog's decode and
    conv base alone, with no Ray and no pipeline: {path: features} of the images that decode, and the
    paths of those that do not."""
    root = storage.resolve(config.root)
    found = imagefolder.scan(root)
    decoded = images.decode_files([root.join(p) for p in found.paths], config.decode)
    X = _conv_base(config.weights, config.seed, config.embed).embed(decoded.pixels)
    return dict(zip((found.paths[i] for i in decoded.ok), X)), sorted(found.paths[e.index] for e in decoded.errors)


def assert_rows_match(paths, X, expected: dict[str, np.ndarray]) -> None:
    """Stored rows (paths, X) are the images of `expected` (from `fresh_extraction`), each with its
    features; other batches than the run's, so oneDNN's sums may differ in the last bit."""
    assert sorted(paths) == sorted(expected)
    for path, x in zip(paths, X):
        np.testing.assert_allclose(x, expected[path], rtol=1e-5, atol=1e-6, err_msg=path)


def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; returns whether it held. The tests
    wait on the event itself (a file, a state, a process's end) this way, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_for_shards(out, count: int, job, timeout: float) -> int:
    """Wait until the job (a subprocess) has committed `count` shards to OUT, ended, or run out of
    time; returns how many it has committed."""
    wait_until(lambda: len(features.committed(str(out))) >= count or job.poll() is not None, timeout)
    return len(features.committed(str(out)))


def embedder_pids(ancestor: int) -> list[int]:
    """The embedding actors under process `ancestor` (the driver that started the Ray they run in: its
    raylet forks the workers), by the title Ray gives an actor's process (ray::Embedder...). By
    ancestry, so that a Ray of another test process on the machine is left alone."""
    found = []
    for process in psutil.Process(ancestor).children(recursive=True):
        try:
            if any("Embedder" in part for part in process.cmdline()):
                found.append(process.pid)
        except psutil.NoSuchProcess:
            pass  # gone meanwhile
    return sorted(found)


@functools.cache
def _conv_base(weights: str, seed: int, config: EmbedConfig) -> convbase.ConvBase:
    return convbase.ConvBase(convbase.resolve_weights(weights, seed, config.image_size), config)


def pytest_terminal_summary(terminalreporter):
    """The fault tests that need root (a full disk, another user) are said loudly when skipped: a run
    without them has not checked those promises. CI runs as root and runs them."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "root" in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.section("FAULT TESTS NOT RUN", sep="!", red=True, bold=True)
        for report in skipped:
            terminalreporter.line(f"{report.nodeid}: needs root (run the suite as root, as CI does)", red=True)
