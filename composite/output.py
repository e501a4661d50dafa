"""What every writer shares: its options, the report it returns, and atomic output paths.

These types live below ``composite.convert`` so that format modules (which must not import
``convert``) can use them; ``composite.convert`` re-exports them, so users import from there.

A writer (:class:`composite.plan.Writer`) is registered by name in ``composite.convert.WRITERS``.
It writes to a temporary name beside ``dst`` (:func:`atomic_output`, from :mod:`composite.replace`)
and renames at the end, so an interrupted run leaves nothing at ``dst``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .destination import check_destination as check_destination
from .replace import atomic_output as atomic_output

Method = Literal["copy", "reencode", "downsample"]
COMPRESSIONS = ("jpeg", "jpeg2000", "lzw", "none")
# The one quality policy of every JPEG writer (SVS, TIFF, CWS, ACI pieces, redaction, exports),
# explained in docs/convert.md ("Quality"): 90 at level 0, 95 below, 90 for the thumbnail, label,
# macro and other images outside the pyramid. ``--quality`` sets every pyramid level.
DEFAULT_JPEG_QUALITY = 90
DEFAULT_GLASS_TOLERANCE = 8  # levels at 1/4 scale (composite.glass, docs/cws.md "Skipping glass")
DEFAULT_LOWER_LEVEL_QUALITY = 95
ASSOCIATED_QUALITY = 90


def default_quality(quality: int | None, level: int) -> int:
    """``quality`` when the user gave one, else the default for pyramid level ``level``."""
    if quality is not None:
        return quality
    return DEFAULT_JPEG_QUALITY if level == 0 else DEFAULT_LOWER_LEVEL_QUALITY


BigTiff = Literal["auto", "yes", "no"]
PieceFormat = Literal["svs", "tiff"]


@dataclass(frozen=True, kw_only=True)
class TiffOptions:
    """SVS and generic TIFF: ``bigtiff`` auto switches when the estimated output passes
    ``bigtiff_threshold`` bytes (and restarts as BigTIFF when the estimate was low); ``ome`` writes
    OME-TIFF (generic TIFF only)."""

    bigtiff: BigTiff = "auto"
    bigtiff_threshold: int = 2 * 2**30  # half of classic TIFF's 4 GiB, as a margin
    ome: bool = False

    def __post_init__(self) -> None:
        if self.bigtiff not in ("auto", "yes", "no"):
            raise ValueError(f"bigtiff must be auto, yes or no, got {self.bigtiff!r}")


@dataclass(frozen=True, kw_only=True)
class AciOptions:
    """ACI: pieces of at most ``piece_size`` px a side, each written as ``piece_format``."""

    piece_size: int = 16384
    piece_format: PieceFormat = "svs"

    def __post_init__(self) -> None:
        if self.piece_size < 16:
            raise ValueError(f"piece size must be at least 16 px, got {self.piece_size}")
        if self.piece_format not in ("svs", "tiff"):
            raise ValueError(f"piece format must be svs or tiff, got {self.piece_format!r}")


OffsetTable = Literal["auto", "basic", "extended"]


@dataclass(frozen=True, kw_only=True)
class DicomOptions:
    """DICOM WSI (docs/dicom.md): ``metadata``, a JSON file or mapping of DICOM keywords (patient,
    study, specimen); ``study_uid``/``series_uid`` (None: fresh ones); ``drop_label``/``drop_macro``;
    ``offset_table`` auto (the Basic Offset Table unless a level may pass its 4 GiB), basic or
    extended."""

    metadata: str | Path | Mapping[str, Any] | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    drop_label: bool = False
    drop_macro: bool = False
    offset_table: OffsetTable = "auto"

    def __post_init__(self) -> None:
        if self.offset_table not in ("auto", "basic", "extended"):
            raise ValueError(f"offset table must be auto, basic or extended, got {self.offset_table!r}")


_EXTRA_KEYS = {
    "ycbcr": ("", "ycbcr"),
    "pyramid_factor": ("", "pyramid_factor"),
    "min_level_size": ("", "min_level_size"),
    "bigtiff": ("tiff", "bigtiff"),
    "bigtiff_threshold": ("tiff", "bigtiff_threshold"),
    "ome": ("tiff", "ome"),
    "piece_size": ("aci", "piece_size"),
    "piece_format": ("aci", "piece_format"),
    **{
        key: ("dicom", key)
        for key in ("metadata", "study_uid", "series_uid", "drop_label", "drop_macro", "offset_table")
    },
}


@dataclass(frozen=True, kw_only=True)
class WriteOptions:
    """How to write a slide; every field has a default that does the right thing.

    ``tile_size`` None keeps the source level-0 tile size where it can be kept (so tiles can be
    byte-copied), else the writer's default. ``compression`` None keeps the source codec when
    copyable, else JPEG. ``quality`` None is the policy's default per level (90 at level 0, 95
    below: :func:`default_quality`). ``ycbcr`` re-encodes JPEG as YCbCr 4:2:0 instead of Aperio's
    RGB. ``pyramid_factor`` and ``min_level_size`` shape SVS/TIFF pyramids (None: 4x steps until a
    level fits in 1024 px; CWS always steps 4x down to below 2048 px). ``tiff``, ``aci`` and ``dicom`` hold
    the options of those formats. ``skip_glass`` leaves out tiles that are all background within
    ``glass_tolerance`` (:mod:`composite.glass`; CWS, and SVS/TIFF as empty tiles). Validated once, here.

    ``extra`` is the former spelling of the format options (``{"ome": True, "piece_size": 8192}``),
    still accepted: its keys are moved into the typed fields above and it is then emptied.
    """

    tile_size: tuple[int, int] | None = None
    compression: str | None = None
    quality: int | None = None
    workers: int | None = None
    overwrite: bool = False
    ycbcr: bool = False
    pyramid_factor: int | None = None
    min_level_size: int | None = None
    tiff: TiffOptions = field(default_factory=TiffOptions)
    aci: AciOptions = field(default_factory=AciOptions)
    dicom: DicomOptions = field(default_factory=DicomOptions)
    parents: bool = False  # create missing folders of the destination (else they are an error)
    skip_glass: bool = False
    glass_tolerance: int = DEFAULT_GLASS_TOLERANCE
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.extra:
            self._take_extra()
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {self.compression!r} (expected one of {', '.join(COMPRESSIONS)})")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be 1..100, got {self.quality}")
        if self.tile_size is not None and (self.tile_size[0] < 1 or self.tile_size[1] < 1):
            raise ValueError(f"tile size must be positive, got {self.tile_size[0]}x{self.tile_size[1]}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.pyramid_factor is not None and self.pyramid_factor < 2:
            raise ValueError(f"pyramid factor must be at least 2, got {self.pyramid_factor}")
        if self.min_level_size is not None and self.min_level_size < 1:
            raise ValueError(f"min level size must be positive, got {self.min_level_size}")
        if not 0 <= self.glass_tolerance <= 64:
            raise ValueError(f"glass tolerance must be 0..64, got {self.glass_tolerance}")

    def _take_extra(self) -> None:
        unknown = sorted(set(self.extra) - set(_EXTRA_KEYS))
        if unknown:
            raise ValueError(f"unknown write option(s) {', '.join(unknown)} (expected {', '.join(_EXTRA_KEYS)})")
        groups: dict[str, dict[str, Any]] = {"": {}, "tiff": {}, "aci": {}, "dicom": {}}
        for key, value in self.extra.items():
            group, name = _EXTRA_KEYS[key]
            if name == "bigtiff" and isinstance(value, bool):
                value = "yes" if value else "no"
            groups[group][name] = value
        if groups["tiff"]:
            groups[""]["tiff"] = replace(self.tiff, **groups["tiff"])
        if groups["aci"]:
            groups[""]["aci"] = replace(self.aci, **groups["aci"])
        if groups["dicom"]:
            groups[""]["dicom"] = replace(self.dicom, **groups["dicom"])
        for name, value in {**groups[""], "extra": {}}.items():
            object.__setattr__(self, name, value)


@dataclass
class LevelReport:
    """One written level and how its tiles were made.

    ``method``: ``"copy"`` (stored bytes copied), ``"reencode"`` (decoded and encoded again) or
    ``"downsample"`` (computed from the level above). ``copied_tiles`` counts tiles that went the
    copy path in a ``"copy"`` level (a damaged or short edge tile is re-encoded and not counted).
    """

    index: int
    width: int
    height: int
    downsample: float
    method: Method
    tile_width: int = 0
    tile_height: int = 0
    compression: str = ""
    copied_tiles: int = 0
    glass_tiles: int = 0  # tiles left out as glass (``skip_glass``)


@dataclass
class ConversionReport:
    """What a writer produced: the destination, its format, its levels and associated images."""

    destination: Path
    format: str
    levels: list[LevelReport]
    associated: list[str]

    def summary(self) -> list[str]:
        """One line per level, the way the CLI prints it."""
        lines = []
        for level in self.levels:
            tiles = f"  tiles {level.tile_width}x{level.tile_height}" if level.tile_width else ""
            codec = f"  {level.compression}" if level.compression else ""
            glass = f"  {level.glass_tiles} glass tiles left out" if level.glass_tiles else ""
            lines.append(
                f"level {level.index}: {level.width} x {level.height}  downsample {level.downsample:g}"
                f"{tiles}{codec}  {level.method}{glass}"
            )
        return lines
