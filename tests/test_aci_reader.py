"""ACI reader: composite pixels equal a numpy paste of the components; laziness; levels; nesting."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import composite
from composite import registry
from composite.errors import FormatError, LimitError, SlideNotFoundError
from composite.formats.aci import canvas, open_slide
from tests.aci_support import paste, pattern, stored_level, write_tiff

MANIFEST = """\
# two layers; overlaps within a row (a/b) and a column (a/c); a gap around d
title = mosaic | test
edgetrim=no
tile a.png 0 0
b.tif 0 90 (q=80 lzw)
c.tif 60 0
d dir/d e.png 130 150 high
# layer 1, two microns up
1 1.5
tile a z.png 0 0
b.tif 10 100
"""


def make_mosaic(root: Path) -> dict[str, np.ndarray]:
    (root / "d dir").mkdir()
    images = {
        "tile a.png": pattern(64, 96, 1),
        "b.tif": pattern(64, 80, 2),
        "c.tif": pattern(50, 96, 3),
        "d dir/d e.png": pattern(40, 40, 4),
        "tile a z.png": pattern(70, 100, 5),
    }
    for name, pixels in images.items():
        if name.endswith(".png"):
            Image.fromarray(pixels).save(root / name)
        else:
            write_tiff(root / name, pixels)
    (root / "mosaic.aci").write_bytes(MANIFEST.replace("\n", "\r\n").encode())
    return {name: stored_level(root / name) for name in images}


def expected_mosaic(px: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    layer0 = [(px["tile a.png"], 0, 0), (px["b.tif"], 90, 0), (px["c.tif"], 0, 60), (px["d dir/d e.png"], 150, 130)]
    layer1 = [(px["tile a z.png"], 0, 0), (px["b.tif"], 100, 10)]
    return paste(170, 190, layer0), paste(170, 190, layer1)


def test_mosaic_pixels_layers_and_metadata(tmp_path: Path) -> None:
    px = make_mosaic(tmp_path)
    want0, want1 = expected_mosaic(px)
    with composite.open_slide(tmp_path / "mosaic.aci") as slide:
        assert slide.format == "aci"
        assert slide.dimensions == (190, 170)
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, (190, 170)), want0)
        assert list(slide.focal_planes) == ["z1.5"]
        (plane,) = slide.focal_planes.values()
        np.testing.assert_array_equal(plane[0].read_region(0, 0, 190, 170), want1)
        np.testing.assert_array_equal(slide.read_region((85, 55), 0, (20, 20)), want0[55:75, 85:105])
        assert slide.description == "title=mosaic | test|edgetrim=no"
        assert slide.properties["aci.title"] == "mosaic | test"
        assert slide.properties["aci.components"] == "6"
        assert slide.properties["aci.layers"] == "2"


def test_edgetrim_default_trims_rows_and_columns_to_common_size(tmp_path: Path) -> None:
    # Aperio's example: two slides side by side, the right one taller; by default the taller
    # one is trimmed to the shorter's height; edgetrim=no keeps it and leaves a gap below.
    a, b = pattern(50, 60, 1), pattern(70, 40, 2)
    c, d = pattern(30, 60, 3), pattern(30, 30, 4)
    for name, pixels in {"a": a, "b": b, "c": c, "d": d}.items():
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    lines = "a.png 0 0\nb.png 0 60\nc.png 50 0\nd.png 80 0\n"
    (tmp_path / "trim.aci").write_text(lines)
    (tmp_path / "keep.aci").write_text("edgetrim = no\n" + lines)
    with open_slide(tmp_path / "trim.aci") as slide:
        # row Y=0: heights 50, 70 -> 50; column X=0: widths 60, 60, 30 -> 30
        want = paste(110, 100, [(a[:, :30], 0, 0), (b[:50], 60, 0), (c[:, :30], 0, 50), (d, 0, 80)])
        assert slide.dimensions == (100, 110)
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, (100, 110)), want)
    with open_slide(tmp_path / "keep.aci") as slide:
        want = paste(110, 100, [(a, 0, 0), (b, 60, 0), (c, 0, 50), (d, 0, 80)])
        assert slide.dimensions == (100, 110)
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, (100, 110)), want)


def test_reduced_levels_copy_component_levels_or_reduce(tmp_path: Path) -> None:
    big, small = pattern(256, 512, 1), pattern(128, 128, 2)
    write_tiff(tmp_path / "big.tif", big, downsamples=(1, 4, 16))
    Image.fromarray(small).save(tmp_path / "small.png")  # no pyramid: reduced on the fly
    (tmp_path / "p.aci").write_text("big.tif 0 0\nsmall.png 64 448\nbig.tif 256 128\n")
    with open_slide(tmp_path / "p.aci") as slide:
        assert slide.level_downsamples == (1.0, 4.0, 16.0)
        assert slide.level_dimensions == ((640, 512), (160, 128), (40, 32))
        for level, ds in ((1, 4), (2, 16)):
            comp = stored_level(tmp_path / "big.tif", level)
            want = paste(512 // ds, 640 // ds, [(comp, 0, 0), (comp, 128 // ds, 256 // ds)])
            small_reduced = small.reshape(128 // ds, ds, 128 // ds, ds, 3).mean(axis=(1, 3))
            want_small = np.floor(small_reduced + 0.5).astype(np.uint8)
            y, x = 64 // ds, 448 // ds
            want[y : y + want_small.shape[0], x : x + want_small.shape[1]] = want_small
            got = slide.levels[level].read_region(0, 0, 640 // ds, 512 // ds)
            np.testing.assert_array_equal(got, want)


def test_opens_each_file_once_and_keeps_a_bounded_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"t{i}.png" for i in range(6)]
    tiles = [pattern(20, 30, i) for i in range(6)]
    for name, pixels in zip(names, tiles, strict=True):
        Image.fromarray(pixels).save(tmp_path / name)
    lines = [f"{names[(r * 5 + c) % 6]} {r * 20} {c * 30}" for r in range(4) for c in range(5)]
    (tmp_path / "g.aci").write_text("\n".join(lines))
    opened: list[Path] = []
    real_open = registry.open_slide

    def counting_open(path: Path) -> composite.Slide:
        opened.append(Path(path))
        return real_open(path)

    monkeypatch.setattr(registry, "open_slide", counting_open)
    slide = open_slide(tmp_path / "g.aci", max_open=2)
    assert sorted(p.name for p in opened) == sorted(names)  # each distinct file once
    want = paste(80, 150, [(tiles[(r * 5 + c) % 6], c * 30, r * 20) for r in range(4) for c in range(5)])
    results: list[np.ndarray] = []

    def read() -> None:
        results.append(slide.read_region((0, 0), 0, (150, 80)))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for got in results:
        np.testing.assert_array_equal(got, want)
    pool = slide.closers[-1].__self__  # type: ignore[attr-defined]
    assert pool.open_count <= 2
    slide.close()
    assert pool.open_count == 0


def test_huge_canvas_opens_at_once_and_reads_only_what_is_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500,000 x 500,000 px from four 2,000 px files referenced 62,500 times."""
    size, per_side = 2000, 250
    files = [f"c{i}.tif" for i in range(4)]
    for i, name in enumerate(files):
        write_tiff(tmp_path / name, pattern(size, size, i), downsamples=(1, 4, 16), tile=256, compression="lzw")
    which = lambda r, c: files[(r * 3 + c) % 4]  # noqa: E731
    lines = [f"{which(r, c)} {r * size} {c * size}" for r in range(per_side) for c in range(per_side)]
    (tmp_path / "huge.aci").write_text("\n".join(lines) + "\n")
    painted: list[tuple[int, int]] = []
    real_paint = canvas.draw_component

    def spy(out: np.ndarray, tile: composite.Box, d: int, rect: composite.Box, comp: composite.Slide) -> None:
        painted.append((rect.x, rect.y))
        real_paint(out, tile, d, rect, comp)

    monkeypatch.setattr(canvas, "draw_component", spy)
    with open_slide(tmp_path / "huge.aci") as slide:
        pool = slide.closers[-1].__self__  # type: ignore[attr-defined]
        assert pool.opens == 4 and not painted
        assert slide.dimensions == (500_000, 500_000)
        assert slide.level_dimensions[1:] == ((125_000, 125_000), (31_250, 31_250))
        levels = {ds: [stored_level(tmp_path / f, lv) for f in files] for lv, ds in enumerate((1, 4, 16))}
        for level, ds in enumerate((1, 4, 16)):
            # a box around the corner where four components meet, deep inside the canvas
            x0, y0 = 123 * size - 48 * ds, 77 * size - 40 * ds
            w, h = 100, 90
            painted.clear()
            got = slide.read_region((x0, y0), level, (w, h))
            # reads are whole tiles of the composite's grid: the components under those, no others
            grid = slide.levels[level].grid
            tiles = [grid.tile_box(*t) for t in grid.tiles_overlapping(composite.Box(x0 // ds, y0 // ds, w, h))]
            bx0, by0 = min(t.x for t in tiles) * ds, min(t.y for t in tiles) * ds
            bx1, by1 = max(t.right for t in tiles) * ds, max(t.bottom for t in tiles) * ds

            def under(x0: int, y0: int, x1: int, y1: int) -> set[tuple[int, int]]:
                return {
                    (c * size, r * size)
                    for r in range(per_side)
                    for c in range(per_side)
                    if c * size < x1 and (c + 1) * size > x0 and r * size < y1 and (r + 1) * size > y0
                }

            assert set(painted) == under(bx0, by0, bx1, by1)
            assert len(set(painted)) <= 16  # of 62,500
            placed = [
                (levels[ds][files.index(which(y // size, x // size))], (x - x0) // ds, (y - y0) // ds)
                for x, y in under(x0, y0, x0 + w * ds, y0 + h * ds)
            ]
            assert len(placed) == 4
            want = _paste_clipped(h, w, placed)
            np.testing.assert_array_equal(got, want)


def _paste_clipped(height: int, width: int, placed: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
    """Like paste, but offsets may be negative (components starting before the window)."""
    out = np.full((height, width, 3), 255, np.uint8)
    for pixels, x, y in sorted(placed, key=lambda p: (p[2], p[1])):
        sx, sy = max(0, -x), max(0, -y)
        dx, dy = max(0, x), max(0, y)
        h = min(pixels.shape[0] - sy, height - dy)
        w = min(pixels.shape[1] - sx, width - dx)
        if h > 0 and w > 0:
            out[dy : dy + h, dx : dx + w] = pixels[sy : sy + h, sx : sx + w]
    return out


def test_nested_aci_and_its_limits(tmp_path: Path) -> None:
    tile = pattern(30, 40, 7)
    Image.fromarray(tile).save(tmp_path / "t.png")
    (tmp_path / "inner.aci").write_text("t.png 0 0\nt.png 0 40\n")
    (tmp_path / "outer.aci").write_text("inner.aci 0 0\ninner.aci 30 20\n")
    with open_slide(tmp_path / "outer.aci") as slide:
        inner = paste(30, 80, [(tile, 0, 0), (tile, 40, 0)])
        np.testing.assert_array_equal(
            slide.read_region((0, 0), 0, (100, 60)), paste(60, 100, [(inner, 0, 0), (inner, 20, 30)])
        )
    (tmp_path / "x.aci").write_text("y.aci 0 0\n")
    (tmp_path / "y.aci").write_text("t.png 0 0\nx.aci 5 5\n")
    with pytest.raises(FormatError, match=r"y\.aci:2: manifests include each other \(x\.aci -> y\.aci -> x\.aci\)"):
        open_slide(tmp_path / "x.aci")
    for depth in range(6):
        target = "t.png" if depth == 0 else f"n{depth - 1}.aci"
        (tmp_path / f"n{depth}.aci").write_text(f"{target} 0 0\n")
    open_slide(tmp_path / "n4.aci").close()  # four nested manifests below the top one
    with pytest.raises(LimitError, match=r"n1\.aci:1: ACI nested deeper than 4"):
        open_slide(tmp_path / "n5.aci")


def test_component_errors_name_manifest_and_line(tmp_path: Path) -> None:
    Image.fromarray(pattern(10, 10, 1)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "m1.aci").write_text("ok.png 0 0\n\nmissing.svs 0 10\n")
    with pytest.raises(SlideNotFoundError, match=r"m1\.aci:3: component 'missing.svs': .*no such file"):
        open_slide(tmp_path / "m1.aci")
    (tmp_path / "m2.aci").write_text("# x\nbroken.png 0 0\n")
    with pytest.raises(composite.CompositeError, match=r"m2\.aci:2: component 'broken.png'"):
        open_slide(tmp_path / "m2.aci")
    (tmp_path / "m3.aci").write_text("# only comments\nkey=value\n")
    with pytest.raises(FormatError, match=r"m3\.aci: manifest has no image lines"):
        open_slide(tmp_path / "m3.aci")


def test_sniffed_by_content(tmp_path: Path) -> None:
    Image.fromarray(pattern(10, 10, 1)).save(tmp_path / "ok.png")
    (tmp_path / "layout.txt").write_text("# not named .aci\nok.png 0 0\n")
    (tmp_path / "notes.txt").write_text("Hello world\nok.png 0 0\n")
    assert registry.detect_format(tmp_path / "layout.txt").NAME == "aci"
    with pytest.raises(composite.UnsupportedFormatError):
        registry.detect_format(tmp_path / "notes.txt")
    (tmp_path / "bad.aci").write_text("ok.png 0 0\nok.png zero 0\n")
    with pytest.raises(FormatError, match=r"bad\.aci:2: "):
        composite.open_slide(tmp_path / "bad.aci")


def test_canvas_limit_from_real_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One 10 px image on a 10^12 px canvas is also "mostly empty" (docs/limits.md): lift that
    # limit here to test the canvas limit alone.
    monkeypatch.setattr("composite.formats.aci.reader.MAX_EMPTY_PIXELS", 10**13)
    Image.fromarray(pattern(10, 10, 1)).save(tmp_path / "t.png")
    (tmp_path / "edge.aci").write_text("t.png 999990 999990\n")  # exactly 10^12 px
    with open_slide(tmp_path / "edge.aci") as slide:
        assert slide.dimensions == (1_000_000, 1_000_000)
        np.testing.assert_array_equal(slide.read_region((999_990, 999_990), 0, (10, 10)), pattern(10, 10, 1))
    (tmp_path / "over.aci").write_text("t.png 999991 999991\n")
    with pytest.raises(LimitError, match=r"over\.aci: canvas 1000001 x 1000001 px is more than"):
        open_slide(tmp_path / "over.aci")
