"""The Keras pieces shared by training and loading: preprocessing as a layer, and a RandomShear
whose saved config loads again. Keras is imported inside functions: decode-only workers never pay for it.
"""

from __future__ import annotations

import functools

import numpy as np

# keras.applications.vgg16.preprocess_input ("caffe"): RGB -> BGR, then minus this mean.
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
# keras.applications.densenet.preprocess_input ("torch"): 1/255, then this mean and deviation (RGB).
TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
AUGMENTATION = {"rotation": 40 / 360, "shift": 0.2, "shear": 0.2, "zoom": 0.2}  # the tutorial's ImageDataGenerator


def preprocess(pixels, mode: str):
    """uint8 RGB tensor -> the float32 input the weights expect, as TensorFlow ops (inside a graph,
    so a GPU receives uint8, a quarter of the bytes, and the CPU does no float work).

    The modes of keras.applications' preprocess_input: 'vgg16' is "caffe" (VGG, ResNet v1), 'tf' maps
    to [-1, 1] (ResNet v2, Inception, Xception, MobileNetV2), 'torch' is the ImageNet mean and
    deviation (DenseNet); 'none' passes 0-255 on (EfficientNet, ConvNeXt, MobileNetV3 preprocess
    inside the model); 'rescale' is the tutorial's 1/255. Always float32, whatever the precision
    policy: the subtraction must not be rounded to 8 bits.
    """
    import tensorflow as tf

    x = tf.cast(pixels, tf.float32)
    if mode == "rescale":
        return x * (1.0 / 255.0)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - tf.constant(TORCH_MEAN)) / tf.constant(TORCH_STD)
    if mode == "none":
        return x
    return tf.reverse(x, axis=[-1]) - tf.constant(CAFFE_BGR_MEAN)


def preprocessing_layer(mode: str):
    """`preprocess` as a plain Keras layer, so a saved model loads in safe mode.

    'vgg16' is a fixed 1x1 convolution: a permutation matrix and the negated mean as bias, exact
    in float32; 'torch' one whose diagonal and bias are 1/(255 std) and -mean/std.
    """
    import keras

    if mode == "rescale":
        return keras.layers.Rescaling(1.0 / 255.0, name="preprocess")
    if mode == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")
    if mode == "none":
        return keras.layers.Identity(name="preprocess")
    if mode == "torch":
        layer = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False)
        layer.build((None, None, None, 3))
        layer.set_weights([np.diag(1.0 / (255.0 * TORCH_STD)).astype(np.float32).reshape(1, 1, 3, 3),
                           (-TORCH_MEAN / TORCH_STD).astype(np.float32)])
        return layer
    layer = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False)
    layer.build((None, None, None, 3))
    layer.set_weights([np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3), -CAFFE_BGR_MEAN])
    return layer


def conv_base(net):
    """The conv base inside an end-to-end model: its one nested network besides the augmentation."""
    import keras

    return next(layer for layer in net.layers if isinstance(layer, keras.Model) and layer.name != "augmentation")


def augmentation(seed: int):
    """The tutorial's augmentation as Keras layers: active in training only."""
    import keras

    a, fill = AUGMENTATION, "nearest"
    return keras.Sequential(
        [
            keras.layers.RandomRotation(a["rotation"], fill_mode=fill, seed=seed),
            keras.layers.RandomTranslation(a["shift"], a["shift"], fill_mode=fill, seed=seed),
            shear_layer()(a["shear"], a["shear"], fill_mode=fill, seed=seed),
            keras.layers.RandomZoom(a["zoom"], fill_mode=fill, seed=seed),
            keras.layers.RandomFlip("horizontal", seed=seed),
        ],
        name="augmentation",
    )


@functools.cache
def shear_layer():
    """keras.layers.RandomShear whose saved config loads again (registered once per process).

    Keras 3.15 saves the factor as the range (-f, f) but refuses negative numbers when loading it.
    """
    import keras

    @keras.saving.register_keras_serializable(package="catdog", name="RandomShear")
    class RandomShear(keras.layers.RandomShear):
        def get_config(self):
            config = super().get_config()
            config["x_factor"], config["y_factor"] = self._x_factor_max, self._y_factor_max
            return config

        def __init__(self, x_factor=0.0, y_factor=0.0, **kwargs):
            super().__init__(x_factor, y_factor, **kwargs)
            self._x_factor_max = x_factor if isinstance(x_factor, (int, float)) else max(x_factor)
            self._y_factor_max = y_factor if isinstance(y_factor, (int, float)) else max(y_factor)

    return RandomShear
