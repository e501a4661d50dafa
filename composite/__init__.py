"""composite: author, convert and serve whole-slide images in Aperio's composite formats.

Public API::

    import composite
    with composite.open_slide("slide.svs") as slide:
        print(slide.level_dimensions, slide.mpp)
        pixels = slide.read_region((x0, y0), 0, (512, 512))  # (512, 512, 3) uint8 RGB
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    CompositeError,
    FormatError,
    LimitError,
    OutputExistsError,
    SlideNotFoundError,
    TileReadError,
    UnsafePathError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:
    from .geometry import Box, TileGrid
    from .model import AssociatedImage, Level, Slide
    from .registry import detect_format, open_slide

__version__ = "0.1.0"

# Imported on first use (PEP 562), so ``import composite`` (the CLI's start-up, ``--help``) does not
# load numpy and the codecs: name -> the module defining it.
_LAZY = {
    "Box": "geometry",
    "TileGrid": "geometry",
    "AssociatedImage": "model",
    "Level": "model",
    "Slide": "model",
    "detect_format": "registry",
    "open_slide": "registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AssociatedImage",
    "Box",
    "CompositeError",
    "FormatError",
    "Level",
    "LimitError",
    "OutputExistsError",
    "Slide",
    "SlideNotFoundError",
    "TileGrid",
    "TileReadError",
    "UnsafePathError",
    "UnsupportedFormatError",
    "detect_format",
    "open_slide",
]
