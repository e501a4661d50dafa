"""DICOM whole-slide series (VL Whole Slide Microscopy Image): one instance per level.

A series is the instances in one directory sharing SeriesInstanceUID. ImageType value 3 says what
an instance is: ``VOLUME`` instances are pyramid levels (sorted by size; several instances of the
same size are parts of one level), ``LABEL``, ``OVERVIEW`` and ``THUMBNAIL`` become the associated
images ``label``, ``macro`` and ``thumbnail`` (OpenSlide's names). Each frame is one tile:
``TILED_FULL`` frames are row-major, ``TILED_SPARSE`` frames carry their 1-based position in the
per-frame functional groups and absent tiles are white. JPEG frames are complete streams and
are exposed with their encoding (RGB when PhotometricInterpretation is RGB, as OpenSlide decodes
them) so a conversion copies them byte for byte; JPEG 2000 and uncompressed RGB frames too.
mpp comes from PixelSpacing (mm, row then column), magnification from ObjectiveLensPower.

Not supported: more than one focal plane or optical path (the first of each is read; the others
are ignored), sparse tiles off the tile grid, and ICC colour management (pixels are as stored,
as OpenSlide returns them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ... import codecs
from ...codecs import RGBArray, TileEncoding
from ...errors import FormatError, LimitError, TileReadError
from ...geometry import TileGrid
from ...limits import check_decode
from ...model import AssociatedImage, Level, Slide
from .instance import Instance, int_value, ycbcr_to_rgb
from .properties import dicom_properties

ASSOCIATED_TYPES = {"LABEL": "label", "OVERVIEW": "macro", "THUMBNAIL": "thumbnail"}
_JPEG_PHOTOMETRIC = {"RGB": True, "YBR_FULL_422": False, "YBR_FULL": False}
_J2K_PHOTOMETRIC = {"RGB": True, "YBR_ICT": True, "YBR_RCT": True, "YBR_FULL": False}

MAX_EMPTY_CELLS_PER_FRAME = 64  # a TILED_SPARSE grid may be this sparse...
MAX_EMPTY_CELLS = 65_536  # ... plus this many tiles


def image_type(ds: Any) -> str:
    """ImageType value 3 (VOLUME, LABEL, OVERVIEW, THUMBNAIL), upper case; '' when absent."""
    values = ds.get("ImageType")
    if values is None:
        return ""
    values = [values] if isinstance(values, str) else list(values)
    return str(values[2]).strip().upper() if len(values) > 2 else ""


def _encoding(inst: Instance) -> TileEncoding | None:
    """How the frames may be copied into another container; None when they must be decoded."""
    if inst.samples != 3 or inst.bits_allocated != 8 or inst.bits_stored != 8:
        return None
    if inst.codec == "jpeg" and inst.photometric in _JPEG_PHOTOMETRIC:
        return TileEncoding("jpeg", rgb=_JPEG_PHOTOMETRIC[inst.photometric])
    if inst.codec == "jpeg2000" and inst.photometric in _J2K_PHOTOMETRIC:
        return TileEncoding("jpeg2000", rgb=_J2K_PHOTOMETRIC[inst.photometric])
    if inst.codec == "none" and inst.photometric == "RGB" and not inst.planar:
        return TileEncoding("none", rgb=True)
    return None


def decode_rgb(inst: Instance, index: int) -> RGBArray:
    """Frame ``index`` as 8-bit RGB, decoded the way OpenSlide decodes WSI frames."""
    if inst.codec == "jpeg" and inst.bits_allocated == 8 and inst.samples == 3:
        size = (inst.columns, inst.rows)  # a frame's JPEG must declare the frame size
        return codecs.decode_jpeg(inst.frame(index), rgb=_JPEG_PHOTOMETRIC.get(inst.photometric), size=size)
    samples = inst.samples_of(index)
    if inst.codec == "jpeg2000" and inst.samples == 3 and not _J2K_PHOTOMETRIC.get(inst.photometric, True):
        return ycbcr_to_rgb(samples)
    if inst.bits_stored > 8:
        samples = np.clip(samples, 0, None) >> (inst.bits_stored - 8)
    pixels = codecs.as_rgb(samples.astype(np.uint8))
    if inst.photometric == "MONOCHROME1":
        pixels = 255 - pixels
    return pixels


class _Part:
    """One instance of a level and which of its frames holds each tile."""

    def __init__(self, inst: Instance, cols: int, rows: int) -> None:
        self.inst = inst
        self.frames = np.full((rows, cols), -1, np.int64)
        ds = inst.ds
        organization = str(ds.get("DimensionOrganizationType", "")).upper()
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if organization == "TILED_FULL" or (organization != "TILED_SPARSE" and not per_frame):
            self._tiled_full(cols, rows, int_value(ds, "ConcatenationFrameOffsetNumber", 0))
        else:
            self._tiled_sparse(per_frame or [], cols, rows)

    def _tiled_full(self, cols: int, rows: int, offset: int) -> None:
        # frames run along a row, then down the rows, then over focal planes and optical paths;
        # frames past the first plane are ignored
        local = np.arange(self.inst.frame_count, dtype=np.int64)
        tile = local + offset
        keep = tile < cols * rows
        self.frames.reshape(-1)[tile[keep]] = local[keep]

    def _tiled_sparse(self, per_frame: Any, cols: int, rows: int) -> None:
        inst = self.inst
        if len(per_frame) != inst.frame_count:
            raise FormatError(f"{inst.path}: {len(per_frame)} per-frame groups for {inst.frame_count} frames")
        first_z: Any = None
        first_path: Any = None
        for index, group in enumerate(per_frame):
            position = _first(group, "PlanePositionSlideSequence")
            if position is None:
                raise FormatError(f"{inst.path}: frame {index + 1} has no PlanePositionSlideSequence")
            z = position.get("ZOffsetInSlideCoordinateSystem")
            optical = _first(group, "OpticalPathIdentificationSequence")
            path_id = optical.get("OpticalPathIdentifier") if optical is not None else None
            if index == 0:
                first_z, first_path = z, path_id
            elif z != first_z or path_id != first_path:
                continue
            x = int_value(position, "ColumnPositionInTotalImagePixelMatrix") - 1
            y = int_value(position, "RowPositionInTotalImagePixelMatrix") - 1
            if x % inst.columns or y % inst.rows:
                raise FormatError(f"{inst.path}: frame {index + 1} at ({x + 1}, {y + 1}) is off the tile grid")
            col, row = x // inst.columns, y // inst.rows
            if 0 <= col < cols and 0 <= row < rows and self.frames[row, col] < 0:
                self.frames[row, col] = index


def _first(ds: Any, keyword: str) -> Any:
    sequence = ds.get(keyword)
    return sequence[0] if sequence else None


class DicomTileReader:
    """Tiles of one level, from one or more instances (TILED_SPARSE parts, concatenations)."""

    def __init__(self, parts: list[_Part]) -> None:
        self._parts = parts
        self._encoding = _encoding(parts[0].inst)

    @property
    def encoding(self) -> TileEncoding | None:
        return self._encoding

    def _find(self, col: int, row: int) -> tuple[Instance, int] | None:
        for part in self._parts:
            index = int(part.frames[row, col])
            if index >= 0:
                return part.inst, index
        return None

    def read_encoded(self, col: int, row: int) -> bytes | None:
        found = self._find(col, row)
        if found is None or self._encoding is None:
            return None
        return found[0].frame(found[1])

    def read_tile(self, col: int, row: int) -> RGBArray | None:
        found = self._find(col, row)
        if found is None:
            return None
        try:
            return decode_rgb(*found)
        except TileReadError as err:
            raise TileReadError(f"{found[0].path}: tile ({col}, {row}): {err}") from err


def _level(instances: list[Instance]) -> tuple[TileGrid, DicomTileReader]:
    first = instances[0]
    width = int_value(first.ds, "TotalPixelMatrixColumns", first.columns)
    height = int_value(first.ds, "TotalPixelMatrixRows", first.rows)
    grid = TileGrid(width, height, first.columns, first.rows)
    frames = sum(inst.frame_count for inst in instances)
    # The frame index is an array over the tile grid: its size must follow from the frames the
    # files hold, not from a declared matrix size alone (limits.md: sparse grids, like CWS).
    if grid.tile_count > MAX_EMPTY_CELLS_PER_FRAME * frames + MAX_EMPTY_CELLS:
        raise LimitError(
            f"{first.path}: total pixel matrix {width}x{height} is {grid.tile_count} tiles of "
            f"{first.columns}x{first.rows} for {frames} frames (limit {MAX_EMPTY_CELLS_PER_FRAME} per frame "
            f"+ {MAX_EMPTY_CELLS})"
        )
    for inst in instances[1:]:
        if (inst.columns, inst.rows) != (first.columns, first.rows):
            raise FormatError(f"{inst.path}: tile size differs from {first.path} in the same level")
    return grid, DicomTileReader([_Part(inst, grid.cols, grid.rows) for inst in instances])


def _associated(name: str, inst: Instance) -> AssociatedImage:
    grid, reader = _level([inst])
    level = Level(grid, 1.0, reader)

    def load() -> RGBArray:
        check_decode(grid.width, grid.height, f"{inst.path}: {name} image")
        return level.read_region(0, 0, grid.width, grid.height)

    encoded: Callable[[], tuple[bytes, TileEncoding]] | None = None
    encoding = reader.encoding
    single = inst.frame_count == 1 and (inst.columns, inst.rows) == (grid.width, grid.height)
    if encoding is not None and encoding.compression == "jpeg" and single:

        def encoded_bytes() -> tuple[bytes, TileEncoding]:
            return inst.frame(0), encoding

        encoded = encoded_bytes
    return AssociatedImage(name, grid.width, grid.height, load, encoded)


def _spacing_mpp(ds: Any, width: int) -> tuple[float, float] | None:
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    measures = _first(shared, "PixelMeasuresSequence") if shared is not None else None
    spacing = measures.get("PixelSpacing") if measures is not None else None
    try:
        if spacing is not None and len(spacing) == 2 and float(spacing[0]) > 0 and float(spacing[1]) > 0:
            return float(spacing[1]) * 1000.0, float(spacing[0]) * 1000.0
        volume = float(ds.get("ImagedVolumeWidth", 0) or 0)
    except (TypeError, ValueError):
        return None
    return (volume * 1000.0 / width,) * 2 if volume > 0 else None


def _magnification(ds: Any) -> float | None:
    optical = _first(ds, "OpticalPathSequence")
    try:
        power = float(optical.get("ObjectiveLensPower")) if optical is not None else 0.0
    except (TypeError, ValueError):
        return None
    return power if power > 0 else None


def build_slide(path: Path, instances: list[Instance]) -> Slide:
    """A Slide from the instances of one series (the caller has checked they share it)."""
    by_size: dict[tuple[int, int], list[Instance]] = {}
    associated: dict[str, AssociatedImage] = {}
    for inst in instances:
        kind = image_type(inst.ds)
        if kind in ASSOCIATED_TYPES:
            name = ASSOCIATED_TYPES[kind]
            if name not in associated:
                associated[name] = _associated(name, inst)
        elif kind == "VOLUME":
            size = (int_value(inst.ds, "TotalPixelMatrixColumns"), int_value(inst.ds, "TotalPixelMatrixRows"))
            by_size.setdefault(size, []).append(inst)
    if not by_size:
        raise FormatError(f"{path}: DICOM series has no VOLUME (pyramid level) instance")
    levels: list[Level] = []
    base_w, base_h = max(by_size)
    for size in sorted(by_size, reverse=True):
        grid, reader = _level(by_size[size])
        levels.append(Level(grid, (base_w / grid.width + base_h / grid.height) / 2, reader))
    base = by_size[(base_w, base_h)][0]
    mpp = _spacing_mpp(base.ds, base_w)
    magnification = _magnification(base.ds)
    properties = dicom_properties(base.ds)
    properties["openslide.vendor"] = "dicom"
    return Slide(
        format="dicom",
        path=path,
        levels=levels,
        properties=properties,
        mpp=mpp,
        magnification=magnification,
        associated=associated,
        closers=[inst.close for inst in instances],
    )
