"""Our own TIFF writer (composite/formats/tiffwrite/stream.py), proven by tifffile and OpenSlide."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from composite.convert import TiffOptions, WriteOptions, convert
from composite.formats.tiffwrite import stream
from composite.formats.tiffwrite.stream import ASCII, LONG, RATIONAL, SHORT, UNDEFINED, TiffStream
from composite.synthetic import write_synthetic_slide
from tests.test_svs_writer import check_svs


def _tiles_image(path: Path, pixels: np.ndarray, *, bigtiff: bool, order: list[int], threads: int = 1) -> None:  # type: ignore[type-arg]
    """``pixels`` as uncompressed 16 x 16 tiles, written in ``order`` (split over ``threads``)."""
    height, width = pixels.shape[:2]
    cols, rows = -(-width // 16), -(-height // 16)
    padded = np.zeros((rows * 16, cols * 16, 3), np.uint8)
    padded[:height, :width] = pixels
    offsets = np.zeros(cols * rows, np.uint64)

    def write(part: list[int]) -> None:
        data = [padded[i // cols * 16 :][:16, i % cols * 16 :][:, :16].tobytes() for i in part]
        offsets[part] = out.append(data)

    with open(path, "wb") as fh:
        out = TiffStream(fh, bigtiff=bigtiff)
        workers = [threading.Thread(target=write, args=(order[i::threads],)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        out.add_image(
            [
                (256, LONG, [width]),
                (257, LONG, [height]),
                (258, SHORT, [8, 8, 8]),
                (259, SHORT, [1]),
                (262, SHORT, [2]),
                (270, ASCII, "a description"),
                (277, SHORT, [3]),
                (282, RATIONAL, [72, 1]),
                (284, SHORT, [1]),
                (322, LONG, [16]),
                (323, LONG, [16]),
                (324, out.offset_type, offsets),
                (325, out.offset_type, [16 * 16 * 3] * (cols * rows)),
                (65000, UNDEFINED, b"odd"),  # an odd-sized out-of-line value: the next must stay aligned
            ]
        )
        out.add_image([(256, LONG, [1]), (257, LONG, [1]), (258, SHORT, [8]), (259, SHORT, [1]), (262, SHORT, [1])])
        out.finish()


@pytest.mark.parametrize("bigtiff", [False, True])
def test_tiles_in_any_order_from_several_threads_read_back_exactly(tmp_path: Path, bigtiff: bool) -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (70, 90, 3), np.uint8)
    order = list(rng.permutation(5 * 6))
    path = tmp_path / "t.tif"
    _tiles_image(path, pixels, bigtiff=bigtiff, order=order, threads=3)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff is bigtiff and len(tif.pages) == 2
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        assert page.description == "a description" and page.tags[282].value == (72, 1)
        assert page.tags[65000].value == b"odd"
        np.testing.assert_array_equal(page.asarray(), pixels)
        assert tif.pages[1].shape == (1, 1)


def test_classic_tiff_past_its_limit_starts_again_as_bigtiff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 4 GiB limit of classic TIFF, lowered: auto restarts as BigTIFF; 'no' refuses."""
    source = write_synthetic_slide(tmp_path / "src.svs", width=1500, height=1000, min_level_size=200)
    monkeypatch.setattr(stream, "_CLASSIC_LIMIT", 300_000)
    options = WriteOptions(workers=2, tile_size=(256, 256), quality=80, min_level_size=100)
    report = convert(source, tmp_path / "auto.svs", options=options)
    with tifffile.TiffFile(tmp_path / "auto.svs") as tif:
        assert tif.is_bigtiff and tif.is_svs
    check_svs(tmp_path / "auto.svs", source, report)
    with pytest.raises(ValueError, match="too large for non-BigTIFF"):
        convert(source, tmp_path / "no.svs", options=WriteOptions(tiff=TiffOptions(bigtiff="no"), min_level_size=100))
    assert not (tmp_path / "no.svs").exists()
    with openslide.OpenSlide(tmp_path / "auto.svs") as slide:
        assert slide.level_count == len(report.levels)
