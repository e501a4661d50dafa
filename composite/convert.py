"""Convert any slide composite reads into SVS, pyramidal TIFF, CWS or ACI, streaming.

``convert(src, dst)`` opens the source, picks the writer from ``to`` or the destination's name
(:func:`output_format`) and lets it write. Every writer is built on the same pipeline:
:func:`composite.pyramid.pyramid_levels` plans the levels (the source's own where they fit, lazy
box-downsampled ones elsewhere) and :func:`composite.tiling.encoded_tiles` turns each level into
encoded tiles, byte-copying where source and target tiles coincide. Writers are registered in
:data:`WRITERS` as lazy ``"module:function"`` strings so that importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .errors import UnsupportedFormatError
from .model import Slide
from .output import (
    COMPRESSIONS,
    ConversionReport,
    LevelReport,
    WriteOptions,
    Writer,
    atomic_output,
    check_destination,
)
from .progress import ProgressCallback, no_progress
from .registry import open_slide

__all__ = [
    "COMPRESSIONS",
    "WRITERS",
    "ConversionReport",
    "LevelReport",
    "WriteOptions",
    "Writer",
    "atomic_output",
    "convert",
    "output_format",
    "writer_for",
]

WRITERS: dict[str, str] = {
    "svs": "composite.formats.tiffwrite:write_svs",
    "tiff": "composite.formats.tiffwrite:write_tiff",
    "cws": "composite.formats.cws.write:write",
    "aci": "composite.formats.aci.split:write",
}
_EXTENSIONS = {".svs": "svs", ".tif": "tiff", ".tiff": "tiff", ".aci": "aci"}


def output_format(dst: Path, to: str | None) -> str:
    """The output format: ``to`` when given, else from the extension of ``dst``.

    ``.svs`` -> svs, ``.tif``/``.tiff`` -> tiff, ``.aci`` -> aci; an existing directory or a name
    without an extension -> cws (a CWS slide is a directory).
    """
    if to is not None:
        name = to.lower()
        if name not in WRITERS:
            raise UnsupportedFormatError(f"{dst}: unknown output format {to!r} (expected one of {', '.join(WRITERS)})")
        return name
    suffix = dst.suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if dst.is_dir() or not suffix:
        return "cws"
    raise UnsupportedFormatError(
        f"{dst}: cannot tell the output format from the extension {dst.suffix!r} "
        f"(use .svs, .tif, .tiff, .aci, a directory for CWS, or --to {'|'.join(WRITERS)})"
    )


def writer_for(name: str) -> Writer:
    """Import and return the writer registered as ``name``."""
    try:
        target = WRITERS[name]
    except KeyError:
        raise UnsupportedFormatError(f"unknown output format {name!r} (expected one of {', '.join(WRITERS)})") from None
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise UnsupportedFormatError(f"the {name} writer is not available ({err})") from err
    writer: Writer = getattr(module, function)
    return writer


def convert(
    src: str | Path | Slide,
    dst: str | Path,
    *,
    to: str | None = None,
    options: WriteOptions | None = None,
    progress: ProgressCallback | None = None,
) -> ConversionReport:
    """Write ``src`` (a path or an open :class:`Slide`) to ``dst`` in the format ``to`` or its name says.

    Raises :class:`~composite.errors.OutputExistsError` when ``dst`` exists and
    ``options.overwrite`` is False, before reading anything. A path source is opened and closed
    here; an open :class:`Slide` stays open.
    """
    dst = Path(dst)
    options = options or WriteOptions()
    name = output_format(dst, to)
    check_destination(dst, overwrite=options.overwrite)
    write = writer_for(name)
    if isinstance(src, Slide):
        return write(src, dst, options=options, progress=progress or no_progress)
    with open_slide(src) as slide:
        return write(slide, dst, options=options, progress=progress or no_progress)
