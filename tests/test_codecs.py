"""JPEG table merge/split and the APP14 rule, checked against OpenSlide and Pillow decoders."""

from __future__ import annotations

import io
from pathlib import Path

import imagecodecs
import numpy as np
import openslide
import tifffile
from PIL import Image

from composite import codecs
from composite.synthetic import region


def _first_tile(path: Path) -> tuple[bytes, bytes | None, bool]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        with path.open("rb") as fh:
            fh.seek(page.dataoffsets[0])
            data = fh.read(page.databytecounts[0])
        return data, page.jpegtables, page.photometric == tifffile.PHOTOMETRIC.RGB


def test_standalone_aperio_tile_decodes_like_openslide_in_pillow(openslide_data: Path) -> None:
    path = openslide_data / "small.svs"
    tile, tables, rgb = _first_tile(path)
    assert rgb and tables
    jpeg = codecs.standalone_jpeg(tile, tables=tables, rgb=True)
    assert codecs.has_adobe_marker(jpeg)
    expected = np.asarray(openslide.OpenSlide(path).read_region((0, 0), 0, (16, 16)))[:, :, :3]
    pillow = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))[:16, :16]
    assert np.array_equal(pillow, expected)
    # Without the Adobe marker the same bytes decode with wrong colours: the rule matters.
    plain = np.asarray(Image.open(io.BytesIO(codecs.merge_jpeg_tables(tile, tables))).convert("RGB"))[:16, :16]
    assert np.abs(plain.astype(int) - expected).max() > 20


def test_split_then_merge_decodes_identically() -> None:
    pixels = region(0, 0, 64, 48)
    for rgb in (False, True):
        jpeg = codecs.encode_jpeg(pixels, quality=85, rgb=rgb)
        tables, tile = codecs.split_jpeg_tables(jpeg)
        assert tables.startswith(codecs.SOI) and tables.endswith(codecs.EOI)
        again = codecs.decode_jpeg(codecs.merge_jpeg_tables(tile, tables), rgb=rgb)
        assert np.array_equal(again, codecs.decode_jpeg(jpeg))
        info = codecs.jpeg_info(jpeg)
        assert (info.width, info.height, info.rgb) == (64, 48, rgb)
        assert info.subsampling == ((1, 1) if rgb else (2, 2))


def test_jpeg_quality_is_reasonable() -> None:
    pixels = region(100, 100, 256, 256)
    decoded = codecs.decode_jpeg(codecs.encode_jpeg(pixels, quality=90))
    mse = np.mean((decoded.astype(float) - pixels) ** 2)
    assert 10 * np.log10(255**2 / mse) > 35


def test_as_rgb_shapes() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert codecs.as_rgb(grey).shape == (3, 4, 3)
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert codecs.as_rgb(rgba).shape == (2, 2, 3)
    wide = np.full((2, 2), 0xFF00, np.uint16)
    assert codecs.as_rgb(wide).max() == 0xFF


def test_decode_into_a_buffer_only_when_it_fits() -> None:
    pixels = region(0, 0, 64, 48)
    data = codecs.encode_jpeg(pixels, quality=90, rgb=True)
    out = np.zeros((48, 64, 3), np.uint8)
    decoded = codecs.decode_jpeg(data, rgb=True, out=out)
    assert decoded is out and np.array_equal(out, codecs.decode_jpeg(data, rgb=True))
    wrong = np.zeros((64, 64, 3), np.uint8)  # another size: a fresh array, the buffer untouched
    assert codecs.decode_jpeg(data, rgb=True, out=wrong) is not wrong and not wrong.any()
    # 12-bit samples decode to 16 bits (then scaled to 8): never into an 8-bit buffer
    data12 = bytes(imagecodecs.jpeg8_encode(pixels.astype(np.uint16) << 4, level=95, bitspersample=12))
    assert codecs.jpeg_info(data12).precision == 12
    decoded12 = codecs.decode_jpeg(data12, out=out)
    assert decoded12 is not out and np.array_equal(decoded12, codecs.decode_jpeg(data12))
    # ... and scaled by the stream's 12 bits, not as if they were 16 (which read nearly black)
    assert np.abs(decoded12.astype(int) - pixels).mean() < 3
