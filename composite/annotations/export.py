"""Export annotated regions: one image per region plus a JSON sidecar, ``regions.json``.

Each region with an area is read over its bounding box (level-0 pixels: the coordinates' minimum
floored, maximum ceiled, clipped to the image) at a level or a downsample, exactly as
``export --region`` reads a box (:func:`composite.tools.export.region_picture`), and written as
``<name>_<n>.<ext>`` (the region's name, else its class; ``n`` counts the exported regions from
1). With ``mask`` the pixels whose centres lie outside the polygon are white, or transparent
(PNG, and TIFF without JPEG compression). The sidecar records, per image, the level-0 box, the
level-0 position of the image's pixel (0, 0), the level-0 pixels per image pixel, and the
geometry in image pixels: ``u = (x0 - origin_x) / scale``.

Points and lines have no area: they are listed in the sidecar as skipped, like regions outside
the image.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..codecs import RGBArray
from ..errors import FormatError, LimitError
from ..geometry import Box
from ..model import Level, Slide
from ..progress import ProgressCallback, no_progress
from ..tools.export import Exported, ExportOptions, region_picture
from ..tools.export import _write as write_exported
from ..tools.imagefiles import EXTENSIONS, Picture, write_bytes
from .model import Annotations, Region
from .shapes import area_geometry, fill, rings, scaled

Mask = Literal["white", "transparent"]
SIDECAR = "regions.json"
MPP_TOLERANCE = 0.05


@dataclass(frozen=True)
class Frame:
    """Where an exported image sits: its pixel (0, 0) at level-0 ``origin``, ``scale`` level-0
    pixels per image pixel."""

    origin: tuple[float, float]
    scale: float


def frame(levels: Sequence[Level], box: Box, *, level: int | None, downsample: float | None) -> Frame:
    """The frame :func:`region_picture` reads ``box`` in (same level choice and flooring)."""
    if downsample is not None:
        best = max((i for i, lv in enumerate(levels) if lv.downsample <= downsample + 1e-9), default=0)
        if abs(downsample / levels[best].downsample - 1) >= 1e-9:
            return Frame((float(box.x), float(box.y)), downsample)
        level = best
    ds = levels[level or 0].downsample
    return Frame((math.floor(box.x / ds) * ds, math.floor(box.y / ds) * ds), ds)


def bounding_box(region: Region) -> Box:
    x0, y0, x1, y1 = region.bounds()
    left, top = math.floor(x0), math.floor(y0)
    return Box(left, top, max(1, math.ceil(x1) - left), max(1, math.ceil(y1) - top))


def safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:80]
    return name or "region"


def check_mpp(slide: Slide, annotations: Annotations) -> None:
    """Warn when the file's MicronsPerPixel is not the slide's (marks made on another scan)."""
    if annotations.mpp and slide.mpp and abs(annotations.mpp / slide.mpp[0] - 1) > MPP_TOLERANCE:
        warnings.warn(
            f"{annotations.source}: MicronsPerPixel {annotations.mpp:g} but the slide has {slide.mpp[0]:g} um/px;"
            " the coordinates are used as level-0 pixels of this slide",
            stacklevel=3,
        )


def _masked(picture: Picture, polygon_rings: list[Any], mask: Mask) -> Picture:
    def band(y: int, rows: int) -> RGBArray:
        pixels = picture.band(y, rows)
        inside = fill(polygon_rings, picture.width, rows, top=y)
        if mask == "white":
            out = pixels.copy()
            out[~inside] = 255
            return out
        return np.dstack([pixels, np.where(inside, 255, 0).astype(np.uint8)])

    return Picture(picture.width, picture.height, band, picture.mpp, 4 if mask == "transparent" else 3)


def _geometry_json(geom: Any) -> dict[str, Any]:
    def rounded(node: Any) -> Any:
        return [rounded(n) for n in node] if isinstance(node, list | tuple) else round(float(node), 4)

    mapping = geom.__geo_interface__
    return {"type": mapping["type"], "coordinates": rounded(mapping["coordinates"])}


def export_regions(
    slide: Slide,
    outdir: str | Path,
    annotations: Annotations,
    *,
    level: int | None = None,
    downsample: float | None = None,
    mask: Mask | None = None,
    options: ExportOptions | None = None,
    progress: ProgressCallback = no_progress,
) -> list[Exported]:
    """Write one image per region with an area, and ``regions.json``; see the module docstring."""
    options = options or ExportOptions()
    if level is not None and downsample is not None:
        raise ValueError("give level or downsample, not both")
    if level is not None and not 0 <= level < len(slide.levels):
        raise LimitError(f"{slide.path}: level {level} outside 0..{len(slide.levels) - 1}")
    if mask == "transparent" and (
        options.format == "jpeg" or (options.format == "tiff" and options.compression == "jpeg")
    ):
        raise FormatError(
            f"{annotations.source}: a transparent mask needs PNG or TIFF without JPEG compression"
            " (--format png, or --format tiff --compression lzw); --mask white works everywhere"
        )
    check_mpp(slide, annotations)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    image = Box(0, 0, *slide.dimensions)
    done: list[Exported] = []
    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    ext = EXTENSIONS[options.format]
    for region in annotations.regions:
        geom = area_geometry(region)
        box = bounding_box(region).intersection(image) if geom is not None else None
        if geom is None or box is None:
            why = "outside the image" if geom is not None else f"a {region.kind} has no area"
            skipped.append({"name": region.name, "classification": region.classification, "why": why})
            continue
        where = frame(slide.levels, box, level=level, downsample=downsample)
        local = scaled(geom, origin=where.origin, scale=(where.scale, where.scale))
        picture = region_picture(slide, slide.levels, box, level=level, downsample=downsample)
        if mask:
            picture = _masked(picture, rings(local), mask)
        dst = outdir / f"{safe_name(region.label)}_{len(done) + 1}{ext}"
        exported = write_exported(slide, picture, dst, f"region {region.label}", options, progress)
        done.append(exported)
        entries.append(
            {
                "file": dst.name,
                "name": region.name,
                "classification": region.classification,
                "kind": region.kind,
                "box_level0": [box.x, box.y, box.width, box.height],
                "origin_level0": list(where.origin),
                "scale": where.scale,
                "size": [picture.width, picture.height],
                "geometry": _geometry_json(local),
            }
        )
    sidecar = {
        "slide": str(slide.path),
        "annotations": annotations.source,
        "level": level,
        "downsample": downsample,
        "mask": mask,
        "regions": entries,
        "skipped": skipped,
    }
    write_bytes(outdir / SIDECAR, (json.dumps(sidecar, indent=1) + "\n").encode(), overwrite=options.overwrite)
    done.append(Exported(outdir / SIDECAR, f"{len(entries)} regions", 0, 0))
    return done
