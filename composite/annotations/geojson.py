"""QuPath GeoJSON annotations: read (untrusted) and write.

QuPath exports a ``FeatureCollection`` (0.3 and later), a bare list of features (0.2) or a single
``Feature``. Each feature's ``geometry`` is in level-0 pixels (QuPath's image space) and its
``properties`` carry ``objectType`` (``annotation``, ``detection``, ...), ``name``,
``classification`` (``{"name": "Tumor", "color": [r, g, b]}``; 0.2 wrote ``colorRGB``, a packed
int; derived classes list ``names``) and optionally ``color``. Geometries read: ``Polygon`` and
``MultiPolygon`` (holes kept), ``Point``, ``MultiPoint``, ``LineString``, ``MultiLineString``.

What we write is QuPath's 0.4 layout; a region drawn as a rectangle or ellipse (ImageScope) also
gets ``"metadata": {"shape": "ellipse"}``, which QuPath keeps as object metadata, so converting back
to ImageScope restores its Type. GeoJSON has no field for microns per pixel.

Refused: nesting or values that are not GeoJSON, non-finite coordinates, more than
:data:`~.model.MAX_VERTICES` vertices or :data:`~.model.MAX_REGIONS` features.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import FormatError, LimitError
from .model import MAX_REGIONS, Annotations, Color, Geometry, Region, VertexBudget, close_ring, coordinate

DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
DEFAULT_KIND = {"Point": "point", "MultiPoint": "point", "LineString": "line", "MultiLineString": "line"}


def _features(data: Any, source: str) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        kind = data.get("type")
        if kind == "FeatureCollection" and isinstance(data.get("features"), list):
            return list(data["features"])
        if kind == "Feature":
            return [data]
        if kind in DEPTH:
            return [{"type": "Feature", "geometry": data, "properties": {}}]
    raise FormatError(f"{source}: not GeoJSON annotations (expected a FeatureCollection, a Feature or a list of them)")


def _position(node: Any, source: str, what: str) -> list[float]:
    if not isinstance(node, list) or len(node) < 2:
        raise FormatError(f"{source}: {what}: a position must be [x, y], got {str(node)[:40]}")
    return [coordinate(node[0], source, what), coordinate(node[1], source, what)]


def _coordinates(node: Any, depth: int, source: str, what: str, budget: VertexBudget) -> Any:
    if depth == 0:
        budget.take(1)
        return _position(node, source, what)
    if not isinstance(node, list):
        raise FormatError(f"{source}: {what}: coordinates nested wrongly for its geometry type")
    return [_coordinates(child, depth - 1, source, what, budget) for child in node]


def _geometry(geometry: Any, source: str, what: str, budget: VertexBudget) -> Geometry:
    if not isinstance(geometry, dict) or geometry.get("type") not in DEPTH:
        kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        raise FormatError(f"{source}: {what}: geometry {kind!s} is not supported ({', '.join(DEPTH)})")
    kind = geometry["type"]
    coords = _coordinates(geometry.get("coordinates"), DEPTH[kind], source, what, budget)
    polygons = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else []
    for rings in polygons:
        if not rings:
            raise FormatError(f"{source}: {what}: a polygon without rings")
        for index, ring in enumerate(rings):
            rings[index] = close_ring(ring)
            if len(rings[index]) < 4:
                raise FormatError(f"{source}: {what}: a polygon ring needs at least 3 distinct vertices")
    if kind in ("MultiPoint", "LineString", "MultiLineString", "MultiPolygon") and not coords:
        raise FormatError(f"{source}: {what}: empty {kind}")
    return {"type": kind, "coordinates": coords}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _color(value: Any) -> Color | None:
    if isinstance(value, list) and len(value) >= 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in value[:3]):
        return value[0], value[1], value[2]
    if isinstance(value, int) and not isinstance(value, bool):
        packed = value & 0xFFFFFF  # QuPath 0.2: a packed (A)RGB int, often negative
        return (packed >> 16) & 255, (packed >> 8) & 255, packed & 255
    return None


def _classification(value: Any) -> tuple[str, Color | None]:
    if isinstance(value, str):
        return value, None
    if not isinstance(value, dict):
        return "", None
    name = value.get("name")
    if not isinstance(name, str):
        names = value.get("names")
        name = ": ".join(n for n in names if isinstance(n, str)) if isinstance(names, list) else ""
    return name, _color(value.get("color", value.get("colorRGB")))


def read_geojson(data: bytes, source: str) -> Annotations:
    """Read QuPath GeoJSON (see the module docstring)."""
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise FormatError(f"{source}: not valid JSON ({str(err).splitlines()[0][:120]})") from None
    features = _features(parsed, source)
    if len(features) > MAX_REGIONS:
        raise LimitError(f"{source}: more than {MAX_REGIONS:,} features (limit for an annotation file)")
    budget = VertexBudget(source)
    result = Annotations(source=source)
    for index, feature in enumerate(features, 1):
        what = f"feature {index}"
        if not isinstance(feature, dict):
            raise FormatError(f"{source}: {what} is not a GeoJSON Feature")
        if feature.get("geometry") is None:
            continue  # GeoJSON allows features without geometry; nothing to draw
        geometry = _geometry(feature["geometry"], source, what, budget)
        properties: dict[str, Any] = _dict(feature.get("properties"))
        name = properties.get("name")
        classification, color = _classification(properties.get("classification"))
        color = color or _color(properties.get("color"))
        shape = _dict(properties.get("metadata")).get("shape")
        kind = DEFAULT_KIND.get(geometry["type"], "polygon")
        if kind == "polygon" and shape in ("rectangle", "ellipse"):
            kind = shape
        result.regions.append(Region(geometry, name if isinstance(name, str) else "", classification, kind, color))
    return result


def write_geojson(annotations: Annotations) -> bytes:
    """A QuPath-style FeatureCollection of ``annotations``."""
    features = []
    for region in annotations.regions:
        properties: dict[str, Any] = {"objectType": "annotation"}
        if region.name:
            properties["name"] = region.name
        if region.classification:
            classification: dict[str, Any] = {"name": region.classification}
            if region.color:
                classification["color"] = list(region.color)
            properties["classification"] = classification
        elif region.color:
            properties["color"] = list(region.color)
        if region.kind in ("rectangle", "ellipse"):
            properties["metadata"] = {"shape": region.kind}
        features.append({"type": "Feature", "geometry": region.geometry, "properties": properties})
    text = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode()
