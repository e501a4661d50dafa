"""`wsi-composite redact`: black boxes on every level (OpenSlide's view), untouched tiles copied byte
for byte (tifffile's raw tiles), scrubbed values and dropped images absent from the output bytes."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from composite import codecs, open_slide
from composite.geometry import Box, TileGrid
from composite.synthetic import region
from tests.cli import run as run_cli

run = partial(run_cli, "redact")  # wsi-composite redact ARGS...


BOX = Box(500, 400, 700, 300)
EDGE_BOX = Box(2900, 2100, 100, 100)  # touches the padded last tiles
SECRETS = {
    "Filename": "PATIENT-SMITH-0042",
    "User": "jdoe-7f3a",
    "Date": "12/29/09",
    "Time": "09:59:15",
    "ScanScope ID": "SS-SECRET-9",
    "Barcode": "BC-123456789",
    "ImageID": "IMG-55555",
}
TAG_SECRETS = {"DateTime": "2009:12:29 09:59:15", "Artist": "Dr Who", "HostComputer": "SCANNER-PC-42"}


def raw_tiles(path: Path) -> list[list[bytes]]:
    """The stored bytes of every tile of every pyramid level, as tifffile finds them."""
    levels = []
    with tifffile.TiffFile(path) as tif:
        for level in tif.series[0].levels:
            page = level.keyframe
            tiles = []
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                tif.filehandle.seek(offset)
                tiles.append(tif.filehandle.read(count))
            levels.append(tiles)
    return levels


def strip_bytes(path: Path, series_name: str) -> bytes:
    with tifffile.TiffFile(path) as tif:
        (series,) = [s for s in tif.series if s.name == series_name]
        page = series.keyframe
        tif.filehandle.seek(page.dataoffsets[0])
        return bytes(tif.filehandle.read(sum(page.databytecounts)))


@pytest.fixture(scope="module")
def identified(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Aperio SVS (RGB JPEG tiles sharing one JPEGTables, Q=70) whose description and TIFF tags
    carry identifying values; written here with tifffile, not with composite's writer."""
    path = tmp_path_factory.mktemp("identified") / "case.svs"
    width, height, tile = 3000, 2200, 240
    fields = "|AppMag = 20|MPP = 0.5" + "".join(f"|{key} = {value}" for key, value in SECRETS.items())
    head = f"Aperio Image Library v12.0.15\r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) JPEG/RGB Q=70"
    extratags = [(315, "s", 0, TAG_SECRETS["Artist"], True), (316, "s", 0, TAG_SECRETS["HostComputer"], True)]
    with tifffile.TiffWriter(path) as tw:
        for index, (w, h, ds) in enumerate([(width, height, 1), (width // 4, height // 4, 4)]):
            grid = TileGrid(w, h, tile, tile)
            encoded = [
                codecs.encode_jpeg(region(c * tile, r * tile, tile, tile, downsample=ds), quality=70, rgb=True)
                for c, r in grid.indices()
            ]
            tables = codecs.split_jpeg_tables(encoded[0])[0]
            tw.write(
                (codecs.split_jpeg_tables(data)[1] for data in encoded),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                compression="jpeg",
                jpegtables=tables,
                photometric="rgb",
                subsampling=(1, 1),
                compressionargs={"outcolorspace": "RGB"},
                description=head + fields if index == 0 else f"{head} -> {w}x{h} JPEG/RGB Q=70",
                datetime=TAG_SECRETS["DateTime"],
                extratags=extratags,
                metadata=None,
            )
            if index == 0:
                thumb = region(0, 0, 750, 550, downsample=4)
                tw.write(thumb, description=f"{head} -> 750x550 - {fields}", metadata=None, photometric="rgb")
        label = np.full((300, 300, 3), 240, np.uint8)
        label[100:200, 50:250] = 0
        tw.write(label, description="Aperio Image Library v12.0.15\nlabel 300x300", metadata=None,
                 photometric="rgb", compression="lzw", subfiletype=1)  # fmt: skip
        macro = np.concatenate([label, region(0, 0, 600, 300, downsample=8)], axis=1)
        tw.write(macro, description="Aperio Image Library v12.0.15\nmacro 900x300", metadata=None,
                 photometric="rgb", compression="jpeg", compressionargs={"level": 85}, subfiletype=9)  # fmt: skip
    with openslide.OpenSlide(path) as check:  # the fixture is what it claims to be
        assert check.properties["openslide.vendor"] == "aperio"
        assert set(check.associated_images) == {"thumbnail", "label", "macro"}
        assert check.properties["aperio.Filename"] == SECRETS["Filename"]
    return path


def grown(box: Box, downsample: float, margin: int) -> Box:
    scaled = box.scaled_outward(downsample)
    return Box(scaled.x - margin, scaled.y - margin, scaled.width + 2 * margin, scaled.height + 2 * margin)


def test_boxes_black_on_every_level_and_other_tiles_copied(identified: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.svs"
    before = identified.read_bytes()
    result = run(str(identified), str(out), "--box", "500,400,700,300", "--box", "2900,2100,100,100")
    assert result.returncode == 0, result.stderr
    assert identified.read_bytes() == before, "the source is never modified"
    with openslide.OpenSlide(out) as theirs:
        assert theirs.level_count == 2
        for level, ds in enumerate(theirs.level_downsamples):
            for box in (BOX, EDGE_BOX):
                scaled = box.scaled_outward(ds)
                rgba = np.asarray(theirs.read_region((box.x, box.y), level, (scaled.width, scaled.height)))
                inside = rgba[:, :, 3] == 255
                assert rgba[:, :, :3][inside].max() <= 3, f"level {level} box {box} is not black"
        outside = np.asarray(theirs.read_region((0, 0), 0, (480, 380)))[:, :, :3]
        assert outside.mean() > 100, "outside the boxes the slide is unchanged"
    source, written = raw_tiles(identified), raw_tiles(out)
    with open_slide(identified) as slide:
        for level, (old, new) in enumerate(zip(source, written, strict=True)):
            grid, ds = slide.levels[level].grid, slide.levels[level].downsample
            # a tile is re-encoded only when a box (rounded out to 16-px JPEG blocks) touches it
            near = {key for box in (BOX, EDGE_BOX) for key in grid.tiles_overlapping(grown(box, ds, 16))}
            same = [i for i, key in enumerate(grid.indices()) if key not in near]
            assert same and all(old[i] == new[i] for i in same), f"level {level}: untouched tiles changed"
            assert any(old[i] != new[i] for i, key in enumerate(grid.indices()) if key in near)


def test_thumbnail_is_redacted_too(identified: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.svs"
    assert run(str(identified), str(out), "--box", "500,400,700,300").returncode == 0
    with openslide.OpenSlide(out) as theirs:
        thumb = np.asarray(theirs.associated_images["thumbnail"].convert("RGB"))
        scale = theirs.dimensions[0] / thumb.shape[1]
    inner = BOX.scaled_outward(scale)
    patch = thumb[inner.y : inner.bottom, inner.x : inner.right]
    assert patch.size and patch.max() <= 3


def test_scrubbed_values_appear_nowhere(identified: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.svs"
    assert run(str(identified), str(kept)).returncode == 0
    assert SECRETS["Filename"].encode() in kept.read_bytes(), "without --scrub the fields are copied"
    out = tmp_path / "scrubbed.svs"
    result = run(str(identified), str(out), "--scrub")
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    for value in [*SECRETS.values(), *TAG_SECRETS.values()]:
        assert value.encode() not in data, f"{value!r} survived --scrub"
    with openslide.OpenSlide(out) as theirs:
        assert theirs.properties["openslide.vendor"] == "aperio"
        assert theirs.properties["aperio.AppMag"] == "20" and float(theirs.properties["openslide.mpp-x"]) == 0.5


def test_dropped_label_and_macro_leave_no_trace(identified: Path, tmp_path: Path) -> None:
    label, macro = strip_bytes(identified, "Label"), strip_bytes(identified, "Macro")
    out = tmp_path / "out.svs"
    result = run(str(identified), str(out), "--drop-label", "--drop-macro")
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert label[:4096] not in data and macro[:4096] not in data
    assert label[-4096:] not in data and macro[-4096:] not in data
    with openslide.OpenSlide(out) as theirs:
        assert set(theirs.associated_images) == {"thumbnail"}
    only_label = tmp_path / "label-dropped.svs"
    result = run(str(identified), str(only_label), "--drop-label")
    assert result.returncode == 0 and "--drop-macro" in result.stderr  # the macro shows the label too
    with openslide.OpenSlide(only_label) as theirs:
        assert set(theirs.associated_images) == {"thumbnail", "macro"}


def test_output_format_follows_destination(synthetic_svs: Path, tmp_path: Path) -> None:
    tiff = tmp_path / "out.tif"
    assert run(str(synthetic_svs), str(tiff), "--box", "500,400,700,300").returncode == 0
    with openslide.OpenSlide(tiff) as theirs:
        assert theirs.properties["openslide.vendor"] == "generic-tiff"
        assert np.asarray(theirs.read_region((500, 400), 0, (700, 300)))[:, :, :3].max() <= 3
    cws = tmp_path / "out-cws"
    result = run(str(synthetic_svs), str(cws), "--box", "500,400,700,300")
    assert result.returncode == 0, result.stderr
    with open_slide(cws) as slide:
        assert slide.format == "cws"
        assert slide.read_region((500, 400), 0, (700, 300)).max() <= 3
        assert slide.read_region((0, 0), 0, (400, 300)).mean() > 100


def test_bad_requests(synthetic_svs: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.svs"
    shutil.copy(synthetic_svs, copy)
    same = run(str(copy), str(copy), "--overwrite")
    assert same.returncode == 2 and "never modifies the source" in same.stderr
    outside = run(str(copy), str(tmp_path / "o.svs"), "--box", "9000,9000,10,10")
    assert outside.returncode == 2 and "outside" in outside.stderr and "Traceback" not in outside.stderr
    assert run(str(copy), str(tmp_path / "o.svs"), "--box", "1,2,3").returncode == 2
    assert not (tmp_path / "o.svs").exists()
    existing = tmp_path / "exists.svs"
    existing.write_bytes(b"keep")
    refused = run(str(copy), str(existing))
    assert refused.returncode == 2 and existing.read_bytes() == b"keep"
