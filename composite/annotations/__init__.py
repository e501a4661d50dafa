"""Annotations: regions marked on a slide in Aperio ImageScope XML or QuPath GeoJSON.

:func:`read_annotations` reads either (told apart by content, not by name) into
:class:`~.model.Annotations`; :func:`write_annotations` writes either (by the destination's
suffix: ``.xml`` ImageScope, ``.geojson``/``.json`` GeoJSON), atomically. Uses of the regions:
:mod:`.export` (one image per region), :mod:`.redact` (black polygons), :mod:`.carry` (into an ACI's
coordinates). Formats, coordinates and limits: docs/annotations.md.

This package imports shapely and defusedxml; the CLI imports it only in the commands that are
given annotations, so other commands and ``import composite`` do not load them.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FormatError, LimitError, SlideNotFoundError
from ..output import atomic_output
from .geojson import read_geojson, write_geojson
from .imagescope import read_imagescope, write_imagescope
from .model import MAX_FILE_BYTES, Annotations, Region

__all__ = ["Annotations", "Region", "read_annotations", "write_annotations"]

SUFFIXES = {".xml": "imagescope", ".geojson": "geojson", ".json": "geojson"}


def read_annotations(path: str | Path) -> Annotations:
    """ImageScope XML or QuPath GeoJSON, whichever ``path`` holds."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise FormatError(f"{path}: not a file")
        if size > MAX_FILE_BYTES:
            raise LimitError(f"{path}: {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for an annotation file")
        with open(path, "rb") as handle:
            head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
            handle.seek(0)
            if head.startswith(b"<"):
                return read_imagescope(path, handle)
            if head[:1] in (b"{", b"["):
                return read_geojson(handle.read(), str(path))
    except FileNotFoundError:
        raise SlideNotFoundError(f"{path}: no such annotation file") from None
    except OSError as err:
        raise FormatError(f"{path}: cannot read ({err.strerror or err})") from err
    raise FormatError(f"{path}: neither ImageScope XML nor GeoJSON (expected '<' or '{{' at the start)")


def write_annotations(
    annotations: Annotations,
    path: str | Path,
    *,
    to: str | None = None,
    overwrite: bool = False,
    mpp: float | None = None,
) -> None:
    """Write ``annotations`` as ``to`` (``imagescope`` or ``geojson``; default from the suffix)."""
    path = Path(path)
    to = to or SUFFIXES.get(path.suffix.lower())
    if to not in ("imagescope", "geojson"):
        raise FormatError(f"{path}: cannot tell the annotation format from the name (use .xml or .geojson)")
    data = write_imagescope(annotations, mpp=mpp) if to == "imagescope" else write_geojson(annotations)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
