"""composite: author, convert and serve whole-slide images in Aperio's composite formats.

Public API::

    import composite
    with composite.open_slide("slide.svs") as slide:
        print(slide.level_dimensions, slide.mpp)
        pixels = slide.read_region((x0, y0), 0, (512, 512))  # (512, 512, 3) uint8 RGB
"""

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
from .geometry import Box, TileGrid
from .model import AssociatedImage, Level, Slide
from .registry import detect_format, open_slide

__version__ = "0.1.0"

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
