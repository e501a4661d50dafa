"""The files of the CWS directory we write for a plan: names, INI texts, and each block's bytes.

One layout, used by both the writer (:mod:`composite.formats.cws.write`, which streams a whole
directory to disk) and the server (:mod:`composite.server.virtual`, which answers for one file
of a slide that is not stored as CWS): both give the same names and, for the same plan, the same
bytes. The layout itself is docs/cws.md's:

- ``FinalScan.ini``: ``[Header]``, ``[Level0]``..``[Level<n-1>]`` (``iZoom``, ``iWidth``,
  ``iHeight``, ``iQuality``, ``iBlockWidth``, ``iBlockHeight``, ``tIniFile``), then the level-0
  blocks ``[Da<N>]`` (``N = row * cols + col``; ``x``, ``y``, ``z=0``); level k is
  ``ScanLevel<k>.ini`` with blocks ``L<k>Da<N>``, the lowest level (below 2048 px)
  ``ScanSlide.ini``; focal planes ``Da<N>_u1.jpg``..; companions ``SlideThumb.jpg``, ``Ss1.jpg``,
  ``Label.jpg``, ``Macro.jpg``.
- All levels share one stage frame: 4 units per level-0 pixel, block x/y the centre of the
  nominal block, larger x further left, larger y further up, the image centre at
  (lXStageRef, lYStageRef).
- Blocks are full-size standalone JPEGs: copied source tiles get their tables merged and, for RGB,
  the Adobe marker browsers need (:func:`block_bytes`).

A *block filter* ``keep(level, col, row) -> bool`` (default: every block) drops blocks from both
the INI files and the block files (a dropped level-0 block drops its focal planes too); block
numbers stay ``row * cols + col``, so the kept blocks keep their names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ... import codecs
from ...geometry import TileGrid
from ...model import Level, Slide
from ...plan import ConversionPlan
from ...tiling import EncodedTile, encoded_tile

UNITS = 4  # stage units per level-0 pixel, what producers write (docs/formats.md §1.4)
WHOLE_SLIDE = 2048  # the lowest level is below this on its long side (and is ScanSlide.ini)
COMPANION_FILES = {"thumbnail": "SlideThumb.jpg", "ss1": "Ss1.jpg", "label": "Label.jpg", "macro": "Macro.jpg"}
_PLANE = re.compile(r"[ud][1-9]")
_BLOCK_FILE = re.compile(r"(?:L([1-9][0-9]*))?Da(0|[1-9][0-9]*)(?:_([ud][1-9]))?\.jpg")

BlockFilter = Callable[[int, int, int], bool]
"""``keep(level index, col, row)``: whether a block is written (listed and stored)."""


def level_ini_name(index: int, count: int) -> str:
    """Which INI file holds level ``index`` of ``count`` (our convention, docs/cws.md)."""
    if index == 0:
        return "FinalScan.ini"
    return "ScanSlide.ini" if index == count - 1 else f"ScanLevel{index}.ini"


def block_name(index: int, number: int) -> str:
    return f"Da{number}" if index == 0 else f"L{index}Da{number}"


def block_bytes(tile: EncodedTile) -> bytes:
    """A standalone JPEG any browser decodes with OpenSlide's colours (docs/formats.md §3.5)."""
    if not tile.copied and tile.encoding.jpeg_tables is None:
        return tile.data  # encoded by codecs.encode_jpeg: complete, with the Adobe marker when RGB
    return codecs.standalone_jpeg(tile.data, tables=tile.encoding.jpeg_tables, rgb=tile.encoding.rgb)


@dataclass(frozen=True, slots=True)
class BlockRef:
    """Which block a file is: level index, tile (col, row), focal plane (None: the nominal one)."""

    level: int
    col: int
    row: int
    plane: str | None = None


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


class CwsLayout:
    """The CWS directory of ``plan``: its file names, INI texts and blocks (see the module docstring).

    ``keep`` filters blocks (default: all).
    """

    def __init__(self, plan: ConversionPlan, *, keep: BlockFilter | None = None) -> None:
        slide = self.slide = plan.slide
        self.plan = plan
        self.keep = keep
        self.grids = [level.grid for level in plan.levels]
        self.zooms = [4**level.index for level in plan.levels]
        self.frame = _Frame(*slide.dimensions, self.grids, self.zooms)
        self.description = _description(slide, plan.tile, plan.levels[0].quality)
        base = slide.dimensions
        self.planes: dict[str, Level] = {
            name: planes[0]
            for name, planes in sorted(slide.focal_planes.items())
            if _PLANE.fullmatch(name) and planes and planes[0].dimensions == base
        }
        self.ini_names = [level_ini_name(index, len(self.grids)) for index in range(len(self.grids))]
        self.companions = {
            kind: name
            for kind, name in COMPANION_FILES.items()
            if kind in ("thumbnail", "ss1") or kind in plan.associated
        }

    # -- names ----------------------------------------------------------------------------------
    def kept(self, index: int, col: int, row: int) -> bool:
        return self.keep is None or self.keep(index, col, row)

    def blocks(self, index: int) -> Iterator[tuple[int, int]]:
        """The kept blocks of level ``index``, row-major."""
        grid = self.grids[index]
        if self.keep is None:
            return grid.indices()
        return ((col, row) for col, row in grid.indices() if self.keep(index, col, row))

    def block_file(self, index: int, col: int, row: int, plane: str | None = None) -> str:
        name = block_name(index, row * self.grids[index].cols + col)
        return f"{name}_{plane}.jpg" if plane else f"{name}.jpg"

    def block_ref(self, name: str) -> BlockRef | None:
        """The kept block that file ``name`` is, or None when no such block exists."""
        match = _BLOCK_FILE.fullmatch(name)
        if match is None:
            return None
        index = int(match.group(1) or 0)
        number, plane = int(match.group(2)), match.group(3)
        if index >= len(self.grids) or (plane is not None and (index != 0 or plane not in self.planes)):
            return None
        grid = self.grids[index]
        if number >= grid.cols * grid.rows:
            return None
        row, col = divmod(number, grid.cols)
        return BlockRef(index, col, row, plane) if self.kept(index, col, row) else None

    def file_names(self) -> Iterator[str]:
        """Every file of the directory: INI files, blocks, focal planes, companions."""
        yield from self.ini_names
        for index in range(len(self.grids)):
            for col, row in self.blocks(index):
                yield self.block_file(index, col, row)
        for plane in self.planes:
            for col, row in self.blocks(0):
                yield self.block_file(0, col, row, plane)
        yield from self.companions.values()

    # -- INI files ------------------------------------------------------------------------------
    def _header(self, index: int) -> list[str]:
        slide, grid, zoom = self.slide, self.grids[index], self.zooms[index]
        mpp = f"{slide.mpp[0]:g}" if slide.mpp else ""
        count = grid.tile_count if self.keep is None else sum(1 for _ in self.blocks(index))
        return [
            "[Header]",
            f"iImageWidth={grid.tile_width}",
            f"iImageHeight={grid.tile_height}",
            f"lXStepSize={UNITS * zoom * grid.tile_width}",
            f"lYStepSize={UNITS * zoom * grid.tile_height}",
            f"lXStageRef={self.frame.ref_x}",
            f"lYStageRef={self.frame.ref_y}",
            "lXOffset=0",
            "lYOffset=0",
            f"dMagnification={slide.magnification:g}" if slide.magnification else "dMagnification=",
            f"tMPP={mpp}",
            "tImageType=.jpg",
            f"iFinalImageQuality={self.plan.levels[index].recorded_quality}",
            f"iAnalysisImageCount={count}",
            f"iZoom={zoom}",
            # Blocks left out as glass: the colour readers should paint them (docs/cws.md).
            *([f"tBackgroundColor={','.join(map(str, self.plan.glass.background))}"] if self.plan.glass else []),
            f"tDescription={self.description}",
        ]

    def _main_header(self) -> list[str]:
        slide = self.slide
        count = len(self.grids)
        lines = self._header(0)
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
                f"tIniFile={self.ini_names[index]}",
            ]
        return lines

    def ini_chunks(self, index: int) -> Iterator[str]:
        """The text of level ``index``'s INI file, in pieces (the header, then one per block)."""
        grid, zoom = self.grids[index], self.zooms[index]
        yield "\n".join(self._main_header() if index == 0 else self._header(index)) + "\n"
        for col, row in self.blocks(index):
            x, y = self.frame.block(grid, zoom, col, row)
            yield f"[{block_name(index, row * grid.cols + col)}]\nx={x}\ny={y}\nz=0\n"

    def ini_text(self, index: int) -> bytes:
        return "".join(self.ini_chunks(index)).encode("utf-8")

    # -- blocks ---------------------------------------------------------------------------------
    def tile(self, ref: BlockRef) -> EncodedTile:
        """The encoded tile of one block on its own: the one the writer's pipeline gives for it."""
        level = self.plan.levels[ref.level]
        source = level.level if ref.plane is None else self.planes[ref.plane]
        return encoded_tile(
            source,
            level.grid,
            ref.col,
            ref.row,
            compression=level.compression,
            quality=level.quality,
            rgb=level.rgb,
            fill=level.fill,
        )

    def block(self, ref: BlockRef) -> bytes:
        """The bytes of one block file (decodes only when the block is not a copied tile)."""
        return block_bytes(self.tile(ref))
