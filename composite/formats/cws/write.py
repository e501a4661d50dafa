"""Writing a slide as a CWS directory: JPEG blocks, one INI file per level, companion images.

The layout (docs/cws.md; the viewer reads exactly this): ``FinalScan.ini`` holds the header,
``[Level0]``..``[Level<n-1>]`` (``iZoom``, ``iWidth``, ``iHeight``, ``iQuality``, ``iBlockWidth``,
``iBlockHeight``, ``tIniFile``) and the level-0 blocks ``[Da<N>]`` (row-major, ``x``, ``y``,
``z=0``); level k is ``ScanLevel<k>.ini`` with blocks ``L<k>Da<N>``, and the lowest level (below
2048 px) is ``ScanSlide.ini``. All levels share one stage frame: 4 units per level-0 pixel,
block x/y the centre of the nominal block, larger x further left, larger y further up, the image
centre at (lXStageRef, lYStageRef). Blocks are full-size, standalone JPEG: copied source tiles
get their tables merged and, for RGB, the Adobe marker browsers need. Encoded edge blocks are
padded with the slide's glass colour (:mod:`composite.background`), so a reader that ignores
``iWidth``/``iHeight`` shows more glass, not smeared stripes; copied edge blocks keep the source's
padding (Aperio's is white).

The writer lays out a :class:`composite.plan.ConversionPlan`: the blocks are the plan's encoded
tiles, so a source whose tiles coincide with the blocks is copied byte for byte and never decoded. The
directory is written under a temporary name and renamed at the end.

Not written: focal planes other than ``u1``..``u9``/``d1``..``d9`` (named as in the source), and
focal planes of levels other than level 0.
"""

from __future__ import annotations

import os
import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ... import codecs
from ...geometry import TileGrid
from ...model import Slide
from ...output import ConversionReport, LevelReport, atomic_output
from ...plan import ConversionPlan, LevelPlan, PlanRules
from ...progress import ProgressCallback
from ...tiling import EncodedTile
from .companions import write_companions

UNITS = 4  # stage units per level-0 pixel, what producers write (docs/formats.md §1.4)
WHOLE_SLIDE = 2048  # the lowest level is below this on its long side (and is ScanSlide.ini)
DEFAULT_BLOCK = 512
BLOCK_WRITERS = 2
BLOCKS_IN_FLIGHT = 64  # encoded blocks queued for writing (a few MB at most)
_PLANE = re.compile(r"[ud][1-9]")


def level_ini_name(index: int, count: int) -> str:
    """Which INI file holds level ``index`` of ``count`` (our convention, docs/cws.md)."""
    if index == 0:
        return "FinalScan.ini"
    return "ScanSlide.ini" if index == count - 1 else f"ScanLevel{index}.ini"


def block_name(index: int, number: int) -> str:
    return f"Da{number}" if index == 0 else f"L{index}Da{number}"


class _Frame:
    """The shared stage frame: stage x/y of a level's nominal block centres."""

    def __init__(self, width0: int, height0: int, grids: list[TileGrid], zooms: list[int]) -> None:
        self.width0, self.height0 = width0, height0
        # References larger than any level's extent keep every coordinate a positive integer.
        self.ref_x = UNITS * max(z * g.cols * g.tile_width for g, z in zip(grids, zooms, strict=True)) + 1000
        self.ref_y = UNITS * max(z * g.rows * g.tile_height for g, z in zip(grids, zooms, strict=True)) + 1000

    def block(self, grid: TileGrid, zoom: int, col: int, row: int) -> tuple[int, int]:
        # 4 * centre in level-0 px = zoom * (4 * col * w + 2 * w): an integer for any block width.
        cx4 = zoom * (4 * col * grid.tile_width + 2 * grid.tile_width)
        cy4 = zoom * (4 * row * grid.tile_height + 2 * grid.tile_height)
        return self.ref_x + 2 * self.width0 - cx4, self.ref_y + 2 * self.height0 - cy4


def _description(slide: Slide, block: tuple[int, int], quality: int) -> str:
    if slide.description:
        return " ".join(slide.description.split("\r\n")).replace("\n", " ").replace("\r", " ")
    width, height = slide.dimensions
    fields = f"composite CWS {width}x{height} ({block[0]}x{block[1]}) JPEG Q={quality}"
    if slide.magnification:
        fields += f"|AppMag = {slide.magnification:g}"
    if slide.mpp:
        fields += f"|MPP = {slide.mpp[0]:g}"
    return fields


def _header(slide: Slide, grid: TileGrid, zoom: int, frame: _Frame, *, quality: int, description: str) -> list[str]:
    mpp = f"{slide.mpp[0]:g}" if slide.mpp else ""
    return [
        "[Header]",
        f"iImageWidth={grid.tile_width}",
        f"iImageHeight={grid.tile_height}",
        f"lXStepSize={UNITS * zoom * grid.tile_width}",
        f"lYStepSize={UNITS * zoom * grid.tile_height}",
        f"lXStageRef={frame.ref_x}",
        f"lYStageRef={frame.ref_y}",
        "lXOffset=0",
        "lYOffset=0",
        f"dMagnification={slide.magnification:g}" if slide.magnification else "dMagnification=",
        f"tMPP={mpp}",
        "tImageType=.jpg",
        f"iFinalImageQuality={quality}",
        f"iAnalysisImageCount={grid.tile_count}",
        f"iZoom={zoom}",
        f"tDescription={description}",
    ]


def _block_bytes(tile: EncodedTile) -> bytes:
    """A standalone JPEG any browser decodes with OpenSlide's colours (docs/formats.md §3.5)."""
    return codecs.standalone_jpeg(tile.data, tables=tile.encoding.jpeg_tables, rgb=tile.encoding.rgb)


def _write_block(path: str, tile: EncodedTile) -> None:
    data = _block_bytes(tile)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class _BlockWriter:
    """Block files written by a few threads (open, write and close release the GIL, and creating
    tens of thousands of small files is the byte-copy path's main cost); errors surface in order."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(BLOCK_WRITERS, thread_name_prefix="composite-blocks")
        self._pending: deque[Future[None]] = deque()

    def write(self, path: str, tile: EncodedTile) -> None:
        self._pending.append(self._pool.submit(_write_block, path, tile))
        while len(self._pending) > BLOCKS_IN_FLIGHT:
            self._pending.popleft().result()

    def __enter__(self) -> _BlockWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            while self._pending and kind is None:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _Layout:
    """The CWS container's part, from the plan: zooms, the stage frame, header fields, planes."""

    def __init__(self, plan: ConversionPlan) -> None:
        slide = self.slide = plan.slide
        self.plan = plan
        self.grids = [level.grid for level in plan.levels]
        self.zooms = [4**level.index for level in plan.levels]
        self.frame = _Frame(*slide.dimensions, self.grids, self.zooms)
        self.description = _description(slide, plan.tile, plan.levels[0].quality)
        base = slide.dimensions
        self.planes = {
            name: planes[0]
            for name, planes in sorted(slide.focal_planes.items())
            if _PLANE.fullmatch(name) and planes and planes[0].dimensions == base
        }

    def header(self, index: int) -> list[str]:
        return _header(
            self.slide,
            self.grids[index],
            self.zooms[index],
            self.frame,
            quality=self.plan.levels[index].recorded_quality,
            description=self.description,
        )

    def main_header(self) -> list[str]:
        slide = self.slide
        count = len(self.grids)
        lines = self.header(0)
        lines.remove("iZoom=1")
        lines += [
            f"iLayers={1 + len(self.planes)}",
            f"iLevels={count}",
            "bHasThumb=1",
            f"bHasLabel={int('label' in self.plan.associated)}",
            f"bHasMacro={int('macro' in self.plan.associated)}",
            f"tWebSlideTitle={slide.title or slide.path.name}",
        ]
        for index, grid in enumerate(self.grids):
            lines += [
                f"[Level{index}]",
                f"iZoom={self.zooms[index]}",
                f"iWidth={grid.width}",
                f"iHeight={grid.height}",
                f"iQuality={self.plan.levels[index].recorded_quality}",
                f"iBlockWidth={grid.tile_width}",
                f"iBlockHeight={grid.tile_height}",
                f"tIniFile={level_ini_name(index, count)}",
            ]
        return lines


def _write_level(layout: _Layout, level: LevelPlan, directory: Path, progress: ProgressCallback) -> LevelReport:
    index, grid, zoom = level.index, level.grid, layout.zooms[level.index]
    lines = layout.main_header() if index == 0 else layout.header(index)
    copied = 0
    folder = str(directory)
    with (
        (directory / level_ini_name(index, len(layout.grids))).open("w", encoding="utf-8", newline="\n") as ini,
        _BlockWriter() as blocks,
    ):
        ini.write("\n".join(lines) + "\n")
        # Positions depend only on the grid: the INI lists blocks in order while the blocks
        # themselves may arrive in any order (re-encoded levels come in column stripes).
        for col, row in grid.indices():
            x, y = layout.frame.block(grid, zoom, col, row)
            ini.write(f"[{block_name(index, row * grid.cols + col)}]\nx={x}\ny={y}\nz=0\n")
        for tile in level.tiles(progress=progress):
            name = block_name(index, tile.row * grid.cols + tile.col)
            blocks.write(os.path.join(folder, f"{name}.jpg"), tile)
            copied += tile.copied
    return level.report(copied)


def _write_planes(layout: _Layout, directory: Path, progress: ProgressCallback) -> None:
    base = layout.plan.levels[0]
    grid = base.grid
    folder = str(directory)
    for name, level in layout.planes.items():
        with _BlockWriter() as blocks:
            for tile in base.tiles_of(level, progress=progress, stage=f"focal plane {name}"):
                number = tile.row * grid.cols + tile.col
                blocks.write(os.path.join(folder, f"{block_name(0, number)}_{name}.jpg"), tile)


class CwsWriter:
    """CWS directories: JPEG blocks of the source's tile size (up to 1024 px) or 512 px, a 4x
    pyramid down to below 2048 px (the lowest level is ``ScanSlide.ini``)."""

    name = "cws"
    rules = PlanRules(
        container="CWS",
        tile_noun="block",
        default_tile=(DEFAULT_BLOCK, DEFAULT_BLOCK),
        compressions=("jpeg",),
        pyramid=(4, WHOLE_SLIDE - 1),
        pad_with_background=True,  # encoded edge blocks: the glass colour, for readers showing padding
    )

    def write(self, plan: ConversionPlan, dst: Path, *, progress: ProgressCallback) -> ConversionReport:
        """Write ``plan`` as a CWS directory at ``dst``; see the module docstring for the layout.

        An existing empty directory at ``dst`` is used; a non-empty one needs ``overwrite``.
        """
        dst = Path(dst)
        layout = _Layout(plan)
        with atomic_output(dst, overwrite=plan.options.overwrite, directory=True) as tmp:
            reports = [_write_level(layout, level, tmp, progress) for level in plan.levels]
            _write_planes(layout, tmp, progress)
            levels = [level.level for level in plan.levels]
            associated = write_companions(plan.slide, tmp, levels=levels, quality=plan.levels[0].quality)
        return ConversionReport(destination=dst, format="cws", levels=reports, associated=associated)


WRITER = CwsWriter()
