"""`redact --annotations`: polygons black (<= 8) on every level and the thumbnail as OpenSlide reads
them, holes and the outside kept, every tile the polygons do not touch byte-identical."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import openslide
import pytest
import shapely
from numpy.typing import NDArray

from composite import open_slide
from composite.annotations import read_annotations
from composite.annotations.shapes import area_geometry, fill, rings, scaled
from tests.cli import run as run_cli

from .test_redact import raw_tiles

run = partial(run_cli, "redact")  # wsi-composite redact ARGS...


def reach(size: tuple[int, int]) -> float:
    """How far past a polygon the black may go on a level: its margin (1.5 px; 24 px on levels of at
    most 2,048 px, which thumbnails are made from) plus one 16-px block's diagonal."""
    return (24 if max(size) <= 2048 else 1.5) + 16 * 2**0.5


def polygons(imagescope_xml: Path) -> object:
    return shapely.union_all(
        [g for r in read_annotations(imagescope_xml).regions if (g := area_geometry(r)) is not None]
    )


def inside_mask(geom: object, downsample: float, size: tuple[int, int]) -> NDArray[np.bool_]:
    """Pixels of a level whose centres lie in the polygons scaled by OpenSlide's downsample."""
    return fill(rings(scaled(geom, scale=(downsample, downsample))), size[0], size[1])


@pytest.mark.parametrize("fixture", ["synthetic_svs", "synthetic_tiff"])
def test_polygons_black_on_every_level_and_other_tiles_copied(
    fixture: str, imagescope_xml: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = request.getfixturevalue(fixture)
    out = tmp_path / ("out.svs" if fixture == "synthetic_svs" else "out.tif")
    result = run(str(source), str(out), "--annotations", str(imagescope_xml))
    assert result.returncode == 0, result.stderr
    geom = polygons(imagescope_xml)
    hole = shapely.Polygon([(600, 450), (900, 480), (820, 700)])
    figures = []
    with openslide.OpenSlide(out) as theirs, openslide.OpenSlide(source) as original:
        for level, (size, ds) in enumerate(zip(theirs.level_dimensions, theirs.level_downsamples, strict=True)):
            pixels = np.asarray(theirs.read_region((0, 0), level, size).convert("RGB"))
            before = np.asarray(original.read_region((0, 0), level, size).convert("RGB"))
            inside = inside_mask(geom, ds, size)
            assert inside.sum() > 100
            above = int((pixels[inside] > 8).any(axis=1).sum())
            figures.append((level, int(inside.sum()), int(pixels[inside].max()), above))
            assert above == 0, f"level {level}: {above} pixels inside the polygons above 8"
            # far from every polygon (more than the block reach) nothing changed beyond JPEG noise
            far = ~inside_mask(geom.buffer((reach(size) + 2) * ds), ds, size)
            assert np.abs(pixels[far].astype(int) - before[far].astype(int)).mean() < 1.0
            # the hole of T1 keeps its tissue where it is more than the reach away from its edge
            kept = inside_mask(hole.buffer(-(reach(size) + 2) * ds), ds, size)
            if kept.any():
                assert (
                    pixels[kept].mean() > 100 and np.abs(pixels[kept].astype(int) - before[kept].astype(int)).mean() < 2
                )
        thumb = np.asarray(theirs.associated_images["thumbnail"].convert("RGB")) if fixture == "synthetic_svs" else None
    if thumb is not None:
        scale = 3000 / thumb.shape[1]
        inside = inside_mask(geom, scale, (thumb.shape[1], thumb.shape[0]))
        figures.append(
            ("thumbnail", int(inside.sum()), int(thumb[inside].max()), int((thumb[inside] > 8).any(axis=1).sum()))
        )
        assert thumb[inside].max() <= 8
    print(f"{fixture}: (level, pixels inside, max inside, pixels above 8): {figures}")
    old_tiles, new_tiles = raw_tiles(source), raw_tiles(out)
    copied = []
    with open_slide(source) as slide:
        # the writer keeps the source's levels down to its smallest-level limit (as box redaction does)
        assert len(new_tiles) >= 2
        for level, (old, new) in enumerate(zip(old_tiles, new_tiles)):  # noqa: B905
            lv = slide.levels[level]
            sx, sy = slide.dimensions[0] / lv.width, slide.dimensions[1] / lv.height
            near = scaled(geom, scale=(min(sx, lv.downsample), min(sy, lv.downsample))).buffer(reach(lv.dimensions) + 1)
            untouched = [
                i for i, (c, r) in enumerate(lv.grid.indices())
                if not near.intersects(shapely.box(*_corners(lv.grid.tile_box(c, r))))
            ]  # fmt: skip
            assert untouched or level > 0, "the test needs tiles away from the polygons"
            assert all(old[i] == new[i] for i in untouched), f"level {level}: untouched tiles changed"
            on_level = scaled(geom, scale=(lv.downsample, lv.downsample))
            inner = [
                i for i, (c, r) in enumerate(lv.grid.indices())
                if on_level.intersects(shapely.box(*_corners(lv.grid.tile_box(c, r))))
            ]  # fmt: skip
            assert all(old[i] != new[i] for i in inner), f"level {level}: a tile under a polygon was copied"
            copied.append((level, len(untouched), len(old)))
    print(f"{fixture}: (level, tiles byte-identical, tiles): {copied}")


def _corners(box: object) -> tuple[int, int, int, int]:
    return box.x, box.y, box.right, box.bottom  # type: ignore[attr-defined]


def test_select_and_bad_requests(synthetic_svs: Path, imagescope_xml: Path, tmp_path: Path) -> None:
    out = tmp_path / "stroma.svs"
    result = run(str(synthetic_svs), str(out), "--annotations", str(imagescope_xml), "--select", "Stroma")
    assert result.returncode == 0, result.stderr
    with openslide.OpenSlide(out) as theirs:
        assert np.asarray(theirs.read_region((2500, 1700), 0, (400, 350)).convert("RGB")).max() <= 8
        assert np.asarray(theirs.read_region((400, 300), 0, (300, 200)).convert("RGB")).mean() > 100  # T1 kept
    points = tmp_path / "points.geojson"
    points.write_text('{"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}, "properties": {}}')
    refused = run(str(synthetic_svs), str(tmp_path / "p.svs"), "--annotations", str(points))
    assert refused.returncode == 2 and "no region with an area" in refused.stderr
    far = tmp_path / "far.geojson"
    far.write_text('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[9000, 9000], [9100, 9000],'
                   ' [9100, 9100], [9000, 9000]]]}, "properties": {}}')  # fmt: skip
    refused = run(str(synthetic_svs), str(tmp_path / "f.svs"), "--annotations", str(far))
    assert refused.returncode == 2 and "outside" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "p.svs").exists() and not (tmp_path / "f.svs").exists()
