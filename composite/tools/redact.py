"""Redaction: black boxes on every level, dropped label/macro, scrubbed metadata - into a new file.

:func:`redacted_slide` wraps a slide without copying it: each level's reader returns the source's
stored bytes for a tile no box touches and, for a touched tile, the tile painted black inside the
box (the box scaled to the level, rounded outward and grown to whole 16-px JPEG blocks, so
nothing leaks at the edges and the blocks decode black) and encoded again. The wrapper goes to
the normal writer of the destination's format, which keeps the source tile size, so the pipeline
byte-copies every untouched tile. A re-encoded JPEG tile reuses the
level's shared JPEG tables when some quality reproduces them (Aperio's standard tables), so its
neighbours stay byte-identical even in a file whose tables come from a touched first tile.
The thumbnail is made again from the redacted pyramid (and painted), never copied. The source
file is only read. Besides boxes, a plan may carry :class:`Shapes` (annotated polygons,
:mod:`composite.annotations.redact`), which paint and choose tiles the same way.

Not supported: boxes on the macro image (its geometry relative to level 0 is unknown: drop the
macro), and byte copies of codecs the target cannot copy (LZW, YCbCr J2K: everything is then
re-encoded, boxes still black).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import codecs
from ..aperio import stated_quality
from ..codecs import RGBArray, TileEncoding
from ..convert import convert, output_format
from ..destination import refuse_source
from ..dropped import kept_downsamples, warn
from ..errors import LimitError
from ..geometry import Box, TileGrid
from ..model import AssociatedImage, Level, Slide, level_thumbnail
from ..output import ASSOCIATED_QUALITY, ConversionReport, WriteOptions
from ..progress import ProgressCallback, no_progress
from ..registry import open_slide, source_files
from ..tiling import pad_tile
from .scrub import scrub_description, scrub_properties, scrubbed_image, scrubbed_levels

MCU = 16  # the largest JPEG block (4:2:0); tile origins are multiples of it in TIFF/SVS


def scaled_box(box: Box, *, base: tuple[int, int], size: tuple[int, int], downsample: float) -> Box:
    """``box`` (level-0 pixels) on a level of ``size``: the union of the boxes scaled by the
    level's x and y ratios and by its nominal downsample, each rounded outward."""
    boxes = [
        box.scaled_outward(base[0] / size[0]),
        box.scaled_outward(base[1] / size[1]),
        box.scaled_outward(downsample),
    ]
    x, y = min(b.x for b in boxes), min(b.y for b in boxes)
    right, bottom = max(b.right for b in boxes), max(b.bottom for b in boxes)
    return Box(x, y, right - x, bottom - y)


def aligned(box: Box, step: int = MCU) -> Box:
    """``box`` grown outward to multiples of ``step``: whole JPEG blocks, which then decode black
    (a block half black, half tissue rings grey into the box)."""
    x, y = box.x // step * step, box.y // step * step
    right, bottom = -(-box.right // step) * step, -(-box.bottom // step) * step
    return Box(x, y, right - x, bottom - y)


def paint(pixels: RGBArray, origin: tuple[int, int], boxes: Sequence[Box]) -> RGBArray:
    """A copy of ``pixels`` (whose top-left is ``origin`` in level pixels) black inside ``boxes``."""
    out = pixels.copy()
    height, width = out.shape[:2]
    here = Box(origin[0], origin[1], width, height)
    for box in boxes:
        part = box.intersection(here)
        if part is not None:
            out[part.y - here.y : part.bottom - here.y, part.x - here.x : part.right - here.x] = 0
    return out


class LevelShapes(Protocol):
    """Regions other than boxes at one level (annotations' polygons): which tiles they touch, and
    painting them black into pixels whose top-left is ``origin`` (level pixels), in place."""

    def tiles(self, grid: TileGrid) -> set[tuple[int, int]]: ...

    def paint(self, pixels: RGBArray, origin: tuple[int, int]) -> None: ...


class Shapes(Protocol):
    """Level-0 regions to black out besides boxes; ``at`` gives them on a level of ``size`` pixels."""

    def at(self, *, base: tuple[int, int], size: tuple[int, int], downsample: float) -> LevelShapes: ...

    def blacked_out(self, slide: Slide, kept: Sequence[float]) -> list[str]:
        """Warning lines: how much more than the regions is blacked out (as :func:`blacked_out`)."""
        ...


class _Encoder:
    """Encodes painted tiles the way the level's stored tiles are encoded."""

    def __init__(self, level: Level, quality: int | None) -> None:
        self.encoding = level.encoding
        self.quality = quality or ASSOCIATED_QUALITY
        self.subsampling = (2, 2)
        self.shares_tables = False
        encoding = self.encoding
        if encoding is None or encoding.compression != "jpeg":
            return
        sample = next((d for c, r in level.grid.indices() if (d := level.read_encoded_tile(c, r))), None)
        if sample is not None:
            full = codecs.merge_jpeg_tables(sample, encoding.jpeg_tables)
            self.subsampling = (1, 1) if encoding.rgb else codecs.jpeg_info(full).subsampling
        if encoding.jpeg_tables is not None:
            self._match_tables(encoding.jpeg_tables)

    def _match_tables(self, tables: bytes) -> None:
        """Find the quality whose standard tables are the level's, trying the known one first."""
        assert self.encoding is not None
        probe = np.zeros((16, 16, 3), np.uint8)
        for quality in [self.quality, *range(100, 0, -1)]:
            data = codecs.encode_jpeg(probe, quality=quality, rgb=self.encoding.rgb, subsampling=self.subsampling)
            if codecs.split_jpeg_tables(data)[0] == tables:
                self.quality, self.shares_tables = quality, True
                return

    def encode(self, pixels: RGBArray) -> bytes:
        encoding = self.encoding
        assert encoding is not None
        if encoding.compression == "jpeg2000":
            return codecs.encode_jpeg2000(pixels, quality=self.quality)
        data = codecs.encode_jpeg(pixels, quality=self.quality, rgb=encoding.rgb, subsampling=self.subsampling)
        return codecs.split_jpeg_tables(data)[1] if self.shares_tables else data


class RedactingReader:
    """Source bytes for untouched tiles, painted and re-encoded bytes for touched ones."""

    def __init__(self, level: Level, boxes: list[Box], quality: int | None, shapes: LevelShapes | None = None) -> None:
        self._level = level
        self._boxes = boxes
        self._shapes = shapes
        self.touched = {key for box in boxes for key in level.grid.tiles_overlapping(box)}
        if shapes is not None:
            self.touched |= shapes.tiles(level.grid)
        self._encoder = _Encoder(level, quality) if self.touched and level.encoding is not None else None

    @property
    def encoding(self) -> TileEncoding | None:
        return self._level.encoding

    def read_encoded(self, col: int, row: int) -> bytes | None:
        if (col, row) not in self.touched:
            return self._level.read_encoded_tile(col, row)
        if self._encoder is None or self._encoder.encoding is None:
            return None
        if self._encoder.encoding.compression not in ("jpeg", "jpeg2000"):
            return None  # the pipeline re-encodes from read_tile
        grid = self._level.grid
        pixels = pad_tile(self.read_tile(col, row), grid.tile_width, grid.tile_height)
        return self._encoder.encode(np.ascontiguousarray(pixels[: grid.tile_height, : grid.tile_width]))

    def read_tile(self, col: int, row: int) -> RGBArray:
        box = self._level.grid.tile_box(col, row)
        pixels = self._level.reader.read_tile(col, row)
        if pixels is None:
            if (col, row) not in self.touched:
                return self._level.read_tile(col, row)  # white, as missing tiles are
            pixels = np.full((box.height, box.width, 3), 255, np.uint8)
        if (col, row) not in self.touched:
            return pixels
        painted = paint(pixels, (box.x, box.y), self._boxes)
        if self._shapes is not None:
            self._shapes.paint(painted, (box.x, box.y))
        return painted


@dataclass
class RedactPlan:
    """What to do: boxes in level-0 pixels (and ``shapes``, e.g. annotated polygons), images to
    drop, whether to scrub metadata."""

    boxes: list[Box] = field(default_factory=list)
    shapes: Shapes | None = None
    drop_label: bool = False
    drop_macro: bool = False
    scrub: bool = False


def _source_quality(slide: Slide) -> int | None:
    encoding = slide.levels[0].encoding
    if encoding is not None and encoding.quality:
        return encoding.quality
    return stated_quality(slide.description)


def _redact_levels(
    slide: Slide, levels: list[Level], boxes: list[Box], quality: int | None, shapes: Shapes | None
) -> list[Level]:
    base = slide.dimensions
    out = []
    for level in levels:
        scaled = [aligned(scaled_box(b, base=base, size=level.dimensions, downsample=level.downsample)) for b in boxes]
        at = shapes.at(base=base, size=level.dimensions, downsample=level.downsample) if shapes else None
        out.append(Level(level.grid, level.downsample, RedactingReader(level, scaled, quality, at)))
    return out


def redacted_slide(slide: Slide, plan: RedactPlan) -> Slide:
    """A lazy view of ``slide`` with the plan applied (nothing is read until a writer reads)."""
    width, height = slide.dimensions
    boxes = []
    for box in plan.boxes:
        clipped = None if box.empty else box.intersection(Box(0, 0, width, height))
        if clipped is None:
            raise LimitError(
                f"{slide.path}: box {box.x},{box.y},{box.width},{box.height} is empty or outside the"
                f" {width} x {height} image"
            )
        boxes.append(clipped)
    quality = _source_quality(slide)
    # scrubbed: every copied tile loses its text segments before a box or a writer sees it
    kept = scrubbed_levels if plan.scrub else list
    levels = _redact_levels(slide, kept(slide.levels), boxes, quality, plan.shapes)
    planes = {
        name: _redact_levels(slide, kept(lv), boxes, quality, plan.shapes) for name, lv in slide.focal_planes.items()
    }
    associated: dict[str, AssociatedImage] = {}
    for name, image in slide.associated.items():
        if (name == "label" and plan.drop_label) or (name == "macro" and plan.drop_macro) or name == "thumbnail":
            continue
        associated[name] = scrubbed_image(image) if plan.scrub else image
    description = scrub_description(slide.description) if plan.scrub else slide.description
    properties = scrub_properties(slide.properties) if plan.scrub else dict(slide.properties)
    redacted = Slide(
        format=slide.format,
        path=slide.path,
        levels=levels,
        properties=properties,
        mpp=slide.mpp,
        magnification=slide.magnification,
        associated=associated,
        description=description,
        focal_planes=planes,
        title="redacted" if plan.scrub else slide.title,  # the source's file name identifies too
    )
    if "thumbnail" in slide.associated:
        source = slide.associated["thumbnail"]
        redacted.associated["thumbnail"] = _thumbnail(redacted, boxes, (source.width, source.height), plan.shapes)
    return redacted


def blacked_out(slide: Slide, boxes: Sequence[Box], kept: Sequence[float]) -> list[str]:
    """For each box that grows, the area actually blacked out, in level-0 pixels: at level 0
    and, when larger, the widest over the other levels written (downsamples ``kept``); boxes
    grow to whole 16-px JPEG blocks of each level."""
    width, height = slide.dimensions
    image = Box(0, 0, width, height)
    levels = [(i, lv) for i, lv in enumerate(slide.levels) if any(abs(lv.downsample - d) <= 0.02 * d for d in kept)]
    messages = []
    for box in boxes:
        clipped = box.intersection(image)
        if clipped is None:
            continue
        areas: list[tuple[int, Box]] = []
        for index, level in levels:
            grown = aligned(
                scaled_box(clipped, base=(width, height), size=level.dimensions, downsample=level.downsample)
            )
            rx, ry = width / level.width, height / level.height
            x, y = math.floor(grown.x * rx), math.floor(grown.y * ry)
            at0 = Box(x, y, math.ceil(grown.right * rx) - x, math.ceil(grown.bottom * ry) - y).intersection(image)
            areas.append((index, at0 or clipped))
        if not areas or all(area == clipped for _, area in areas):
            continue
        first = areas[0][1]
        more = 100 * (first.width * first.height / (clipped.width * clipped.height) - 1)
        line = (
            f"{slide.path}: box {box.x},{box.y},{box.width},{box.height} blacks out"
            f" {first.x},{first.y},{first.width},{first.height} at level 0 (+{more:.0f}%)"
        )
        index, widest = max(areas, key=lambda item: item[1].width * item[1].height)
        if widest != first:
            line += f", up to {widest.x},{widest.y},{widest.width},{widest.height} in level-0 pixels at level {index}"
        messages.append(line + ": boxes grow to whole 16-px JPEG blocks of each level")
    return messages


def _thumbnail(slide: Slide, boxes: list[Box], size: tuple[int, int], shapes: Shapes | None) -> AssociatedImage:
    """A thumbnail made from the redacted pyramid, with the boxes painted at its own scale too."""
    width, height = slide.dimensions

    def load() -> RGBArray:
        scale = max(width / size[0], height / size[1], 1.0)
        pixels = level_thumbnail(slide.levels[slide.get_best_level_for_downsample(scale)], size)
        scaled = [scaled_box(b, base=(width, height), size=size, downsample=scale) for b in boxes]
        painted = paint(pixels, (0, 0), scaled)
        if shapes is not None:
            shapes.at(base=(width, height), size=size, downsample=scale).paint(painted, (0, 0))
        return painted

    return AssociatedImage("thumbnail", size[0], size[1], load)


def kept_for(slide: Slide, dst: Path, to: str | None, options: WriteOptions) -> list[float]:
    """The downsamples of the source levels the output at ``dst`` keeps."""
    width, height = slide.dimensions
    return kept_downsamples(width, height, output_format(dst, to), options)


def redact(
    src: str | Path,
    dst: str | Path,
    plan: RedactPlan,
    *,
    to: str | None = None,
    options: WriteOptions | None = None,
    progress: ProgressCallback = no_progress,
) -> tuple[ConversionReport, dict[int, int]]:
    """Write the redacted ``src`` to ``dst`` (format ``to`` or from its name); the report and, per level,
    how many tiles were re-encoded because a box touches them."""
    src, dst = Path(src), Path(dst)
    refuse_source([dst], source_files(src))  # before opening; convert checks the rest
    options = options or WriteOptions()
    with open_slide(src) as slide:
        redacted = redacted_slide(slide, plan)
        if plan.scrub:
            redacted.title = dst.name
        kept = kept_for(slide, dst, to, options)
        for message in blacked_out(slide, plan.boxes, kept) + (
            plan.shapes.blacked_out(slide, kept) if plan.shapes else []
        ):
            warn(message)
        # tile_size None keeps the source grid where the format can, so untouched tiles are copied
        report = convert(redacted, dst, to=to, options=options, progress=progress)
        touched = {}
        for index, level in enumerate(redacted.levels):
            reader = level.reader
            if isinstance(reader, RedactingReader):
                touched[index] = len(reader.touched)
    return report, touched
