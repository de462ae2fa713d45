"""Configurations refuse bad values with the flag's name, and cut the stage configs consistently."""

import pytest

import catdog
from catdog.config import (
    DecodeConfig,
    EmbedConfig,
    ExtractConfig,
    HeadConfig,
    TrainConfig,
)
from catdog.errors import CatdogError


@pytest.mark.parametrize("cls, changes, message", [
    (ExtractConfig, {"image_size": 16}, "--image-size must be at least 32"),
    (ExtractConfig, {"preprocess": "caffe"}, "--preprocess must be one of vgg16, rescale"),
    (ExtractConfig, {"dtype": "int8"}, "--dtype must be one of"),
    (ExtractConfig, {"shard_size": 0}, "--shard-size must be positive"),
    (ExtractConfig, {"max_pixels": 0}, "--max-pixels must be positive"),
    (ExtractConfig, {"num_actors": 0}, "--num-actors must be at least 1"),
    (ExtractConfig, {"gpus_per_actor": -1}, "--gpus-per-actor cannot be negative"),
    (HeadConfig, {"model": "svm"}, "--model must be one of logreg, dense"),
    (HeadConfig, {"epochs": 0}, "--epochs must be positive"),
    (HeadConfig, {"dropout": 1.0}, "--dropout must be in"),
    (TrainConfig, {"num_workers": 0}, "--num-workers must be positive"),
    (TrainConfig, {"interpolation": "cubic"}, "--interpolation must be one of"),
    (TrainConfig, {"image_size": 8}, "--image-size must be at least 32"),
])
def test_bad_values_name_the_flag(cls, changes, message):
    base = {"features": "f", "model_dir": "m"} if cls is HeadConfig else {"root": "r", "out": "o"}
    with pytest.raises(CatdogError, match=message):
        cls(**base, **changes)


def test_stage_configs_are_cut_from_the_job_config():
    config = ExtractConfig(root="r", out="o", image_size=64, batch_size=8, interpolation="nearest", max_pixels=99,
                           preprocess="rescale", precision="bf16")
    assert config.decode == DecodeConfig(64, "nearest", 99)
    assert config.embed == EmbedConfig(64, 8, "rescale", "bf16")
    train = TrainConfig(root="r", out="o", image_size=48, max_pixels=7, interpolation="nearest")
    assert train.decode == DecodeConfig(48, "nearest", 7)
    recorded = train.extract_config()
    assert (recorded.image_size, recorded.max_pixels, recorded.interpolation) == (48, 7, "nearest")
    assert config.replace(image_size=32).decode.image_size == 32


@pytest.mark.parametrize("call, said", [
    (lambda: catdog.extract(123, None), r"^root must be a string, got 123 \(int\)$"),
    (lambda: catdog.extract("photos", "out", batch_size=2.5), r"^batch_size must be an integer or None, got 2.5"),
    (lambda: catdog.extract("photos", "out", overwrite="yes"), r"^overwrite must be true or false"),
    (lambda: catdog.fit_head("features", "model", learning_rate="fast"), r"^learning_rate must be a number"),
    (lambda: catdog.similar("features", top=None), r"^top must be an integer, got None"),
    (lambda: catdog.status(None), r"^a path or URI is a non-empty string, got None"),
    (lambda: catdog.load_model(3), r"^a path or URI is a non-empty string, got 3"),
])
def test_the_api_says_a_wrong_argument_in_one_line(call, said):
    """A wrong type from a notebook is a CatdogError naming the argument, before any work, never a
    TypeError from deep inside a job."""
    with pytest.raises(CatdogError, match=said) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_numpy_numbers_and_paths_are_taken_as_they_mean():
    import pathlib

    import numpy as np

    config = ExtractConfig(root=pathlib.Path("photos"), out="out", image_size=np.int64(64), batch_size=np.int32(8))
    assert config.root == "photos" and config.image_size == 64 and HeadConfig("f", "m", learning_rate=1).learning_rate == 1


def test_one_image_settings_type_for_extraction_training_and_model_folders():
    """ExtractConfig and TrainConfig are ImageSettings; a model folder's metadata gives the same
    settings back; the backbone's defaults are filled in once, in ImageSettings."""
    import dataclasses

    from catdog import storage
    from catdog.config import ImageSettings
    from catdog.extraction.imagefolder import ImageSet
    from catdog.extraction.metadata import feature_metadata

    image = {f.name for f in dataclasses.fields(ImageSettings)}
    for cls in (ExtractConfig, TrainConfig):
        assert issubclass(cls, ImageSettings) and image <= {f.name for f in dataclasses.fields(cls)}
    train = TrainConfig(root="r", out="o", backbone="resnet50", interpolation="nearest", jpeg_draft=True, seed=3,
                        weights="none")
    extract = train.extract_config()
    assert extract.image_options() == train.image_options()
    assert (extract.image_size, extract.pooling, extract.preprocess) == (224, "avg", "vgg16")
    meta = feature_metadata(extract, ImageSet(storage.resolve("r"), "split", ("a", "b"), (), (), ()),
                            {"source": "none", "seed": 3})
    again = ImageSettings.from_metadata(meta, {"max_pixels": extract.max_pixels})
    assert again == extract.image_options()
