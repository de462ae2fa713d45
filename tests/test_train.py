"""End-to-end training on Ray Train, tiny images, an epoch or two.

A Ray Train run costs ~40 s of start-up here, so each run is checked for several things at once:
one on local disk (VGG16, 3 classes, 2 workers, fine-tuning) and one resumed on a bucket (another
backbone, 2 classes)."""

import json
import os

import numpy as np
import pytest

from catdog import storage, synthetic
from catdog.config import EmbedConfig, TrainConfig
from catdog.e2e import fit_e2e, training
from catdog.e2e import model as e2e
from catdog.heads import explain, model_folder, predict
from catdog.vision import convbase, layers
from tests import generators

pytestmark = pytest.mark.slow


def config_for(root, out, **changes) -> TrainConfig:
    settings = dict(root=str(root), out=str(out), num_workers=2, image_size=32, batch_size=4, weights="none",
                    learning_rate=1e-3, epochs=1)
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Three classes of shapes, with one truncated JPEG among the training images."""
    root = tmp_path_factory.mktemp("e2e") / "shapes"
    generators.make_shapes_folder(str(root), classes=3, per_class=8, size=40)
    (root / "train" / generators.shape_classes(3)[0] / "broken.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")
    return root


@pytest.fixture(scope="module")
def tuned(ray_local, shapes, tmp_path_factory):
    """2 workers: one epoch on the frozen base, then one with its last conv layer unfrozen (the
    recipe unfreezes from block5_conv1: the same code, a third of the weights to train here)."""
    return fit_e2e.run(config_for(shapes, tmp_path_factory.mktemp("run"), fine_tune_from="block5_conv3", fine_tune_epochs=1))


def initial_base(backbone="vgg16", image_size=32) -> list[np.ndarray]:
    """The conv base's weights before training: random from seed 0, built here."""
    weights = convbase.resolve_weights("none", 0, image_size, backbone)
    return [np.asarray(w) for w in convbase.ConvBase(weights, EmbedConfig(image_size, backbone=backbone)).model.get_weights()]


def keras_probabilities(model_file: str, files: list) -> np.ndarray:
    """The saved Keras model's own output, loaded the plain way, on pixels Keras loads itself."""
    import keras

    net = keras.saving.load_model(model_file)
    pixels = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(32, 32), interpolation="bilinear"))
                       for p in files])
    return net.predict(pixels, verbose=0)


def test_metrics_every_epoch_checkpoint_and_curves(tuned):
    assert tuned.epochs == 2 and tuned.starts == [0]
    assert tuned.replicas == [2]  # the two workers trained one model: each found the other in TF_CONFIG
    assert tuned.unreadable == {"train": 1, "validation": 0}  # skipped, counted, never fatal
    for key in ("loss", "acc", "val_loss", "val_acc"):
        assert len(tuned.history[key]) == 2 and all(np.isfinite(tuned.history[key]))
    assert os.path.exists(os.path.join(tuned.checkpoint, "model.keras"))
    assert json.load(open(os.path.join(tuned.checkpoint, "state.json")))["epoch"] == 2
    assert os.path.getsize(os.path.join(tuned.model_dir, "curves.png")) > 0


def test_fine_tuning_changes_only_the_unfrozen_layers(tuned):
    net = model_folder.load(tuned.model_dir).model.model  # safe mode, as catdog predict loads it
    with_weights = [layer for layer in net.get_layer("vgg16").layers if layer.weights]
    before = iter(initial_base())
    for layer in with_weights:
        changed = any(not np.array_equal(next(before), np.asarray(w)) for w in layer.get_weights())
        assert changed == (layer.name == "block5_conv3"), layer.name


def test_augmentation_changes_training_inputs_only():
    net = e2e.build_model(config_for("", "", image_size=32))
    augment = net.get_layer("augmentation")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    assert not np.allclose(np.asarray(augment(x, training=True)), x)
    np.testing.assert_array_equal(np.asarray(augment(x, training=False)), x)


def test_three_classes_predict_on_files_and_a_folder_and_explain(tuned, shapes, tmp_path):
    """N classes: a softmax head, every class's probability from catdog predict, Grad-CAM on the model."""
    net = model_folder.load(tuned.model_dir).model.model
    assert net.output_shape == (None, 3)
    classes = generators.shape_classes(3)
    one = sorted((shapes / "test" / classes[1]).iterdir())[0]
    folder = sorted((shapes / "test" / classes[0]).iterdir())
    predictions = predict.load_model(tuned.model_dir).predictions([str(one), str(shapes / "test" / classes[0])])
    assert [p.path for p in predictions] == [str(one)] + [str(f) for f in folder]
    expected = keras_probabilities(os.path.join(tuned.model_dir, "model.keras"), [one, *folder])
    np.testing.assert_allclose([list(p.probabilities.values()) for p in predictions], expected, rtol=1e-5, atol=1e-6)
    assert [p.label for p in predictions] == [classes[k] for k in expected.argmax(axis=1)]
    found = explain.explain(tuned.model_dir, [str(one), str(folder[0])], str(tmp_path / "cams"))
    for e, p in zip(found, predictions):
        assert e.explained == p.label and e.probability == pytest.approx(p.probability, abs=1e-5)
        assert e.heatmap.shape == (32, 32) and os.path.getsize(e.figure) > 0


def test_another_backbone_on_a_bucket_checkpoints_resumes_stays_frozen_and_predict_and_explain_read_it(s3, ray_local,
                                                                                                       tmp_path):
    """Cats vs dogs (a sigmoid head) on MobileNetV2 (its own preprocessing, pooled), OUT in a bucket:
    one epoch through a store answering 5 % of requests with 503 SlowDown and resetting 3 % (the run
    completes, whole), then the same OUT asked for two. The model folder records the backbone, the
    base is as it started, predict equals the saved Keras model on pixels Keras loads, and Grad-CAM
    finds the network's last conv layer."""
    from tests.faultproxy import Proxy

    photos = tmp_path / "photos"
    synthetic.make_demo_folder(str(photos), per_class=8, size=40)
    root, out = s3.upload(photos, f"{s3.prefix}/photos"), f"s3://{s3.prefix}/run"
    config = config_for(root, out, num_workers=1, backbone="mobilenet_v2")
    with Proxy(s3.endpoint, slow_down=0.05, reset=0.03, seed=11) as flaky:
        query = f"?endpoint_override=127.0.0.1:{flaky.port}&scheme=http"
        first = fit_e2e.run(config.replace(root=f"{root}{query}", out=f"{out}{query}"))
    assert flaky.faults >= 1
    second = fit_e2e.run(config.replace(epochs=2))
    assert first.epochs == 1 and second.epochs == 2 and second.starts == [0, 1]  # resumed from the bucket
    assert second.replicas == [1, 1]
    assert second.history["loss"][0] == first.history["loss"][0]
    keys = s3.keys(f"{s3.prefix}/run")
    assert {"model/model.keras", "model/head.json", "model/curves.png"} <= set(keys)
    assert any(k.startswith(f"{training.RUN_NAME}/") and k.endswith("/model.keras") for k in keys)  # checkpoints
    assert second.model_dir == f"{out}/model" and not os.path.exists("s3:")

    folder = model_folder.load(second.model_dir)  # also registers the custom layer for the plain load below
    assert folder.feature_metadata["backbone"] == "mobilenet_v2" and folder.feature_metadata["preprocess"] == "tf"
    base = layers.conv_base(folder.model.model)
    assert base.name.startswith("mobilenetv2") and not base.trainable_weights  # frozen
    for before, after in zip(initial_base("mobilenet_v2"), base.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    dogs = sorted((photos / "test" / "dogs").iterdir())
    predictions = predict.load_model(second.model_dir).predictions([f"{root}/test/dogs"])
    assert [p.path for p in predictions] == [f"{root}/test/dogs/{d.name}" for d in dogs]
    local_copy = tmp_path / "model.keras"
    local_copy.write_bytes(storage.resolve(second.model_dir).join("model.keras").read_bytes())
    expected = keras_probabilities(str(local_copy), dogs).reshape(-1)
    np.testing.assert_allclose([p.probabilities["dogs"] for p in predictions], expected, rtol=1e-5, atol=1e-6)
    assert [p.label for p in predictions] == ["dogs" if q >= 0.5 else "cats" for q in expected]
    assert explain.GradCam(folder).layer == "out_relu"


def test_store_faults_are_one_line_and_leave_no_model(s3, ray_local, tmp_path, capsys):
    """A store refusing every write: one line before Ray Train starts. Denying the model files only (a
    checkpoint's upload, which Ray Train's own copy would report as done; a denial is not tried again
    as a refusal is, after a back-off of seconds): one line, no checkpoint, no model folder. (A run
    through throttling and resets completes: the bucket test above.)"""
    from catdog import commands
    from catdog.errors import CatdogError
    from tests.faultproxy import Proxy

    photos = tmp_path / "photos"
    synthetic.make_demo_folder(str(photos), per_class=8, size=40)
    root, out = s3.upload(photos, f"{s3.prefix}/photos"), f"s3://{s3.prefix}/run"
    with Proxy(s3.endpoint, refuse_writes=True) as everything:
        via = f"{out}?endpoint_override=127.0.0.1:{everything.port}&scheme=http"
        code = commands.main(["train-e2e", root, "--out", via, "--weights", "none", "--image-size", "32"])
    captured = capsys.readouterr()
    assert code == 2 and everything.refused >= 1
    assert captured.err.startswith(f"catdog: error: cannot write to {out}/train-e2e?endpoint_override=") and \
        captured.err.count("\n") == 1 and "model (for catdog predict)" not in captured.out
    with Proxy(s3.endpoint, refuse_writes=True, pattern=b"/model.keras", deny=True) as checkpoints:
        via = f"{out}?endpoint_override=127.0.0.1:{checkpoints.port}&scheme=http"
        with pytest.raises(CatdogError, match=r"cannot write s3://.*/train-e2e/checkpoint_[^/]*/model.keras.*"
                                              r"ACCESS_DENIED.*run the same command again to resume"):
            fit_e2e.run(config_for(root, via, num_workers=1, max_failures=0))
    assert checkpoints.refused >= 1
    assert not [k for k in s3.keys(f"{s3.prefix}/run") if k.startswith("model/") or "/checkpoint_" in k]


def test_the_training_datasets_are_quiet_unless_verbose_and_leave_this_process_s_context_alone(ray_local, monkeypatch):
    """Ray Data would draw progress bars and print its plan for every epoch of every split: off on the
    datasets' own context, on with --verbose; the process's DataContext (a notebook's) is not touched."""
    import ray.data

    from catdog import cluster, quiet
    from catdog.config import DecodeConfig

    process = ray.data.DataContext.get_current()
    before = (process.enable_progress_bars, process.print_on_execution_start)
    rows = {"train": [{"path": "cats/a.jpg", "label": 0}], "validation": [{"path": "dogs/b.jpg", "label": 1}]}
    anywhere = cluster.Placement(None, None, 1)
    for verbose in (False, True):
        monkeypatch.setenv(quiet.VERBOSE_ENV, "1" if verbose else "0")
        for split in training.datasets(rows, storage.resolve("/nowhere"), DecodeConfig(), anywhere).values():
            assert split.context.enable_progress_bars is split.context.print_on_execution_start is verbose
    assert (process.enable_progress_bars, process.print_on_execution_start) == before == (True, True)
