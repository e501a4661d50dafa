"""Aperio's ImageDescription text: ``Aperio Image Library ...|AppMag = 20|MPP = 0.499|...``.

The first ``|``-separated part is the header (library, sizes, ``JPEG/RGB Q=70``); every further
part is a ``key = value`` field (docs/convert.md, "Aperio description"). Standard library only: the
server's slide list reads it too.
"""

from __future__ import annotations

import re

_QUALITY = re.compile(r"\bQ=(\d{1,3})\b")


def parse_fields(description: str | None) -> dict[str, str]:
    """The ``key = value`` fields after the first ``|``, as written (stripped); a repeated key keeps its last value."""
    fields: dict[str, str] = {}
    for part in (description or "").split("|")[1:]:
        key, sep, value = part.partition("=")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


def stated_quality(description: str | None) -> int | None:
    """The JPEG quality an Aperio description states (``Q=70``), None when it states none."""
    match = _QUALITY.search(description or "")
    if match is None:
        return None
    quality = int(match.group(1))
    return quality if 1 <= quality <= 100 else None
