"""Writing a slide as a CWS directory: JPEG blocks, one INI file per level, companion images.

The names, INI texts and block bytes are :class:`composite.formats.cws.layout.CwsLayout`'s (the
layout of docs/cws.md, shared with the server's virtual CWS directories); this module streams
them to disk: each level's blocks as the plan's tile pipeline delivers them, written by a few
threads, then its INI file; then the companion images. With ``skip_glass`` the block threads also
run the glass test (:mod:`composite.glass`): a glass block is neither written nor listed (the
layout's block filter). Encoded edge blocks are
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
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ...codecs import TileEncoding
from ...output import ConversionReport, atomic_output
from ...plan import ConversionPlan, LevelPlan, PlanRules
from ...progress import ProgressCallback
from ...tiling import EncodedTile
from .companions import companions_alongside
from .layout import WHOLE_SLIDE, CwsLayout, block_bytes

if TYPE_CHECKING:  # the glass test is loaded only by --skip-glass
    from ...glass import GlassMap

_STANDALONE = {rgb: TileEncoding("jpeg", rgb=rgb) for rgb in (False, True)}  # the encoding of block_bytes
DEFAULT_BLOCK = 512
BLOCK_WRITERS = 2
BLOCK_BATCH = 32  # blocks handed to a writer thread at once: one task per batch, not per block
BATCHES_IN_FLIGHT = 4  # batches queued for writing (a few MB at most)


def _write_block(path: str, tile: EncodedTile, glass: tuple[GlassMap, int] | None = None) -> None:
    data = block_bytes(tile)
    if glass is not None and not glass[0].observe(glass[1], tile.col, tile.row, data, _STANDALONE[tile.encoding.rgb]):
        return  # all glass: neither written nor listed
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _write_blocks(batch: list[tuple[str, EncodedTile, tuple[GlassMap, int] | None]]) -> None:
    for path, tile, glass in batch:
        _write_block(path, tile, glass)


class _BlockWriter:
    """Block files written by a few threads (open, write and close release the GIL, and creating
    tens of thousands of small files is the byte-copy path's main cost), BLOCK_BATCH blocks a task
    so that handing them over costs little next to a copied block; errors surface in order."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(BLOCK_WRITERS, thread_name_prefix="composite-blocks")
        self._pending: deque[Future[None]] = deque()
        self._batch: list[tuple[str, EncodedTile, tuple[GlassMap, int] | None]] = []

    def write(self, path: str, tile: EncodedTile, glass: tuple[GlassMap, int] | None = None) -> None:
        self._batch.append((path, tile, glass))
        if len(self._batch) >= BLOCK_BATCH:
            self._submit()

    def _submit(self) -> None:
        self._queue(self._pool.submit(_write_blocks, self._batch))
        self._batch = []

    def _queue(self, task: Future[None]) -> None:
        self._pending.append(task)
        while len(self._pending) > BATCHES_IN_FLIGHT:
            self._pending.popleft().result()

    def then(self, task: Callable[[], None]) -> None:
        """Run ``task`` on a writer thread once every block written so far is done (a level's
        INI file, which the glass test's decisions change): the caller goes on to the next level."""
        if self._batch:
            self._submit()
        earlier = list(self._pending)  # the older batches are done: _queue waited for them

        def after() -> None:
            for batch in earlier:  # submitted before this task: running or done, never waiting for it
                batch.result()
            task()

        self._queue(self._pool.submit(after))

    def __enter__(self) -> _BlockWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if self._batch and kind is None:
                self._submit()
            while self._pending and kind is None:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _write_level(
    layout: CwsLayout,
    level: LevelPlan,
    directory: Path,
    progress: ProgressCallback,
    blocks: _BlockWriter,
    glass: GlassMap | None,
) -> int:
    """Level ``level``'s blocks handed to ``blocks``, then its INI file queued after them; the
    number of blocks copied."""
    index = level.index
    copied = 0
    folder = str(directory)
    glassy = None if glass is None else (glass, index)
    for tile in level.tiles(progress=progress):
        if layout.kept(index, tile.col, tile.row):
            blocks.write(os.path.join(folder, layout.block_file(index, tile.col, tile.row)), tile, glassy)
            copied += tile.copied

    # The INI lists blocks row-major while they arrive in any order (re-encoded levels come in
    # column stripes), and the glass test decides which are listed: it is written after the
    # level's blocks, on a writer thread while this one starts the next level (no idle cores).
    def write_ini() -> None:
        with (directory / layout.ini_names[index]).open("w", encoding="utf-8", newline="\n") as ini:
            for chunk in layout.ini_chunks(index):
                ini.write(chunk)

    blocks.then(write_ini)
    return copied


def _write_planes(layout: CwsLayout, directory: Path, progress: ProgressCallback, blocks: _BlockWriter) -> None:
    base = layout.plan.levels[0]
    folder = str(directory)
    for name, level in layout.planes.items():
        for tile in base.tiles_of(level, progress=progress, stage=f"focal plane {name}"):
            if layout.kept(0, tile.col, tile.row):
                blocks.write(os.path.join(folder, layout.block_file(0, tile.col, tile.row, name)), tile)


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
        sparse=True,  # a block that is not listed is not there (skip_glass)
    )

    def write(self, plan: ConversionPlan, dst: Path, *, progress: ProgressCallback) -> ConversionReport:
        """Write ``plan`` as a CWS directory at ``dst``; see the module docstring for the layout.

        An existing empty directory at ``dst`` is used; a non-empty one needs ``overwrite``.
        """
        dst = Path(dst)
        glass = None
        if plan.glass is not None:
            from ...glass import GlassMap

            grids, levels = [level.grid for level in plan.levels], [level.level for level in plan.levels]
            glass = GlassMap(grids, plan.glass, levels=levels)
        layout = CwsLayout(plan, keep=None if glass is None else glass.keep)
        levels = [level.level for level in plan.levels]
        with (
            atomic_output(dst, overwrite=plan.options.overwrite, directory=True) as tmp,
            companions_alongside(plan.slide, tmp, levels=levels, quality=plan.levels[0].quality) as companions,
        ):
            with _BlockWriter() as blocks:  # one for all levels: a level's last blocks overlap the next
                copied = [_write_level(layout, level, tmp, progress, blocks, glass) for level in plan.levels]
                _write_planes(layout, tmp, progress, blocks)
            reports = [
                level.report(
                    count, glass_tiles=0 if glass is None else level.grid.tile_count - glass.kept_count(level.index)
                )
                for level, count in zip(plan.levels, copied, strict=True)
            ]
        return ConversionReport(destination=dst, format="cws", levels=reports, associated=companions.names)


WRITER = CwsWriter()
