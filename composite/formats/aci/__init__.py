"""ACI, the Aperio Compound Image: a text manifest placing other image files on one canvas.

Layout on disk: a text file (usually ``.aci``) of attribute, layer and image lines (grammar in
:mod:`.manifest`, behaviour in docs/aci.md) and the component files it names, relative to its
directory. Reading (:mod:`.reader`) gives one lazy slide; writing (:mod:`.split`) cuts a slide
into pyramidal pieces plus a manifest; :mod:`.compose` authors a manifest from separate images.

Not supported: trailing comments on a line; image paths containing ``=`` before their first
space (they read as attributes); associated images (label, macro) of the components.
"""

from __future__ import annotations

from pathlib import Path

from .reader import MAX_DEPTH, NAME, open_slide, open_source
from .sniff import looks_like_aci

__all__ = ["MAX_DEPTH", "NAME", "open_slide", "open_source", "sniff"]


def sniff(path: Path) -> bool:
    return looks_like_aci(path)
