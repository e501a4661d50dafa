"""De-identification for ``redact --scrub``: what of a slide's text and bytes may reach an output.

Text is kept only where it is known to be safe (an allowlist, not a list of what to remove): a
free-text description or tag could hold anything. So a scrubbed slide keeps

- of an Aperio ImageDescription, the fields in :data:`SAFE_FIELDS` whose value is a number, and
  the header line only when it is made of Aperio's words, sizes and codec names (else a plain
  ``Aperio Image Library``); any other description (free text, no Aperio ``|`` fields) is dropped;
- of the properties, OpenSlide's standard ones and ``<namespace>.<safe field>`` with a numeric
  value; ImageDescription-like properties scrubbed as above;
- of stored tile and associated-image bytes (copied into the output), only the segments decoding
  needs (:mod:`composite.segments`): JPEG COM/APPn (EXIF, XMP, ICC, vendor data) and anything
  after the end marker go, J2K comments go.

:func:`scrubbed_levels` and :func:`scrubbed_image` wrap a slide's levels and images; writers of
any format (SVS, TIFF, CWS, ACI, DICOM) then copy scrubbed bytes without knowing it. Pixels are
not scrubbed: text burnt into the image needs ``--drop-label``/``--box``. The list is in
docs/tools.md; extend it here.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..codecs import RGBArray, TileEncoding
from ..model import AssociatedImage, Level, TileReader
from ..segments import scrub_jpeg, scrub_tile

# Aperio description fields (and same-named properties) kept when their value is a number
SAFE_FIELDS = (
    "AppMag",
    "MPP",
    "StripeWidth",
    "Left",
    "Top",
    "LineCameraSkew",
    "LineAreaXOffset",
    "LineAreaYOffset",
    "Focus Offset",
    "OriginalWidth",
    "OriginalHeight",
    "Filtered",
    "Exposure Scale",
    "Gamma",
)
# properties kept as they are: computed by the readers from numbers, never copied text
SAFE_PROPERTIES = ("openslide.vendor", "openslide.mpp-x", "openslide.mpp-y", "openslide.objective-power")
PLAIN_HEAD = "Aperio Image Library"
_KEY = re.compile(r"[\s_]+")
_SAFE = {_KEY.sub("", name).lower() for name in SAFE_FIELDS}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# what an Aperio header line is made of: "Aperio Image Library v12.0.15\r\n46000x32914 [0,100
# 46000x32814] (256x256) JPEG/RGB Q=30", "-> 11500x8228", "label 300x300"
_HEAD_WORDS = re.compile(
    r"Aperio|Image|Library|JPEG|RGB|YCbCr|J2K|KAK|LZW|RAW|label|macro|Q=\d+|v\d+(?:\.\d+)*|\d+x\d+|->|[\d\s,\[\]();/-]"
)


def is_safe_field(field: str, value: str) -> bool:
    """Whether a field (``MPP``, ``aperio.AppMag``) may be kept with ``value``."""
    name = field.rsplit(".", 1)[-1]
    return _KEY.sub("", name).lower() in _SAFE and _NUMBER.fullmatch(value.strip()) is not None


def _safe_head(head: str) -> str:
    return head if head.startswith("Aperio") and not _HEAD_WORDS.sub("", head) else PLAIN_HEAD


def scrub_description(description: str | None) -> str | None:
    """An Aperio description with only its safe header and safe ``|key = value`` fields; None for
    any other description (free text is never known to be safe)."""
    if description is None or not description.startswith("Aperio"):
        return None
    head, *fields = description.split("|")
    kept = []
    for item in fields:
        key, sep, value = item.partition("=")
        if sep and is_safe_field(key.strip(), value):
            kept.append(f"{key.strip()} = {value.strip()}")
    return "|".join([_safe_head(head), *kept])


def scrub_properties(properties: dict[str, str]) -> dict[str, str]:
    """The properties known to be safe (see the module docstring); descriptions scrubbed."""
    kept = {}
    for key, value in properties.items():
        if key in SAFE_PROPERTIES or is_safe_field(key, value):
            kept[key] = value
        elif key.endswith("ImageDescription") or key.endswith("tDescription"):
            description = scrub_description(value)
            if description is not None:
                kept[key] = description
    return kept


def _scrubbed_encoding(encoding: TileEncoding) -> TileEncoding:
    if encoding.jpeg_tables is None:
        return encoding
    return replace(encoding, jpeg_tables=scrub_jpeg(encoding.jpeg_tables))


class ScrubbedTiles:
    """A level's stored tiles without text segments; a tile whose segments cannot be parsed is
    not copied (None: the pipeline decodes and re-encodes it, or reports it damaged)."""

    def __init__(self, reader: TileReader) -> None:
        self._reader = reader
        source = reader.encoding
        self._encoding = None if source is None else _scrubbed_encoding(source)

    @property
    def encoding(self) -> TileEncoding | None:
        return self._encoding

    def read_encoded(self, col: int, row: int) -> bytes | None:
        data = self._reader.read_encoded(col, row)
        if data is None or self._encoding is None:
            return None
        try:
            return scrub_tile(data, self._encoding.compression)
        except ValueError:
            return None

    def read_tile(self, col: int, row: int) -> RGBArray | None:
        return self._reader.read_tile(col, row)


def scrubbed_levels(levels: list[Level]) -> list[Level]:
    return [Level(level.grid, level.downsample, ScrubbedTiles(level.reader)) for level in levels]


def scrubbed_image(image: AssociatedImage) -> AssociatedImage:
    """``image`` whose stored bytes (when a writer copies them) carry no text segments."""
    source = image.encoded
    if source is None:
        return image

    def encoded() -> tuple[bytes, TileEncoding]:
        data, encoding = source()
        try:
            return scrub_tile(data, encoding.compression), _scrubbed_encoding(encoding)
        except ValueError:
            return b"", TileEncoding("other")  # not copyable: writers encode the pixels instead

    return replace(image, encoded=encoded)
