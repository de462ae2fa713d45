import hashlib
import io
import os

import keras
import numpy as np
import pyarrow.fs as pafs
import pytest
from PIL import Image

from catdog import storage
from catdog.config import DecodeConfig
from catdog.vision import images
from tests.conftest import random_pixels


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_decode_matches_keras_load_img(tmp_path, interpolation):
    path = tmp_path / "x.png"
    Image.fromarray(random_pixels(0, 70, 90)).save(path)
    expected = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(32, 32), interpolation=interpolation))
    got = images.decode(path.read_bytes(), DecodeConfig(32, interpolation))
    assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
    np.testing.assert_array_equal(got, expected.astype(np.uint8))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "1"])
def test_every_mode_becomes_rgb(mode):
    src = Image.fromarray(random_pixels(1, 32, 32)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    got = images.decode(encode(src, fmt), DecodeConfig(32, "nearest"))
    assert got.shape == (32, 32, 3)
    np.testing.assert_array_equal(got, np.asarray(Image.open(io.BytesIO(encode(src, fmt))).convert("RGB")))


def test_sixteen_bit_png_is_scaled_not_clipped():
    wide = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64).astype(np.uint16)
    got = images.decode(encode(Image.fromarray(wide), "PNG"), DecodeConfig(32, "nearest"))
    np.testing.assert_array_equal(got[..., 0], (wide >> 8).astype(np.uint8))
    assert np.array_equal(got[..., 0], got[..., 2])


def test_exif_orientation_is_applied():
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    data = encode(Image.fromarray(pixels), "JPEG", exif=exif, quality=100)
    got = images.decode(data, DecodeConfig(40, "nearest"))
    # After a clockwise turn the white left half is on top.
    assert got[:20].mean() > 200 and got[20:].mean() < 50


def test_decompression_bomb_refused_from_header():
    data = encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(images.ImageTooLarge):
        images.decode(data, DecodeConfig(32, "bilinear", max_pixels=1_000_000))


@pytest.mark.parametrize("threads", [1, 3], ids=["one-thread", "three-threads"])  # 3: parts of 6, 7 and 7 files
@pytest.mark.parametrize("remote", [False, True], ids=["local-disk", "remote-fs"])
def test_decode_files_keeps_good_ones_in_order_and_names_each_failure(tmp_path, remote, threads):
    Image.fromarray(random_pixels(2)).save(tmp_path / "good.jpg")
    Image.fromarray(random_pixels(3)).save(tmp_path / "also.png")
    (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    # A filesystem that is not the local one is read FETCH_THREADS files at a time, in windows.
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()) if remote else pafs.LocalFileSystem()
    root = storage.Location(fs, "" if remote else str(tmp_path), str(tmp_path))
    assert root.join("x").is_local is not remote
    names = ["bad.jpg", "good.jpg", "empty.png", "missing.jpg", "also.png"] * 4  # 20: past one window of 16
    config = DecodeConfig(32)
    decoded = images.decode_files([root.join(n) for n in names], config, threads)
    good = [i for i, n in enumerate(names) if n in ("good.jpg", "also.png")]
    assert decoded.ok == tuple(good) and decoded.pixels.shape == (len(good), 32, 32, 3)
    for row, i in zip(decoded.pixels, good):
        np.testing.assert_array_equal(row, images.decode((tmp_path / names[i]).read_bytes(), config))
    expected = {"bad.jpg": "UnidentifiedImageError", "empty.png": "UnidentifiedImageError", "missing.jpg": "FileNotFoundError"}
    assert [(e.index, e.error) for e in decoded.errors] == [(i, expected[n]) for i, n in enumerate(names) if n in expected]
    assert all(e.message for e in decoded.errors)
    assert len(decoded.digests) == len(names)
    for i, n in enumerate(names):
        assert decoded.digests[i] == ("" if n == "missing.jpg" else hashlib.sha1((tmp_path / n).read_bytes()).hexdigest())


def test_jpeg_draft_scales_large_jpegs_only_and_stays_close():
    yy, xx = np.mgrid[0:256, 0:256] / 256
    waves = [np.sin(2 * np.pi * (f * xx + g * yy)) for f, g in ((1, 2), (2, -1), (3, 1))]
    smooth = (127.5 + 120 * np.stack(waves, -1)).astype(np.uint8)  # a 256x256 photo-like smooth image
    jpeg, png = encode(Image.fromarray(smooth), "JPEG", quality=95), encode(Image.fromarray(smooth), "PNG")
    full, draft = (images.decode(jpeg, DecodeConfig(64, jpeg_draft=d)) for d in (False, True))
    assert not np.array_equal(full, draft)  # libjpeg really scaled while decoding
    assert np.abs(full.astype(int) - draft.astype(int)).mean() < 3
    np.testing.assert_array_equal(images.decode(png, DecodeConfig(64, jpeg_draft=True)), images.decode(png, DecodeConfig(64)))
    # Under twice the size there is nothing to scale: the same pixels.
    np.testing.assert_array_equal(images.decode(jpeg, DecodeConfig(150, jpeg_draft=True)), images.decode(jpeg, DecodeConfig(150)))


def test_a_fifo_in_place_of_an_image_is_an_error_not_a_hang(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    decoded = images.decode_files([storage.resolve(str(fifo))], DecodeConfig(32))
    assert decoded.ok == () and [(e.error, e.message) for e in decoded.errors] == [("OSError", f"not a regular file: {fifo}")]
