"""The extraction job on an embedded local Ray, checked against Keras called directly."""

import json
import os

import keras
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catdog import synthetic
from catdog.config import ExtractConfig
from catdog.errors import CatdogError
from catdog.extraction import extract
from catdog.store import features
from catdog.store.manifest import Manifest

SIZE = 64  # 2x2x512: small, yet the flatten order still matters


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    synthetic.make_demo_folder(str(root), per_class=8, size=48)
    (root / "train" / "cats" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


@pytest.fixture(scope="module")
def extracted(ray_local, folder, weights_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "f"
    config = ExtractConfig(root=str(folder), out=str(out), weights=weights_file, image_size=SIZE, shard_size=3, progress=False)
    return config, extract.run(config)


def keras_features(weights_file, folder, paths):
    """The tutorial's way: load_img -> preprocess_input -> conv_base.predict -> reshape."""
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    model.load_weights(weights_file)
    x = np.stack(
        [keras.utils.img_to_array(keras.utils.load_img(folder / p, target_size=(SIZE, SIZE), interpolation="bilinear")) for p in paths]
    )
    maps = model.predict(keras.applications.vgg16.preprocess_input(x), verbose=0)
    return maps, maps.reshape(len(paths), -1)


def test_rows_labels_and_summary(extracted, folder):
    config, summary = extracted
    good = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg") if p.name != "corrupt.jpg")
    X, y, paths = features.load(config.out)
    assert sorted(paths) == good and len(set(paths)) == len(good)
    assert X.shape == (len(good), 2 * 2 * 512) and X.dtype == np.float32
    assert list(y) == [0 if "/cats/" in p else 1 for p in paths]
    assert (summary.images, summary.errors, summary.processed) == (len(good), 1, len(good) + 1)


def test_features_equal_keras_called_directly_in_c_order(extracted, folder, weights_file):
    config, _ = extracted
    X, _, paths = features.load(config.out, split="test")
    maps, flat = keras_features(weights_file, folder, paths)
    np.testing.assert_allclose(X, flat, rtol=1e-4, atol=1e-3)
    assert maps.shape[1:] == (2, 2, 512)
    # Element (i, j, c) of the 2x2x512 map sits at i*1024 + j*512 + c in the stored vector.
    np.testing.assert_allclose(X[:, 1 * 1024 + 0 * 512 + 7], maps[:, 1, 0, 7], rtol=1e-4, atol=1e-3)


def test_schema_and_file_metadata(extracted):
    config, _ = extracted
    files = sorted(features.dataset(config.out).files)
    assert len(files) == 2 + 3 + 2  # ceil(4/3) test + ceil(9/3) train + ceil(4/3) validation shards
    schema = pq.read_schema(files[0])
    assert schema.names == ["path", "label", "label_name", "features"]
    ftype = schema.field("features").type
    assert pa.types.is_fixed_size_list(ftype) and ftype.value_type == pa.float32() and ftype.list_size == 2048
    meta = json.loads(schema.metadata[b"catdog"])
    assert meta["input_size"] == [SIZE, SIZE, 3] and meta["feature_shape"] == [2, 2, 512]
    assert meta["weights"]["source"] == "file" and len(meta["weights"]["sha256"]) == 64
    assert (meta["preprocess"], meta["interpolation"], meta["dtype"], meta["flatten_order"]) == ("vgg16", "bilinear", "float32", "C")
    assert meta["classes"] == ["cats", "dogs"] and meta["catdog_version"]
    assert features.read_metadata(config.out) == meta
    manifest = json.loads(open(os.path.join(config.out, "manifest.json")).read())
    assert manifest["status"] == "complete" and manifest["totals"]["images"] == 16


def test_corrupt_file_is_an_error_row(extracted):
    config, _ = extracted
    errors = features.dataset(config.out, "errors").to_table().to_pylist()
    assert [(e["path"], e["split"], e["error"]) for e in errors] == [("train/cats/corrupt.jpg", "train", "OSError")]
    assert errors[0]["message"]  # Pillow says what is wrong, e.g. "image file is truncated"


def test_pandas_and_ray_data_read_the_same_rows(extracted):
    config, _ = extracted
    frame = pd.read_parquet(os.path.join(config.out, "features"))
    assert len(frame) == 16 and set(frame["split"]) == {"train", "validation", "test"}
    assert len(frame["features"].iloc[0]) == 2048
    import ray

    rows = ray.data.read_parquet(os.path.join(config.out, "features")).select_columns(["path", "split"]).take_all()
    assert sorted(r["path"] for r in rows) == sorted(frame["path"])


def test_rerun_resumes_nothing_and_other_settings_are_refused(extracted):
    config, _ = extracted
    again = extract.run(config)  # an incremental run that finds nothing changed: nothing read, nothing resumed
    assert (again.processed, again.images, again.resumed_shards) == (0, 16, 0)
    assert again.changes == f"added 0, changed 0, removed 0, unchanged {again.images + again.errors}"
    with pytest.raises(CatdogError, match="other settings.*preprocess"):
        extract.run(config.replace(preprocess="rescale"))


def test_two_actors_and_float16_at_150(ray_local, tmp_path):
    """The 8192 contract at the default size, with two CPU actors sharing the work; --precision auto
    and the default batch size decided for CPU actors, and recorded."""
    root = tmp_path / "in"
    synthetic.make_demo_folder(str(root), per_class=4, size=40, splits={"train": 1.0})
    config = ExtractConfig(
        root=str(root), out=str(tmp_path / "out"), weights="none", dtype="float16", precision="auto",
        shard_size=2, num_actors=2, cpus_per_actor=1, progress=False,
    )
    summary = extract.run(config)
    assert len({e["pid"] for e in summary.embedders}) == 2
    # The model's actors at this process's priority, not at the 15 Ray adds to its workers.
    assert [e["niceness"] for e in summary.embedders] == [os.getpriority(os.PRIO_PROCESS, 0)] * 2
    cpuinfo = open("/proc/cpuinfo").read()
    fast_bf16 = ("GenuineIntel" in cpuinfo and " amx_bf16" in cpuinfo) or ("AuthenticAMD" in cpuinfo and " avx512_bf16" in cpuinfo)
    expected = "bf16" if fast_bf16 else "fp32"
    assert features.read_metadata(config.out)["precision"] == expected and summary.precision.startswith(f"{expected} (auto: CPU")
    assert json.load(open(tmp_path / "out" / "manifest.json"))["precision_auto"] == summary.precision
    assert [e["batch_size"] for e in summary.embedders] == [32, 32]
    timeline = dict(summary.timeline)
    listed = timeline.pop("listed")  # the listing streams beside the pipeline: it ends before the last shard is cut
    marks = list(timeline.values())
    assert list(timeline) == ["ray", "weights", "pipeline", "model_loaded", "first_shard", "last_shard", "committed"]
    assert all(0 < a <= b for a, b in zip(marks[2:], marks[3:])) and 0 < listed <= timeline["last_shard"], summary.timeline
    # Stage times: every shard's decode, embed and write counted once (4 shards over 2 actors, each
    # stage's sum at most its lanes' share of the pipeline), recorded in the manifest.
    cost = summary.cost
    assert cost.images == 8 and cost.actors == 2 and cost.gpus == 0
    assert all(0 < cost.stages[s] <= 2 * cost.pipeline_seconds + 1 for s in ("decode", "embed", "write")), cost
    assert cost.stages["embed"] > cost.stages["write"] and 0 < sum(cost.stages.values()) <= cost.wall_seconds + 2 * cost.pipeline_seconds
    assert json.load(open(tmp_path / "out" / "manifest.json"))["cost"]["bottleneck"] == cost.bottleneck
    X, y, paths = features.load(config.out, split="train")
    assert X.shape == (8, 8192) and sorted(y) == [0] * 4 + [1] * 4
    ftype = pq.read_schema(features.dataset(config.out).files[0]).field("features").type
    assert ftype.value_type == pa.float16() and ftype.list_size == 8192
    meta = features.read_metadata(config.out)
    assert meta["feature_shape"] == [4, 4, 512] and meta["weights"] == {"source": "none", "seed": 0, "init": "glorot-uniform-numpy"}


def test_auto_precision_is_fp16_for_gpu_actors():
    from catdog import cluster

    config = ExtractConfig(root="in", out="out", precision="auto")
    resources = cluster.plan_resources(config, cluster.ClusterSize(cpus=8, gpus=1, largest_node_cpus=8))
    resolved, why = extract._resolve_precision(config, resources)
    assert resolved.precision == "fp16" and resolved.embed.precision == "fp16" and why == "fp16 (auto: GPU actors)"


def test_shard_size_follows_the_devices_unless_given_or_out_holds_a_run(tmp_path):
    from catdog import cluster, storage
    from catdog.store import manifest

    cpu = cluster.plan_resources(ExtractConfig(root="in", out="out"), cluster.ClusterSize(cpus=8, gpus=0, largest_node_cpus=8))
    gpu = cluster.plan_resources(ExtractConfig(root="in", out="out"), cluster.ClusterSize(cpus=8, gpus=1, largest_node_cpus=8))
    out = storage.resolve(str(tmp_path / "out"))
    config = ExtractConfig(root="in", out=out.path)
    assert extract._resolve_shard_size(config, cpu, manifest.read(out)).shard_size == 256
    assert extract._resolve_shard_size(config, gpu, manifest.read(out)).shard_size == 1024
    assert extract._resolve_shard_size(config.replace(shard_size=8), gpu, manifest.read(out)).shard_size == 8
    manifest.write(out, Manifest(compat={"shard_size": 1024}, features={}, config={}))
    assert extract._resolve_shard_size(config, cpu, manifest.read(out)).shard_size == 1024  # resumes as it began
    assert extract._resolve_shard_size(config.replace(overwrite=True), cpu, manifest.read(out)).shard_size == 256


def test_estimate_runs_a_sample_spread_over_the_input_and_writes_nothing(ray_local, tmp_path):
    """--estimate: every shard counted, a sample of them run (at least one more than a steady rate
    needs), the projection the sample's fixed costs plus every image at its rate; no OUT anywhere."""
    from catdog.extraction.cost import Estimate

    root = tmp_path / "in"
    synthetic.make_demo_folder(str(root), per_class=10, size=40)
    before = sorted(p for p in tmp_path.rglob("*"))
    found = extract.estimate(ExtractConfig(root=str(root), out="", weights="none", image_size=32, shard_size=2,
                                           num_actors=1, progress=False))
    total = len(list(root.rglob("*.jpg")))
    assert isinstance(found, Estimate) and found.images == total
    assert found.sample_shards == extract.STEADY_MIN_SHARDS + 1 and found.sample.images == 2 * found.sample_shards
    assert found.rate == found.sample.steady_images_per_second > 0
    fixed = found.sample.stages["listing"] + found.sample.stages["start-up"]
    assert found.wall_seconds == pytest.approx(fixed + total / found.rate)
    assert found.hours(found.sample.cpus) == pytest.approx(found.sample.cpus * found.wall_seconds / 3600)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert found.lines()[0].startswith(f"sample      {found.sample.images:,} images in {found.sample_shards} shards")


def test_the_local_executor_writes_what_the_ray_executor_wrote(extracted, folder, weights_file, tmp_path):
    """The same stages in this process (no Ray actor): the same rows, errors, files and features;
    the summary says which executor ran."""
    config, on_ray = extracted
    here = extract.run(config.replace(out=str(tmp_path / "local"), executor="local"))
    assert on_ray.executor.startswith("ray (this process's Ray)") and here.executor == "local (--executor local)"
    assert "executor    local (--executor local)" in here.lines()
    assert (here.images, here.errors, here.processed) == (on_ray.images, on_ray.errors, on_ray.processed)
    assert [e["node"] for e in here.embedders] == ["local"] and here.embedders[0]["pid"] == os.getpid()
    X, y, paths = features.load(config.out)
    X2, y2, paths2 = features.load(here.out)
    assert list(paths2) == list(paths) and list(y2) == list(y)
    np.testing.assert_allclose(X2, X, rtol=1e-5, atol=1e-6)
    assert features.committed(here.out) == features.committed(config.out)  # the same shard files
    assert features.read_errors(here.out) == features.read_errors(config.out)
