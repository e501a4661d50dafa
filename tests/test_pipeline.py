"""The shared conversion pipeline: byte copy, re-tiling, streaming downsampled levels, spooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

import composite
from composite import codecs
from composite.convert import WriteOptions, output_format
from composite.errors import UnsupportedFormatError
from composite.geometry import TileGrid
from composite.model import Level, Slide
from composite.pyramid import DownsampledLevel, pyramid_levels
from composite.resample import box_downsample
from composite.tiling import BandCache, encoded_tiles, is_copyable, stripes


def _one_level(slide: Slide) -> Slide:
    """The slide with its lower levels hidden, like a one-level CWS or ACI source."""
    return Slide(format="test", path=slide.path, levels=slide.levels[:1], mpp=slide.mpp)


def _decode(tile_data: bytes, compression: str, tables: bytes | None, rgb: bool, size: tuple[int, int]) -> np.ndarray:
    if compression == "lzw":
        return np.frombuffer(codecs.decode_lzw(tile_data), np.uint8).reshape(size[1], size[0], 3)
    if compression == "none":
        return np.frombuffer(tile_data, np.uint8).reshape(size[1], size[0], 3)
    if compression == "jpeg":
        return codecs.decode_jpeg(tile_data, tables=tables, rgb=rgb)
    return codecs.decode_jpeg2000(tile_data)


def test_same_grid_and_codec_copies_bytes(synthetic_svs: Path) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        level = slide.levels[0]
        assert is_copyable(level, level.grid, "jpeg")
        tiles = list(encoded_tiles(level, level.grid, compression="jpeg", quality=90, workers=2))
        assert [(t.col, t.row) for t in tiles] == list(level.grid.indices())
        assert all(t.copied for t in tiles)
        assert all(t.data == level.read_encoded_tile(t.col, t.row) for t in tiles)
        assert tiles[0].encoding.jpeg_tables == level.encoding.jpeg_tables  # type: ignore[union-attr]


@pytest.mark.parametrize("compression", ["lzw", "none"])
def test_retiling_is_lossless_and_pads_edges(synthetic_svs: Path, compression: str) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        level = slide.levels[0]
        target = TileGrid(level.width, level.height, 512, 384)
        assert not is_copyable(level, target, "jpeg")
        expected = level.read_region(0, 0, level.width, level.height)
        tiles = list(encoded_tiles(level, target, compression=compression, quality=90, workers=2))
        assert len(tiles) == target.tile_count
        for tile in tiles:
            box = target.tile_box(tile.col, tile.row)
            pixels = _decode(tile.data, compression, None, True, (512, 384))
            assert pixels.shape == (384, 512, 3), "edge tiles must be full-size"
            assert np.array_equal(pixels[: box.height, : box.width], expected[box.y : box.bottom, box.x : box.right])


def test_stripes_fall_on_common_multiples_of_the_tile_widths() -> None:
    source = TileGrid(40_000, 30_000, 240, 240)
    aligned = stripes(source, TileGrid(40_000, 30_000, 256, 256), stripe_px=8192)
    assert [len(cols) for cols in aligned[:-1]] == [30] * 5  # 7,680 px = 32 source tiles
    assert sum(len(cols) for cols in aligned) == 157 and aligned[-1].stop == 157
    # 240 and 752 meet at 11,280 px (15 blocks), within 3 x 4096; 240 and 4096 only at 61,440 px:
    # stripes of 4096 px (1 tile), the source column on each edge decoded twice
    assert {len(cols) for cols in stripes(source, TileGrid(40_000, 30_000, 752, 480))[:-1]} == {15}
    assert {len(cols) for cols in stripes(source, TileGrid(40_000, 30_000, 4096, 4096))[:-1]} == {1}
    assert {len(cols) for cols in stripes(source, TileGrid(40_000, 30_000, 256, 256))[:-1]} == {15}  # 3,840 px
    assert stripes(source, TileGrid(500, 500, 256, 256)) == [range(0, 2)]


@pytest.mark.parametrize(("stripe_px", "tile", "redecoded"), [(480, 120, False), (700, 256, True)])
def test_reencoded_tiles_come_in_stripes_each_once(
    synthetic_svs: Path, monkeypatch: pytest.MonkeyPatch, stripe_px: int, tile: int, redecoded: bool
) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        level = slide.levels[0]
        decoded: list[tuple[int, int]] = []
        read_tile = level.read_tile

        def counting(col: int, row: int, *, out: NDArray[np.uint8] | None = None) -> NDArray[np.uint8]:
            decoded.append((col, row))
            return read_tile(col, row, out=out)

        monkeypatch.setattr(level, "read_tile", counting)
        target = TileGrid(level.width, level.height, tile, tile)
        expected = level.read_region(0, 0, level.width, level.height)
        decoded.clear()
        tiles = list(encoded_tiles(level, target, compression="lzw", quality=90, workers=2, stripe_px=stripe_px))
        columns = stripes(level.grid, target, stripe_px=stripe_px)
        assert len(columns) > 2
        assert [(t.col, t.row) for t in tiles] == [(c, r) for cols in columns for r in range(target.rows) for c in cols]
        for t in tiles:
            box = target.tile_box(t.col, t.row)
            pixels = np.frombuffer(codecs.decode_lzw(t.data), np.uint8).reshape(tile, tile, 3)
            assert np.array_equal(pixels[: box.height, : box.width], expected[box.y : box.bottom, box.x : box.right])
        assert set(decoded) == set(level.grid.indices())
        # aligned stripes decode each source tile once; others only the columns on stripe edges twice
        twice = {key for key in decoded if decoded.count(key) > 1}
        assert (len(twice) > 0) == redecoded and len(decoded) == level.grid.tile_count + len(twice)
        assert all(decoded.count(key) <= 2 for key in twice)


def test_band_cache_decodes_each_source_tile_once(synthetic_svs: Path) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        level = slide.levels[0]
        band = BandCache(level)
        target = TileGrid(level.width, level.height, 300, 170)  # straddles every 240-px source tile
        for col, row in target.indices():
            box = target.tile_box(col, row)
            band.region(box.x, box.y, box.width, box.height)
        assert band.decoded == level.grid.tile_count


def test_reencoded_jpeg_is_close_and_colours_right(synthetic_svs: Path) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        level = slide.levels[1]
        target = TileGrid(level.width, level.height, 256, 256)
        expected = level.read_region(0, 0, level.width, level.height)
        for rgb in (True, False):
            tiles = list(encoded_tiles(level, target, compression="jpeg", quality=90, rgb=rgb, workers=2))
            assert all(codecs.jpeg_info(t.data).rgb == rgb and t.encoding.rgb == rgb for t in tiles)
            for tile in tiles:
                box = target.tile_box(tile.col, tile.row)
                pixels = codecs.decode_jpeg(tile.data, rgb=rgb)[: box.height, : box.width]
                want = expected[box.y : box.bottom, box.x : box.right]
                # Mean colour catches a colour-space mix-up (tens of levels off); 4:2:0 blurs
                # chroma edges, so only RGB tiles are held to a per-pixel bound.
                assert np.abs(pixels.mean(axis=(0, 1)) - want.mean(axis=(0, 1))).max() < 2
                if rgb:
                    assert np.abs(pixels.astype(int) - want).mean() < 3, (tile.col, tile.row)


def test_pyramid_uses_own_levels_where_they_agree(synthetic_svs: Path) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        levels = pyramid_levels(slide, min_size=100)
        assert levels[0] is slide.levels[0] and levels[1] is slide.levels[1] and levels[2] is slide.levels[2]
        assert isinstance(levels[3], DownsampledLevel)
        assert max(levels[-1].dimensions) <= 100 < max(levels[-2].dimensions)


def test_downsampled_levels_are_exact_box_means_computed_once(synthetic_svs: Path) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        one = _one_level(slide)
        levels = pyramid_levels(one, min_size=100, tile_size=(200, 120), workers=2)
        assert [lvl.dimensions for lvl in levels] == [(3000, 2200), (750, 550), (188, 138), (47, 35)]
        computed = [lvl for lvl in levels if isinstance(lvl, DownsampledLevel)]
        # Ask for the smallest level first: it pulls every level above it through, once.
        levels[-1].read_region(0, 0, *levels[-1].dimensions)
        reference = slide.levels[0].read_region(0, 0, *slide.dimensions)
        for lvl in computed:
            reference = box_downsample(reference, 4)
            assert np.array_equal(lvl.read_region(0, 0, *lvl.dimensions), reference)
        assert [lvl.reader.computed_rows for lvl in computed] == [lvl.grid.rows for lvl in computed]
        for lvl in computed:
            lvl.close()


def test_downsampled_level_has_no_seams_at_odd_tile_sizes(synthetic_svs: Path) -> None:
    with composite.open_slide(synthetic_svs) as slide:
        parent = Level(slide.levels[0].grid, 1.0, slide.levels[0].reader)
        small = DownsampledLevel(parent, 3, level0=slide.dimensions, tile_size=(77, 53), workers=1)
        expected = box_downsample(parent.read_region(0, 0, *parent.dimensions), 3)
        assert np.array_equal(small.read_region(0, 0, *small.dimensions), expected)
        small.close()


def test_output_format_by_name_and_option(tmp_path: Path) -> None:
    assert output_format(Path("a.svs"), None) == "svs"
    assert output_format(Path("a.TIFF"), None) == "tiff"
    assert output_format(Path("a.tif"), "svs") == "svs"
    assert output_format(tmp_path, None) == "cws"
    assert output_format(Path("slide"), None) == "cws"
    with pytest.raises(UnsupportedFormatError, match=r"a\.png"):
        output_format(Path("a.png"), None)
    with pytest.raises(UnsupportedFormatError, match="bmp"):
        output_format(Path("a.svs"), "bmp")
    with pytest.raises(ValueError, match="compression"):
        WriteOptions(compression="gif")


@pytest.mark.parametrize(
    ("height", "width", "factor"), [(48, 64, 4), (49, 61, 4), (25, 10, 2), (7, 5, 16), (40, 40, 20), (3, 2, 4)]
)
def test_box_downsample_is_the_rounded_mean_of_each_block(height: int, width: int, factor: int) -> None:
    """Whole and ragged edge blocks, 16-bit and 32-bit accumulators, against a per-block mean."""
    pixels = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = box_downsample(pixels, factor)
    assert out.shape == (-(-height // factor), -(-width // factor), 3)
    for row in range(out.shape[0]):
        for col in range(out.shape[1]):
            block = pixels[row * factor : (row + 1) * factor, col * factor : (col + 1) * factor].reshape(-1, 3)
            expected = (block.astype(np.int64).sum(axis=0) + len(block) // 2) // len(block)
            assert out[row, col].tolist() == expected.tolist(), (row, col)
    assert (box_downsample(np.full((64, 64, 3), 255, np.uint8), 16) == 255).all()  # no 16-bit overflow
