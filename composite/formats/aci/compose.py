"""Author an ACI manifest from separate images: a grid, or offsets listed in a CSV file.

``compose_grid`` places images row-major on a ``cols`` x ``rows`` grid: column ``c`` starts
after the widest image of each column before it plus ``spacing`` (negative spacing overlaps
neighbours, as stitched camera tiles do), rows likewise with the tallest images. The manifest
says ``edgetrim=no``, so images of other sizes keep their own size (white around shorter ones).
``compose_offsets`` reads ``path,x,y`` rows (an optional header row; paths relative to the CSV
file) and writes the images at those level-0 offsets. Paths are written relative to the
manifest's directory; images outside it need ``allow_outside`` and are written as absolute
paths. The manifest is written atomically.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path

from ... import registry
from ...destination import prepare_outputs, refuse_source, remove_created
from ...errors import FormatError, UnsafePathError, where
from .manifest import MAX_COMPONENTS, Component, Layer, Manifest, decode, write_manifest

HEADER = "Aperio Compound Image written by composite (wsi-composite compose)"


def compose_grid(
    out: str | Path,
    images: Sequence[str | Path],
    *,
    cols: int,
    rows: int,
    spacing: int = 0,
    allow_outside: bool = False,
    overwrite: bool = False,
    parents: bool = False,
) -> Manifest:
    """Write a manifest placing ``images`` row-major on a ``cols`` x ``rows`` grid.

    ``out`` must not be one of the images (or a file they read); its folder must exist unless
    ``parents``; both are checked before any image is opened."""
    out = Path(out)
    if cols < 1 or rows < 1:
        raise ValueError(f"grid must be at least 1x1, got {cols}x{rows}")
    if len(images) != cols * rows:
        raise ValueError(f"a {cols}x{rows} grid needs {cols * rows} images, got {len(images)}")
    sources = [f for image in images for f in registry.source_files(image)]
    created = prepare_outputs([(out, False)], sources, overwrite=overwrite, parents=parents)
    try:
        return _grid(out, images, cols=cols, rows=rows, spacing=spacing, allow_outside=allow_outside)
    except BaseException:
        remove_created(created)
        raise


def _grid(
    out: Path, images: Sequence[str | Path], *, cols: int, rows: int, spacing: int, allow_outside: bool
) -> Manifest:
    sizes = [_size(Path(image)) for image in images]
    widths = [max(sizes[r * cols + c][0] for r in range(rows)) for c in range(cols)]
    heights = [max(sizes[r * cols + c][1] for c in range(cols)) for r in range(rows)]
    xs = [0, *accumulate(w + spacing for w in widths[:-1])]
    ys = [0, *accumulate(h + spacing for h in heights[:-1])]
    if any(size + spacing <= 0 for size in widths[:-1] + heights[:-1]):
        raise ValueError(f"spacing {spacing} overlaps whole images; use a smaller overlap")
    placed = [(Path(images[r * cols + c]), xs[c], ys[r], "") for r in range(rows) for c in range(cols)]
    return _write(out, placed, allow_outside=allow_outside)


def compose_offsets(
    out: str | Path, offsets: str | Path, *, allow_outside: bool = False, overwrite: bool = False, parents: bool = False
) -> Manifest:
    """Write a manifest from a CSV of ``path,x,y`` rows (x before y, as people write them).

    ``out`` must not be the CSV, an image or a file they read (checked before any image is opened)."""
    out, offsets = Path(out), Path(offsets)
    created = prepare_outputs([(out, False)], [offsets], overwrite=overwrite, parents=parents)
    try:
        return _offsets(out, offsets, allow_outside=allow_outside)
    except BaseException:
        remove_created(created)
        raise


def _offsets(out: Path, offsets: Path, *, allow_outside: bool) -> Manifest:
    try:
        text = decode(offsets.read_bytes())
    except OSError as err:
        raise FormatError(f"{offsets}: cannot read offsets file ({err.strerror or err})") from err
    placed: list[tuple[Path, int, int, str]] = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        number = reader.line_num
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) != 3:
            raise FormatError(f"{where(offsets, number)}: expected 'path,x,y', got {len(cells)} fields")
        path, x, y = cells
        if not (x.lstrip("-").isdigit() and y.lstrip("-").isdigit()):
            if not placed and number == 1:
                continue  # a header row
            raise FormatError(f"{where(offsets, number)}: x and y must be integers, got {x!r}, {y!r}")
        if int(x) < 0 or int(y) < 0:
            raise FormatError(f"{where(offsets, number)}: offsets must not be negative, got x {x}, y {y}")
        if len(placed) >= MAX_COMPONENTS:
            raise FormatError(f"{where(offsets, number)}: more than {MAX_COMPONENTS} images")
        placed.append((offsets.parent / path, int(x), int(y), where(offsets, number)))
    if not placed:
        raise FormatError(f"{offsets}: no 'path,x,y' rows")
    for image, _, _, origin in placed:
        if not image.exists():
            raise FormatError(f"{origin}: {image}: no such file or directory")
    refuse_source([out], [f for image, _, _, _ in placed for f in registry.source_files(image)])
    return _write(out, placed, allow_outside=allow_outside)


def _size(image: Path) -> tuple[int, int]:
    with registry.open_slide(image) as slide:
        return slide.dimensions


def _write(out: Path, placed: list[tuple[Path, int, int, str]], *, allow_outside: bool) -> Manifest:
    """``placed``: (image, x, y, where it was listed) for each image."""
    base = out.absolute().parent.resolve()
    components = []
    for image, x, y, origin in placed:
        real = image.absolute().resolve()
        if real.is_relative_to(base):
            text = Path(os.path.relpath(image.absolute(), out.absolute().parent)).as_posix()
        elif allow_outside:
            text = str(real)
        else:
            at = f" (listed at {origin})" if origin else ""
            raise UnsafePathError(
                f"{image}{at}: outside {base}, the manifest's directory; put the manifest higher up "
                "or pass --allow-outside to write an absolute path"
            )
        components.append(Component(text, y, x))
    manifest = Manifest((("edgetrim", "no"),), (Layer(0, 0.0, tuple(components)),))
    try:
        write_manifest(out, manifest, header=HEADER)
    except ValueError as err:
        raise FormatError(f"{out}: {err}") from err
    return manifest
