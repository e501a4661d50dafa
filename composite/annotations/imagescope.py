"""Aperio ImageScope annotation XML: read (untrusted, streamed through defusedxml) and write.

Layout (as ImageScope writes it)::

    <Annotations MicronsPerPixel="0.252">
      <Annotation Id="1" Name="Tumour" LineColor="65280" Visible="1" ...>   one layer
        <Regions>
          <Region Id="1" Type="0" Text="T1" NegativeROA="0" ...>
            <Vertices><Vertex X="1200.5" Y="830" Z="0"/> ...</Vertices>
          </Region>
        </Regions>
      </Annotation>
    </Annotations>

Region ``Type``: 0 freehand or polygon (the vertices, not repeated at the end), 1 rectangle (its
four corners), 2 ellipse (two opposite corners of its bounding box), 3 arrow and 4 ruler (two
points; read as lines), 5 point. A region with ``NegativeROA="1"`` is cut out of the layer's
positive regions it overlaps (that is how ImageScope stores holes), so a polygon with holes is
written as one positive region plus one negative region per hole. ``LineColor`` is a Windows
COLORREF (0x00BBGGRR). Vertices are level-0 pixels.

Refused: any DTD (so no entity expansion and no external entities), more than
:data:`~.model.MAX_VERTICES` vertices or :data:`~.model.MAX_REGIONS` regions, files over
:data:`~.model.MAX_FILE_BYTES`. Not kept: ImageScope's per-region attribute tables and plots.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, Any

import defusedxml
import defusedxml.ElementTree as SafeET
import shapely
from shapely.geometry import mapping, shape

from ..errors import FormatError, LimitError
from .model import MAX_REGIONS, Annotations, Color, Geometry, Region, VertexBudget, close_ring, coordinate

TYPE_KIND = {"0": "polygon", "1": "rectangle", "2": "ellipse", "3": "line", "4": "line", "5": "point"}
KIND_TYPE = {"polygon": "0", "rectangle": "1", "ellipse": "2", "line": "4", "point": "5"}
DEFAULT_COLOR = 65280  # ImageScope's default green
ELLIPSE_ERROR_PX = 0.25  # largest distance between the true ellipse and its polygon


def colorref(value: str | None) -> Color | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return (number & 255, (number >> 8) & 255, (number >> 16) & 255) if 0 <= number <= 0xFFFFFF else None


def ellipse(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """The closed ring of an axis-aligned ellipse in the box (x0, y0)-(x1, y1); its vertex count is
    a multiple of 4 so the polygon's bounding box is the ellipse's."""
    cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
    radius = max(a, b, ELLIPSE_ERROR_PX * 2)
    count = math.ceil(math.pi / math.acos(1 - ELLIPSE_ERROR_PX / radius))
    count = min(max(16, -(-count // 4) * 4), 4096)
    ring = [
        [cx + a * math.cos(2 * math.pi * k / count), cy + b * math.sin(2 * math.pi * k / count)] for k in range(count)
    ]
    for k, (x, y) in (
        (0, (cx + a, cy)),
        (count // 4, (cx, cy + b)),
        (count // 2, (cx - a, cy)),
        (3 * count // 4, (cx, cy - b)),
    ):
        ring[k] = [x, y]  # exact extremes, not cos(pi/2) = 6e-17
    return close_ring(ring)


def _region_geometry(kind: str, vertices: list[list[float]]) -> tuple[str, Geometry] | None:
    if not vertices:
        return None
    if kind == "point" or len(vertices) == 1:
        if len(vertices) == 1:
            return "point", {"type": "Point", "coordinates": vertices[0]}
        return "point", {"type": "MultiPoint", "coordinates": vertices}
    if kind == "line" or (len(vertices) == 2 and kind not in ("rectangle", "ellipse")):
        return "line", {"type": "LineString", "coordinates": vertices}
    if kind in ("rectangle", "ellipse"):
        xs, ys = [v[0] for v in vertices], [v[1] for v in vertices]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        if kind == "ellipse":
            return kind, {"type": "Polygon", "coordinates": [ellipse(x0, y0, x1, y1)]}
        if len(vertices) != 4:
            vertices = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    if len(vertices) > 3 and vertices[0] == vertices[-1]:
        vertices = vertices[:-1]
    return kind, {"type": "Polygon", "coordinates": [close_ring(vertices)]}


def _cut_holes(regions: list[Region], negatives: list[Geometry]) -> list[Region]:
    """The layer's positive regions with its negative regions cut out of those they overlap."""
    if not negatives:
        return regions
    holes = [shape(g) for g in negatives]
    out = []
    for region in regions:
        if not region.has_area:
            out.append(region)
            continue
        geom = shape(region.geometry)
        inner = [hole for hole in holes if geom.contains(hole)]
        cut = [hole for hole in holes if hole not in inner and geom.intersects(hole)]
        if region.geometry["type"] == "Polygon" and inner and not cut:
            # holes wholly inside: appended as rings, so the vertices stay in the file's order
            rings = region.geometry["coordinates"] + [h.exterior.coords[:] for h in inner]
            geometry = _lists({"type": "Polygon", "coordinates": rings})
        elif cut or inner:
            for hole in [*inner, *cut]:
                geom = geom.difference(hole)
            if geom.is_empty:
                continue
            geometry = _lists(mapping(geom))
        else:
            geometry = region.geometry
        out.append(Region(geometry, region.name, region.classification, region.kind, region.color))
    return out


def _lists(geometry: Any) -> Geometry:
    """A shapely mapping (tuples) as plain JSON lists."""

    def convert(node: Any) -> Any:
        return [convert(n) for n in node] if isinstance(node, list | tuple) else float(node)

    return {"type": geometry["type"], "coordinates": convert(geometry["coordinates"])}


def read_imagescope(path: str | Path, handle: IO[bytes] | None = None) -> Annotations:
    """Read an ImageScope XML file (see the module docstring for what is refused)."""
    source = str(path)
    budget = VertexBudget(source)
    result = Annotations(source=source)
    layer, color = "", colorref(None)
    positives: list[Region] = []
    negatives: list[Geometry] = []
    vertices: list[list[float]] = []
    count = 0
    try:
        events = SafeET.iterparse(handle or source, events=("start", "end"), forbid_dtd=True)
        for event, elem in events:
            tag = elem.tag
            if event == "start":
                if tag == "Annotations":
                    mpp = elem.get("MicronsPerPixel")
                    try:
                        result.mpp = float(mpp) if mpp and float(mpp) > 0 and math.isfinite(float(mpp)) else None
                    except ValueError:
                        result.mpp = None
                elif tag == "Annotation":
                    layer, color = elem.get("Name") or "", colorref(elem.get("LineColor"))
                    positives, negatives = [], []
                elif tag == "Region":
                    vertices = []
                continue
            if tag == "Vertex":
                budget.take(1)
                what = f"vertex {len(vertices) + 1} of region {count + 1}"
                vertices.append([coordinate(elem.get("X"), source, what), coordinate(elem.get("Y"), source, what)])
                elem.clear()
            elif tag == "Region":
                count += 1
                if count > MAX_REGIONS:
                    raise LimitError(f"{source}: more than {MAX_REGIONS:,} regions (limit for an annotation file)")
                found = _region_geometry(TYPE_KIND.get(elem.get("Type") or "0", "polygon"), vertices)
                if found is not None:
                    kind, geometry = found
                    if elem.get("NegativeROA") == "1" and geometry["type"] == "Polygon":
                        negatives.append(geometry)
                    else:
                        positives.append(Region(geometry, elem.get("Text") or "", layer, kind, color))
                elem.clear()
            elif tag == "Annotation":
                result.regions.extend(_cut_holes(positives, negatives))
                elem.clear()
    except (defusedxml.DefusedXmlException, ET.ParseError) as err:
        raise FormatError(f"{source}: not an acceptable ImageScope XML file ({_why(err)})") from err
    return result


def _why(err: Exception) -> str:
    if isinstance(err, defusedxml.DTDForbidden):
        return "it declares a DTD; entities are refused in annotation files"
    if isinstance(err, defusedxml.EntitiesForbidden):
        return "it declares entities, which are refused"
    if isinstance(err, defusedxml.ExternalReferenceForbidden):
        return "it refers to an external resource, which is refused"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _parts(region: Region) -> list[tuple[str, list[list[float]], list[list[list[float]]]]]:
    """(ImageScope Type, vertices, holes) of each region ImageScope needs for ``region``."""
    geometry, kind = region.geometry, region.kind
    kind_type = KIND_TYPE.get(kind, "0")
    coords = geometry["coordinates"]
    match geometry["type"]:
        case "Point":
            return [("5", [coords], [])]
        case "MultiPoint":
            return [("5", [p], []) for p in coords]
        case "LineString":
            return [("4" if len(coords) == 2 else "0", coords, [])]
        case "MultiLineString":
            return [("4" if len(line) == 2 else "0", line, []) for line in coords]
        case "Polygon":
            polygons = [coords]
        case "MultiPolygon":
            polygons = coords
        case other:
            raise FormatError(f"{region.label}: {other} cannot be written to ImageScope XML")
    parts: list[tuple[str, list[list[float]], list[list[list[float]]]]] = []
    for rings in polygons:
        outer = rings[0][:-1] if len(rings[0]) > 1 and rings[0][0] == rings[0][-1] else rings[0]
        holes = [r[:-1] if r[0] == r[-1] else r for r in rings[1:]]
        if kind_type == "2" and not holes and len(polygons) == 1:
            xs, ys = [v[0] for v in outer], [v[1] for v in outer]
            parts.append(("2", [[min(xs), min(ys)], [max(xs), max(ys)]], []))
        elif kind_type == "1" and not holes and len(outer) == 4 and len(polygons) == 1:
            parts.append(("1", outer, []))
        else:
            parts.append(("0", outer, holes))
    return parts


def _measured(kind_type: str, ring: list[list[float]]) -> Any:
    """The shape ImageScope measures Length and Area on (None for points and lines)."""
    if kind_type == "2":
        (x0, y0), (x1, y1) = ring[0][:2], ring[1][:2]
        return shapely.Polygon(ellipse(x0, y0, x1, y1))
    return shapely.Polygon(ring) if kind_type in ("0", "1") and len(ring) >= 3 else None


def _number(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def write_imagescope(annotations: Annotations, *, mpp: float | None = None) -> bytes:
    """ImageScope XML for ``annotations`` (one Annotation layer per class, in order of appearance);
    returns the bytes (the caller writes them, atomically)."""
    mpp = mpp or annotations.mpp
    root = ET.Element("Annotations", {"MicronsPerPixel": f"{mpp:.6f}"} if mpp else {})
    layers: dict[str, ET.Element] = {}
    ids: dict[str, int] = {}
    for region in annotations.regions:
        regions = layers.get(region.classification)
        if regions is None:
            r, g, b = region.color or (0, 255, 0)
            attributes = {
                "Id": str(len(layers) + 1),
                "Name": region.classification,
                "ReadOnly": "0",
                "NameReadOnly": "0",
                "LineColorReadOnly": "0",
                "Incremental": "0",
                "Type": "4",
                "LineColor": str(r | g << 8 | b << 16) if region.color else str(DEFAULT_COLOR),
                "Visible": "1",
                "Selected": "0",
                "MarkupImagePath": "",
                "MacroName": "",
            }
            layer = ET.SubElement(root, "Annotation", attributes)
            ET.SubElement(
                ET.SubElement(layer, "Attributes"), "Attribute", {"Name": "Description", "Id": "0", "Value": ""}
            )
            regions = layers[region.classification] = ET.SubElement(layer, "Regions")
            ET.SubElement(layer, "Plots")
        for kind_type, outer, holes in _parts(region):
            for ring, negative in [(outer, "0"), *((h, "1") for h in holes)]:
                number = ids[region.classification] = ids.get(region.classification, 0) + 1
                geom = _measured(kind_type, ring)
                length = geom.length if geom is not None else 0.0
                area = geom.area if geom is not None else 0.0
                element = ET.SubElement(
                    regions,
                    "Region",
                    {
                        "Id": str(number),
                        "Type": kind_type,
                        "Zoom": "1",
                        "Selected": "0",
                        "ImageLocation": "",
                        "ImageFocus": "-1",
                        "Length": f"{length:.1f}",
                        "Area": f"{area:.1f}",
                        "LengthMicrons": f"{length * (mpp or 0):.1f}",
                        "AreaMicrons": f"{area * (mpp or 0) ** 2:.1f}",
                        "Text": region.name,
                        "NegativeROA": negative,
                        "InputRegionId": "0",
                        "Analyze": "1",
                        "DisplayId": str(number),
                    },
                )
                ET.SubElement(element, "Attributes")
                vertices = ET.SubElement(element, "Vertices")
                for x, y, *_ in ring:
                    ET.SubElement(vertices, "Vertex", {"X": _number(x), "Y": _number(y), "Z": "0"})
    ET.indent(root)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n").encode()
