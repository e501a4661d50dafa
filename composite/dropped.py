"""Saying what an output cannot carry, before writing it.

:func:`composite.convert.convert` asks :func:`warned_progress` for a progress callback that
emits one :class:`~composite.errors.DroppedWarning` per kind of loss at the writer's first report
(after the writer has checked its options, before it has written much):

- associated images the format has no place for: plain TIFF and ACI pieces keep no label or
  macro (OME-TIFF, SVS and CWS do); names other than thumbnail, label and macro (SVS, TIFF);
- the source's reduced levels the output's pyramid does not keep: it is made of 4x steps down to
  1,024 px on the long side (SVS/TIFF; ``pyramid_factor``/``min_level_size`` options) or to
  2,048 px (CWS), so a source level below that, or at another downsample, is not written;
- focal planes, which only CWS and ACI outputs keep.

The CLI prints each as one ``warning:`` line; ``--strict`` turns them into errors (exit 2). The
thumbnail and a CWS's Ss1 overview are made again from the written pyramid and never warned about.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DroppedWarning
from .output import WriteOptions
from .progress import ProgressCallback

if TYPE_CHECKING:  # the model loads numpy: not for importing the CLI's convert command
    from .model import Slide

_MATCH = 0.02  # a source level is kept when the pyramid has a level within 2% of its downsample
_REMADE = {"thumbnail", "ss1"}
_CARRIED = {
    "svs": {"label", "macro"},
    "tiff": set(),
    "ome": {"label", "macro"},
    "cws": {"label", "macro"},
    "dicom": {"label", "macro"},
    "aci": set(),
}
_CWS_WHOLE_SLIDE = 2048  # composite.formats.cws.write.WHOLE_SLIDE (importing it loads the writer)


def warn(message: str) -> None:
    """Emit ``message`` as a :class:`DroppedWarning` (an error under ``--strict``)."""
    warnings.warn(DroppedWarning(message), stacklevel=3)


def warned_progress(
    slide: Slide, dst: Path, fmt: str, options: WriteOptions, progress: ProgressCallback
) -> tuple[ProgressCallback, Callable[[], None]]:
    """``progress`` that first issues the warnings of :func:`dropped`, and a function issuing
    those still held. Held back until the writer reports progress, so that a bad option (which
    the writer refuses before its first report) is one error line without warnings before it;
    under ``--strict`` the first report raises, inside the writer's temporary output."""
    pending = dropped(slide, dst, fmt, options)

    def flush() -> None:
        while pending:
            warn(pending.pop(0))

    def report(stage: str, done: int, total: int) -> None:
        flush()
        progress(stage, done, total)

    return report, flush


def dropped(slide: Slide, dst: Path, fmt: str, options: WriteOptions) -> list[str]:
    """One message per kind of thing of ``slide`` that ``fmt`` at ``dst`` will not hold."""
    messages: list[str] = []
    kind = "ome" if fmt == "tiff" and options.tiff.ome else fmt
    carried = _CARRIED.get(kind, set())
    lost = [name for name in slide.associated if name not in carried and name not in _REMADE]
    if lost:
        what = {"tiff": "a plain TIFF has", "aci": "ACI pieces have"}.get(kind, f"a {kind.upper()} output has")
        hint = " (use .svs, --ome or a CWS directory to keep them)" if kind in ("tiff", "aci") else ""
        messages.append(f"{dst}: {' and '.join(lost)} not written: {what} no place for them{hint}")
    if fmt in ("svs", "tiff", "cws"):
        messages += _levels(slide, dst, fmt, options)
    if slide.focal_planes and fmt in ("svs", "tiff"):
        planes = ", ".join(sorted(slide.focal_planes))
        messages.append(f"{dst}: focal planes {planes} not written: only CWS and ACI outputs keep them")
    return messages


def kept_downsamples(width: int, height: int, fmt: str, options: WriteOptions) -> list[float]:
    """The downsamples of the pyramid the writer of ``fmt`` builds (composite.pyramid.pyramid_levels)."""
    if fmt == "cws":
        factor, min_size = 4, _CWS_WHOLE_SLIDE - 1
    else:
        factor = options.pyramid_factor or 4
        min_size = options.min_level_size or 1024
    result = [1.0]
    size = max(width, height)
    while size / result[-1] > min_size and size / result[-1] >= 2:
        result.append(result[-1] * factor)
    return result


def _levels(slide: Slide, dst: Path, fmt: str, options: WriteOptions) -> list[str]:
    width, height = slide.dimensions
    kept = kept_downsamples(width, height, fmt, options)
    lost = [
        (index, level)
        for index, level in enumerate(slide.levels)
        if index and not any(abs(level.downsample - ds) <= _MATCH * ds for ds in kept)
    ]
    if not lost:
        return []
    listed = ", ".join(f"{i} ({lv.width} x {lv.height}, downsample {lv.downsample:.4g})" for i, lv in lost)
    if len(kept) > 1:
        pyramid = f"is {kept[1]:g}x steps down to {max(width, height) / kept[-1]:,.0f} px"
    else:
        pyramid = f"has level 0 only ({max(width, height):,} px)"
    return [f"{dst}: source levels not kept: {listed}; the output's pyramid {pyramid} (made from the level above)"]
