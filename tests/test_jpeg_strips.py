"""JpegStripWriter: a JPEG written strip by strip decodes to the pixels of a whole-image encode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from composite import codecs
from composite.codecs import JpegStripWriter


def _image(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(width * 7 + height)
    noise = rng.integers(0, 60, (height, width, 3))
    ramp = (np.arange(width)[None, :, None] + 2 * np.arange(height)[:, None, None]) % 190
    return np.ascontiguousarray((noise + ramp).astype(np.uint8))


@pytest.mark.parametrize(("width", "height"), [(517, 700), (300, 256), (64, 10), (1000, 2304)])
def test_strips_decode_like_one_encode(width: int, height: int) -> None:
    pixels = _image(width, height)
    writer = JpegStripWriter(width, height, quality=90)
    data = b"".join(writer.strip(pixels[y : y + writer.STRIP]) for y in range(0, height, writer.STRIP))
    whole = codecs.decode_jpeg(codecs.encode_jpeg(pixels, quality=90))
    # Two independent decoders: libjpeg-turbo via imagecodecs and Pillow's.
    assert np.array_equal(codecs.decode_jpeg(data), whole)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (width, height)
        assert np.array_equal(np.asarray(image.convert("RGB")), whole)
    if height > writer.STRIP:
        assert b"\xff\xdd\x00\x04" in data  # restart interval present: strips really were joined


def test_strip_of_wrong_size_is_refused() -> None:
    writer = JpegStripWriter(100, 600, quality=80)
    with pytest.raises(ValueError, match="does not fit"):
        writer.strip(_image(100, 100))  # not the last strip, so it must be STRIP rows
    writer.strip(_image(100, 256))
    with pytest.raises(ValueError, match="does not fit"):
        writer.strip(_image(90, 256))
