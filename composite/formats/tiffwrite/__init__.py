"""Writers of single-file TIFF slides: Aperio SVS (:data:`SVS`) and pyramidal/OME-TIFF (:data:`TIFF`).

Both lay out a :class:`composite.plan.ConversionPlan`: tifffile writes each planned level's
encoded tiles as they arrive (byte-copied where source and target tiles coincide), to a temporary
name renamed when complete. Their options are ``WriteOptions.tiff`` (:class:`~composite.output.TiffOptions`:
``bigtiff``, ``bigtiff_threshold``, ``ome``), besides the planning fields ``ycbcr``,
``pyramid_factor`` and ``min_level_size``.
"""

from .generic import WRITER as TIFF
from .svs import WRITER as SVS

__all__ = ["SVS", "TIFF"]
