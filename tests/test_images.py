"""Every odd file is either converted to RGB (with a note) or skipped (with a reason)."""

from __future__ import annotations

import numpy as np
import pytest
from odd_images import ODD_FILES, write_odd_files
from PIL import Image

from tlcli.data.images import decode_image, list_files

pytestmark = pytest.mark.fast  # the edit loop's tier (tests/conftest.py)


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("odd")
    write_odd_files(folder)
    return folder


@pytest.mark.parametrize(("name", "outcome"), sorted(ODD_FILES.items()))
def test_odd_file_is_converted_or_skipped(odd_folder, name, outcome):
    decoded = decode_image(odd_folder / name, (24, 32))
    if outcome == "skip":
        assert decoded.pixels is None
        assert decoded.error
    else:
        assert decoded.error is None
        assert decoded.pixels.shape == (24, 32, 3)
        assert decoded.pixels.dtype == np.uint8
        assert decoded.notes, "a conversion must be reported"


def test_plain_rgb_jpeg_has_no_notes(tmp_path):
    Image.new("RGB", (50, 30), (10, 200, 30)).save(tmp_path / "plain.jpg")
    decoded = decode_image(tmp_path / "plain.jpg", (16, 16))
    assert decoded.notes == [] and decoded.error is None
    assert abs(int(decoded.pixels[8, 8, 1]) - 200) < 8


def test_sixteen_bit_gray_keeps_its_range(odd_folder):
    """convert('RGB') would clip 16-bit values to white; the decoder scales them instead."""
    pixels = decode_image(odd_folder / "gray16.png", (40, 40)).pixels
    assert pixels.min() < 30 and pixels.max() > 220


def test_exif_orientation_is_applied(tmp_path):
    wide = Image.new("RGB", (40, 20), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    wide.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    decoded = decode_image(tmp_path / "r.jpg", (40, 20))
    assert "EXIF" in decoded.notes[0]
    # displayed upright, the white half is on top
    assert decoded.pixels[:10].mean() > 200 and decoded.pixels[-10:].mean() < 50


def test_list_files_skips_hidden_and_system_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", ".DS_Store", "Thumbs.db", "sub/b.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.jpg").write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_files(tmp_path)] == [
        "a.jpg",
        "sub/b.png",
    ]


@pytest.mark.parametrize(("source", "target"), [((97, 131), (32, 48)), ((20, 15), (64, 40))])
def test_resize_matches_tf_image_resize(tmp_path, source, target):
    # Down and up: the decoder resizes as Keras' loaders do (bilinear, no antialiasing).
    import tensorflow as tf

    pixels = np.random.default_rng(0).integers(0, 256, (*source, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    decoded = decode_image(tmp_path / "x.png", target).pixels
    expected = tf.image.resize(pixels, target, method="bilinear", antialias=False).numpy()
    difference = np.abs(decoded.astype(np.float32) - expected)
    assert difference.max() <= 0.5 + 1e-3  # rounding to uint8 only


def test_a_large_jpeg_decodes_as_tensorflow_decodes_and_resizes_it(tmp_path):
    """No decoding at a reduced scale: the pixels are TensorFlow's (tf.io.decode_jpeg and
    tf.image.resize, as Keras' image loaders do), up to the two JPEG decoders' rounding."""
    import tensorflow as tf

    y, x = np.mgrid[0:384, 0:512]
    texture = np.stack([128 + 100 * np.sin(x / 23), 128 + 100 * np.cos(y / 17), (x * y) % 256], -1)
    noise = np.random.default_rng(0).normal(0, 25, texture.shape)
    Image.fromarray(np.clip(texture + noise, 0, 255).astype(np.uint8)).save(tmp_path / "p.jpg")
    decoded = decode_image(tmp_path / "p.jpg", (64, 64)).pixels.astype(np.float32)
    jpeg = tf.io.decode_jpeg(tf.io.read_file(str(tmp_path / "p.jpg")))
    expected = tf.image.resize(jpeg, (64, 64)).numpy()
    assert np.abs(decoded - expected).mean() < 2  # draft mode (1/4 scale here) gave 10
