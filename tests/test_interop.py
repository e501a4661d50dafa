"""What other readers see in our files: RGB JPEG tiles that describe their own colours (Pillow and
imagecodecs on the raw tile bytes agree with OpenSlide), the objective in the OME-XML (Bio-Formats
parses it), CWS edge blocks padded with glass, and JPEG 2000 refused in plain TIFF."""

from __future__ import annotations

import io
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import imagecodecs
import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from composite import codecs
from composite.background import WHITE, glass_colour, slide_background
from composite.convert import convert
from composite.geometry import TileGrid
from composite.output import WriteOptions
from composite.registry import open_slide
from composite.synthetic import region
from tests.test_svs_writer import _bioformats

TILE = 240
OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def aperio_ids(body: bytes) -> bytes:
    """An RGB JPEG tile as Aperio writes it: component ids 0, 1, 2 (not R, G, B), no Adobe marker,
    so a decoder without the TIFF's Photometric tag takes it for YCbCr."""
    out = bytearray(body)
    for marker, start, _ in codecs.iter_jpeg_segments(body):
        if marker == 0xC0:
            for i in range(out[start + 9]):
                out[start + 10 + 3 * i] = i
        elif marker == 0xDA:
            for i in range(out[start + 4]):
                out[start + 5 + 2 * i] = i
    return bytes(out)


@pytest.fixture(scope="module")
def aperio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-level SVS whose RGB JPEG tiles carry Aperio's component ids and share one JPEGTables."""
    path = tmp_path_factory.mktemp("interop") / "aperio.svs"
    width, height = 1500, 1100
    with tifffile.TiffWriter(path) as tw:
        for index, ds in enumerate((1, 4)):
            w, h = width // ds, height // ds
            encoded = [
                codecs.encode_jpeg(region(c * TILE, r * TILE, TILE, TILE, downsample=ds), quality=70, rgb=True)
                for c, r in TileGrid(w, h, TILE, TILE).indices()
            ]
            head = f"Aperio Image Library v12.0.15\r\n{width}x{height} [0,0 {width}x{height}] ({TILE}x{TILE}) JPEG/RGB"
            tw.write(
                (aperio_ids(codecs.split_jpeg_tables(data)[1]) for data in encoded),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="jpeg",
                jpegtables=codecs.split_jpeg_tables(encoded[0])[0],
                photometric="rgb",
                subsampling=(1, 1),
                compressionargs={"outcolorspace": "RGB"},
                description=f"{head} Q=70|AppMag = 20|MPP = 0.5" if index == 0 else f"{head} -> {w}x{h} Q=70",
                metadata=None,
            )
    return path


def raw_tiles(path: Path) -> list[tuple[int, int, bytes, bytes | None]]:
    """(x, y, tile bytes, JPEGTables) of every tile of every pyramid level (SubIFDs too)."""
    tiles = []
    with tifffile.TiffFile(path) as tif:
        for level in tif.series[0].levels:
            page = level.keyframe
            cols = -(-page.imagewidth // page.tilewidth)
            for i, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
                tif.filehandle.seek(offset)
                x, y = i % cols * page.tilewidth, i // cols * page.tilelength
                tiles.append((x, y, tif.filehandle.read(count), page.jpegtables))
            break  # level 0: OpenSlide's region reads below are of level 0
    return tiles


@pytest.mark.parametrize("name, extra", [("plain.tif", {}), ("out.ome.tif", {"ome": True})])
def test_rgb_tiles_decode_alone_with_openslides_colours(
    aperio: Path, tmp_path: Path, name: str, extra: dict[str, object]
) -> None:
    dst = tmp_path / name
    report = convert(aperio, dst, options=WriteOptions(extra=extra))
    assert report.levels[0].method == "copy"
    with openslide.OpenSlide(aperio) as source:
        errors = []
        for x, y, tile, tables in raw_tiles(dst):
            whole = codecs.merge_jpeg_tables(tile, tables)
            assert codecs.has_adobe_marker(whole)
            w, h = min(TILE, 1500 - x), min(TILE, 1100 - y)
            want = np.asarray(source.read_region((x, y), 0, (w, h)).convert("RGB")).astype(int)
            pillow = np.asarray(Image.open(io.BytesIO(whole)).convert("RGB"))[:h, :w]
            libjpeg = imagecodecs.jpeg8_decode(whole)[:h, :w]  # no colour space given: the stream says
            errors += [np.abs(pillow - want).mean(), np.abs(libjpeg - want).mean()]
    # Aperio's RGB read as YCbCr is off by about 40 on average; decoded as RGB it matches exactly
    assert max(errors) < 0.5, f"raw tile decode differs from OpenSlide by up to {max(errors):.1f}"
    assert np.array_equal(tifffile.imread(dst), tifffile.imread(aperio)), "tifffile's view is unchanged"


def test_svs_output_keeps_the_source_tile_bytes(aperio: Path, tmp_path: Path) -> None:
    dst = tmp_path / "copy.svs"
    convert(aperio, dst)
    assert [t[2] for t in raw_tiles(dst)] == [t[2] for t in raw_tiles(aperio)]


def test_ome_xml_names_the_objective(aperio: Path, tmp_path: Path) -> None:
    dst = tmp_path / "mag.ome.tif"
    convert(aperio, dst, options=WriteOptions(extra={"ome": True}))
    with tifffile.TiffFile(dst) as tif:
        assert tif.is_ome and tif.ome_metadata
        root = ET.fromstring(tif.ome_metadata)
    objective = root.find(f"{OME}Instrument/{OME}Objective")
    assert objective is not None and float(objective.attrib["NominalMagnification"]) == 20
    image = root.find(f"{OME}Image")
    assert image is not None
    children = [child.tag.removeprefix(OME) for child in image]
    assert children[:3] == ["InstrumentRef", "ObjectiveSettings", "Pixels"]  # the schema's order
    assert image[1].attrib["ID"] == objective.attrib["ID"]
    info = _bioformats(dst, "-omexml")  # Bio-Formats' own OME model, rebuilt from what it parsed
    assert 'NominalMagnification="20.0"' in info and "<ObjectiveSettings" in info


def test_glass_colour() -> None:
    glass, pink, purple = (238, 236, 241), (220, 130, 170), (90, 50, 130)
    brightfield = np.array([glass] * 70 + [pink] * 20 + [purple] * 10, np.uint8).reshape(10, 10, 3)
    assert glass_colour(brightfield) == glass
    mostly_tissue = np.array([glass] * 8 + [pink] * 50 + [purple] * 42, np.uint8).reshape(10, 10, 3)
    assert glass_colour(mostly_tissue) == glass  # the brightest large area, not the commonest
    fluorescence = np.array([(2, 3, 2)] * 85 + [(20, 200, 40)] * 4 + [(200, 30, 30)] * 11, np.uint8)
    assert glass_colour(fluorescence.reshape(10, 10, 3)) == (200, 30, 30)
    speck = np.array([(2, 3, 2)] * 97 + [(250, 250, 250)] * 3, np.uint8).reshape(10, 10, 3)
    assert glass_colour(speck) == (2, 3, 2)  # a bright detail is not an area
    assert glass_colour(np.zeros((0, 0, 3), np.uint8)) == WHITE


def test_cws_edge_blocks_are_padded_with_glass(tmp_path: Path) -> None:
    # glass with a dark tissue band along the right and bottom edges: repeating the edge smears it
    glass, tissue = (236, 234, 240), (80, 40, 120)
    pixels = np.empty((700, 1000, 3), np.uint8)
    pixels[:] = glass
    pixels[:, 900:] = tissue
    pixels[600:] = tissue
    source = tmp_path / "edge.png"
    Image.fromarray(pixels).save(source)
    dst = tmp_path / "edge-cws"
    convert(source, dst, options=WriteOptions(tile_size=(512, 512)))
    with open_slide(source) as slide:
        assert slide_background(slide) == glass
    corner = codecs.decode_jpeg((dst / "Da3.jpg").read_bytes())  # block (1, 1): 488 x 188 px of image
    assert corner.shape == (512, 512, 3)
    inside = corner[:188, :488].astype(int)
    assert np.abs(inside[:, -20:] - tissue).mean() < 6, "the image part is the tissue band"
    for padding in (corner[:188, 488:], corner[188:]):
        assert np.abs(padding.astype(int) - glass).mean() < 6, "padding is glass, not the smeared edge"


def test_jpeg2000_is_refused_in_plain_tiff_with_a_hint(aperio: Path, tmp_path: Path) -> None:
    dst = tmp_path / "j2k.tif"
    cmd = [sys.executable, "-m", "composite", "convert", str(aperio), str(dst), "--compression", "jpeg2000"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and ".svs" in result.stderr
    assert not dst.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    ome = tmp_path / "j2k.ome.tif"  # OME-TIFF keeps it: Bio-Formats reads code 33005
    convert(aperio, ome, options=WriteOptions(compression="jpeg2000", extra={"ome": True}))
    with tifffile.TiffFile(ome) as tif:
        assert tif.pages[0].compression == 33005
        assert np.abs(tif.asarray().astype(int) - tifffile.imread(aperio)).mean() < 3
