"""Writers of single-file TIFF slides: Aperio SVS (:data:`SVS`) and pyramidal/OME-TIFF (:data:`TIFF`).

Both lay out a :class:`composite.plan.ConversionPlan`: tifffile writes each planned level's
encoded tiles as they arrive (byte-copied where source and target tiles coincide), to a temporary
name renamed when complete. Their options are ``WriteOptions.tiff``
(:class:`~composite.output.TiffOptions`: ``bigtiff``, ``bigtiff_threshold``, ``ome``), besides
the planning fields ``ycbcr``, ``pyramid_factor`` and ``min_level_size``. Each writer's module
is imported when it is first asked for, so an SVS conversion does not load the generic writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .generic import TiffWriter
    from .svs import SvsWriter

    SVS: SvsWriter
    TIFF: TiffWriter

__all__ = ["SVS", "TIFF"]


def __getattr__(name: str) -> object:
    if name == "SVS":
        from .svs import WRITER as svs

        return svs
    if name == "TIFF":
        from .generic import WRITER as tiff

        return tiff
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
