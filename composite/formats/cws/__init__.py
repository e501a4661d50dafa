"""CWS (Composite WebSlide): a directory of JPEG blocks placed by INI files (docs/formats.md §1).

Reading: ``FinalScan.ini`` (any case) and the further level files — ours (``ScanLevel<k>.ini``,
named by ``[Level<k>] tIniFile``), Aperio's ``ScanSlide.ini``, the Olympus/Bacus set
``FinalCond``/``SlideScan``/``SlideCond`` — each one level, aligned by stage coordinates; blocks
placed by their x/y, never their number; overlapping blocks composed (right/lower on top);
``[Level0]`` crops to the true size; focal planes ``DaN_u1``..``DaN_d4`` as ``focal_planes``;
``SlideThumb``/``Label``/``Macro``/``Ss1`` JPEGs as associated images (``thumbnail``, ``label``,
``macro``, ``ss1``). Writing: :func:`write`, the layout in docs/cws.md.

Not supported: block images other than JPEG (``tImageType`` other than ``.jpg``), grayscale or
CMYK blocks as copyable tiles (they are decoded instead), rotated scans, the ``lXOffset``/``lYOffset``
keys (ignored by every reader), and focal planes of levels other than level 0.
"""

from __future__ import annotations

from .read import NAME, MissingBlocksWarning, open_slide, sniff

__all__ = ["NAME", "MissingBlocksWarning", "open_slide", "sniff"]
