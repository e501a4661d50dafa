"""ACI through ``convert`` and ``compose``, every output checked with OpenSlide and tifffile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from composite.convert import AciOptions, WriteOptions, convert
from composite.errors import FormatError, OutputExistsError, UnsafePathError
from composite.formats.aci import compose, open_slide
from composite.formats.aci.manifest import read_manifest
from composite.synthetic import write_synthetic_slide
from tests.aci_support import paste, pattern
from tests.cli import run
from tests.test_aci_reader import expected_mosaic, make_mosaic


def openslide_pixels(path: Path, level: int = 0) -> np.ndarray:
    with openslide.OpenSlide(str(path)) as slide:
        size = slide.level_dimensions[level]
        rgba = np.asarray(slide.read_region((0, 0), level, size))
    assert (rgba[:, :, 3] == 255).all()
    return rgba[:, :, :3]


def test_mosaic_aci_to_lzw_tiff_equals_hand_pasted_composite(tmp_path: Path) -> None:
    """Overlaps in a row and a column, a gap, spaces in paths, comments, quality words, edgetrim=no, 2 layers."""
    want0, _ = expected_mosaic(make_mosaic(tmp_path))
    result = run("convert", tmp_path / "mosaic.aci", tmp_path / "out.tif", "--compression", "lzw")
    assert result.returncode == 0, result.stderr
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
    np.testing.assert_array_equal(openslide_pixels(tmp_path / "out.tif"), want0)


@pytest.fixture(scope="module")
def source_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("aci-split") / "source.svs"
    return write_synthetic_slide(path, width=2500, height=1700, tile_size=240, min_level_size=128)


def test_svs_to_pieces_and_back_keeps_level0_pixels(source_svs: Path, tmp_path: Path) -> None:
    aci = tmp_path / "split.aci"
    result = run("convert", source_svs, aci, "--piece-size", "1000", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "level 0: 2500 x 1700" in result.stdout and "copy" in result.stdout.splitlines()[1]
    manifest = read_manifest(aci)
    components = manifest.layers[0].components
    # 1000 px rounds down to 960 = lcm(240 tile, 64 downsample): pieces start on tiles and on
    # whole pixels of every lower level, so every level's tiles are byte-copied
    assert [(c.x, c.y) for c in components] == [(x, y) for y in (0, 960) for x in (0, 960, 1920)]
    assert components[0].path == "split_pieces/r0_c0.svs"
    source = openslide_pixels(source_svs)
    for c in components:
        piece = aci.parent / c.path
        with openslide.OpenSlide(str(piece)) as slide:
            assert slide.properties["openslide.vendor"] == "aperio"
            assert slide.level_count >= 2
        got = openslide_pixels(piece)
        np.testing.assert_array_equal(got, source[c.y : c.y + got.shape[0], c.x : c.x + got.shape[1]])
    # back to one SVS, by byte copy (the default) and by LZW
    back = tmp_path / "back.svs"
    result = run("convert", aci, back, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].endswith("copy")
    np.testing.assert_array_equal(openslide_pixels(back), source)
    lzw = tmp_path / "back.tif"
    report = convert(aci, lzw, options=WriteOptions(compression="lzw"))
    assert report.levels[0].method == "reencode"
    np.testing.assert_array_equal(openslide_pixels(lzw), source)


def test_split_writes_layers_and_refuses_to_clobber(source_svs: Path, tmp_path: Path) -> None:
    pieces = [pattern(40, 60, i) for i in range(3)]
    for i, pixels in enumerate(pieces):
        Image.fromarray(pixels).save(tmp_path / f"p{i}.png")
    (tmp_path / "z.aci").write_text("p0.png 0 0\n1 2\np1.png 0 0\n2 4.5\np2.png 0 0\n")
    out = tmp_path / "out" / "zz.aci"
    report = convert(
        tmp_path / "z.aci",
        out,
        options=WriteOptions(compression="lzw", parents=True, aci=AciOptions(piece_format="tiff")),
    )
    assert report.format == "aci"
    layers = read_manifest(out).layers
    assert [(layer.z, [c.path for c in layer.components]) for layer in layers] == [
        (0, ["zz_pieces/r0_c0.tif"]),
        (2, ["zz_pieces/layer1/r0_c0.tif"]),
        (4.5, ["zz_pieces/layer2/r0_c0.tif"]),
    ]
    with open_slide(out) as slide:
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, (60, 40)), pieces[0])
        assert sorted(slide.focal_planes) == ["z2", "z4.5"]
        np.testing.assert_array_equal(slide.focal_planes["z4.5"][0].read_region(0, 0, 60, 40), pieces[2])
    with pytest.raises(OutputExistsError):
        convert(tmp_path / "z.aci", out, options=WriteOptions(compression="lzw"))
    assert not list(out.parent.glob(".*partial"))


def test_compose_grid_then_convert_to_svs(tmp_path: Path) -> None:
    tiles = [pattern(150, 200, i) for i in range(6)]
    names = []
    for i, pixels in enumerate(tiles):
        names.append(f"tile {i}.jpg")
        Image.fromarray(pixels).save(tmp_path / names[-1], quality=92)
    decoded = [np.asarray(Image.open(tmp_path / n).convert("RGB")) for n in names]
    result = run("compose", tmp_path / "grid.aci", *(tmp_path / n for n in names), "--grid", "3x2", "--spacing", "10")
    assert result.returncode == 0, result.stderr
    slide_path = tmp_path / "slide.svs"
    result = run("convert", tmp_path / "grid.aci", slide_path, "--compression", "lzw", "--quiet")
    assert result.returncode == 0, result.stderr
    want = paste(310, 620, [(decoded[r * 3 + c], c * 210, r * 160) for r in range(2) for c in range(3)])
    with openslide.OpenSlide(str(slide_path)) as slide:
        assert slide.properties["openslide.vendor"] == "aperio"
        assert slide.dimensions == (620, 310)
    np.testing.assert_array_equal(openslide_pixels(slide_path), want)


def test_compose_offsets_csv(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    a, b = pattern(30, 50, 1), pattern(20, 20, 2)
    Image.fromarray(a).save(tmp_path / "imgs" / "a.png")
    Image.fromarray(b).save(tmp_path / "imgs" / "b.png")
    csv = tmp_path / "imgs" / "offsets.csv"
    csv.write_text("path,x,y\na.png,0,0\nb.png, 40, 25\n")
    compose.compose_offsets(tmp_path / "m.aci", csv)
    assert [(c.path, c.x, c.y) for c in read_manifest(tmp_path / "m.aci").layers[0].components] == [
        ("imgs/a.png", 0, 0),
        ("imgs/b.png", 40, 25),
    ]
    with open_slide(tmp_path / "m.aci") as slide:
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, (60, 45)), paste(45, 60, [(a, 0, 0), (b, 40, 25)]))
    with pytest.raises(UnsafePathError, match=r"a\.png \(listed at .*offsets\.csv:2\): outside"):
        compose.compose_offsets(tmp_path / "imgs" / "deeper" / "m3.aci", csv, parents=True)
    csv.write_text("a.png,0,0\nb.png,x,1\n")
    with pytest.raises(FormatError, match=r"offsets\.csv:2: x and y must be integers"):
        compose.compose_offsets(tmp_path / "m2.aci", csv)


def test_convert_cli_refuses_traversal_and_allow_outside_trusts(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(pattern(20, 30, 3)).save(tmp_path / "outside.png")
    (tmp_path / "in" / "evil.aci").write_text("../outside.png 0 0\n")
    result = run("convert", tmp_path / "in" / "evil.aci", tmp_path / "x.tif")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "evil.aci:1:" in result.stderr and "'..' leads out" in result.stderr
    assert not (tmp_path / "x.tif").exists()
    trusted = run(
        "convert", tmp_path / "in" / "evil.aci", tmp_path / "x.tif", "--allow-outside", "--compression", "lzw"
    )
    assert trusted.returncode == 0, trusted.stderr
    np.testing.assert_array_equal(openslide_pixels(tmp_path / "x.tif"), pattern(20, 30, 3))


def test_compose_cli_usage_errors(tmp_path: Path) -> None:
    Image.fromarray(pattern(10, 10, 1)).save(tmp_path / "a.png")
    result = run("compose", tmp_path / "o.aci", tmp_path / "a.png", "--grid", "2x1")
    assert result.returncode == 2 and "--grid 2x1 needs 2 images, got 1" in result.stderr
    result = run("compose", tmp_path / "o.aci", "--offsets", tmp_path / "none.csv")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "none.csv" in result.stderr
    assert not (tmp_path / "o.aci").exists()
