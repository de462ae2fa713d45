"""The Ray stages called as plain functions: the rows they pass along, without starting Ray."""

import numpy as np
import pytest

from catdog import storage
from catdog.cluster import Placement, Resources
from catdog.config import DecodeConfig, ExtractConfig
from catdog.e2e import training
from catdog.extraction import metadata, pipeline, stages
from catdog.extraction.imagefolder import ImageSet, Shard
from catdog.store import features, layout
from catdog.vision.images import decode
from tests.conftest import random_pixels, save_image, wait_until


def test_decode_then_write_stage_commit_one_shard(tmp_path):
    save_image(str(tmp_path / "in" / "cats" / "a.jpg"), random_pixels(0))
    (tmp_path / "in" / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    save_image(str(tmp_path / "in" / "dogs" / "b.png"), random_pixels(1), format="PNG")
    root = storage.resolve(str(tmp_path / "in"))
    shard = Shard("all", 0, ("cats/a.jpg", "cats/broken.jpg", "dogs/b.png"), (0, 0, 1))
    row = stages.shard_row(shard)
    assert row == {"split": "all", "name": shard.name, "paths": list(shard.paths), "labels": [0, 0, 1], "container": False}

    config = DecodeConfig(32)
    decoded = stages.decode_stage(row, root=root, config=config)
    assert decoded["paths"] == ["cats/a.jpg", "dogs/b.png"] and decoded["labels"] == [0, 1]
    assert decoded["error_paths"] == ["cats/broken.jpg"] and decoded["error_types"] == ["UnidentifiedImageError"]
    pixels = decoded["pixels"]
    assert pixels.shape == (2, 32, 32, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[1], decode((tmp_path / "in" / "dogs" / "b.png").read_bytes(), config))

    out = storage.resolve(str(tmp_path / "out"))
    image_set = ImageSet(root, "class", ("cats", "dogs"), shard.paths, ("all",) * 3, shard.labels)
    meta = metadata.feature_metadata(ExtractConfig(root="", out="", image_size=32), image_set, {"source": "none", "seed": 0})
    writer = features.ShardWriter(out, features.feature_schema(meta), image_set.classes)
    X = np.arange(2 * 512, dtype=np.float32).reshape(2, 512)
    embedded = {**{k: v for k, v in decoded.items() if k != "pixels"}, "features": X,
                "embedder": "{}", "embed_s": 0.5}
    written = stages.write_stage(embedded, writer=writer)
    assert (written["rows"], written["errors"], written["name"]) == (2, 1, shard.name)
    # each stage's time travels with the shard: the decode's as measured, the write's its own
    assert written["decode_s"] == decoded["decode_s"] > 0 and written["embed_s"] == 0.5 and written["write_s"] > 0
    got, y, paths = features.load(out)
    assert list(paths) == ["cats/a.jpg", "dogs/b.png"] and list(y) == [0, 1]
    np.testing.assert_array_equal(got, X)
    assert features.committed(out, layout.ERRORS_DIR) == {("all", shard.name)}


def test_e2e_decode_stage_marks_unreadable_rows(tmp_path):
    save_image(str(tmp_path / "a.jpg"), random_pixels(2))
    (tmp_path / "b.jpg").write_bytes(b"")
    batch = {"path": np.array(["b.jpg", "a.jpg"]), "label": np.array([1, 0])}
    out = training.decode_stage(batch, root=storage.resolve(str(tmp_path)), config=DecodeConfig(32))
    assert out["image"].shape == (2, 32, 32, 3) and out["image"].dtype == np.float32
    assert list(out["ok"]) == [0.0, 1.0] and list(out["label"]) == [1.0, 0.0]
    assert not out["image"][0].any() and out["image"][1].any()


@pytest.mark.parametrize("gpus, decode_node, nodes, inside", [
    (0.0, None, 3, True),  # ROOT a URI or a shared folder: every actor can read it
    (0.0, "driver", 1, True),  # ROOT on the one node's disk: the actors run there anyway
    (0.0, "driver", 2, False),  # ROOT on one node's disk of two: decoding stays there, the actors spread
    (1.0, None, 1, False),  # GPU actors: decoding needs the CPUs they leave
])
def test_cpu_actors_decode_their_own_shards_where_they_can_read_root(gpus, decode_node, nodes, inside):
    resources = Resources(1, 2.0, gpus, decode_cpus=1.0 if gpus else 0.0, shards_in_flight=2)
    assert pipeline._decodes_in_embedder(resources, Placement(decode_node, None, nodes)) is inside


@pytest.mark.slow
def test_cpu_actors_stop_when_the_job_stops_taking_shards(ray_local, tmp_path):
    """Closing the stream (an interrupt, an error downstream) kills the actors at once: the shards on
    them stop, except one caught at its write, which lands whole and once; their CPUs are free for the
    next job in this Ray."""

    from catdog import synthetic
    from catdog.extraction import imagefolder
    from catdog.extraction.feed import Feed
    from catdog.vision import convbase

    synthetic.make_demo_folder(str(tmp_path / "in"), per_class=60, size=40, splits={"train": 1.0})
    root, out = storage.resolve(str(tmp_path / "in")), storage.resolve(str(tmp_path / "out"))
    image_set = imagefolder.scan(root)
    shards = imagefolder.plan_shards(image_set, 20)  # 6 shards at 64 px, a fraction of a second of VGG16 each
    config = ExtractConfig(root=str(tmp_path / "in"), out=str(tmp_path / "out"), weights="none", image_size=64,
                           shard_size=20, batch_size=8)
    meta = metadata.feature_metadata(config, image_set, {"source": "none", "seed": 0})
    writer = features.ShardWriter(out, features.feature_schema(meta), image_set.classes)
    resources = Resources(1, 2.0, 0.0, decode_cpus=0.0, shards_in_flight=2)
    rows = pipeline.extract_shards(Feed(shards), root, config, convbase.resolve_weights("none", 0, 64), writer, resources,
                                   Placement(None, None, 1))
    assert next(rows)["rows"] == 20
    rows.close()
    # The embedding actor's CPUs back: it is dead (killed, not finished), and its writer was killed
    # with it; a shard the writer had in hand when killed may have landed, none after.
    assert wait_until(lambda: ray_local.available_resources().get("CPU") == 2.0, 120), "the embedding actor lives on"
    written = features.committed(out)
    # When the first came back, the next two were on the actor (its slot refilled at once): left running
    # they both land (3 written, as without the kill); killed, at most one caught at its write does.
    assert 1 <= len(written) <= resources.shards_in_flight < len(shards) == 6
    paths = list(features.read_paths(out, "train"))
    assert len(paths) == len(set(paths)) == 20 * len(written)
    assert ray_local.available_resources().get("CPU") == 2.0
