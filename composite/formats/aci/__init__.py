"""ACI, the Aperio Compound Image: a text manifest placing other image files on one canvas.

Layout on disk: a text file (usually ``.aci``) of attribute, layer and image lines (grammar in
:mod:`.manifest`, behaviour in docs/aci.md) and the component files it names, relative to its
directory. Reading (:mod:`.reader`) gives one lazy slide; writing (:mod:`.split`) cuts a slide
into pyramidal pieces plus a manifest; :mod:`.compose` authors a manifest from separate images.

Not supported: trailing comments on a line; image paths containing ``=`` before their first
space (they read as attributes); associated images (label, macro) of the components.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import CompositeError
from .manifest import read_manifest
from .paths import manifest_base, resolve_component
from .reader import MAX_DEPTH, NAME, open_slide, open_source
from .sniff import looks_like_aci
from .table import first_lines

__all__ = ["MAX_DEPTH", "NAME", "open_slide", "open_source", "sniff", "source_files"]


def sniff(path: Path) -> bool:
    return looks_like_aci(path)


def source_files(path: Path) -> list[Path]:
    """The manifest and every component it names (nested manifests' too, cycles followed once):
    what a destination must not be. Paths resolve as with ``--allow-outside``, so a component
    the reader would refuse is still protected; a manifest that cannot be read names only itself
    (opening it reports why)."""
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    pending = [(Path(path), 0)]
    while pending:
        manifest, depth = pending.pop()
        files.append(manifest)
        try:
            st = os.stat(manifest)
            if (st.st_dev, st.st_ino) in seen or depth > MAX_DEPTH:
                continue
            seen.add((st.st_dev, st.st_ino))
            parsed = read_manifest(manifest)
        except (OSError, CompositeError):
            continue
        base = manifest_base(manifest)
        for raw, line in first_lines(layer.components for layer in parsed.layers).items():
            try:
                real = resolve_component(raw, manifest=manifest, line=line, base=base, allow_outside=True)
            except (CompositeError, OSError, RuntimeError):
                continue
            if real.is_file() and looks_like_aci(real):
                pending.append((real, depth + 1))
            else:
                files.append(real)
    return files
