"""Aperio SVS writer: the layout OpenSlide, tifffile, Bio-Formats and ImageScope read (docs/formats.md §3.1).

One IFD chain, no SubIFDs: level 0 (tiled, NewSubfileType 0, the Aperio description with AppMag,
MPP and the source's other Aperio fields), the thumbnail (stripped, JPEG, smaller than the
smallest level), the lower levels (tiled, same tile size and codec, NewSubfileType 0 - the
reduced-resolution bit would make tifffile lose them), the label (stripped LZW, NewSubfileType
1) and the macro (stripped JPEG, NewSubfileType 9), each only when the source has one.
``metadata=None`` on every write, or tifffile adds a second ImageDescription that hides the
Aperio one from OpenSlide. JPEG 2000 is written as Aperio code 33005 (RGB J2K codestreams),
never 34712, which OpenSlide rejects.

Not supported: focal planes (only the nominal plane is written), YCbCr J2K (33003), LZW with a
predictor.
"""

from __future__ import annotations

import re
from pathlib import Path

import tifffile

from ... import __version__
from ...aperio import parse_fields
from ...model import Slide
from ...output import ASSOCIATED_QUALITY, ConversionReport, LevelReport
from ...plan import ConversionPlan, PlanRules
from ...progress import ProgressCallback
from .common import Layout, LevelChunks, build_lower_levels, thumbnail, write_level, write_with_bigtiff_retry
from .tileorder import place_tiles

APERIO_HEADER = "Aperio Image Library v12.0.15"  # readers key on "Aperio Image"; the version is nominal
SOFTWARE = f"composite {__version__}"
_OWN_FIELDS = {"AppMag", "MPP"}


def aperio_fields(slide: Slide) -> str:
    """``|AppMag = ..|MPP = ..|key = value...``: standard fields first, then the source's others.

    An Aperio source's fields are copied as written (``MPP = 0.4990`` stays that string, so
    readers show the same values); other sources contribute their ``aperio.*`` properties.
    """
    raw = _source_fields(slide)
    fields = []
    if slide.magnification is not None:
        fields.append(f"AppMag = {_same(raw.get('AppMag'), slide.magnification) or f'{slide.magnification:g}'}")
    if slide.mpp is not None:
        fields.append(f"MPP = {_same(raw.get('MPP'), slide.mpp[0]) or repr(slide.mpp[0])}")
    if not raw:
        raw = {k.removeprefix("aperio."): v for k, v in slide.properties.items() if k.startswith("aperio.")}
    for name, value in raw.items():
        if name not in _OWN_FIELDS and name and "=" not in name:
            fields.append(f"{_clean(name)} = {_clean(value)}")
    return "".join(f"|{field}" for field in fields)


def _source_fields(slide: Slide) -> dict[str, str]:
    """The ``key = value`` items of an Aperio source description, as strings exactly as written."""
    if not (slide.description or "").startswith("Aperio"):
        return {}
    return parse_fields(slide.description)


def _same(text: str | None, value: float) -> str | None:
    """``text`` when it is a number equal to ``value`` (keep the source's spelling), else None."""
    try:
        return text if text is not None and float(text) == value else None
    except ValueError:
        return None


def _clean(text: str) -> str:
    """A value that cannot break the description's ``|`` and line structure."""
    text = re.sub(r"[|\r\n]+", " ", str(text))
    return re.sub(r"[^\x20-\x7e]", "?", text).strip()  # TIFF text is 7-bit ASCII (a damaged source's is not)


class SvsWriter:
    """Aperio SVS: 240 px tiles unless the source's can be kept, JPEG/J2K/LZW/raw."""

    name = "svs"
    rules = PlanRules(container="TIFF", default_tile=(240, 240), tile_multiple=16)

    def write(self, plan: ConversionPlan, dst: Path, *, progress: ProgressCallback) -> ConversionReport:
        """Write ``plan`` as an Aperio SVS at ``dst`` (temporary name, renamed when complete)."""
        return write_with_bigtiff_retry(plan, dst, lambda tmp, layout: _write(plan, tmp, layout, progress))


WRITER = SvsWriter()


def _write(plan: ConversionPlan, path: Path, layout: Layout, progress: ProgressCallback) -> ConversionReport:
    slide = plan.slide
    width, height = slide.dimensions
    tile_w, tile_h = plan.tile
    head = f"{APERIO_HEADER}\r\n{width}x{height} [0,0 {width}x{height}] ({tile_w}x{tile_h})"
    fields = aperio_fields(slide)

    def quality(chunks: LevelChunks) -> str:
        return f" Q={chunks.quality}" if chunks.quality else ""

    reports: list[LevelReport] = []
    associated: list[str] = []
    with tifffile.TiffWriter(path, bigtiff=layout.bigtiff) as tiff:
        for level in plan.levels:

            def describe(
                chunks: LevelChunks, index: int = level.index, size: str = f"{level.grid.width}x{level.grid.height}"
            ) -> str:
                if index == 0:
                    return f"{head} {chunks.codec}{quality(chunks)}{fields}"
                return f"{head} -> {size} {chunks.codec}{quality(chunks)}"

            reports.append(
                write_level(tiff, level, layout, progress=progress, describe=describe, subfiletype=0, software=SOFTWARE)
            )
            if level.index == 0:
                build_lower_levels(plan, progress)
                thumb = thumbnail(plan)
                tiff.write(
                    thumb,
                    description=f"{APERIO_HEADER}\r\n{width}x{height} -> {thumb.shape[1]}x{thumb.shape[0]} - {fields}",
                    metadata=None,
                    photometric="rgb",
                    compression="jpeg",
                    compressionargs={"level": ASSOCIATED_QUALITY},
                    rowsperstrip=16,
                    subfiletype=0,
                    software=SOFTWARE,
                )
                associated.append("thumbnail")
        for name, subfiletype, compression in (("label", 1, "lzw"), ("macro", 9, "jpeg")):
            image = plan.associated.get(name)
            if image is None:
                continue
            pixels = image.read()
            tiff.write(
                pixels,
                description=f"{APERIO_HEADER}\n{name} {pixels.shape[1]}x{pixels.shape[0]}",
                metadata=None,
                photometric="rgb",
                compression=compression,
                compressionargs={"level": ASSOCIATED_QUALITY} if compression == "jpeg" else None,
                subfiletype=subfiletype,
                software=SOFTWARE,
            )
            associated.append(name)
    place_tiles(path, layout.arrivals)  # re-encoded levels were written in column stripes
    return ConversionReport(destination=path, format="svs", levels=reports, associated=associated)
