"""Generic pyramidal TIFF writer (QuPath, ASAP, libvips) and, with ``extra["ome"]``, OME-TIFF.

Generic layout: level 0 as the first IFD (NewSubfileType 0), every lower level as a tiled
reduced-resolution IFD (NewSubfileType 1) in the same chain, X/YResolution in pixels per
centimetre from the slide's mpp, no ImageDescription (``metadata=None``). Associated images are
left out: readers of generic TIFF would take them for pages of the pyramid.

OME-TIFF layout (Bio-Formats, QuPath): level 0 with its lower levels as SubIFDs and OME-XML
(physical pixel size in µm); label and macro follow as separate OME images named ``label`` and
``macro`` (QuPath shows them as associated images).

Not supported: focal planes, channels other than RGB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tifffile

from ...model import Slide
from ...output import ConversionReport, LevelReport, WriteOptions, atomic_output
from ...progress import ProgressCallback, no_progress
from ...pyramid import close_levels
from .common import Plan, make_plan, write_level
from .svs import SOFTWARE
from .tileorder import place_tiles


def write_tiff(
    slide: Slide, dst: Path, *, options: WriteOptions, progress: ProgressCallback = no_progress
) -> ConversionReport:
    """Write ``slide`` as a pyramidal TIFF (or OME-TIFF with ``options.extra["ome"]``) at ``dst``."""
    dst = Path(dst)
    plan = make_plan(slide, options, default_tile=256, spool_dir=dst.parent)
    ome = bool(options.extra.get("ome", False))
    try:
        with atomic_output(dst, overwrite=options.overwrite) as tmp:
            try:
                report = _write(slide, tmp, plan, progress, ome=ome)
            except ValueError as err:
                if "too large for non-BigTIFF" not in str(err) or options.extra.get("bigtiff", "auto") != "auto":
                    raise
                plan.bigtiff = True
                report = _write(slide, tmp, plan, progress, ome=ome)
        report.destination = dst
        return report
    finally:
        close_levels(plan.levels)


def _resolution(slide: Slide, downsample: float) -> dict[str, Any]:
    if slide.mpp is None:
        return {}
    return {
        "resolution": (1e4 / (slide.mpp[0] * downsample), 1e4 / (slide.mpp[1] * downsample)),
        "resolutionunit": "CENTIMETER",
    }


def _ome_metadata(slide: Slide) -> dict[str, Any]:
    metadata: dict[str, Any] = {"axes": "YXS", "Name": slide.title or slide.path.stem}
    if slide.mpp is not None:
        metadata.update(
            PhysicalSizeX=slide.mpp[0], PhysicalSizeXUnit="µm", PhysicalSizeY=slide.mpp[1], PhysicalSizeYUnit="µm"
        )
    return metadata


def _write(slide: Slide, path: Path, plan: Plan, progress: ProgressCallback, *, ome: bool) -> ConversionReport:
    reports: list[LevelReport] = []
    associated: list[str] = []
    with tifffile.TiffWriter(path, bigtiff=plan.bigtiff, ome=ome) as tw:
        for index, level in enumerate(plan.levels):
            tags: dict[str, Any] = {"software": SOFTWARE, **_resolution(slide, level.downsample)}
            if index == 0:
                tags["subfiletype"] = 0
                if ome:
                    tags["subifds"] = len(plan.levels) - 1
                    tags["metadata"] = _ome_metadata(slide)
            else:
                tags["subfiletype"] = 1
            reports.append(write_level(tw, plan, index, progress=progress, **tags))
        if ome:
            for name in ("label", "macro"):
                image = slide.associated.get(name)
                if image is None:
                    continue
                tw.write(
                    image.read(),
                    photometric="rgb",
                    compression="jpeg" if name == "macro" else "lzw",
                    compressionargs={"level": 90} if name == "macro" else None,
                    metadata={"axes": "YXS", "Name": name},
                    software=SOFTWARE,
                )
                associated.append(name)
    place_tiles(path, plan.arrivals)  # re-encoded levels were written in column stripes
    return ConversionReport(destination=path, format="tiff", levels=reports, associated=associated)
