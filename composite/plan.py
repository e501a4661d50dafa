"""The conversion plan: every decision about a conversion made once, before any writer runs.

``convert`` builds one :class:`ConversionPlan` from the slide, the user's :class:`WriteOptions`
and the writer's :class:`PlanRules` (what its container allows), and hands it to the writer. The
plan holds the tile size, the codec and colour, and per level (:class:`LevelPlan`) its grid, its
JPEG quality (the policy of docs/convert.md, "Quality"), and whether its tiles are copied,
re-encoded or computed from the level above. A writer lays out its container from the plan's
encoded-tile streams (:meth:`LevelPlan.tiles`) and reports what they measured
(:meth:`LevelPlan.report`); it never decides levels, tiles or quality itself.

A writer is any object with the :class:`Writer` shape; ``composite.convert.WRITERS`` names them
lazily, so that ``import composite`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .aperio import stated_quality
from .background import slide_background
from .errors import UnsupportedFormatError
from .geometry import TileGrid, choose_tile_size
from .model import AssociatedImage, Level, Slide
from .output import COMPRESSIONS, ConversionReport, LevelReport, Method, WriteOptions, default_quality
from .progress import ProgressCallback
from .pyramid import DownsampledLevel, close_levels, pyramid_levels
from .tiling import EncodedTile, Fill, encoded_tiles, is_copyable

if TYPE_CHECKING:  # the glass test is loaded only by --skip-glass
    from .glass import GlassRule

DEFAULT_PYRAMID_FACTOR = 4
DEFAULT_MIN_LEVEL_SIZE = 1024


@dataclass(frozen=True, kw_only=True)
class PlanRules:
    """What a writer's container allows: its side of the plan.

    ``container`` and ``tile_noun`` name it in errors (``tile size 250x250 cannot be written to
    TIFF``). ``keep`` is the (min, max) side of a source tile kept as the output tile, which must
    also be a multiple of ``tile_multiple``. ``pyramid`` fixes (factor, min size) for containers
    whose levels follow a convention (CWS); None takes them from the options. ``levels=False``
    plans level 0 only (ACI: each piece is planned on its own). ``pad_with_background`` pads
    re-encoded edge tiles with the slide's glass colour (CWS: readers may show the padding),
    else by repeating the edge. ``sparse``: the container can leave tiles out (``skip_glass``).
    """

    container: str
    tile_noun: str = "tile"
    default_tile: tuple[int, int]
    tile_multiple: int = 1
    keep: tuple[int, int] = (1, 1024)
    compressions: tuple[str, ...] = COMPRESSIONS
    pyramid: tuple[int, int] | None = None
    levels: bool = True
    pad_with_background: bool = False
    sparse: bool = False


@dataclass(frozen=True)
class LevelPlan:
    """One level to write: where its pixels come from, its grid, codec, quality and method.

    ``quality`` is what re-encoded tiles get; ``recorded_quality`` what a container that records a
    level's quality should record (a copied level keeps its source's, see :func:`source_quality`).
    """

    index: int
    level: Level
    grid: TileGrid
    compression: str
    quality: int
    rgb: bool
    method: Method
    recorded_quality: int
    workers: int | None
    fill: Fill = None

    def tiles(
        self, *, progress: ProgressCallback, stage: str | None = None, stripe_px: int | None = None
    ) -> Iterator[EncodedTile]:
        """The level's encoded tiles (copied where they can be), in the pipeline's order
        (re-encoded ones in column stripes ``stripe_px`` wide: see :func:`composite.tiling.stripes`)."""
        return self.tiles_of(self.level, progress=progress, stage=stage or f"level {self.index}", stripe_px=stripe_px)

    def tiles_of(
        self, level: Level, *, progress: ProgressCallback, stage: str, stripe_px: int | None = None
    ) -> Iterator[EncodedTile]:
        """Another level of the same size on this grid and codec (a focal plane of level 0)."""
        return encoded_tiles(
            level,
            self.grid,
            compression=self.compression,
            quality=self.quality,
            rgb=self.rgb,
            workers=self.workers,
            progress=progress,
            stage=stage,
            stripe_px=stripe_px,
            fill=self.fill,
        )

    def report(self, copied_tiles: int, *, glass_tiles: int = 0) -> LevelReport:
        """The level as written, with the copied-tile count its tile stream measured (and the
        tiles left out as glass)."""
        return LevelReport(
            index=self.index,
            width=self.grid.width,
            height=self.grid.height,
            downsample=self.level.downsample,
            method=self.method,
            tile_width=self.grid.tile_width,
            tile_height=self.grid.tile_height,
            compression=self.compression,
            copied_tiles=copied_tiles,
            glass_tiles=glass_tiles,
        )


@dataclass
class ConversionPlan:
    """Everything decided for one conversion; close it (or use ``with``) to drop level spools.

    ``glass`` is the glass test (the slide's background colour measured) when tiles that are all
    glass are to be left out, else None.
    """

    slide: Slide
    options: WriteOptions
    tile: tuple[int, int]
    compression: str
    rgb: bool
    levels: list[LevelPlan]
    associated: dict[str, AssociatedImage] = field(default_factory=dict)
    glass: GlassRule | None = None

    @property
    def raw_bytes(self) -> int:
        """Bytes of RGB pixels in every planned tile (edge tiles whole): for size estimates."""
        return sum(p.grid.cols * p.grid.rows * p.grid.tile_width * p.grid.tile_height * 3 for p in self.levels)

    def close(self) -> None:
        close_levels([p.level for p in self.levels])

    def __enter__(self) -> ConversionPlan:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@runtime_checkable
class Writer(Protocol):
    """A container format's writer: the rules it plans under, and how it lays out a plan.

    ``write`` writes ``plan`` at ``dst`` atomically (a temporary name renamed when complete) and
    returns what it wrote; ``plan.options`` carries the format's typed options.
    """

    @property
    def name(self) -> str: ...

    @property
    def rules(self) -> PlanRules: ...

    def write(self, plan: ConversionPlan, dst: Path, *, progress: ProgressCallback) -> ConversionReport: ...


def source_codec(slide: Slide) -> str | None:
    """The level-0 codec when its tiles could be copied as they are, else None."""
    encoding = slide.levels[0].encoding
    if encoding is None:
        return None
    if encoding.compression == "jpeg" or (encoding.compression == "jpeg2000" and encoding.rgb):
        return encoding.compression
    return None


def source_quality(level: Level, slide: Slide) -> int | None:
    """The JPEG quality of ``level``'s stored tiles: their tables', else ``Q=`` of an Aperio description."""
    encoding = level.encoding
    if encoding is None:
        return None
    return encoding.quality or stated_quality(slide.description)


def _tile(slide: Slide, options: WriteOptions, rules: PlanRules) -> tuple[int, int]:
    grid = slide.levels[0].grid
    try:
        return choose_tile_size(
            (grid.tile_width, grid.tile_height),
            options.tile_size,
            default=rules.default_tile,
            keep=rules.keep,
            multiple=rules.tile_multiple,
        )
    except ValueError as err:
        width, height = options.tile_size or (0, 0)
        raise UnsupportedFormatError(
            f"{rules.tile_noun} size {width}x{height} cannot be written to {rules.container} ({err})"
        ) from None


def _compression(slide: Slide, options: WriteOptions, rules: PlanRules) -> str:
    if options.compression is not None and options.compression not in rules.compressions:
        raise UnsupportedFormatError(
            f"{rules.container} {rules.tile_noun}s are {'/'.join(rules.compressions)}, not {options.compression}"
        )
    codec = source_codec(slide)
    return options.compression or (codec if codec in rules.compressions else None) or "jpeg"


def make_plan(slide: Slide, options: WriteOptions, rules: PlanRules, *, spool_dir: Path | None) -> ConversionPlan:
    """Plan writing ``slide`` under ``options`` into a container with ``rules``.

    Levels come from :func:`composite.pyramid.pyramid_levels` (the source's own where their
    downsample fits, lazily computed ones elsewhere, spooled under ``spool_dir``); nothing is
    decoded here.
    """
    if options.skip_glass and not rules.sparse:
        raise UnsupportedFormatError(
            f"{rules.container} output cannot leave glass {rules.tile_noun}s out (--skip-glass is for CWS; "
            "docs/convert.md, Skipping glass)"
        )
    tile = _tile(slide, options, rules)
    compression = _compression(slide, options, rules)
    if not rules.levels:
        levels = [slide.levels[0]]
    else:
        factor, min_size = rules.pyramid or (
            options.pyramid_factor or DEFAULT_PYRAMID_FACTOR,
            options.min_level_size or DEFAULT_MIN_LEVEL_SIZE,
        )
        levels = pyramid_levels(
            slide, factor=factor, min_size=min_size, tile_size=tile, workers=options.workers, spool_dir=spool_dir
        )
    rgb = not options.ycbcr
    fill = slide_background(slide) if rules.pad_with_background else None
    plans = []
    for index, level in enumerate(levels):
        grid = TileGrid(level.width, level.height, *tile)
        quality = default_quality(options.quality, index)
        method: Method = "reencode"
        recorded = quality
        if is_copyable(level, grid, compression):
            method = "copy"
            recorded = source_quality(level, slide) or quality
        elif isinstance(level, DownsampledLevel):
            method = "downsample"
        plans.append(LevelPlan(index, level, grid, compression, quality, rgb, method, recorded, options.workers, fill))
    glass = None
    if options.skip_glass:
        from .glass import GlassRule

        glass = GlassRule.for_slide(slide, tolerance=options.glass_tolerance, background=fill)
    return ConversionPlan(slide, options, tile, compression, rgb, plans, dict(slide.associated), glass)
