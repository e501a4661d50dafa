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
The reader (:mod:`.read`) is imported when a path is sniffed or opened as CWS, not when the
writer is: converting to CWS does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from ...model import Slide
    from .read import MissingBlocksWarning

NAME = "cws"  # read.NAME, said here so that naming the format does not load the reader


def sniff(path: Path) -> bool:
    from .read import sniff as sniff_cws

    return sniff_cws(path)


def open_slide(path: Path) -> Slide:
    from .read import open_slide as open_cws

    return open_cws(path)


def __getattr__(name: str) -> Any:
    if name == "MissingBlocksWarning":
        from .read import MissingBlocksWarning

        return MissingBlocksWarning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["NAME", "MissingBlocksWarning", "open_slide", "sniff"]
