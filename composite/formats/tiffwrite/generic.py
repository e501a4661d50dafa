"""Generic pyramidal TIFF writer (QuPath, ASAP, libvips) and, with ``options.tiff.ome``, OME-TIFF.

Generic layout: level 0 as the first IFD (NewSubfileType 0), every lower level as a tiled
reduced-resolution IFD (NewSubfileType 1) in the same chain, X/YResolution in pixels per
centimetre from the slide's mpp, no ImageDescription (``metadata=None``). Associated images are
left out: readers of generic TIFF would take them for pages of the pyramid.

OME-TIFF layout (Bio-Formats, QuPath): level 0 with its lower levels as SubIFDs and OME-XML
(physical pixel size in µm; the objective's nominal magnification as an Instrument linked to the
slide's image through ObjectiveSettings); label and macro follow as separate OME images named
``label`` and ``macro`` (QuPath shows them as associated images).

RGB JPEG tiles carry the Adobe colour marker (readers of generic TIFF decode the tile bytes
themselves and would otherwise take Aperio's RGB for YCbCr).

JPEG 2000 (Aperio's code 33005) is written only in OME-TIFF (Bio-Formats reads it); a plain TIFF
with it is refused before anything is written, since OpenSlide's generic TIFF reader rejects the
code (as it rejects 34712: libtiff has no JPEG 2000 codec). SVS carries JPEG 2000 for OpenSlide.

Not supported: focal planes, channels other than RGB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tifffile

from ...errors import UnsupportedFormatError
from ...model import Slide
from ...output import ASSOCIATED_QUALITY, ConversionReport, LevelReport
from ...plan import ConversionPlan, PlanRules
from ...progress import ProgressCallback
from .common import Layout, write_level, write_with_bigtiff_retry
from .svs import SOFTWARE
from .tileorder import place_tiles


class TiffWriter:
    """Generic pyramidal TIFF (or OME-TIFF with ``options.tiff.ome``): 256 px tiles unless kept."""

    name = "tiff"
    rules = PlanRules(container="TIFF", default_tile=(256, 256), tile_multiple=16)

    def write(self, plan: ConversionPlan, dst: Path, *, progress: ProgressCallback) -> ConversionReport:
        """Write ``plan`` as a pyramidal TIFF at ``dst`` (temporary name, renamed when complete)."""
        ome = plan.options.tiff.ome
        if plan.compression == "jpeg2000" and not ome:
            raise UnsupportedFormatError(
                f"{dst}: OpenSlide reads no JPEG 2000 in a plain TIFF; write .svs (Aperio's JPEG 2000) or"
                " OME-TIFF (--ome), or --compression jpeg"
            )
        # RGB JPEG tiles with the Adobe marker: generic readers decode the tile bytes themselves
        return write_with_bigtiff_retry(
            plan, dst, lambda tmp, layout: _write(plan, tmp, layout, progress, ome=ome), adobe_rgb=True
        )


WRITER = TiffWriter()


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


def _write(
    plan: ConversionPlan, path: Path, layout: Layout, progress: ProgressCallback, *, ome: bool
) -> ConversionReport:
    slide = plan.slide
    reports: list[LevelReport] = []
    associated: list[str] = []
    with tifffile.TiffWriter(path, bigtiff=layout.bigtiff, ome=ome) as tiff:
        for level in plan.levels:
            tags: dict[str, Any] = {"software": SOFTWARE, **_resolution(slide, level.level.downsample)}
            if level.index == 0:
                tags["subfiletype"] = 0
                if ome:
                    tags["subifds"] = len(plan.levels) - 1
                    tags["metadata"] = _ome_metadata(slide)
            else:
                tags["subfiletype"] = 1
            reports.append(write_level(tiff, level, layout, progress=progress, **tags))
        if ome:
            for name in ("label", "macro"):
                image = plan.associated.get(name)
                if image is None:
                    continue
                tiff.write(
                    image.read(),
                    photometric="rgb",
                    compression="jpeg" if name == "macro" else "lzw",
                    compressionargs={"level": ASSOCIATED_QUALITY} if name == "macro" else None,
                    metadata={"axes": "YXS", "Name": name},
                    software=SOFTWARE,
                )
                associated.append(name)
    place_tiles(path, layout.arrivals)  # re-encoded levels were written in column stripes
    if ome and slide.magnification:
        _add_objective(path, slide.magnification)
    return ConversionReport(destination=path, format="tiff", levels=reports, associated=associated)


def _add_objective(path: Path, magnification: float) -> None:
    """Add the objective (tifffile writes no Instrument) to the OME-XML, linked to the first image."""
    instrument = (
        '<Instrument ID="Instrument:0">'
        f'<Objective ID="Objective:0:0" NominalMagnification="{float(magnification)!r}"/></Instrument>'
    )
    link = '<InstrumentRef ID="Instrument:0"/><ObjectiveSettings ID="Objective:0:0"/>'
    with tifffile.TiffFile(path, mode="r+") as tif:
        tag = tif.pages.first.tags["ImageDescription"]
        xml = str(tag.value)
        image, pixels = xml.find("<Image "), xml.find("<Pixels ")
        if not 0 < image < pixels:
            raise ValueError(f"{path}: unexpected OME-XML from tifffile (no Image/Pixels)")
        tag.overwrite((xml[:image] + instrument + xml[image:pixels] + link + xml[pixels:]).encode())
