"""Region geometry for pixel work: shapely polygons, scaled to a level, rasterised with numpy.

A pixel belongs to a polygon when its centre does (pixel (i, j) has its centre at (i + 0.5,
j + 0.5); a centre exactly on a left or top edge is inside, on a right or bottom edge outside),
with holes and overlapping parts resolved by the even-odd rule on a valid geometry. The
rasteriser (:func:`fill`) is a vectorised scanline: it finds where each edge crosses each pixel
row's centre line, so its cost is the crossings plus the pixels written, whatever the vertex count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import shape

from ..errors import FormatError
from .model import Region

Rings = list[NDArray[np.float64]]


def area_geometry(region: Region) -> Any:
    """The region as a valid shapely (Multi)Polygon, or None for points and lines."""
    if not region.has_area:
        return None
    try:
        geom = shape(region.geometry)
    except (ValueError, TypeError, shapely.errors.ShapelyError) as err:
        raise FormatError(f"{region.label}: unusable geometry ({err})") from err
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        polygons = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type in ("Polygon", "MultiPolygon")]
        geom = shapely.unary_union(polygons) if polygons else shapely.Polygon()
    return None if geom.is_empty else geom


def rings(geom: Any) -> Rings:
    """Every exterior and interior ring of a (Multi)Polygon as (n, 2) arrays."""
    out: Rings = []
    for polygon in getattr(geom, "geoms", [geom]):
        if polygon.is_empty:
            continue
        out.append(shapely.get_coordinates(polygon.exterior))
        out.extend(shapely.get_coordinates(hole) for hole in polygon.interiors)
    return out


def scaled(geom: Any, *, origin: tuple[float, float] = (0.0, 0.0), scale: tuple[float, float] = (1.0, 1.0)) -> Any:
    """``geom`` in the pixels of an image whose pixel (0, 0) starts at level-0 ``origin`` and whose
    pixels are ``scale`` level-0 pixels wide and high."""
    (ox, oy), (sx, sy) = origin, scale
    return shapely.transform(geom, lambda xy: (xy - np.array([ox, oy])) / np.array([sx, sy]))


def fill(
    polygon_rings: Sequence[NDArray[np.float64]], width: int, height: int, *, left: int = 0, top: int = 0
) -> NDArray[np.bool_]:
    """A ``height`` x ``width`` mask of pixels (from column ``left``, row ``top``) whose centres
    lie inside the rings (even-odd); ring coordinates are in the same pixels."""
    mask = np.zeros((height, width), bool)
    if not polygon_rings or width <= 0 or height <= 0:
        return mask
    starts = np.concatenate([r for r in polygon_rings if len(r) >= 2])
    ends = np.concatenate([np.roll(r, -1, axis=0) for r in polygon_rings if len(r) >= 2])
    (xa, ya), (xb, yb) = starts.T, ends.T
    keep = ya != yb
    xa, ya, xb, yb = xa[keep], ya[keep], xb[keep], yb[keep]
    low, high = np.minimum(ya, yb), np.maximum(ya, yb)
    # rows whose centre c = row + 0.5 satisfies low <= c < high, clipped to the band
    first = np.maximum(np.ceil(low - 0.5), top).astype(np.int64)
    last = np.minimum(np.ceil(high - 0.5) - 1, top + height - 1).astype(np.int64)
    counts = np.maximum(last - first + 1, 0)
    total = int(counts.sum())
    if total == 0:
        return mask
    edge = np.repeat(np.arange(len(counts)), counts)
    offsets = np.cumsum(counts) - counts
    row = first[edge] + (np.arange(total) - offsets[edge])
    centre = row + 0.5
    x = xa[edge] + (centre - ya[edge]) * (xb[edge] - xa[edge]) / (yb[edge] - ya[edge])
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    # each row has an even number of crossings (closed rings); consecutive pairs bound the inside
    row_pairs, x_in, x_out = row[0::2], x[0::2], x[1::2]
    col_in = np.clip(np.ceil(x_in - 0.5).astype(np.int64) - left, 0, width)
    col_out = np.clip(np.ceil(x_out - 0.5).astype(np.int64) - left, 0, width)
    spans = col_out > col_in
    diff = np.zeros((height, width + 1), np.int32)
    np.add.at(diff, (row_pairs[spans] - top, col_in[spans]), 1)
    np.add.at(diff, (row_pairs[spans] - top, col_out[spans]), -1)
    mask[:] = np.cumsum(diff[:, :width], axis=1) > 0
    return mask
