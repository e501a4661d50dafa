"""DICOM writer: a slide as a VL Whole Slide Microscopy Image series in a directory.

``convert SRC OUT_DIR --to dicom`` writes one instance per pyramid level (``level-N.dcm``,
``TILED_FULL`` frames row-major) and, unless dropped, ``label.dcm`` (LABEL) and
``overview.dcm`` (OVERVIEW, the macro), all in one series of one study. The levels come from the
pipeline every writer uses (the source's levels where they fit, box-downsampled ones elsewhere,
tiles byte-copied where source and target tiles coincide, else re-encoded with the options
``convert`` has). Frames are the tiles:

- JPEG: transfer syntax 1.2.840.10008.1.2.4.50; a TIFF's shared JPEGTables are merged into each
  frame (every frame a complete stream); RGB samples (Aperio's JPEG) get PhotometricInterpretation
  ``RGB`` and the Adobe transform-0 marker, YCbCr ones ``YBR_FULL_422`` (``YBR_FULL`` when not
  subsampled). Nothing else of a copied tile changes, so DICOM -> SVS gives the source's tiles back.
- JPEG 2000 (Aperio 33005 tiles): 1.2.840.10008.1.2.4.91, ``RGB`` or ``YBR_ICT``/``YBR_RCT``
  as the codestream's component transform says.
- ``--compression none``: explicit VR little endian, native RGB.

The label and macro are copied when they are single JPEG streams, else stored uncompressed.
Headers come from :mod:`.dataset`, user metadata from :mod:`.metadata`, frames are streamed by
:mod:`.frames`. The directory appears at ``dst`` only when complete (a hidden temporary
directory is renamed).

Not supported: LZW (no DICOM transfer syntax), JPEG 2000 YCbCr tiles (Aperio 33003) are
re-encoded, focal planes beyond the nominal one, more than one optical path, TILED_SPARSE output,
a thumbnail instance, the source's ICC profile (sRGB is declared).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .... import codecs
from ....errors import FormatError, UnsupportedFormatError
from ....model import AssociatedImage, Slide
from ....output import ConversionReport, DicomOptions, LevelReport, atomic_output
from ....plan import ConversionPlan, LevelPlan, PlanRules
from ....progress import ProgressCallback
from ....tiling import EncodedTile
from .dataset import Pixels, SeriesInfo, instance_dataset
from .frames import BOT_LIMIT, Buffer, Frame, reserve_extended_table, use_extended_table, write_instance
from .metadata import check_uid, load_metadata

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG2000 = "1.2.840.10008.1.2.4.91"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
DEFAULT_TILE = 256
ASSOCIATED = (("label", "LABEL", "label.dcm"), ("macro", "OVERVIEW", "overview.dcm"))


class DicomWriter:
    """DICOM WSI: a directory of one instance per level; 256 px frames unless the source's tiles
    (up to 1,024 px) can be kept; JPEG, JPEG 2000 or uncompressed (no LZW in DICOM)."""

    name = "dicom"
    rules = PlanRules(
        container="DICOM",
        tile_noun="frame",
        default_tile=(DEFAULT_TILE, DEFAULT_TILE),
        compressions=("jpeg", "jpeg2000", "none"),
    )

    def write(self, plan: ConversionPlan, dst: Path, *, progress: ProgressCallback) -> ConversionReport:
        """Write ``plan`` as a DICOM WSI series into the directory ``dst`` (created when complete);
        ``plan.options.dicom`` holds the metadata, UIDs and what to drop."""
        options = plan.options.dicom
        metadata = load_metadata(options.metadata)
        series = _series(plan.slide, options, metadata)
        with atomic_output(dst, overwrite=plan.options.overwrite, directory=True) as tmp:
            reports = []
            for level in plan.levels:
                reports.append(_write_level(tmp, level, series, options.offset_table, progress))
                if level.index == 0:
                    _build_lower_levels(plan, progress)
            associated: list[str] = []
            for name, kind, filename in ASSOCIATED:
                image = plan.associated.get(name)
                if image is None or (options.drop_label if name == "label" else options.drop_macro):
                    continue
                _write_associated(tmp / filename, image, kind, series, number=len(reports) + len(associated) + 1)
                associated.append(name)
        return ConversionReport(destination=dst, format="dicom", levels=reports, associated=associated)


WRITER = DicomWriter()


def _build_lower_levels(plan: ConversionPlan, progress: ProgressCallback) -> None:
    """The computed levels, built top-down as the TIFF writers build them (their module, and
    the TIFF writers it loads, only when a level is computed: an all-copy conversion needs none)."""
    from ....pyramid import DownsampledLevel

    if any(isinstance(p.level, DownsampledLevel) for p in plan.levels):
        from ...tiffwrite.common import build_lower_levels

        build_lower_levels(plan, progress)


def _series(slide: Slide, options: DicomOptions, metadata: dict[str, Any]) -> SeriesInfo:
    from pydicom.uid import generate_uid

    now = datetime.datetime.now()
    study, series = options.study_uid, options.series_uid
    mpp = slide.mpp
    if mpp is None and "mpp" in metadata:
        mpp = (metadata["mpp"], metadata["mpp"])
    if mpp is None:
        raise FormatError(
            f"{slide.path}: the slide records no pixel size, which DICOM needs; give it as"
            ' {"mpp": 0.25} in --metadata'
        )
    return SeriesInfo(
        study_uid=check_uid(study, "study UID") if study else generate_uid(),
        series_uid=check_uid(series, "series UID") if series else generate_uid(),
        frame_of_reference_uid=generate_uid(),
        pyramid_uid=generate_uid(),
        dimension_uid=generate_uid(),
        specimen_uid=generate_uid(),
        metadata=metadata,
        mpp=mpp,
        magnification=slide.magnification,
        base_size=slide.dimensions,
        now=now,
        acquired=_acquired(slide, metadata, now),
    )


def _acquired(slide: Slide, metadata: dict[str, Any], now: datetime.datetime) -> str:
    """AcquisitionDateTime (type 1): the user's, else the source's scan time (an Aperio Date and
    Time, a DICOM source's own), else the conversion's (the attribute must have a value)."""
    if "AcquisitionDateTime" in metadata:
        return str(metadata["AcquisitionDateTime"])
    props = slide.properties
    own = props.get("dicom.AcquisitionDateTime", "")
    if re.fullmatch(r"\d{8,14}(\.\d{1,6})?", own):
        return own
    try:
        scanned = datetime.datetime.strptime(f"{props['aperio.Date']} {props['aperio.Time']}", "%m/%d/%y %H:%M:%S")
    except (KeyError, ValueError):
        scanned = now
    return scanned.strftime("%Y%m%d%H%M%S")


def _write_level(
    directory: Path, level: LevelPlan, series: SeriesInfo, offset_table: str, progress: ProgressCallback
) -> LevelReport:
    grid = level.grid
    # TILED_FULL frames are row-major: one stripe across the level (a multiple of both tile
    # widths at least as wide as the level, see tiling.stripes)
    tiles = level.tiles(progress=progress, stripe_px=grid.cols * grid.tile_width * level.level.grid.tile_width)
    first = next(tiles)
    pixels = _pixels(first)
    copied = [0]

    def frames() -> Iterator[Frame]:
        pieces = JpegFrames().pieces
        for number, tile in enumerate(_chain(first, tiles)):
            if (tile.row * grid.cols + tile.col) != number:
                raise RuntimeError(f"level {level.index}: tile ({tile.col}, {tile.row}) arrived as frame {number + 1}")
            copied[0] += tile.copied
            yield pieces(tile)

    count = grid.cols * grid.rows
    ds = instance_dataset(
        series,
        kind="VOLUME",
        number=level.index + 1,
        size=(grid.width, grid.height),
        tile=(grid.tile_width, grid.tile_height),
        frames=count,
        pixels=pixels,
        resampled=level.index > 0,
        original=level.method == "copy" and level.index == 0,
    )
    encapsulated = pixels.transfer_syntax != EXPLICIT_LITTLE
    raw = grid.tile_width * grid.tile_height * 3
    if encapsulated and (
        offset_table == "extended" or (offset_table == "auto" and use_extended_table(count, raw, limit=BOT_LIMIT))
    ):
        reserve_extended_table(ds, count)
    write_instance(
        directory / f"level-{level.index}.dcm",
        ds,
        frames(),
        frame_count=count,
        encapsulated=encapsulated,
        raw_frame_bytes=raw,
    )
    return level.report(copied[0])


def _chain(first: EncodedTile, rest: Iterator[EncodedTile]) -> Iterator[EncodedTile]:
    yield first
    yield from rest


class JpegFrames:
    """Tiles as the pieces of DICOM frames: a JPEG made complete (a TIFF's JPEGTables merged) and,
    when its samples are RGB, marked so (the Adobe transform-0 segment); other codecs as they are.

    The segments before the scan decide both, and a level's tiles nearly always share those bytes
    exactly, so the decision is kept with the header it was made from: a tile that starts with the
    same header costs one comparison, not a walk over its segments (22,000 walks were a fifth of a
    40k slide's DICOM copy). A frame is then a shared prefix and the tile after its SOI, never
    joined into a new string.
    """

    def __init__(self) -> None:
        self._key: tuple[bool, bytes | None] | None = None
        self._header = b""  # the tile header (SOI to the end of SOS) the decision was made on
        self._prefix = b""  # what replaces the tile's SOI (empty: the tile is the frame)

    def pieces(self, tile: EncodedTile) -> tuple[Buffer, ...]:
        encoding, data = tile.encoding, tile.data
        if encoding.compression != "jpeg":
            return (data,)
        key = (encoding.rgb, encoding.jpeg_tables)
        if key != self._key or not self._header or not data.startswith(self._header):
            self._decide(data, key)
        return (self._prefix, memoryview(data)[2:]) if self._prefix else (data,)

    def _decide(self, data: bytes, key: tuple[bool, bytes | None]) -> None:
        rgb, jpeg_tables = key
        tables = adobe = scan = False
        end = 0
        for marker, start, stop in codecs.iter_jpeg_segments(data):  # ValueError without SOI
            tables = tables or marker == 0xDB
            adobe = adobe or (marker == 0xEE and data[start + 4 : start + 9] == b"Adobe")
            scan, end = marker == 0xDA, stop
        prefix = b""
        if jpeg_tables and not tables:
            if not (jpeg_tables.startswith(codecs.SOI) and jpeg_tables.endswith(codecs.EOI)):
                raise ValueError("JPEG tables or tile lack SOI/EOI markers")
            prefix = jpeg_tables[2:-2]
        if rgb and not adobe:
            prefix = codecs.ADOBE_RGB_SEGMENT + prefix
        self._prefix = codecs.SOI + prefix if prefix else b""
        # only a header that ends with the scan decides for others (no segment can follow it)
        self._key, self._header = key, (data[:end] if scan else b"")


def frame_bytes(tile: EncodedTile) -> bytes:
    """A tile as one DICOM frame (see :class:`JpegFrames`)."""
    return b"".join(JpegFrames().pieces(tile))


def _pixels(tile: EncodedTile) -> Pixels:
    """Transfer syntax and photometric interpretation of a level, from its first tile."""
    encoding = tile.encoding
    if encoding.compression == "jpeg":
        if encoding.rgb:
            photometric = "RGB"
        else:
            subsampling = codecs.jpeg_info(frame_bytes(tile)).subsampling
            photometric = "YBR_FULL" if tuple(subsampling) == (1, 1) else "YBR_FULL_422"
        return Pixels(JPEG_BASELINE, photometric, "ISO_10918_1")
    if encoding.compression == "jpeg2000":
        return Pixels(JPEG2000, _j2k_photometric(tile.data, rgb=encoding.rgb), "ISO_15444_1")
    if encoding.compression == "none":
        return Pixels(EXPLICIT_LITTLE, "RGB", None)
    raise UnsupportedFormatError(f"DICOM has no transfer syntax for {encoding.compression} tiles")


def _j2k_photometric(data: bytes, *, rgb: bool) -> str:
    """RGB, YBR_RCT or YBR_ICT from the codestream's COD segment (component transform, wavelet)."""
    at = data.find(b"\xff\x52", 0, 4096)
    if at < 0 or len(data) < at + 14:
        raise FormatError("JPEG 2000 tile without a COD segment in its main header")
    if not data[at + 8]:  # no multiple-component transform: the samples are as stored
        return "RGB" if rgb else "YBR_FULL"
    return "YBR_RCT" if data[at + 13] == 1 else "YBR_ICT"


def _write_associated(path: Path, image: AssociatedImage, kind: str, series: SeriesInfo, *, number: int) -> None:
    size = (image.width, image.height)
    frame: bytes | None = None
    if image.encoded is not None:
        data, encoding = image.encoded()
        if encoding.compression == "jpeg":
            try:
                info = codecs.jpeg_info(data)
            except ValueError:
                info = None
            if info is not None and info.components == 3 and (info.width, info.height) == size:
                tile = EncodedTile(0, 0, data, encoding, copied=True)
                frame, pixels = frame_bytes(tile), _pixels(tile)
    if frame is None:
        frame = codecs.as_rgb(image.read()).tobytes()
        pixels = Pixels(EXPLICIT_LITTLE, "RGB", None)
    ds = instance_dataset(
        series, kind=kind, number=number, size=size, tile=size, frames=1, pixels=pixels, resampled=False, original=True
    )
    encapsulated = pixels.transfer_syntax != EXPLICIT_LITTLE
    raw = size[0] * size[1] * 3
    write_instance(path, ds, [(frame,)], frame_count=1, encapsulated=encapsulated, raw_frame_bytes=raw)
