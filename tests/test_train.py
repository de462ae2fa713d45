"""End-to-end training on Ray Train: 2 CPU workers, tiny images, a couple of epochs."""

import json
import os

import numpy as np
import pytest

from catdog import convbase, demo, e2e, fit_e2e, predict, saved
from catdog.config import EmbedConfig, TrainConfig
from tests.conftest import demo_with_a_broken_file


pytestmark = pytest.mark.slow


def config_for(root, out, **changes) -> TrainConfig:
    settings = dict(root=str(root), out=str(out), num_workers=2, image_size=32, batch_size=4, weights="none",
                    learning_rate=1e-3, epochs=1)
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return demo_with_a_broken_file(tmp_path_factory.mktemp("e2e") / "images")


@pytest.fixture(scope="module")
def resumed(ray_local, images, tmp_path_factory):
    """One epoch, then the same OUT asked for two: the second run must start at epoch 2."""
    out = tmp_path_factory.mktemp("run")
    first = fit_e2e.run(config_for(images, out, epochs=1))
    second = fit_e2e.run(config_for(images, out, epochs=2))
    return first, second


def vgg_weights(net) -> list[np.ndarray]:
    return [np.asarray(w) for w in net.get_layer("vgg16").get_weights()]


def initial_vgg(image_size=32) -> list[np.ndarray]:
    weights = convbase.resolve_weights("none", 0, image_size)
    return [np.asarray(w) for w in convbase.ConvBase(weights, EmbedConfig(image_size)).model.get_weights()]


def test_metrics_every_epoch_checkpoint_and_resume(resumed):
    first, second = resumed
    assert first["epochs"] == 1 and second["epochs"] == 2
    assert second["unreadable"] == {"train": 1, "validation": 0}  # skipped, counted, never fatal
    assert second["starts"] == [0, 1]  # resumed from the checkpoint of epoch 1
    for key in ("loss", "acc", "val_loss", "val_acc"):
        assert len(second["history"][key]) == 2 and all(np.isfinite(second["history"][key]))
    assert second["history"]["loss"][0] == first["history"]["loss"][0]
    assert os.path.exists(os.path.join(second["checkpoint"], "model.keras"))
    assert json.load(open(os.path.join(second["checkpoint"], "state.json")))["epoch"] == 2
    assert os.path.getsize(os.path.join(second["model_dir"], "curves.png")) > 0


def test_frozen_conv_base_is_unchanged(resumed):
    net = saved.load(resumed[1]["model_dir"]).model.model  # safe mode, as catdog predict loads it
    for before, after in zip(initial_vgg(), vgg_weights(net)):
        np.testing.assert_array_equal(before, after)


def test_fine_tuning_changes_only_the_unfrozen_layers(ray_local, images, tmp_path):
    result = fit_e2e.run(config_for(images, tmp_path, fine_tune_from="block5_conv1", fine_tune_epochs=1))
    assert result["epochs"] == 2
    net = saved.load(result["model_dir"]).model.model
    layers = [layer for layer in net.get_layer("vgg16").layers if layer.weights]
    before = iter(initial_vgg())
    for layer in layers:
        changed = any(not np.array_equal(next(before), np.asarray(w)) for w in layer.get_weights())
        assert changed == layer.name.startswith("block5"), layer.name


def test_augmentation_changes_training_inputs_only():
    net = e2e.build_model(config_for("", "", image_size=32))
    augment = net.get_layer("augmentation")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    assert not np.allclose(np.asarray(augment(x, training=True)), x)
    np.testing.assert_array_equal(np.asarray(augment(x, training=False)), x)


def test_saved_model_predicts_through_catdog_predict(resumed, images):
    """catdog predict on files and a folder gives the saved Keras model's own probabilities."""
    import keras

    one = sorted((images / "test" / "dogs").iterdir())[0]
    cats = sorted((images / "test" / "cats").iterdir())
    predictions = predict.predict(resumed[1]["model_dir"], [str(one), str(images / "test" / "cats")])
    assert [p.path for p in predictions] == [str(one)] + [str(c) for c in cats]
    saved.load(resumed[1]["model_dir"])  # registers the custom layer for the plain load below
    net = keras.saving.load_model(os.path.join(resumed[1]["model_dir"], "model.keras"))
    pixels = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(32, 32), interpolation="bilinear"))
                       for p in [one, *cats]])
    expected = net.predict(pixels, verbose=0).reshape(-1)
    np.testing.assert_allclose([p.probabilities["dogs"] for p in predictions], expected, rtol=1e-5, atol=1e-6)
    assert [p.label for p in predictions] == ["dogs" if q >= 0.5 else "cats" for q in expected]


def test_three_classes_train_predict_and_explain(ray_local, tmp_path):
    """N classes end to end: a softmax head, every class's probability from predict, Grad-CAM on the model."""
    import keras

    from catdog import explain

    root = tmp_path / "shapes"
    demo.make_shapes_folder(str(root), classes=3, per_class=8, size=40)
    result = fit_e2e.run(config_for(root, tmp_path / "run", num_workers=1))
    net = saved.load(result["model_dir"]).model.model
    assert net.output_shape == (None, 3)
    files = sorted(str(p) for p in (root / "test").rglob("*.png"))
    predictions = predict.predict(result["model_dir"], files)
    pixels = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(32, 32), interpolation="bilinear")) for p in files])
    expected = net.predict(pixels, verbose=0)
    classes = demo.shape_classes(3)
    np.testing.assert_allclose([list(p.probabilities.values()) for p in predictions], expected, rtol=1e-5, atol=1e-6)
    assert [p.label for p in predictions] == [classes[k] for k in expected.argmax(axis=1)]
    found = explain.explain(result["model_dir"], files[:2], str(tmp_path / "cams"))
    for e, p in zip(found, predictions):
        assert e.explained == p.label and e.probability == pytest.approx(p.probability, abs=1e-5)
        assert e.heatmap.shape == (32, 32) and os.path.getsize(e.figure) > 0
