"""`redact --scrub`: a marker string planted in every place a source can hide text is found in no
byte of any output (SVS, TIFF, OME-TIFF, CWS directory, ACI manifest and pieces), and the tiles
whose segments were stripped decode to the same pixels (OpenSlide and tifffile)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import openslide
import pytest
import tifffile
from pydicom.uid import generate_uid

from composite import codecs
from composite.geometry import Box, TileGrid
from composite.output import WriteOptions
from composite.segments import scrub_jpeg, scrub_jpeg2000, scrub_tile
from composite.synthetic import region
from composite.tools.redact import RedactPlan, redact

# one marker per place, so a failure names the place that leaked
PLACES = {
    "file name": "PHI01FILE",
    "tile COM": "PHI02COM",
    "tile APP1 EXIF": "PHI03EXIF",
    "tile APP1 XMP": "PHI04XMP",
    "tile APP2 ICC": "PHI05ICC",
    "tile APP13": "PHI06APP13",
    "tile Adobe APP14 tail": "PHI07ADOBE",
    "tile JFIF thumbnail": "PHI08JFIF",
    "tile after EOI": "PHI09TRAIL",
    "JPEGTables COM": "PHI10TABLES",
    "description header": "PHI11HEAD",
    "description unknown field": "PHI12FIELD",
    "description safe field, text value": "PHI13VALUE",
    "Artist": "PHI14ARTIST",
    "Software": "PHI15SOFTWARE",
    "DocumentName": "PHI16DOCNAME",
    "Make": "PHI17MAKE",
    "Model": "PHI18MODEL",
    "DateTime": "2009:12:29 19:19:19",
    "HostComputer": "PHI20HOST",
    "Copyright": "PHI21COPY",
    "PageName": "PHI22PAGE",
    "ImageUniqueID": "PHI23UNIQUE",
    "XMP tag": "PHI24XMPTAG",
    "label COM": "PHI25LABELCOM",
    "label EXIF": "PHI26LABELEXIF",
    "label XMP": "PHI27LABELXMP",
    "macro EXIF": "PHI28MACROEXIF",
    "plain TIFF free-text description": "PHI29FREETEXT",
    "plain TIFF tile COM": "PHI30PLAINCOM",
    "J2K main-header COM": "PHI31J2KMAIN",
    "J2K tile-part COM": "PHI32J2KPART",
    "DICOM PatientName": "PHI33DCMPATIENT",
    "DICOM StudyDescription": "PHI34DCMSTUDY",
    "DICOM frame COM": "PHI35DCMCOM",
}
M = PLACES
TILE = 240
SIZE = (1440, 960)


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def planted_tile(body: bytes) -> bytes:
    """An abbreviated RGB tile (SOI SOF SOS ... EOI) with text segments after SOI and bytes after EOI."""
    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01" + bytes((len(M["tile JFIF thumbnail"]), 1))
    jfif += M["tile JFIF thumbnail"].encode() * 3  # a "thumbnail" of width x 1 RGB pixels
    segments = [
        segment(0xFE, M["tile COM"].encode()),
        segment(0xE1, b"Exif\x00\x00" + M["tile APP1 EXIF"].encode()),
        segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + M["tile APP1 XMP"].encode()),
        segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + M["tile APP2 ICC"].encode()),
        segment(0xED, b"Photoshop 3.0\x00" + M["tile APP13"].encode()),
        segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00" + M["tile Adobe APP14 tail"].encode()),
        segment(0xE0, jfif),
    ]
    return codecs.SOI + b"".join(segments) + body[2:] + M["tile after EOI"].encode()


def aperio_description(width: int, height: int, *, level: int) -> str:
    head = f"Aperio Image Library v12.0.15 {M['description header']}\r\n{width}x{height} ({TILE}x{TILE}) JPEG/RGB Q=80"
    if level:
        return head
    return (
        f"{head}|AppMag = 20|MPP = 0.5|Notes = {M['description unknown field']}"
        f"|Left = {M['description safe field, text value']}|Filename = {M['file name']}"
    )


def tag_kwargs() -> dict[str, object]:
    extratags = [
        (code, "s", 0, M[name], True)
        for code, name in (
            (315, "Artist"),
            (269, "DocumentName"),
            (271, "Make"),
            (272, "Model"),
            (316, "HostComputer"),
            (33432, "Copyright"),
            (285, "PageName"),
            (42016, "ImageUniqueID"),
        )
    ]
    xmp = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>{M["XMP tag"]}</rdf:Description></x:xmpmeta>'
    extratags.append((700, "B", len(xmp), xmp.encode(), True))
    return {"datetime": M["DateTime"], "software": M["Software"], "extratags": extratags}


def associated_jpeg(pixels: np.ndarray, *texts: bytes) -> bytes:
    data = codecs.encode_jpeg(pixels, quality=85, rgb=True)
    return codecs.SOI + b"".join(texts) + data[2:]


def write_aperio(path: Path) -> None:
    """A 2-level Aperio SVS (RGB JPEG, shared JPEGTables) with markers in every place above."""
    with tifffile.TiffWriter(path) as tw:
        for level, ds in enumerate((1, 4)):
            width, height = SIZE[0] // ds, SIZE[1] // ds
            grid = TileGrid(width, height, TILE, TILE)
            encoded = [
                codecs.encode_jpeg(region(c * TILE, r * TILE, TILE, TILE, downsample=ds), quality=80, rgb=True)
                for c, r in grid.indices()
            ]
            tables = codecs.split_jpeg_tables(encoded[0])[0]
            tables = codecs.SOI + segment(0xFE, M["JPEGTables COM"].encode()) + tables[2:]
            tw.write(
                (planted_tile(codecs.split_jpeg_tables(data)[1]) for data in encoded),
                shape=(height, width, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="jpeg",
                jpegtables=tables,
                photometric="rgb",
                subsampling=(1, 1),
                compressionargs={"outcolorspace": "RGB"},
                description=aperio_description(width, height, level=level),
                metadata=None,
                **tag_kwargs(),  # type: ignore[arg-type]
            )
            if level == 0:
                thumb = region(0, 0, 360, 240, downsample=4)
                tw.write(thumb, description=f"{aperio_description(*SIZE, level=0)}", metadata=None, photometric="rgb")
        label = np.full((160, 320, 3), 230, np.uint8)
        label_data = associated_jpeg(
            label,
            segment(0xFE, M["label COM"].encode()),
            segment(0xE1, b"Exif\x00\x00" + M["label EXIF"].encode()),
            segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + M["label XMP"].encode()),
        )
        macro = np.concatenate([label, region(0, 0, 320, 160, downsample=8)], axis=1)
        macro_data = associated_jpeg(macro, segment(0xE1, b"Exif\x00\x00" + M["macro EXIF"].encode()))
        for name, pixels, data, subfiletype in (("label", label, label_data, 1), ("macro", macro, macro_data, 9)):
            tw.write(
                iter([data]),
                shape=pixels.shape,
                dtype=np.uint8,
                rowsperstrip=pixels.shape[0],
                compression="jpeg",
                photometric="rgb",
                subsampling=(1, 1),
                description=f"Aperio Image Library v12.0.15\n{name} {pixels.shape[1]}x{pixels.shape[0]}",
                metadata=None,
                subfiletype=subfiletype,
                **tag_kwargs(),  # type: ignore[arg-type]
            )


def write_plain(path: Path) -> None:
    """A generic pyramidal TIFF (YCbCr JPEG tiles, complete streams) whose ImageDescription is free
    text without Aperio fields, with COM segments in its tiles and text in its tags."""
    with tifffile.TiffWriter(path) as tw:
        for level, ds in enumerate((1, 4)):
            width, height = SIZE[0] // ds, SIZE[1] // ds
            grid = TileGrid(width, height, TILE, TILE)
            tiles = [
                codecs.encode_jpeg(region(c * TILE, r * TILE, TILE, TILE, downsample=ds), quality=80)
                for c, r in grid.indices()
            ]
            comment = segment(0xFE, M["plain TIFF tile COM"].encode())
            tw.write(
                (codecs.SOI + comment + data[2:] for data in tiles),
                shape=(height, width, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="jpeg",
                photometric="ycbcr",
                subsampling=(2, 2),
                subfiletype=1 if level else 0,
                description=f"PatientName {M['plain TIFF free-text description']} MRN 0042 slide 7"
                if level == 0
                else None,
                metadata=None,
                **tag_kwargs(),  # type: ignore[arg-type]
            )


def planted_j2k(pixels: np.ndarray) -> bytes:
    """A raw J2K codestream with a COM segment in its main header and one in its tile-part header."""
    import imagecodecs

    data = bytes(imagecodecs.jpeg2k_encode(pixels, level=40, codecformat="J2K"))

    def comment(text: str) -> bytes:
        return b"\xff\x64" + struct.pack(">H", 4 + len(text)) + b"\x00\x01" + text.encode()

    pos = 2
    while data[pos : pos + 2] != b"\xff\x90":  # walk the main header to the first SOT
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    main, part = comment(M["J2K main-header COM"]), comment(M["J2K tile-part COM"])
    (psot,) = struct.unpack(">I", data[pos + 6 : pos + 10])
    sot = data[pos : pos + 6] + struct.pack(">I", psot + len(part) if psot else 0) + data[pos + 10 : pos + 12]
    return data[:pos] + main + sot + part + data[pos + 12 :]


def write_j2k(path: Path) -> None:
    """A one-level Aperio SVS with JPEG 2000 tiles (code 33005) carrying COM segments."""
    width, height = 960, 720
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            (
                planted_j2k(region(c * TILE, r * TILE, TILE, TILE))
                for c, r in TileGrid(width, height, TILE, TILE).indices()
            ),
            shape=(height, width, 3),
            dtype=np.uint8,
            tile=(TILE, TILE),
            compression=33005,
            photometric="rgb",
            description=aperio_description(width, height, level=0).replace("JPEG/RGB", "J2K/KAK"),
            metadata=None,
        )


def write_dicom(folder: Path) -> Path:
    """A DICOM WSI instance (RGB JPEG frames with a COM segment) whose patient and study
    attributes carry markers."""
    import pydicom

    from tests import test_dicom_files

    def commented(tile: np.ndarray) -> bytes:
        data = encode_frame(tile)
        return data[:2] + segment(0xFE, M["DICOM frame COM"].encode()) + data[2:]

    encode_frame = test_dicom_files._jpeg_rgb
    folder.mkdir()
    path = folder / "level0.dcm"
    with mock.patch.object(test_dicom_files, "_jpeg_rgb", commented):
        test_dicom_files.write_wsi_instance(path, region(0, 0, 640, 448), series_uid=generate_uid(), tile=64)
    ds = pydicom.dcmread(path)
    ds.PatientName = M["DICOM PatientName"]
    ds.StudyDescription = M["DICOM StudyDescription"]
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("planted")
    aperio = folder / f"case-{M['file name']}.svs"
    plain = folder / f"plain-{M['file name']}.tif"
    j2k = folder / f"j2k-{M['file name']}.svs"
    write_aperio(aperio)
    write_plain(plain)
    write_j2k(j2k)
    dicom = write_dicom(folder / f"dicom-{M['file name']}")
    assert sum(marker.encode() in dicom.read_bytes() for marker in M.values()) == 3
    for path in (aperio, plain):
        data = path.read_bytes()
        planted = [name for name, marker in M.items() if marker.encode() in data]
        assert len(planted) >= 10, f"{path.name}: the fixture must carry the markers (found {planted})"
    with openslide.OpenSlide(aperio) as check:
        assert check.properties["openslide.vendor"] == "aperio"
        assert {"label", "macro", "thumbnail"} <= set(check.associated_images)
    # a CWS directory copied from the Aperio source without --scrub: its blocks, INI header
    # (tDescription, tWebSlideTitle) and Label/Macro files carry the markers on
    cws = folder / f"cws-{M['file name']}"
    redact(aperio, cws, RedactPlan(), options=WriteOptions())
    assert len({found.split(": ")[1] for found in leaks(cws)}) >= 10
    with openslide.OpenSlide(j2k) as check:  # OpenSlide decodes the planted codestreams
        assert check.read_region((0, 0), 0, (960, 720)).getextrema()[0][1] > 0
    return {"aperio": aperio, "plain": plain, "cws": cws, "j2k": j2k, "dicom": dicom}


OUTPUTS = {
    "svs": ("out.svs", {}),
    "tiff": ("out.tif", {}),
    "ome-tiff": ("out.ome.tif", {"ome": True}),
    "cws": ("out-cws", {}),
    "aci": ("out.aci", {"piece_size": 720}),
}


def output_files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from (p for p in sorted(path.rglob("*")) if p.is_file())
        return
    yield path
    pieces = path.with_name(path.stem + "_pieces")
    if pieces.is_dir():
        yield from (p for p in sorted(pieces.rglob("*")) if p.is_file())


def leaks(path: Path) -> list[str]:
    """'file: place' for every marker found in any file of the output."""
    found = []
    for file in output_files(path):
        data = file.read_bytes().lower()
        found += [f"{file.name}: {place}" for place, marker in M.items() if marker.lower().encode() in data]
        found += [f"{file.name}: file name" for part in (file.name,) if M["file name"].lower() in part.lower()]
    return found


@pytest.mark.parametrize("source", ["aperio", "plain", "cws", "j2k", "dicom"])
def test_no_marker_reaches_any_output(sources: dict[str, Path], source: str, tmp_path: Path) -> None:
    src = sources[source]
    plan = RedactPlan(boxes=[Box(300, 200, 200, 150)], scrub=True)
    checked = 0
    for fmt, (name, extra) in OUTPUTS.items():
        if source == "j2k" and fmt == "tiff":
            continue  # JPEG 2000 is refused in plain TIFF (OpenSlide cannot read it there)
        dst = tmp_path / name
        report, _ = redact(
            src, dst, plan, to="tiff" if fmt == "ome-tiff" else None, options=WriteOptions(extra=dict(extra))
        )
        if fmt == "svs" or (fmt == "cws" and source != "j2k"):
            assert report.levels[0].copied_tiles > 0, "scrubbing keeps the byte copy (no re-encode)"
        files = list(output_files(dst))
        assert files, f"{fmt}: nothing written"
        assert leaks(dst) == [], f"{fmt}: markers survived --scrub"
        checked += len(files)
    # without --scrub the same markers are copied: the check above can fail
    kept = tmp_path / "kept-cws"
    redact(src, kept, RedactPlan(), options=WriteOptions())
    assert leaks(kept), "without --scrub the planted text reaches the output"
    assert checked >= 5


@pytest.mark.parametrize("source", ["aperio", "j2k"])
def test_stripped_tiles_decode_identically(sources: dict[str, Path], source: str, tmp_path: Path) -> None:
    src = sources[source]
    out = tmp_path / "scrubbed.svs"
    report, _ = redact(src, out, RedactPlan(scrub=True), options=WriteOptions())
    copied = [level.index for level in report.levels if level.method == "copy"]
    for index in copied:  # every tile went the copy path: stripping never re-encodes
        level = report.levels[index]
        assert level.copied_tiles == TileGrid(level.width, level.height, TILE, TILE).tile_count
    assert copied
    with openslide.OpenSlide(src) as before, openslide.OpenSlide(out) as after:
        for level in copied:
            width, height = before.level_dimensions[level]
            old = np.asarray(before.read_region((0, 0), level, (width, height)))
            new = np.asarray(after.read_region((0, 0), level, (width, height)))
            assert np.array_equal(old, new), f"OpenSlide level {level} differs"
    with tifffile.TiffFile(src) as before, tifffile.TiffFile(out) as after:
        for level in copied:
            old_page, new_page = before.series[0].levels[level], after.series[0].levels[level]
            assert np.array_equal(old_page.asarray(), new_page.asarray())
            page = new_page.keyframe
            after.filehandle.seek(page.dataoffsets[0])
            tile = after.filehandle.read(page.databytecounts[0])
            kind = "jpeg2000" if page.compression == 33005 else "jpeg"
            assert tile == scrub_tile(tile, kind), "the written tile carries only what decoding needs"
            assert page.jpegtables is None or scrub_jpeg(page.jpegtables) == page.jpegtables


def test_scrub_jpeg_keeps_the_decoding_segments() -> None:
    pixels = region(0, 0, 64, 48)
    for rgb in (True, False):
        clean = codecs.encode_jpeg(pixels, quality=90, rgb=rgb)
        assert scrub_jpeg(clean) is clean, "nothing to remove: the same bytes"
        planted = planted_tile(clean)
        scrubbed = scrub_jpeg(planted)
        assert not any(marker.encode() in scrubbed for marker in M.values())
        assert codecs.jpeg_info(scrubbed).rgb == codecs.jpeg_info(clean).rgb or not rgb
        assert np.array_equal(codecs.decode_jpeg(scrubbed, rgb=rgb), codecs.decode_jpeg(clean, rgb=rgb))
    with pytest.raises(ValueError):
        scrub_jpeg(b"\xff\xd8\xff\xfe\x00\x40short")


def test_scrub_jpeg2000_drops_comments() -> None:
    import imagecodecs

    pixels = region(0, 0, 64, 48)
    data = bytes(imagecodecs.jpeg2k_encode(pixels, level=40, codecformat="J2K"))
    siz_end = 4 + struct.unpack(">H", data[4:6])[0]
    comment = b"\xff\x64" + struct.pack(">H", 4 + len(M["tile COM"])) + b"\x00\x01" + M["tile COM"].encode()
    planted = data[:siz_end] + comment + data[siz_end:]
    scrubbed = scrub_jpeg2000(planted)
    assert M["tile COM"].encode() not in scrubbed
    assert np.array_equal(imagecodecs.jpeg2k_decode(scrubbed), imagecodecs.jpeg2k_decode(data))


def test_damaged_streams_are_refused_or_scrubbed() -> None:
    """Mutated JPEG and J2K streams (fixed seed): scrubbing returns a stream it would not change
    again, or raises ValueError (the caller then re-encodes); never another error."""
    import random

    import imagecodecs

    pixels = region(0, 0, 64, 48)
    seeds = [
        planted_tile(codecs.encode_jpeg(pixels, quality=80, rgb=True)),
        codecs.encode_jpeg(pixels, quality=80),
        planted_j2k(pixels),
        bytes(imagecodecs.jpeg2k_encode(pixels, level=40, codecformat="J2K")),
    ]
    rng = random.Random(21)
    outcomes = {"scrubbed": 0, "refused": 0}
    for _ in range(800):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            if rng.random() < 0.6:
                data[at] = rng.randrange(256)
            else:
                del data[at : at + rng.randint(1, 40)]
        for scrub in (scrub_jpeg, scrub_jpeg2000):
            try:
                out = scrub(bytes(data))
            except ValueError:
                outcomes["refused"] += 1
                continue
            assert scrub(out) == out
            outcomes["scrubbed"] += 1
    assert min(outcomes.values()) > 50, outcomes
