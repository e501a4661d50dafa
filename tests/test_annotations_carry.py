"""Annotations through geometry changes: a slide cut into ACI pieces (each piece's marks pick out
the same pixels and the same polygon mask as the source's), and images composed into a mosaic
and converted to one slide (each image's marks land on its pixels in the slide)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely
from PIL import Image

from composite import open_slide
from composite.annotations import read_annotations
from composite.annotations.shapes import area_geometry, fill, rings, scaled
from composite.formats.aci.manifest import read_manifest
from tests.cli import run


def mask(geoms: list[object], box: tuple[int, int, int, int]) -> np.ndarray:
    """Pixels of level-0 ``box`` whose centres lie in the union of ``geoms`` (level-0 coordinates)."""
    x, y, w, h = box
    union = shapely.union_all(geoms)
    return fill(rings(scaled(union, origin=(x, y))), w, h)


def test_split_into_pieces_keeps_each_mark_on_its_pixels(
    synthetic_svs: Path, imagescope_xml: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cut.aci"
    result = run("convert", str(synthetic_svs), str(out), "--piece-size", "1024", "--annotations", str(imagescope_xml))
    assert result.returncode == 0, result.stderr
    source = read_annotations(imagescope_xml)
    assert read_annotations(tmp_path / "cut.xml").regions == source.regions  # the canvas keeps the coordinates
    areas = [g for r in source.regions if (g := area_geometry(r)) is not None]
    sidecars = sorted((tmp_path / "cut_pieces").glob("*.xml"))
    assert len(sidecars) >= 4
    places = {c.path: (c.x, c.y) for c in read_manifest(out).layers[0].components}
    checked = 0
    with open_slide(synthetic_svs) as whole:
        for sidecar in sidecars:
            piece_path = sidecar.with_suffix(".svs")
            with open_slide(piece_path) as piece:
                width, height = piece.dimensions
                x0, y0 = places[f"cut_pieces/{piece_path.name}"]
                local = read_annotations(sidecar)
                local_areas = [g for r in local.regions if (g := area_geometry(r)) is not None]
                if not local_areas:
                    continue
                # the piece's own polygons rasterised in the piece equal the source's in the same pixels
                expected = mask(areas, (x0, y0, width, height))
                got = mask(local_areas, (0, 0, width, height))
                assert (got == expected).all(), f"{piece_path.name}: mask differs in {(got != expected).sum()} px"
                # and they sit on the same pixels: the piece's box of a region equals the source's
                bx0, by0, bx1, by1 = (int(v) for v in shapely.union_all(local_areas).bounds)
                ours = piece.read_region((bx0, by0), 0, (bx1 - bx0, by1 - by0))
                theirs = whole.read_region((x0 + bx0, y0 + by0), 0, (bx1 - bx0, by1 - by0))
                assert np.array_equal(ours, theirs)
                checked += 1
    assert checked >= 4


def test_compose_gathers_each_images_marks_into_the_slide(synthetic_svs: Path, tmp_path: Path) -> None:
    with open_slide(synthetic_svs) as slide:
        quarters = {
            (col, row): slide.read_region((col * 1500, row * 1100), 0, (1500 - 200 * col, 1100 - 100 * row))
            for row in (0, 1)
            for col in (0, 1)
        }
    names = []
    for (col, row), pixels in quarters.items():
        name = tmp_path / f"tile_{row}{col}.png"
        Image.fromarray(pixels).save(name)
        names.append(name)
        feature = {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[100, 100], [400, 100], [400, 300], [100, 300], [100, 100]]],
            },
            "properties": {"name": f"mark {row}{col}", "classification": {"name": "Tumor"}},
        }
        crossing = {  # reaches past the image's right edge: clipped to the image
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[1000, 500], [5000, 500], [5000, 700], [1000, 700], [1000, 500]]],
            },
            "properties": {"name": f"edge {row}{col}"},
        }
        name.with_suffix(".geojson").write_text(
            json.dumps({"type": "FeatureCollection", "features": [feature, crossing]})
        )
    grid = tmp_path / "grid.aci"
    marks = tmp_path / "grid.geojson"
    order = [tmp_path / f"tile_{r}{c}.png" for r in (0, 1) for c in (0, 1)]
    result = run("compose", str(grid), *map(str, order), "--grid", "2x2", "--annotations", str(marks))
    assert result.returncode == 0, result.stderr
    assert "4 images, 8 regions" in result.stdout
    slide_path = tmp_path / "slide.tif"  # lossless, so the pixels under each mark compare exactly
    result = run("convert", str(grid), str(slide_path), "--compression", "lzw", "--annotations", str(marks))
    assert result.returncode == 0, result.stderr
    carried = {r.name: r for r in read_annotations(tmp_path / "slide.geojson").regions}
    widths, heights = [1500, 1300], [1100, 1000]
    with open_slide(slide_path) as slide:
        for (col, row), pixels in quarters.items():
            x, y = sum(widths[:col]), sum(heights[:row])
            mark = shapely.geometry.shape(carried[f"mark {row}{col}"].geometry)
            assert mark.bounds == (x + 100, y + 100, x + 400, y + 300)
            assert np.array_equal(slide.read_region((x + 100, y + 100), 0, (300, 200)), pixels[100:300, 100:400])
            edge = shapely.geometry.shape(carried[f"edge {row}{col}"].geometry)
            assert edge.bounds == (x + 1000, y + 500, x + widths[col], y + 700)
    lonely = tmp_path / "lonely.aci"
    missing = run("compose", str(lonely), str(tmp_path / "tile_00.png"), "--grid", "1x1", "--annotations",
                  str(tmp_path / "none.geojson"))  # fmt: skip
    assert missing.returncode == 0  # tile_00.png has its marks; a 1x1 mosaic is fine
    (tmp_path / "tile_00.geojson").unlink()
    again = run("compose", str(tmp_path / "l2.aci"), str(tmp_path / "tile_00.png"), "--grid", "1x1", "--annotations",
                str(tmp_path / "none2.geojson"))  # fmt: skip
    assert again.returncode == 2 and "none of its images has annotations" in again.stderr


def test_other_conversions_put_a_copy_where_viewers_look(
    synthetic_svs: Path, imagescope_xml: Path, tmp_path: Path
) -> None:
    cws = tmp_path / "slide-cws"
    result = run("convert", str(synthetic_svs), str(cws), "--to", "cws", "--annotations", str(imagescope_xml))
    assert result.returncode == 0, result.stderr
    assert read_annotations(cws / "annotations.xml").regions == read_annotations(imagescope_xml).regions
    svs = tmp_path / "copy.svs"
    assert run("convert", str(synthetic_svs), str(svs), "--annotations", str(imagescope_xml)).returncode == 0
    assert (tmp_path / "copy.xml").read_bytes() == (cws / "annotations.xml").read_bytes()
    bad = tmp_path / "bad.xml"
    bad.write_text('<!DOCTYPE a [<!ENTITY b "c">]><Annotations/>')
    refused = run("convert", str(synthetic_svs), str(tmp_path / "never.svs"), "--annotations", str(bad))
    assert refused.returncode == 2 and "DTD" in refused.stderr
    assert not (tmp_path / "never.svs").exists(), "a bad annotation file stops the conversion before it starts"
