"""Export a slide's levels, regions and associated images as plain JPEG, PNG or TIFF files.

The everyday job people write OpenSlide + PIL scripts for: a whole level (``level<L>.jpg``), the
N highest-resolution levels that fit the format, a region given in level-0 pixels read at a
level or at any downsample (``region_<x0>_<y0>_<w>x<h>_level<L>.jpg`` / ``..._ds<D>.jpg``), and
the thumbnail, label and macro (``label.jpg``). Pixels are the slide's own (what OpenSlide shows);
at a downsample between levels the next finer level is box-filtered (area average) to the exact
size. JPEG associated images are copied byte for byte (as a standalone JPEG) unless a quality is
asked for. A whole level exported as TIFF goes through the TIFF writer on the source's tile
grid, so its JPEG tiles are copied byte for byte; regions are re-tiled and streamed by tile rows
(:mod:`.imagefiles`). A region partly outside the image is clipped to it. Slides with focal planes (and
multi-frame DICOM, whose frames 2..N are planes ``frame-2`` ...) export one plane or all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ..codecs import RGBArray, standalone_jpeg
from ..convert import convert
from ..destination import prepare_folder, refuse_source, refuse_source_names, remove_created
from ..errors import FormatError, LimitError
from ..geometry import Box
from ..model import Level, Slide
from ..output import WriteOptions
from ..progress import ProgressCallback, no_progress
from ..registry import source_files
from .imagefiles import (
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_QUALITY,
    EXTENSIONS,
    ImageFormat,
    Picture,
    check_fits,
    encode_image,
    fit_problem,
    write_atomic,
    write_bytes,
    write_picture,
    write_small_tiff,
)

_WRITER_CODECS = ("jpeg", "lzw", "none")  # what the TIFF writer encodes (it has no deflate)


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """``quality`` None means the default (90) and lets JPEG associated images be byte-copied;
    ``compression`` is the TIFF tile codec (``jpeg``, ``lzw``, ``deflate``, ``none``);
    ``plane`` is a focal plane name, ``"all"`` for every plane, None for the nominal one."""

    format: ImageFormat = "jpeg"
    quality: int | None = None
    compression: str = "jpeg"
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    overwrite: bool = False
    plane: str | None = None
    parents: bool = False  # create missing folders above the output folder


@dataclass(frozen=True)
class Exported:
    """One file written: what it shows, its size, and whether stored bytes were copied."""

    path: Path
    what: str
    width: int
    height: int
    copied: bool = False


def _mpp(slide: Slide, downsample: float) -> tuple[float, float] | None:
    return (slide.mpp[0] * downsample, slide.mpp[1] * downsample) if slide.mpp else None


def level_picture(slide: Slide, level: Level) -> Picture:
    return Picture(
        level.width,
        level.height,
        lambda y, rows: level.read_region(0, y, level.width, rows),
        _mpp(slide, level.downsample),
    )


def region_picture(
    slide: Slide, levels: Sequence[Level], box: Box, *, level: int | None, downsample: float | None
) -> Picture:
    """The level-0 ``box`` read at ``level`` (location floored, size rounded) or at ``downsample``."""
    if downsample is None:
        index = 0 if level is None else level
        if not 0 <= index < len(levels):
            raise LimitError(f"{slide.path}: level {index} outside 0..{len(levels) - 1}")
        lvl = levels[index]
        ds = lvl.downsample
        x, y = math.floor(box.x / ds), math.floor(box.y / ds)
        width, height = max(1, round(box.width / ds)), max(1, round(box.height / ds))
        return Picture(width, height, lambda v, rows: lvl.read_region(x, y + v, width, rows), _mpp(slide, ds))
    if downsample <= 0:
        raise LimitError(f"{slide.path}: downsample must be positive, got {downsample:g}")
    best = 0
    for index, candidate in enumerate(levels):
        if candidate.downsample <= downsample + 1e-9:
            best = index
    source = levels[best]
    ratio = downsample / source.downsample
    if abs(ratio - 1) < 1e-9:
        return region_picture(slide, levels, box, level=best, downsample=None)
    width, height = max(1, round(box.width / downsample)), max(1, round(box.height / downsample))
    fx, fy = box.x / source.downsample, box.y / source.downsample

    def band(v: int, rows: int) -> RGBArray:
        # the source rectangle of these output rows, in (fractional) source-level pixels
        left, top = fx, fy + v * ratio
        right, bottom = fx + width * ratio, fy + (v + rows) * ratio
        x0, y0 = math.floor(left), math.floor(top)
        x1, y1 = math.ceil(right), math.ceil(bottom)
        pixels = source.read_region(x0, y0, x1 - x0, y1 - y0)
        image = Image.fromarray(pixels).resize(
            (width, rows), Image.Resampling.BOX, box=(left - x0, top - y0, right - x0, bottom - y0)
        )
        return np.asarray(image, dtype=np.uint8)

    return Picture(width, height, band, _mpp(slide, downsample))


def _planes(slide: Slide, plane: str | None) -> list[tuple[str, list[Level]]]:
    """(file-name suffix, levels) of each plane to export."""
    if plane is None:
        return [("", slide.levels)]
    if plane == "all":
        return [("", slide.levels)] + [(f"_{name}", levels) for name, levels in sorted(slide.focal_planes.items())]
    if plane not in slide.focal_planes:
        known = ", ".join(sorted(slide.focal_planes)) or "none"
        raise FormatError(f"{slide.path}: no focal plane {plane!r} (planes: {known})")
    return [(f"_{plane}", slide.focal_planes[plane])]


def top_levels(slide: Slide, count: int, options: ExportOptions) -> list[int]:
    """The ``count`` highest-resolution levels whose size the format can take."""
    fitting = [
        index
        for index, level in enumerate(slide.levels)
        if fit_problem(level.width, level.height, options.format, memory_budget=options.memory_budget) is None
    ]
    if not fitting:
        smallest = slide.levels[-1]
        problem = fit_problem(smallest.width, smallest.height, options.format, memory_budget=options.memory_budget)
        raise LimitError(
            f"{slide.path}: no level fits {options.format.upper()} (smallest: {problem}); use --format tiff or --region"
        )
    return fitting[:count]


def _write(
    slide: Slide, picture: Picture, dst: Path, what: str, options: ExportOptions, progress: ProgressCallback
) -> Exported:
    check_fits(
        f"{slide.path}: {what}", picture.width, picture.height, options.format, memory_budget=options.memory_budget
    )
    write_picture(
        picture,
        dst,
        options.format,
        quality=options.quality or DEFAULT_QUALITY,
        compression=options.compression,
        memory_budget=options.memory_budget,
        overwrite=options.overwrite,
        progress=progress,
        stage=what,
    )
    return Exported(dst, what, picture.width, picture.height)


def _tiff_level(
    slide: Slide, level: Level, dst: Path, what: str, options: ExportOptions, progress: ProgressCallback
) -> Exported:
    """A whole level as a one-level tiled TIFF through the TIFF writer: on the source's tile grid,
    so JPEG (and RGB J2K) tiles are copied byte for byte when the codec is kept."""
    single = Slide(
        format=slide.format,
        path=slide.path,
        levels=[Level(level.grid, 1.0, level.reader)],
        mpp=_mpp(slide, level.downsample),
    )
    write = WriteOptions(
        compression=options.compression,
        quality=options.quality,
        overwrite=options.overwrite,
        min_level_size=max(level.width, level.height),  # no pyramid below it
    )
    report = convert(single, dst, to="tiff", options=write, progress=lambda _s, d, t: progress(what, d, t))
    copied = report.levels[0].copied_tiles
    return Exported(dst, what, level.width, level.height, copied=copied == level.grid.tile_count)


def export_levels(
    slide: Slide,
    outdir: Path,
    indices: Sequence[int],
    *,
    options: ExportOptions,
    progress: ProgressCallback = no_progress,
) -> list[Exported]:
    ext = EXTENSIONS[options.format]
    done = []
    for suffix, levels in _planes(slide, options.plane):
        for index in indices:
            if not 0 <= index < len(levels):
                raise LimitError(f"{slide.path}: level {index} outside 0..{len(levels) - 1}")
            what = f"level {index}{suffix.replace('_', ' ')}"
            dst = outdir / f"level{index}{suffix}{ext}"
            if options.format == "tiff" and options.compression in _WRITER_CODECS:
                done.append(_tiff_level(slide, levels[index], dst, what, options, progress))
                continue
            done.append(
                _write(
                    slide,
                    level_picture(slide, levels[index]),
                    dst,
                    what,
                    options,
                    progress,
                )
            )
    return done


def export_region(
    slide: Slide,
    outdir: Path,
    box: Box,
    *,
    level: int | None = None,
    downsample: float | None = None,
    options: ExportOptions,
    progress: ProgressCallback = no_progress,
) -> list[Exported]:
    """Export the level-0 ``box`` (clipped to the image) at ``level`` or ``downsample``."""
    if box.empty:
        raise LimitError(f"{slide.path}: region {box.width}x{box.height} is empty")
    clipped = box.intersection(Box(0, 0, *slide.dimensions))
    if clipped is None:
        raise LimitError(
            f"{slide.path}: region {box.x},{box.y},{box.width},{box.height} is outside the"
            f" {slide.dimensions[0]} x {slide.dimensions[1]} image"
        )
    at = f"ds{downsample:g}" if downsample is not None else f"level{level or 0}"
    name = f"region_{clipped.x}_{clipped.y}_{clipped.width}x{clipped.height}_{at}"
    done = []
    for suffix, levels in _planes(slide, options.plane):
        picture = region_picture(slide, levels, clipped, level=level, downsample=downsample)
        dst = outdir / f"{name}{suffix}{EXTENSIONS[options.format]}"
        done.append(_write(slide, picture, dst, f"region {at}{suffix.replace('_', ' ')}", options, progress))
    return done


def export_associated(slide: Slide, outdir: Path, *, options: ExportOptions) -> list[Exported]:
    """Each associated image as ``<name>.<ext>``; JPEG ones byte-copied unless a quality is set."""
    done = []
    for name, image in slide.associated.items():
        dst = outdir / f"{name}{EXTENSIONS[options.format]}"
        if options.format == "jpeg" and options.quality is None and image.encoded is not None:
            data, encoding = image.encoded()
            if encoding.compression == "jpeg":
                jpeg = standalone_jpeg(data, tables=encoding.jpeg_tables, rgb=encoding.rgb)
                write_bytes(dst, jpeg, overwrite=options.overwrite)
                done.append(Exported(dst, name, image.width, image.height, copied=True))
                continue
        pixels = image.read()
        if options.format == "tiff":
            write_atomic(dst, partial(write_small_tiff, pixels), overwrite=options.overwrite)
        else:
            data = encode_image(pixels, options.format, quality=options.quality or DEFAULT_QUALITY)
            write_bytes(dst, data, overwrite=options.overwrite)
        done.append(Exported(dst, name, image.width, image.height))
    return done


def _prepare(slide: Slide, outdir: Path, options: ExportOptions) -> list[Path]:
    """Before reading pixels: ``outdir`` is a folder we can write in, not inside the source, and
    no file export may write there is the source (the folder itself may hold the source).
    Returns the folders created."""
    sources = source_files(slide.path)
    refuse_source([outdir], sources, may_contain=True)
    created = prepare_folder(outdir, parents=options.parents)
    names = "|".join(["level\\d+", "region_.+", *(re.escape(name) for name in slide.associated)])
    written = re.compile(rf"({names})(_.+)?{re.escape(EXTENSIONS[options.format])}")
    try:
        refuse_source_names(outdir, written, sources)
    except BaseException:
        remove_created(created)
        raise
    return created


def export_slide(
    slide: Slide,
    outdir: str | Path,
    *,
    associated: bool = False,
    levels: Sequence[int] | None = None,
    top: int | None = None,
    region: Box | None = None,
    level: int | None = None,
    downsample: float | None = None,
    options: ExportOptions = ExportOptions(),
    progress: ProgressCallback = no_progress,
) -> list[Exported]:
    """Export what is asked; with nothing asked, the associated images and the top level that fits.

    ``levels`` and ``top`` are exclusive; ``level``/``downsample`` apply to ``region`` only.
    """
    if levels is not None and top is not None:
        raise ValueError("give levels or top, not both")
    if (level is not None or downsample is not None) and region is None:
        raise ValueError("level and downsample choose how a region is read: give a region")
    if level is not None and downsample is not None:
        raise ValueError("give level or downsample, not both")
    if levels is None and top is None and region is None and not associated:
        associated, top = True, 1
    outdir = Path(outdir)
    created = _prepare(slide, outdir, options)
    try:
        return _export(slide, outdir, associated, levels, top, region, level, downsample, options, progress)
    except BaseException:
        remove_created(created)  # the folders made for this export, if still empty
        raise


def _export(
    slide: Slide,
    outdir: Path,
    associated: bool,
    levels: Sequence[int] | None,
    top: int | None,
    region: Box | None,
    level: int | None,
    downsample: float | None,
    options: ExportOptions,
    progress: ProgressCallback,
) -> list[Exported]:
    done: list[Exported] = []
    if associated:
        done += export_associated(slide, outdir, options=options)
    if top is not None:
        levels = top_levels(slide, top, options)
    if levels is not None:
        done += export_levels(slide, outdir, levels, options=options, progress=progress)
    if region is not None:
        done += export_region(
            slide, outdir, region, level=level, downsample=downsample, options=options, progress=progress
        )
    return done
