"""DICOM attributes as flat ``dicom.*`` properties, named the way OpenSlide names them.

``dicom.<Keyword>`` for a single value, ``dicom.<Keyword>[i]`` for each of several values and
``dicom.<Sequence>[i].<Keyword>`` inside sequences. Binary values (pixel data, ICC profiles,
offset tables) and the per-frame functional groups (one item per tile) are left out; the number
of properties and the length of each value are bounded because headers are untrusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
_SKIPPED = {"PerFrameFunctionalGroupsSequence", "PixelData"}
_MAX_PROPERTIES = 10_000
_MAX_VALUE = 4096
_MAX_DEPTH = 8


def dicom_properties(ds: Any) -> dict[str, str]:
    """File meta and dataset attributes of ``ds`` as ``dicom.*`` strings."""
    properties: dict[str, str] = {}
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _add(meta, "dicom", properties, 0)
    _add(ds, "dicom", properties, 0)
    return properties


def _add(ds: Any, prefix: str, out: dict[str, str], depth: int) -> None:
    for element in ds:
        if len(out) >= _MAX_PROPERTIES:
            return
        keyword = element.keyword
        if not keyword or keyword in _SKIPPED or element.VR in _BINARY_VRS:
            continue
        name = f"{prefix}.{keyword}"
        if element.VR == "SQ":
            if depth < _MAX_DEPTH:
                for index, item in enumerate(element.value):
                    _add(item, f"{name}[{index}]", out, depth + 1)
            continue
        value = element.value
        if value is None:
            continue
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            for index, item in enumerate(value):
                out[f"{name}[{index}]"] = _text(item)
        else:
            out[name] = _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    return str(value)[:_MAX_VALUE]
