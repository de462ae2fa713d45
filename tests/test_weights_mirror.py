"""`--weights imagenet`, the default, through Keras' own download, hash check and cache, from a
mirror served on loopback: the file is made here, and its md5 stands in for Keras' in this test alone
(there is no internet, and ImageNet's file is not ours to ship)."""

import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from catdog import commands
from catdog.errors import CatdogError
from catdog.vision import convbase

pytestmark = pytest.mark.slow  # builds VGG16 networks


class Mirror:
    """A static file server on 127.0.0.1 that counts the requests for each path."""

    def __init__(self, folder):
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keras-applications/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirrored(tmp_path, monkeypatch):
    """Keras' VGG16 notop file, made with random weights, in a mirror's layout; Keras' cache in tmp."""
    import keras

    served = tmp_path / "www" / "keras-applications" / "vgg16"
    served.mkdir(parents=True)
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    model.save_weights(str(tmp_path / "made.weights.h5"))
    # Keras' legacy h5 layout, the one its download serves, written by Keras' own legacy saver.
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    with h5py.File(served / convbase.IMAGENET_FILE, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    data = (served / convbase.IMAGENET_FILE).read_bytes()
    monkeypatch.setattr(convbase, "IMAGENET_MD5", hashlib.md5(data).hexdigest())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv(convbase.MIRROR_ENV, raising=False)
    mirror = Mirror(tmp_path / "www")
    yield mirror, served / convbase.IMAGENET_FILE, model
    mirror.close()


def test_imagenet_weights_come_through_keras_download_hash_check_and_cache(mirrored, tmp_path, monkeypatch):
    mirror, served, model = mirrored
    cached = tmp_path / "keras-home" / "models" / convbase.IMAGENET_FILE
    weights = convbase.resolve_weights("imagenet", 0, 32, mirror=mirror.url)
    assert mirror.requests == ["/keras-applications/vgg16/" + convbase.IMAGENET_FILE] and cached.exists()
    assert weights.identity["origin"] == mirror.url + convbase.IMAGENET_PATH
    assert weights.identity["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
    built = convbase.build(weights, 32)
    for a, b in zip(built.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Cached: the environment's mirror is not asked again, and the identity is the same numbers.
    monkeypatch.setenv(convbase.MIRROR_ENV, mirror.url)
    again = convbase.resolve_weights("imagenet", 0, 32)
    assert len(mirror.requests) == 1 and convbase.same_weights(again.identity, weights.identity)
    # A damaged cached copy fails Keras' hash check and is downloaded again.
    cached.write_bytes(cached.read_bytes()[:1000])
    convbase.resolve_weights("imagenet", 0, 32)
    assert len(mirror.requests) == 2 and cached.read_bytes() == served.read_bytes()


def test_a_mirror_serving_another_file_or_nothing_is_one_line(mirrored, tmp_path):
    mirror, served, _ = mirrored
    with pytest.raises(CatdogError, match="cannot get the ImageNet weights from .*404"):
        convbase.resolve_weights("imagenet", 0, 32, mirror=mirror.url + "elsewhere/")
    good = served.read_bytes()
    served.write_bytes(good[:-10])  # not the file the hash names
    with pytest.raises(CatdogError, match=r"cannot get the ImageNet weights from http://127.0.0.1:\d+/.*hash"):
        convbase.resolve_weights("imagenet", 0, 32, mirror=mirror.url)
    served.write_bytes(good)  # the mirror put right: the bad copy Keras kept fails its hash and is fetched again
    convbase.resolve_weights("imagenet", 0, 32, mirror=mirror.url)
    assert len(mirror.requests) == 3
    with pytest.raises(CatdogError, match="is neither a URL nor a folder"):
        convbase.resolve_weights("imagenet", 0, 32, mirror=str(tmp_path / "nothing"))


def test_a_folder_mirror_and_the_command_line(mirrored, tmp_path, capsys):
    mirror, served, _ = mirrored
    folder = served.parent.parent  # .../www/keras-applications
    weights = convbase.resolve_weights("imagenet", 0, 32, mirror=str(folder))
    assert weights.identity["origin"] == "file://" + str(served) and mirror.requests == []
    with pytest.raises(CatdogError, match="--weights-mirror serves VGG16's file"):
        convbase.resolve_weights("imagenet", 0, 32, backbone="resnet50", mirror=str(folder))
    os.remove(tmp_path / "keras-home" / "models" / convbase.IMAGENET_FILE)
    assert commands.main(["extract", str(tmp_path / "no-photos"), "--out", str(tmp_path / "o"),
                          "--weights-mirror", mirror.url + "missing/", "--image-size", "32"]) == 2
    assert "input folder not found" in capsys.readouterr().err  # the mirror flag is taken; the folder is refused first
