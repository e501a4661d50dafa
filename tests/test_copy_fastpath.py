"""The byte-copy path's shortcuts give what the full checks give, tile by tile.

A level's copied tiles are checked (``tiling._copy_header``) and turned into DICOM frames
(``JpegFrames``) once per distinct JPEG header: a tile that repeats the last header reuses its
answer. These tests mix tiles whose headers differ (another size, complete streams among
abbreviated ones, an Adobe marker, a damaged one) and compare every tile's outcome with the
reference functions applied to that tile alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from composite import codecs
from composite.codecs import TileEncoding
from composite.formats.dicom.write import JpegFrames, frame_bytes
from composite.geometry import TileGrid
from composite.model import Level
from composite.tiling import EncodedTile, encoded_tiles

TILE = 16


def _jpeg(seed: int, size: int = TILE, *, rgb: bool = True) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return codecs.encode_jpeg(pixels, quality=80, rgb=rgb)


class _Reader:
    def __init__(self, tiles: list[bytes | None], encoding: TileEncoding) -> None:
        self.tiles, self._encoding = tiles, encoding

    @property
    def encoding(self) -> TileEncoding:
        return self._encoding

    def read_encoded(self, col: int, row: int) -> bytes | None:
        return self.tiles[col]

    def read_tile(self, col: int, row: int) -> np.ndarray:
        return np.full((TILE, TILE, 3), 200, np.uint8)


def _abbreviated(data: bytes) -> tuple[bytes, bytes]:
    tables, tile = codecs.split_jpeg_tables(data)
    return tables, tile


def test_copy_check_is_made_per_tile_not_per_level() -> None:
    tables, first = _abbreviated(_jpeg(1))
    _, same_header = _abbreviated(_jpeg(2))
    _, other_size = _abbreviated(_jpeg(3, size=TILE * 2))  # its SOF differs: must not be copied
    damaged = first[: first.index(b"\xff\xda")]  # no scan
    complete = _jpeg(4)  # its own tables: another header, still a tile of the right size
    tiles: list[bytes | None] = [first, same_header, other_size, same_header, damaged, first, None, complete]
    grid = TileGrid(TILE * len(tiles), TILE, TILE, TILE)
    encoding = TileEncoding("jpeg", rgb=True, jpeg_tables=tables)
    level = Level(grid, 1.0, _Reader(tiles, encoding))
    got = list(encoded_tiles(level, grid, compression="jpeg", quality=80, workers=1))
    assert [t.copied for t in got] == [True, True, False, True, False, True, False, True]
    for tile, source in zip(got, tiles, strict=True):
        if tile.copied:
            assert tile.data is source


@pytest.mark.parametrize("rgb", [True, False])
def test_frames_match_the_reference_for_every_tile(rgb: bool) -> None:
    tables, abbreviated = _abbreviated(_jpeg(1, rgb=rgb))
    _, abbreviated2 = _abbreviated(_jpeg(2, rgb=rgb))
    complete = _jpeg(3, rgb=rgb)  # has its tables: nothing merged
    marked = codecs.with_adobe_rgb(complete)  # has its Adobe marker: none added
    shared = TileEncoding("jpeg", rgb=rgb, jpeg_tables=tables)
    own = TileEncoding("jpeg", rgb=rgb)
    sequence = [
        (abbreviated, shared),
        (abbreviated2, shared),
        (complete, shared),
        (abbreviated, shared),
        (marked, own),
        (complete, own),
        (abbreviated2, shared),
    ]
    maker = JpegFrames()
    for data, encoding in sequence:
        tile = EncodedTile(0, 0, data, encoding, copied=True)
        want = codecs.merge_jpeg_tables(data, encoding.jpeg_tables) if b"\xff\xdb" not in data[:400] else data
        if rgb:
            want = codecs.with_adobe_rgb(want)
        assert b"".join(maker.pieces(tile)) == want
        assert frame_bytes(tile) == want
        assert codecs.decode_jpeg(want, rgb=rgb).shape == (TILE, TILE, 3)


def test_frames_of_other_codecs_are_the_tiles() -> None:
    tile = EncodedTile(0, 0, b"\xff\x4f\xff\x51 j2k", TileEncoding("jpeg2000", rgb=True), copied=True)
    assert JpegFrames().pieces(tile) == (tile.data,)
