"""Carry annotations through geometry changes: a slide cut into ACI pieces, images composed into one.

Coordinates are level-0 pixels of whatever they belong to (docs/annotations.md). Two changes
move them:

- :func:`split` — a slide written as an ACI of pieces (``convert slide.svs out.aci``): each
  piece's marks are the regions clipped to its rectangle and shifted by its position, written
  beside the piece with the piece's name (``out_pieces/r0_c1.xml`` for ``r0_c1.svs``), the way
  ImageScope finds a slide's annotations. The manifest's canvas has the source's coordinates, so
  the whole file is also copied beside the manifest (``out.xml``).
- :func:`gather` — images composed into a mosaic (``compose grid.aci a.jpg b.jpg ...``): each
  image's own marks (``a.xml`` or ``a.geojson`` beside ``a.jpg``) clipped to the image and shifted
  by its place, all in one file in the manifest's coordinates, which are those of the slide
  ``convert grid.aci slide.svs`` writes.

Any other conversion keeps level-0 coordinates: :func:`sidecar` names where a converted slide's
copy goes (``slide.xml`` beside ``slide.svs``; ``annotations.geojson`` inside a CWS directory,
where the viewer looks).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping

from ..geometry import Box
from .imagescope import _lists
from .model import Annotations, Region
from .shapes import area_geometry

SIDECAR_SUFFIXES = (".xml", ".geojson", ".json")


def _clipped(region: Region, box: Box) -> Region | None:
    """``region`` inside ``box`` (level-0 pixels), shifted so the box's corner is (0, 0)."""
    frame = shapely.box(box.x, box.y, box.right, box.bottom)
    geom = area_geometry(region) if region.has_area else shapely.geometry.shape(region.geometry)
    if geom is None or not geom.intersects(frame):
        return None
    if region.has_area:
        part = geom.intersection(frame)
        polygons = [g for g in getattr(part, "geoms", [part]) if g.geom_type in ("Polygon", "MultiPolygon")]
        part = shapely.unary_union(polygons) if polygons else None
    elif region.geometry["type"] in ("Point", "MultiPoint"):
        # a point on the right or bottom edge belongs to the next piece, as pixels do
        inside = [p for p in getattr(geom, "geoms", [geom]) if box.x <= p.x < box.right and box.y <= p.y < box.bottom]
        part = shapely.MultiPoint(inside) if len(inside) > 1 else inside[0] if inside else None
    else:
        part = geom.intersection(frame)
        lines = [g for g in getattr(part, "geoms", [part]) if g.geom_type in ("LineString", "MultiLineString")]
        part = shapely.unary_union(lines) if lines else None
    if part is None or part.is_empty:
        return None
    moved = shapely.transform(part, lambda xy: xy - np.array([box.x, box.y]))
    geometry: dict[str, Any] = _lists(mapping(moved))
    # a rectangle or ellipse cut by the box is no longer one (ImageScope would redraw it whole)
    kind = "polygon" if region.kind in ("rectangle", "ellipse") and not geom.within(frame) else region.kind
    return Region(geometry, region.name, region.classification, kind, region.color)


def _moved(region: Region, dx: float, dy: float) -> Region:
    moved = shapely.transform(shapely.geometry.shape(region.geometry), lambda xy: xy + np.array([dx, dy]))
    return Region(_lists(mapping(moved)), region.name, region.classification, region.kind, region.color)


def within(annotations: Annotations, box: Box) -> Annotations:
    """The regions inside ``box`` in the box's own coordinates."""
    regions = [r for r in (_clipped(region, box) for region in annotations.regions) if r is not None]
    return Annotations(regions, annotations.mpp, annotations.source)


def split(annotations: Annotations, pieces: Sequence[tuple[Path, Box]]) -> dict[Path, Annotations]:
    """For each piece (its file, its level-0 rectangle) that has regions: the annotations to write
    beside it, named like the piece, in its coordinates."""
    out = {}
    for path, box in pieces:
        inside = within(annotations, box)
        if inside.regions:
            out[path] = inside
    return out


def gather(placed: Sequence[tuple[Annotations, Box]]) -> Annotations:
    """One set of annotations from several images' own (each clipped to its image, then shifted
    by the image's place ``box``)."""
    regions: list[Region] = []
    mpp = None
    for marks, box in placed:
        mpp = mpp or marks.mpp
        local = within(marks, Box(0, 0, box.width, box.height))
        regions.extend(_moved(region, box.x, box.y) for region in local.regions)
    return Annotations(regions, mpp, "composed")


def sidecar_of(image: Path) -> Path | None:
    """An image's own annotation file: ``<stem>.xml``, ``.geojson`` or ``.json`` beside it."""
    for suffix in SIDECAR_SUFFIXES:
        candidate = image.with_suffix(suffix)
        if candidate.is_file() and candidate != image:
            return candidate
    return None


def sidecar(destination: Path, suffix: str) -> Path:
    """Where a converted slide's annotations go: ``annotations<suffix>`` inside a directory (CWS),
    else the destination's name with ``suffix``."""
    if destination.is_dir():
        return destination / f"annotations{suffix}"
    return destination.with_suffix(suffix)


def _suffix(path: Path) -> str:
    return ".xml" if path.suffix.lower() == ".xml" else ".geojson"


def aci_pieces(manifest_path: Path) -> list[tuple[Path, Box]]:
    """Each image of an ACI's first layer with its rectangle: the images tile the canvas on a grid
    (what ``convert ... .aci`` writes), so a piece reaches the next one's position or the edge."""
    from ..formats.aci.manifest import read_manifest
    from ..registry import open_slide

    manifest = read_manifest(manifest_path)
    with open_slide(manifest_path) as slide:
        width, height = slide.dimensions
    components = manifest.layers[0].components if manifest.layers else ()
    xs = [*sorted({c.x for c in components}), width]
    ys = [*sorted({c.y for c in components}), height]
    right = {x: xs[i + 1] for i, x in enumerate(xs[:-1])}
    bottom = {y: ys[i + 1] for i, y in enumerate(ys[:-1])}
    return [(manifest_path.parent / c.path, Box(c.x, c.y, right[c.x] - c.x, bottom[c.y] - c.y)) for c in components]


def carry_convert(annotations: Annotations, destination: Path, *, aci: bool, overwrite: bool) -> list[Path]:
    """After ``convert``: the source's annotations (level-0 of the source, read before converting
    so a bad file stops the conversion) beside the output, in its coordinates; an ACI output also
    gets one file per piece. The files written."""
    from . import write_annotations

    suffix = _suffix(Path(annotations.source))
    written = []
    if aci:
        for piece, inside in split(annotations, aci_pieces(destination)).items():
            write_annotations(inside, piece.with_suffix(suffix), overwrite=overwrite)
            written.append(piece.with_suffix(suffix))
    target = sidecar(destination, suffix)
    write_annotations(annotations, target, overwrite=overwrite)
    return [target, *written]


def carry_compose(manifest_path: Path, target: Path, *, overwrite: bool) -> tuple[int, int]:
    """After ``compose``: every image's own annotations (``<stem>.xml``/``.geojson`` beside it) in
    the manifest's coordinates, written to ``target``; (images with annotations, regions)."""
    from ..errors import FormatError
    from ..formats.aci.manifest import read_manifest
    from ..registry import open_slide
    from . import read_annotations, write_annotations

    placed = []
    for component in read_manifest(manifest_path).layers[0].components:
        image = manifest_path.parent / component.path
        found = sidecar_of(image)
        if found is None:
            continue
        with open_slide(image) as slide:
            width, height = slide.dimensions
        placed.append((read_annotations(found), Box(component.x, component.y, width, height)))
    if not placed:
        raise FormatError(
            f"{manifest_path}: none of its images has annotations (<image stem>.xml or .geojson beside it)"
        )
    gathered = gather(placed)
    write_annotations(gathered, target, overwrite=overwrite)
    return len(placed), len(gathered.regions)
