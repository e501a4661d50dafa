"""`export --annotations`: one image per region equal to OpenSlide's pixels of its box at every
level and at a non-integer downsample, polygon masks equal to PIL's independent rasterisation,
and a sidecar whose scaled coordinates are the level-0 ones mapped by hand here."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import openslide
import pytest
import shapely
import tifffile
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from tests.cli import run as run_cli

from .readers import openslide_region

run = partial(run_cli, "export")  # wsi-composite export ARGS...

# T1 (a polygon with a hole), E1 (an ellipse), S1 (a rectangle): their level-0 boxes
BOXES = {"T1": (310, 250, 980, 840), "E1": (1700, 900, 701, 600), "S1": (2500, 1700, 400, 350)}
T1 = shapely.Polygon(
    [(310.5, 250), (1290, 330.25), (1160, 1090), (700, 850), (420, 990)],
    holes=[[(600, 450), (900, 480), (820, 700)]],
)


def load(path: Path, mode: str = "RGB") -> NDArray[np.uint8]:
    with Image.open(path) as image:
        return np.asarray(image.convert(mode))


def max_diff(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("fixture", ["synthetic_svs", "synthetic_tiff"])
def test_regions_equal_openslide_at_every_level(
    fixture: str, imagescope_xml: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    slide = request.getfixturevalue(fixture)
    with openslide.OpenSlide(slide) as theirs:
        downsamples = theirs.level_downsamples
    figures = []
    for level, ds in enumerate(downsamples):
        out = tmp_path / f"level{level}"
        result = run(
            str(slide), str(out), "--annotations", str(imagescope_xml), "--level", str(level), "--format", "png"
        )
        assert result.returncode == 0, result.stderr
        sidecar = json.loads((out / "regions.json").read_text())
        skipped = [s["why"] for s in sidecar["skipped"]]
        if fixture == "synthetic_svs":
            assert [r["file"] for r in sidecar["regions"]] == ["T1_1.png", "E1_2.png", "S1_3.png"]
            assert skipped == ["a line has no area"] * 2 + ["a point has no area"]
        else:  # 2500 x 1900: S1 lies beyond the right edge
            assert [r["file"] for r in sidecar["regions"]] == ["T1_1.png", "E1_2.png"]
            assert skipped == ["a line has no area", "outside the image", "a line has no area", "a point has no area"]
        for entry in sidecar["regions"]:
            x, y, w, h = BOXES[entry["name"]]
            assert entry["box_level0"] == [x, y, w, h]
            location = (math.floor(x / ds), math.floor(y / ds))
            size = (round(w / ds), round(h / ds))
            # from (0, 0), which every downsample maps exactly, then cut: the same level pixels
            window, inside = openslide_region(slide, (0, 0), level, (location[0] + size[0], location[1] + size[1]))
            assert inside.all()
            expected = window[location[1] :, location[0] :]
            diff = max_diff(load(out / entry["file"]), expected)
            figures.append(diff)
            assert diff <= 2, f"{fixture} level {level} {entry['name']}: max difference {diff}"
    print(f"{fixture}: max diff per region and level vs OpenSlide: {figures}")


def test_non_integer_downsample_scales_box_and_coordinates(
    synthetic_svs: Path, imagescope_xml: Path, tmp_path: Path
) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--annotations", str(imagescope_xml), "--downsample", "2.5",
                 "--format", "png", "--select", "T1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((tmp_path / "regions.json").read_text())["regions"]
    x, y, w, h = BOXES["T1"]
    assert entry["size"] == [round(w / 2.5), round(h / 2.5)] == [392, 336]
    assert entry["origin_level0"] == [x, y] and entry["scale"] == 2.5
    outer, hole = entry["geometry"]["coordinates"]
    expected_outer = [((px - x) / 2.5, (py - y) / 2.5) for px, py in T1.exterior.coords]
    assert shapely.Polygon(outer).equals(shapely.Polygon(expected_outer))
    assert shapely.Polygon(hole).equals(
        shapely.Polygon([((px - x) / 2.5, (py - y) / 2.5) for px, py in T1.interiors[0].coords])
    )
    # pixels: OpenSlide's level-0 box, area-averaged to the same size
    full, _ = openslide_region(synthetic_svs, (x, y), 0, (w, h))
    reference = np.asarray(Image.fromarray(full).resize((392, 336), Image.Resampling.BOX, box=(0, 0, w, h)))
    diff = max_diff(load(tmp_path / "T1_1.png"), reference)
    print(f"downsample 2.5: max diff {diff}")
    assert diff <= 2


def pil_mask(
    polygon: shapely.Polygon, origin: tuple[float, float], scale: float, size: tuple[int, int]
) -> NDArray[np.bool_]:
    """PIL's rasterisation of the polygon in image pixels (PIL puts pixel centres on integers)."""
    image = Image.new("L", size, 0)
    draw = ImageDraw.Draw(image)

    def ring(coords: object) -> list[tuple[float, float]]:
        return [((px - origin[0]) / scale - 0.5, (py - origin[1]) / scale - 0.5) for px, py in coords]  # type: ignore[attr-defined]

    draw.polygon(ring(polygon.exterior.coords), fill=255)
    for interior in polygon.interiors:
        draw.polygon(ring(interior.coords), fill=0)
    return np.asarray(image) > 0


@pytest.mark.parametrize(("how", "args"), [("downsample", ["--downsample", "2.5"]), ("level", ["--level", "1"])])
def test_masks_match_an_independent_rasterisation(
    synthetic_svs: Path, imagescope_xml: Path, tmp_path: Path, how: str, args: list[str]
) -> None:
    plain, white, clear = tmp_path / "plain", tmp_path / "white", tmp_path / "clear"
    common = [str(synthetic_svs), "--annotations", str(imagescope_xml), "--select", "T1", "--format", "png", *args]
    assert run(common[0], str(plain), *common[1:]).returncode == 0
    assert run(common[0], str(white), *common[1:], "--mask").returncode == 0
    result = run(common[0], str(clear), *common[1:], "--mask", "transparent")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((clear / "regions.json").read_text())["regions"]
    rgba = load(clear / "T1_1.png", "RGBA")
    ours = rgba[:, :, 3] == 255
    assert set(np.unique(rgba[:, :, 3])) == {0, 255}
    theirs = pil_mask(T1, tuple(entry["origin_level0"]), entry["scale"], (rgba.shape[1], rgba.shape[0]))
    # pixels where the two rasterisers disagree must straddle the outline (PIL also fills the
    # pixels its outline passes through); a one-pixel shift of the mask disagrees far more
    differ = np.argwhere(ours != theirs)
    scaled = shapely.transform(T1, lambda xy: (xy - np.array(entry["origin_level0"])) / entry["scale"])
    centres = shapely.points(differ[:, 1] + 0.5, differ[:, 0] + 0.5)
    distance = shapely.distance(scaled.boundary, centres)
    shifted = int((np.roll(ours, 1, axis=1) != theirs).sum())
    farthest = float(distance.max()) if len(differ) else 0.0
    print(f"{how}: mask {ours.sum()} px, PIL {theirs.sum()} px, {len(differ)} differ (all within {farthest:.2f} px")
    print(f"  of the outline); the mask shifted by 1 px: {shifted} differ")
    assert farthest <= 1.0
    assert len(differ) < shifted / 2
    assert abs(ours.sum() - scaled.area) < scaled.length  # the area, up to the outline's pixels
    colours = load(plain / "T1_1.png")
    masked = load(white / "T1_1.png")
    assert (masked[~ours] == 255).all() and (masked[ours] == colours[ours]).all()
    assert (rgba[:, :, :3][ours] == colours[ours]).all()
    assert (colours[~ours] != 255).any(), "outside the polygon there is tissue the mask whitened"


def test_transparent_tiff_and_refusals(synthetic_svs: Path, imagescope_xml: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--annotations", str(imagescope_xml), "--select", "E1",
                 "--format", "tiff", "--compression", "lzw", "--mask", "transparent")  # fmt: skip
    assert result.returncode == 0, result.stderr
    pixels = tifffile.imread(tmp_path / "E1_1.tif")
    assert pixels.shape == (600, 701, 4)
    assert pixels[0, 0, 3] == 0 and pixels[300, 350, 3] == 255  # corner outside the ellipse, centre inside
    refused = run(
        str(synthetic_svs), str(tmp_path / "j"), "--annotations", str(imagescope_xml), "--mask", "transparent"
    )
    assert refused.returncode == 2 and "transparent mask needs PNG or TIFF" in refused.stderr
    missing = run(str(synthetic_svs), str(tmp_path / "m"), "--annotations", str(imagescope_xml), "--select", "Nope")
    assert missing.returncode == 2 and "Tumour" in missing.stderr and "Traceback" not in missing.stderr
    assert run(str(synthetic_svs), str(tmp_path / "n"), "--mask").returncode == 2  # --mask needs --annotations
