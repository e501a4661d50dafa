"""Property tests of the tile arithmetic every format and tool relies on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composite.geometry import Box, TileGrid

grids = st.builds(
    TileGrid,
    width=st.integers(1, 700),
    height=st.integers(1, 700),
    tile_width=st.integers(4, 300),
    tile_height=st.integers(4, 300),
)


@settings(deadline=None)
@given(grids)
def test_tiles_cover_every_pixel_exactly_once(grid: TileGrid) -> None:
    cover = np.zeros((grid.height, grid.width), np.int32)
    for col, row in grid.indices():
        box = grid.tile_box(col, row)
        assert box.width > 0 and box.height > 0
        cover[box.y : box.bottom, box.x : box.right] += 1
    assert (cover == 1).all()


@settings(deadline=None)
@given(grids)
def test_edge_tiles_are_clipped_and_inner_tiles_full(grid: TileGrid) -> None:
    for col, row in grid.indices():
        box = grid.tile_box(col, row)
        assert box.right <= grid.width and box.bottom <= grid.height
        if col < grid.cols - 1:
            assert box.width == grid.tile_width
        if row < grid.rows - 1:
            assert box.height == grid.tile_height
    assert grid.tile_count == len(list(grid.indices()))


@given(grids, st.integers(-100, 800), st.integers(-100, 800), st.integers(0, 400), st.integers(0, 400))
def test_tiles_overlapping_are_exactly_the_intersecting_ones(
    grid: TileGrid, x: int, y: int, width: int, height: int
) -> None:
    want = Box(x, y, width, height)
    expected = [(c, r) for c, r in grid.indices() if grid.tile_box(c, r).intersection(want) is not None]
    assert list(grid.tiles_overlapping(want)) == expected


@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(0, 60), st.integers(0, 60), st.integers(1, 9))
def test_scaled_outward_covers_the_box(x: int, y: int, w: int, h: int, factor: int) -> None:
    box = Box(x, y, w, h)
    small = box.scaled_outward(factor)
    assert small.x * factor <= box.x and small.y * factor <= box.y
    assert small.right * factor >= box.right and small.bottom * factor >= box.bottom


def test_tile_outside_grid_raises() -> None:
    grid = TileGrid(10, 10, 4, 4)
    with pytest.raises(IndexError):
        grid.tile_box(3, 0)


def test_non_positive_sizes_raise() -> None:
    with pytest.raises(ValueError):
        TileGrid(0, 10, 4, 4)
    with pytest.raises(ValueError):
        TileGrid(10, 10, 0, 4)
