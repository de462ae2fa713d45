"""Other keras.applications conv bases: catdog's features equal Keras' own path (the application
with its pooling, on pixels `keras.utils.load_img` loads, through that module's preprocess_input),
weights files are checked against the architecture, --weights none is seeded, and the settings are
validated in one line."""

import os

import numpy as np
import pytest

from catdog import storage, synthetic
from catdog.config import EmbedConfig, ExtractConfig
from catdog.errors import CatdogError
from catdog.vision import backbones, convbase, images

pytestmark = pytest.mark.slow  # builds Keras networks

SIZE = 64


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("bb") / "photos"
    synthetic.make_demo_folder(str(root), per_class=3, size=80, splits={"train": 1.0})
    return sorted(str(p) for p in root.rglob("*.jpg"))


def seeded_weights_file(tmp_path, backbone: str, seed: int = 7) -> str:
    """The application's own random weights, drawn by Keras from a seed, saved by Keras."""
    import keras

    keras.utils.set_random_seed(seed)
    model = convbase.network(keras, backbone, SIZE, None)
    path = tmp_path / f"{backbone}_notop.weights.h5"
    model.save_weights(str(path))
    return str(path)


def keras_features(backbone: str, weights: str, files: list[str], pooling: str) -> np.ndarray:
    import importlib

    import keras

    b = backbones.get(backbone)
    net = getattr(keras.applications, b.keras_name)(include_top=False, pooling=pooling, weights=weights,
                                                    input_shape=(SIZE, SIZE, 3))
    module = importlib.import_module(f"keras.applications.{b.module}")
    pixels = np.stack([keras.utils.img_to_array(keras.utils.load_img(f, target_size=(SIZE, SIZE), interpolation="bilinear"))
                       for f in files])
    return net.predict(module.preprocess_input(pixels), verbose=0)


@pytest.mark.slow  # three networks built and run twice each
@pytest.mark.parametrize("backbone, pooling", [("resnet50", "avg"), ("efficientnetv2_b0", "max"), ("convnext_tiny", "avg")])
def test_features_equal_keras_own_path(tmp_path, photos, backbone, pooling):
    weights_file = seeded_weights_file(tmp_path, backbone)
    b = backbones.get(backbone)
    config = EmbedConfig(SIZE, preprocess=b.preprocess, backbone=backbone, pooling=pooling)
    base = convbase.ConvBase(convbase.resolve_weights(weights_file, 0, SIZE, backbone, pooling), config)
    decoded = images.decode_files([storage.resolve(f) for f in photos], ExtractConfig(root="", out="", image_size=SIZE).decode)
    ours = base.embed(decoded.pixels)
    theirs = keras_features(backbone, weights_file, photos, pooling)
    assert ours.shape == theirs.shape == (len(photos), base.dim)
    assert base.dim == convbase.feature_dim(SIZE, backbone, pooling)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.slow
def test_gem_and_flatten_pool_the_same_maps(tmp_path, photos):
    """GeM (p = 3) and flatten, against numpy on the maps Keras' network gives without pooling."""
    import keras

    weights_file = seeded_weights_file(tmp_path, "resnet50")
    maps = keras_features("resnet50", weights_file, photos[:2], None)  # (2, 2, 2, 2048) at 64 px
    decoded = images.decode_files([storage.resolve(f) for f in photos[:2]], ExtractConfig(root="", out="", image_size=SIZE).decode)
    weights = convbase.resolve_weights(weights_file, 0, SIZE, "resnet50")
    for pooling, expected in (("gem", np.mean(np.maximum(maps, 1e-6) ** 3, axis=(1, 2)) ** (1 / 3)),
                              ("flatten", maps.reshape(2, -1))):
        got = convbase.ConvBase(weights, EmbedConfig(SIZE, backbone="resnet50", pooling=pooling)).embed(decoded.pixels)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(), err_msg=pooling)
    del keras


def test_random_weights_are_seeded_and_named(tmp_path):
    a = convbase.resolve_weights("none", 0, SIZE, "efficientnetv2_b0")
    assert a.identity == {"source": "none", "seed": 0, "init": convbase.RANDOM_INIT, "backbone": "efficientnetv2_b0"}
    first = [w.copy() for w in convbase.build(a, SIZE, "efficientnetv2_b0").get_weights()]
    again = convbase.build(a, SIZE, "efficientnetv2_b0").get_weights()
    other = convbase.build(convbase.resolve_weights("none", 1, SIZE, "efficientnetv2_b0"), SIZE, "efficientnetv2_b0").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))
    assert convbase.resolve_weights("none", 0, SIZE).identity == {"source": "none", "seed": 0, "init": convbase.RANDOM_INIT}


def test_a_weights_file_of_another_network_is_one_line(tmp_path):
    vgg = seeded_weights_file(tmp_path, "vgg16")
    with pytest.raises(CatdogError, match=r"--weights .*vgg16_notop.weights.h5 is not a ResNet50 notop weights file"):
        convbase.resolve_weights(vgg, 0, SIZE, "resnet50")


def test_backbone_settings_default_and_are_checked():
    c = ExtractConfig(root="r", out="o", backbone="convnext_tiny")
    assert (c.image_size, c.preprocess, c.pooling) == (224, "none", "avg")
    v = ExtractConfig(root="r", out="o")
    assert (v.backbone, v.image_size, v.preprocess, v.pooling) == ("vgg16", 150, "vgg16", "flatten")
    with pytest.raises(CatdogError, match="--image-size must be at least 75 for inception_v3, got 64"):
        ExtractConfig(root="r", out="o", backbone="inception_v3", image_size=64)
    with pytest.raises(CatdogError, match="--backbone 'resnet' is not one of: vgg16, vgg19, resnet50"):
        ExtractConfig(root="r", out="o", backbone="resnet")
    with pytest.raises(CatdogError, match="--pooling must be one of flatten, avg, max, gem"):
        ExtractConfig(root="r", out="o", backbone="resnet50", pooling="mean")
    assert os.environ.get("CATDOG_NEVER_SET") is None


@pytest.mark.slow
def test_a_resnet50_run_then_a_head_predict_and_explain_and_no_other_backbone_on_its_out(tmp_path, capsys):
    """Features of another backbone all the way down: extracted (in this process: the stages are the
    executors' shared code), recorded, a head trained on them, predictions that equal the head on
    the stored features, Grad-CAM on ResNet50's last conv block; a re-run with another backbone is
    refused in one line."""
    from catdog import commands
    from catdog.config import HeadConfig
    from catdog.extraction import extract
    from catdog.heads import explain, fit_head, predict
    from catdog.store import features

    root = tmp_path / "photos"
    synthetic.make_demo_folder(str(root), per_class=6, size=80)
    out = str(tmp_path / "out")
    config = ExtractConfig(root=str(root), out=out, backbone="resnet50", weights="none", image_size=SIZE, shard_size=4,
                           progress=False, executor="local")
    done = extract.run(config)
    meta = features.read_metadata(out)
    assert meta["backbone"] == "resnet50" and meta["pooling"] == "avg" and meta["feature_dim"] == 2048
    assert meta["model"].startswith("ResNet50 conv base") and meta["preprocess"] == "vgg16"
    stored = features.load(out)
    assert stored.X.shape == (done.images, 2048)
    model_dir = str(tmp_path / "model")
    fit_head.run(HeadConfig(features=out, model_dir=model_dir))
    model = predict.load_model(model_dir)
    files = [str(root / p) for p in stored.paths[:3]]
    np.testing.assert_allclose(model.predict_proba(files), model.folder.predict_proba(stored.X[:3]), rtol=1e-4, atol=1e-5)
    found = explain.explain(model_dir, files[:2], str(tmp_path / "cams"))
    assert [e.heatmap.shape for e in found] == [(SIZE, SIZE)] * 2 and all(os.path.getsize(e.figure) for e in found)
    assert explain.GradCam(model_folder_of(model_dir)).layer == "conv5_block3_out"
    code = commands.main(["extract", str(root), "--out", out, "--weights", "none", "--image-size", str(SIZE),
                          "--backbone", "convnext_tiny", "--no-progress"])
    pairs = catdog_similar(out)
    assert pairs.images == done.images  # any dimension: the 2,048 of ResNet50 here
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"catdog: error: {out} was made with other settings (") and "backbone" in err
    assert err.count("\n") == 1


def model_folder_of(model_dir):
    from catdog.heads import model_folder

    return model_folder.load(model_dir)


def catdog_similar(out):
    import catdog

    return catdog.similar(out, threshold=0.99)


@pytest.mark.slow
def test_reduced_precision_stays_close_on_another_backbone(photos):
    """bf16 (the fast CPU path) and fp16 through the same mixed-precision policies as VGG16."""
    decoded = images.decode_files([storage.resolve(f) for f in photos], ExtractConfig(root="", out="", image_size=SIZE).decode)
    weights = convbase.resolve_weights("none", 0, SIZE, "resnet50", "avg")
    exact = convbase.ConvBase(weights, EmbedConfig(SIZE, backbone="resnet50", pooling="avg")).embed(decoded.pixels)
    fast = convbase.ConvBase(weights, EmbedConfig(SIZE, backbone="resnet50", pooling="avg", precision="bf16")).embed(decoded.pixels)
    cosine = (exact * fast).sum(1) / (np.linalg.norm(exact, axis=1) * np.linalg.norm(fast, axis=1))
    assert fast.dtype == np.float32 and cosine.min() > 0.99, cosine


def test_an_out_of_catdog_0_1_is_pinned_as_before():
    """VGG16 with flatten pins OUT exactly as before backbones were recorded (an earlier OUT resumes);
    any other backbone or pooling is pinned."""
    from catdog.extraction import metadata
    from catdog.extraction.imagefolder import ImageSet

    image_set = ImageSet(storage.resolve("r"), "class", ("a", "b"), ("a/1.jpg",), ("all",), (0,))
    identity = {"source": "none", "seed": 0, "init": convbase.RANDOM_INIT}

    def compat(**settings):
        config = ExtractConfig(root="r", out="o", weights="none", **{"image_size": 32, **settings})
        meta = metadata.feature_metadata(config, image_set, identity)
        return meta, metadata.compat_settings(config, meta, storage.resolve("r"))

    meta, pinned = compat()
    assert meta["backbone"] == "vgg16" and meta["pooling"] == "flatten"
    assert "backbone" not in pinned and "pooling" not in pinned and pinned["feature_dim"] == 512
    assert compat(pooling="avg")[1]["pooling"] == "avg" and compat(pooling="avg")[1]["feature_dim"] == 512
    assert compat(backbone="vgg19")[1]["backbone"] == "vgg19"
