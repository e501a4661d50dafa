"""The ACI writer: cut a slide into pyramidal pieces plus a manifest that places them.

``DST.aci`` and the directory ``DST_pieces/`` beside it, holding ``r<row>_c<col>.svs`` (or
``.tif``): each piece a complete pyramidal file written by the SVS/TIFF writer from a window of
the source (:mod:`.window`), at most ``piece_size`` px on a side. Pieces start on source tile
boundaries (and on whole pixels of the source's lower levels where the size allows), so JPEG
tiles are byte-copied. Focal planes become layers (``z<Z>``, ``u<n>`` = +n, ``d<n>`` = -n), each
in its own sub-directory. Pieces are written in parallel threads; the manifest is written last
and everything goes to temporary names renamed at the end. Replacing an existing output puts
the new pieces in a generation folder ``DST_pieces/g<id>/`` and commits with the manifest's
rename (:mod:`.generations`): a kill at any step leaves a manifest naming complete pieces.

``options.aci`` (:class:`~composite.output.AciOptions`): ``piece_size`` (default 16384),
``piece_format`` (``svs``, default, or ``tiff``). Each piece is planned (:func:`composite.plan.make_plan`)
and written by the SVS or TIFF writer like any slide. Not written: the source's label and macro images.
"""

from __future__ import annotations

import math
import os
import re
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from ... import __version__
from ...errors import DestinationError
from ...geometry import Box
from ...model import Level, Slide
from ...output import ConversionReport, LevelReport, WriteOptions, atomic_output, check_destination
from ...plan import ConversionPlan, PlanRules, Writer, make_plan
from ...progress import ProgressCallback
from ..tiffwrite import SVS, TIFF
from .components import nominal_downsample
from .generations import generation, new_generation, put_in_place, sweep
from .manifest import Component, Layer, Manifest, serialize
from .window import window

PIECE_WRITERS: Final[dict[str, tuple[Writer, str]]] = {"svs": (SVS, ".svs"), "tiff": (TIFF, ".tif")}


@dataclass(frozen=True)
class _Piece:
    layer: int
    row: int
    col: int
    box: Box
    relative: str  # path in the manifest


class AciWriter:
    """ACI manifests with pyramidal pieces: the plan's level 0 is cut, each piece planned anew."""

    name = "aci"
    # Only the tile and codec checks matter here: the pieces are planned under their writer's rules.
    rules = PlanRules(container="ACI", default_tile=(240, 240), levels=False)

    def write(self, plan: ConversionPlan, dst: Path, *, progress: ProgressCallback) -> ConversionReport:
        """Write ``plan.slide`` as ``dst`` (an ``.aci`` manifest) and its pieces directory."""
        return _write(plan.slide, Path(dst), plan.options, progress)


WRITER = AciWriter()


def _write(slide: Slide, dst: Path, options: WriteOptions, progress: ProgressCallback) -> ConversionReport:
    piece_size = options.aci.piece_size
    write_piece, suffix = PIECE_WRITERS[options.aci.piece_format]
    folder = pieces_dir(dst)
    check_destination(dst, overwrite=options.overwrite, directory=False)
    check_destination(folder, overwrite=options.overwrite, directory=True)

    # Replacing: the new pieces go to a new generation folder beside the old ones (generations.py).
    replacing = os.path.isdir(folder) and not os.path.islink(folder) and any(os.scandir(folder))
    gen = new_generation() if replacing else ""
    layers = _layers(slide)
    step = _step(slide.levels[0], piece_size)
    prefix = f"{folder.name}/{gen}" if gen else folder.name
    pieces = _plan(slide.dimensions, step, layers, prefix, suffix)
    manifest = Manifest(
        (),
        tuple(
            Layer(number, z, tuple(Component(p.relative, p.box.y, p.box.x) for p in pieces if p.layer == number))
            for number, (z, _) in enumerate(layers)
        ),
    )
    header = f"Aperio Compound Image written by composite {__version__}\nsource: {slide.title or slide.path.name}"
    text = serialize(manifest, header=header)

    workers = max(1, min(options.workers or os.cpu_count() or 1, len(pieces)))
    piece_options = replace(
        options,
        overwrite=False,
        workers=max(1, (options.workers or os.cpu_count() or 1) // workers),
        # pieces smaller than the usual 1024 px floor still get a reduced level
        min_level_size=options.min_level_size or min(1024, max(step) // 4),
    )

    def write_all(tmp_dir: Path) -> list[ConversionReport]:
        for number in range(1, len(layers)):
            (tmp_dir / f"layer{number}").mkdir()
        try:
            return _write_pieces(slide, layers, pieces, prefix, tmp_dir, write_piece, piece_options, workers, progress)
        except DestinationError as err:  # a full disk: name the output, not a piece's hidden temporary
            text = str(err)
            if not text.startswith(str(tmp_dir)):
                raise
            raise DestinationError(f"{dst}: {text[len(str(tmp_dir)) :].partition(': ')[2]}") from err

    if replacing:
        with (
            generation(folder, gen) as tmp_dir,
            atomic_output(dst, overwrite=options.overwrite) as tmp_manifest,
        ):
            reports = write_all(tmp_dir)
            tmp_manifest.write_text(text, encoding="utf-8")
            put_in_place(tmp_dir, gen)  # then the manifest's rename commits it
        sweep(dst, folder)
    else:
        # Exits run inner first: the pieces directory is renamed into place, then the manifest.
        with (
            atomic_output(dst, overwrite=options.overwrite) as tmp_manifest,
            atomic_output(folder, overwrite=options.overwrite, directory=True) as tmp_dir,
        ):
            reports = write_all(tmp_dir)
            tmp_manifest.write_text(text, encoding="utf-8")
    return ConversionReport(destination=dst, format="aci", levels=_summary(slide, reports), associated=[])


def pieces_dir(dst: Path) -> Path:
    """The directory of pieces beside the manifest ``dst``: ``DST_pieces``."""
    return dst.with_name(re.sub(r"[\s=#]", "_", dst.stem) + "_pieces")


def _layers(slide: Slide) -> list[tuple[float, list[Level]]]:
    """(Z, levels) of the nominal plane (Z 0) and every focal plane with a readable Z, by Z."""
    layers = [(0.0, slide.levels)]
    for name, levels in slide.focal_planes.items():
        z = plane_z(name)
        if z is not None and z != 0 and levels:
            layers.append((z, levels))
    return sorted(layers, key=lambda layer: layer[0])


def plane_z(name: str) -> float | None:
    """The Z of a focal plane name: ``z-1.5`` -> -1.5, ``u2`` -> 2, ``d1`` -> -1; else None."""
    match = re.fullmatch(r"([zud])([+-]?\d+(?:\.\d+)?)", name)
    if not match:
        return None
    value = float(match.group(2))
    return -value if match.group(1) == "d" else value


def _step(level0: Level, piece_size: int) -> tuple[int, int]:
    """Piece pitch: a multiple of the tile size (and of lower-level downsamples where it fits)."""
    steps = []
    for tile in (level0.grid.tile_width, level0.grid.tile_height):
        if tile > piece_size:
            steps.append(piece_size)
            continue
        unit = tile
        for ds in (4, 16, 64, 256):
            if math.lcm(unit, ds) > piece_size:
                break
            unit = math.lcm(unit, ds)
        steps.append(piece_size // unit * unit)
    return steps[0], steps[1]


def _plan(
    size: tuple[int, int], step: tuple[int, int], layers: list[tuple[float, list[Level]]], folder: str, suffix: str
) -> list[_Piece]:
    width, height = size
    cols, rows = -(-width // step[0]), -(-height // step[1])
    digits = len(str(max(rows, cols) - 1))
    pieces = []
    for number in range(len(layers)):
        sub = "" if len(layers) == 1 or number == 0 else f"layer{number}/"
        for row in range(rows):
            for col in range(cols):
                x, y = col * step[0], row * step[1]
                box = Box(x, y, min(step[0], width - x), min(step[1], height - y))
                name = f"{folder}/{sub}r{row:0{digits}d}_c{col:0{digits}d}{suffix}"
                pieces.append(_Piece(number, row, col, box, name))
    return pieces


def _write_pieces(
    slide: Slide,
    layers: list[tuple[float, list[Level]]],
    pieces: list[_Piece],
    prefix: str,
    tmp_dir: Path,
    write_piece: Writer,
    options: WriteOptions,
    workers: int,
    progress: ProgressCallback,
) -> list[ConversionReport]:
    def one(piece: _Piece) -> ConversionReport:
        view = window(slide, piece.box, levels=layers[piece.layer][1])
        target = tmp_dir / piece.relative[len(prefix) + 1 :]
        with make_plan(view, options, write_piece.rules, spool_dir=target.parent) as plan:
            return write_piece.write(plan, target, progress=lambda *_: None)

    reports: list[ConversionReport] = []
    pool = ThreadPoolExecutor(workers, thread_name_prefix="composite-pieces")
    pending: set[Future[ConversionReport]] = set()
    try:
        # A few pieces in flight at a time: memory is bounded by the pieces being written.
        for index, piece in enumerate(pieces, 1):
            pending.add(pool.submit(one, piece))
            while pending and (len(pending) >= 2 * workers or index == len(pieces)):
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                reports.extend(future.result() for future in done)  # re-raises a piece's error
                progress("pieces", len(reports), len(pieces))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return reports


def _summary(slide: Slide, reports: list[ConversionReport]) -> list[LevelReport]:
    """One line per level across all pieces: copied if every piece copied it."""
    width, height = slide.dimensions
    count = min(len(r.levels) for r in reports)
    summary = []
    for index in range(count):
        levels = [r.levels[index] for r in reports]
        first = levels[0]
        ds = nominal_downsample(first.downsample)
        methods = {level.method for level in levels}
        summary.append(
            LevelReport(
                index=index,
                width=math.ceil(width / ds),
                height=math.ceil(height / ds),
                downsample=ds,
                method="copy" if methods == {"copy"} else ("reencode" if "reencode" in methods else "downsample"),
                tile_width=first.tile_width,
                tile_height=first.tile_height,
                compression=first.compression,
                copied_tiles=sum(level.copied_tiles for level in levels),
            )
        )
    return summary
