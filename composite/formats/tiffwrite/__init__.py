"""Writers of single-file TIFF slides: Aperio SVS (:func:`write_svs`) and pyramidal/OME-TIFF (:func:`write_tiff`).

Both stream: levels come from :func:`composite.pyramid.pyramid_levels`, tiles from
:func:`composite.tiling.encoded_tiles` (byte-copied where source and target tiles coincide), and
tifffile writes each encoded tile as it arrives, to a temporary name renamed when complete.
``options.extra`` keys: ``bigtiff`` (``"auto"``/``"yes"``/``"no"``), ``bigtiff_threshold``
(estimated bytes above which auto picks BigTIFF), ``ome`` (TIFF only), ``ycbcr`` (re-encode JPEG
as YCbCr 4:2:0 instead of Aperio RGB), ``min_level_size``, ``pyramid_factor``.
"""

from .generic import write_tiff
from .svs import write_svs

__all__ = ["write_svs", "write_tiff"]
