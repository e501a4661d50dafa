"""SVS / generic TIFF reader against OpenSlide: levels, metadata, associated images, pixels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openslide
import pytest

import composite
from composite.errors import CompositeError, TileReadError
from composite.geometry import TileGrid
from composite.synthetic import write_synthetic_slide
from tests.readers import assert_matches_openslide


def _slides(request: pytest.FixtureRequest) -> Path:
    name: str = request.param
    if name.startswith("shared:"):
        return Path(request.getfixturevalue("openslide_data")) / name.removeprefix("shared:")
    return Path(request.getfixturevalue(name))


SLIDES = ["synthetic_svs", "synthetic_tiff", "shared:small.svs", "shared:boxes.tiff"]


@pytest.fixture(params=SLIDES)
def slide_path(request: pytest.FixtureRequest) -> Path:
    return _slides(request)


def test_metadata_agrees_with_openslide(slide_path: Path) -> None:
    with composite.open_slide(slide_path) as ours, openslide.OpenSlide(slide_path) as theirs:
        assert ours.level_count == theirs.level_count
        assert ours.level_dimensions == theirs.level_dimensions
        assert ours.level_downsamples == pytest.approx(theirs.level_downsamples)
        props = theirs.properties
        if "openslide.mpp-x" in props:
            assert ours.mpp == pytest.approx((float(props["openslide.mpp-x"]), float(props["openslide.mpp-y"])))
        else:
            assert ours.mpp is None
        if "openslide.objective-power" in props:
            assert ours.magnification == pytest.approx(float(props["openslide.objective-power"]))
        else:
            assert ours.magnification is None
        assert set(ours.associated_images) == set(theirs.associated_images)
        assert ours.properties["openslide.vendor"] == props["openslide.vendor"]


def test_associated_images_match_openslide(slide_path: Path) -> None:
    with composite.open_slide(slide_path) as ours, openslide.OpenSlide(slide_path) as theirs:
        for name, image in theirs.associated_images.items():
            expected = np.asarray(image.convert("RGB"))
            got = ours.associated_images[name]
            assert got.shape == expected.shape
            assert np.abs(got.astype(int) - expected).max() <= 2, name


def test_read_region_matches_openslide_on_every_level(slide_path: Path) -> None:
    with composite.open_slide(slide_path) as slide:
        for level, (width, height) in enumerate(slide.level_dimensions):
            ds = slide.level_downsamples[level]
            grid = slide.levels[level].grid
            tw, th = grid.tile_width, grid.tile_height
            regions = [
                (0, 0, width, height),  # the whole level
                (0, 0, min(tw + 20, width + 5), min(th + 17, height + 5)),  # across tile edges
                (0, 0, width + 13, height + 9),  # across the right and bottom border
            ]
            if ds == int(ds):  # OpenSlide interpolates at fractional level positions
                regions += [
                    (3, 5, min(20, width - 3), min(15, height - 5)),  # inside one tile
                    (max(0, tw - 10), max(0, th - 10), 30, 30),  # across a tile corner
                    (width - 20, height - 20, 50, 50),  # across the border
                ]
            for x, y, w, h in regions:
                location = (round(x * ds), round(y * ds))
                assert_matches_openslide(slide, location, level, (w, h))


def test_region_fully_outside_is_white(synthetic_svs: Path) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        pixels = slide.read_region((-500, -500), 0, (100, 100))
        assert (pixels == 255).all()
        assert slide.read_region((0, 0), 0, (0, 0)).shape == (0, 0, 3)


class CountingReader:
    """Wraps a TileReader and counts decoded tiles."""

    def __init__(self, inner: composite.model.TileReader) -> None:
        self.inner = inner
        self.decoded: list[tuple[int, int]] = []

    @property
    def encoding(self):  # type: ignore[no-untyped-def]
        return self.inner.encoding

    def read_encoded(self, col: int, row: int) -> bytes | None:
        return self.inner.read_encoded(col, row)

    def read_tile(self, col: int, row: int):  # type: ignore[no-untyped-def]
        self.decoded.append((col, row))
        return self.inner.read_tile(col, row)


def test_region_decodes_only_overlapping_tiles_once(synthetic_svs: Path) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        level = slide.levels[0]
        counter = CountingReader(level.reader)
        level.reader = counter
        # 240-px tiles: x 230..490 spans cols 0..2, y 470..500 spans rows 1..2.
        slide.read_region((230, 470), 0, (260, 31))
        assert sorted(counter.decoded) == sorted((c, r) for r in (1, 2) for c in (0, 1, 2))
        assert len(counter.decoded) == len(set(counter.decoded))


def test_opening_a_huge_slide_reads_no_tile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A 160,000 x 120,000 px slide (57 GB of pixels) whose tiles all point at one tiny JPEG.
    import tifffile

    from composite import codecs
    from composite.cli.info import describe
    from composite.formats import tiff  # imported here: alone, nothing else has imported it yet

    tile = codecs.encode_jpeg(np.full((256, 256, 3), 240, np.uint8), quality=80)
    path = tmp_path / "huge.tif"
    grid = TileGrid(160_000, 120_000, 256, 256)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(
            (tile for _ in range(grid.tile_count)),
            shape=(120_000, 160_000, 3),
            dtype=np.uint8,
            tile=(256, 256),
            compression="jpeg",
            photometric="ycbcr",
            subsampling=(2, 2),
            metadata=None,
        )
    reads: list[int] = []
    real_pread = tiff.os.pread
    monkeypatch.setattr(tiff.os, "pread", lambda *a: reads.append(1) or real_pread(*a))
    with composite.open_slide(path) as slide:
        info = describe(slide)
        assert info["levels"][0]["width"] == 160_000
        assert reads == []
        slide.read_region((80_000, 60_000), 0, (10, 10))
        assert len(reads) == 1


def test_get_thumbnail_and_context_manager(synthetic_svs: Path) -> None:
    slide = composite.open_slide(synthetic_svs)
    with slide:
        thumb = slide.get_thumbnail((300, 300))
        assert thumb.shape == (220, 300, 3)
        with openslide.OpenSlide(synthetic_svs) as theirs:
            expected = np.asarray(theirs.get_thumbnail((300, 300)).convert("RGB"))
        assert expected.shape == thumb.shape
        # Filters differ (OpenSlide uses cairo/PIL), so compare coarse structure, not pixels.
        assert np.abs(thumb.astype(float) - expected).mean() < 10
        assert np.abs(thumb.mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() < 3
    assert slide.closers == []


def test_plain_images_open_as_one_level(openslide_data: Path, tmp_path: Path) -> None:
    from PIL import Image

    png = openslide_data / "boxes.png"
    with composite.open_slide(png) as slide:
        assert slide.format == "image"
        assert slide.level_dimensions == ((300, 250),)
        expected = np.asarray(Image.open(png).convert("RGB"))
        assert np.array_equal(slide.read_region((0, 0), 0, (300, 250)), expected)
    jpeg = tmp_path / "x.jpg"
    Image.fromarray(expected).save(jpeg, quality=95)
    with composite.open_slide(jpeg) as slide:
        assert slide.levels[0].encoding is not None and slide.levels[0].encoding.compression == "jpeg"
        assert np.abs(slide.read_region((0, 0), 0, (300, 250)).astype(int) - expected).mean() < 3


def test_unreadable_svs_opens_but_pixels_fail_cleanly(openslide_data: Path) -> None:
    path = openslide_data / "unreadable.svs"
    with composite.open_slide(path) as slide, pytest.raises(TileReadError, match=r"unreadable\.svs"):
        slide.read_region((0, 0), 0, (16, 16))


@pytest.mark.parametrize("content", [b"", b"this is not a slide\n", b"II*\x00garbage"])
def test_bad_files_raise_composite_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.svs"
    path.write_bytes(content)
    with pytest.raises(CompositeError, match=r"bad\.svs"):
        composite.open_slide(path)


def test_missing_path_and_directory(tmp_path: Path, openslide_data: Path) -> None:
    with pytest.raises(composite.SlideNotFoundError, match=r"nope\.svs"):
        composite.open_slide(tmp_path / "nope.svs")
    with pytest.raises(composite.UnsupportedFormatError, match=re.escape(str(tmp_path))):
        composite.open_slide(tmp_path)
    with pytest.raises(CompositeError, match=r"unopenable\.tiff"):
        composite.open_slide(openslide_data / "unopenable.tiff")


def test_synthetic_writer_is_deterministic(tmp_path: Path) -> None:
    a = write_synthetic_slide(tmp_path / "a.svs", width=500, height=400, min_level_size=100)
    b = write_synthetic_slide(tmp_path / "b.svs", width=500, height=400, min_level_size=100)
    with composite.open_slide(a) as sa, composite.open_slide(b) as sb:
        assert np.array_equal(sa.read_region((0, 0), 1, (125, 100)), sb.read_region((0, 0), 1, (125, 100)))
