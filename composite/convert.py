"""Convert any slide composite reads into SVS, pyramidal TIFF, CWS or ACI, streaming.

``convert(src, dst)`` opens the source, picks the writer from ``to`` or the destination's name
(:func:`output_format`), plans the conversion once (:func:`composite.plan.make_plan`: levels,
grids, tile size, per-level codec, quality and colour, copy or re-encode) under the writer's
rules, and lets the writer lay out its container from the plan. Writers (:class:`Writer`) are
registered in :data:`WRITERS` as lazy ``"module:attribute"`` strings so that importing this
module stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from . import destination
from .dropped import warned_progress
from .errors import UnsupportedFormatError
from .output import (
    COMPRESSIONS,
    AciOptions,
    ConversionReport,
    DicomOptions,
    LevelReport,
    TiffOptions,
    WriteOptions,
    atomic_output,
)
from .progress import ProgressCallback, no_progress
from .registry import open_slide, source_files

if TYPE_CHECKING:
    from .model import Slide
    from .plan import Writer

__all__ = [
    "COMPRESSIONS",
    "WRITERS",
    "AciOptions",
    "ConversionReport",
    "DicomOptions",
    "LevelReport",
    "TiffOptions",
    "WriteOptions",
    "Writer",
    "atomic_output",
    "convert",
    "output_format",
    "writer_for",
]

WRITERS: dict[str, str] = {
    "svs": "composite.formats.tiffwrite.svs:WRITER",
    "tiff": "composite.formats.tiffwrite.generic:WRITER",
    "cws": "composite.formats.cws.write:WRITER",
    "aci": "composite.formats.aci.split:WRITER",
    "dicom": "composite.formats.dicom.write:WRITER",
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
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise UnsupportedFormatError(f"the {name} writer is not available ({err})") from err
    from .plan import Writer  # the plan pulls in the pipeline: only once a writer is wanted

    writer = getattr(module, attribute)
    if not isinstance(writer, Writer):
        raise TypeError(f"{target} is not a Writer")
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

    Before reading anything, raises :class:`~composite.errors.OutputExistsError` when ``dst``
    exists and ``options.overwrite`` is False, and :class:`~composite.errors.DestinationError`
    when ``dst`` is, holds or lies inside a file the source reads, or cannot be written
    (:mod:`composite.destination`). A path source is opened and closed here; an open
    :class:`Slide` stays open.
    """
    from .model import Slide  # numpy and the codecs: not for importing this module

    dst = Path(dst)
    options = options or WriteOptions()
    name = output_format(dst, to)
    outputs = [(dst, name in ("cws", "dicom"))]  # both write a directory
    if name == "aci":
        from .formats.aci.split import pieces_dir

        outputs.append((pieces_dir(dst), True))
    sources = source_files(src.path if isinstance(src, Slide) else src)
    created = destination.prepare_outputs(outputs, sources, overwrite=options.overwrite, parents=options.parents)
    try:
        writer = writer_for(name)
        with contextlib.ExitStack() as stack:
            slide = src if isinstance(src, Slide) else stack.enter_context(open_slide(src))
            return _write(writer, slide, dst, name, options, progress or no_progress)
    except BaseException:
        destination.remove_created(created)
        raise


def _write(
    writer: Writer, slide: Slide, dst: Path, name: str, options: WriteOptions, progress: ProgressCallback
) -> ConversionReport:
    from .plan import make_plan

    # what the output cannot hold is said at the writer's first progress report (after planning)
    report, flush = warned_progress(slide, dst, name, options, progress)
    with make_plan(slide, options, writer.rules, spool_dir=dst.parent) as plan:
        result = writer.write(plan, dst, progress=report)
    flush()
    return result
