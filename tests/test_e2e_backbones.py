"""The end-to-end model on another backbone, without Ray: its preprocessing layer equals catdog's
graph preprocessing (so a saved model sees what extraction saw), the head sits on the pooled base,
and fine-tuning unfreezes from a layer of that network."""

import numpy as np
import pytest

from catdog.config import TrainConfig
from catdog.e2e import model as e2e
from catdog.errors import CatdogError
from catdog.vision import layers

pytestmark = pytest.mark.slow  # builds Keras networks


@pytest.mark.parametrize("mode", ["vgg16", "rescale", "tf", "torch", "none"])
def test_the_saved_models_preprocessing_layer_is_the_graphs(mode):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3)).astype(np.float32)
    layer = np.asarray(layers.preprocessing_layer(mode)(pixels))
    np.testing.assert_allclose(layer, np.asarray(layers.preprocess(pixels.astype(np.uint8), mode)), rtol=1e-5, atol=1e-4)


def test_a_mobilenet_model_pools_then_fine_tunes_from_its_own_layer():
    config = TrainConfig(root="r", out="o", backbone="mobilenet_v2", image_size=64, weights="none",
                         fine_tune_from="block_16_expand")
    assert (config.preprocess, config.pooling) == ("tf", "avg")
    net = e2e.build_model(config, classes=3)
    base = layers.conv_base(net)
    assert base.name.startswith("mobilenetv2") and tuple(base.output.shape) == (None, 1280)
    assert net.output.shape[-1] == 3 and not base.trainable
    e2e.fine_tune(net, "block_16_expand")
    trainable = [layer.name for layer in base.layers if layer.trainable and layer.weights]
    assert trainable[0] == "block_16_expand" and "Conv1" not in trainable
    with pytest.raises(CatdogError, match=r"--fine-tune-from 'block5_conv1' is not a layer of mobilenetv2"):
        e2e.fine_tune(net, "block5_conv1")
