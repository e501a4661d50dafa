"""Opening a CWS directory as a Slide: levels from INI files, planes, companions, metadata.

Opening reads the INI files and lists the directory once; no block file is opened or stat'ed
(memory and time grow with the INI text only), except the first block of a file whose header
lacks ``iImageWidth``/``iImageHeight``. Missing block files are found from that listing, drawn
white, and reported in one warning.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

from ... import codecs
from ...aperio import parse_fields
from ...codecs import RGBArray, TileEncoding
from ...cwsini import KNOWN_INI, IniFile, Value, level_sections, number, parse_ini, scale
from ...errors import (
    CompositeError,
    FormatError,
    SlideNotFoundError,
    TileReadError,
    UnsafePathError,
    UnsupportedFormatError,
    where,
)
from ...geometry import TileGrid
from ...model import AssociatedImage, Level, Slide
from .blocks import BlockGridReader, ComposedBlockReader, read_block
from .placement import (
    Frame,
    Geometry,
    base_frame,
    check_blocks,
    check_extent,
    geometry,
    positions,
    regular_grid,
)

NAME = "cws"
ASSOCIATED = {"slidethumb.jpg": "thumbnail", "label.jpg": "label", "macro.jpg": "macro", "ss1.jpg": "ss1"}
_PLANE = re.compile(r"(.+)_([ud][1-9])\.jpe?g")
_MAX_MISSING_LISTED = 10


class MissingBlocksWarning(UserWarning):
    """Block files named in the INI files are not in the directory (they are drawn white).

    ``missing`` lists every missing file name; the message names the first ten.
    """

    def __init__(self, message: str, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])


def listing(directory: Path) -> dict[str, str]:
    """Lower-cased name -> real name of every file in ``directory`` (names match case-insensitively)."""
    try:
        with os.scandir(directory) as entries:
            return {entry.name.lower(): entry.name for entry in entries if not _is_dir(entry)}
    except OSError as err:
        raise SlideNotFoundError(f"{directory}: cannot be listed ({err.strerror or err})") from err


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A directory (symlinks followed); a symlink loop is listed as a file and refused when read."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def sniff(path: Path) -> bool:
    if path.is_file():
        return path.name.lower() in KNOWN_INI
    if not path.is_dir():
        return False
    # Stop at the first INI: a large slide's directory holds a hundred thousand block files.
    try:
        with os.scandir(path) as entries:
            return any(entry.name.lower() in KNOWN_INI for entry in entries)
    except OSError:
        return False


def _plain_name(ini: IniFile, value: Value) -> str:
    name = value.text
    if not name or any(c in name for c in "/\\:\x00") or name.startswith("."):
        raise UnsafePathError(f"{where(ini.path, value.line)}: {name[:60]!r} is not a plain file name")
    return name


def _level_files(main: IniFile, main_name: str, files: dict[str, str]) -> tuple[list[str], dict[str, dict[str, Value]]]:
    """INI files to read as levels, in preference order, and each file's ``[LevelN]`` section."""
    names = [main_name]
    specs: dict[str, dict[str, Value]] = {}
    for index, section in level_sections(main).items():
        value = section.get("tinifile")
        if value is None:
            if index == 0:
                specs.setdefault(main_name, section)  # Digital Slide Studio: [Level0] is FinalScan's
            continue
        lower = _plain_name(main, value).lower()
        if lower not in files:
            raise FormatError(f"{where(main.path, value.line)}: tIniFile={value.text}: no such file beside it")
        if lower not in specs:
            specs[lower] = section
            names.append(lower)
    names += [name for name in KNOWN_INI if name in files]
    return list(dict.fromkeys(names)), specs


def _measure_first_block(ini: IniFile, files: dict[str, str], directory: Path, suffix: str) -> tuple[int, int] | None:
    if ini.number("iImageWidth") is not None and ini.number("iImageHeight") is not None:
        return None
    for name in ini.block_names:
        real = files.get((name + suffix).lower())
        if real is not None:
            try:
                info = codecs.checked_jpeg_info(read_block(directory / real))
            except TileReadError as err:
                raise FormatError(f"{directory / real}: not a JPEG block ({err})") from err
            return info.width, info.height
    return None


def _size(ini: IniFile, section: dict[str, Value], key: str) -> int | None:
    value = section.get(key)
    parsed = None if value is None else number(value.text)
    if value is None or parsed is None:
        return None
    if parsed != int(parsed) or parsed < 1:
        raise ini.error(value.line, f"{key}={value.text} is not an image size in pixels")
    return int(parsed)


def _suffix(ini: IniFile) -> str:
    kind = (ini.text("tImageType") or ".jpg").lower()
    return kind if kind in (".jpg", ".jpeg") else ".jpg"


def background(ini: IniFile) -> tuple[int, int, int] | None:
    """Our ``tBackgroundColor=R,G,B``: the colour of blocks left out as glass (None: absent or not
    three levels 0-255; gaps are then white)."""
    text = ini.text("tBackgroundColor")
    parts = (text or "").split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return None
    red, green, blue = (int(p) for p in parts)
    return red, green, blue


class _Levels:
    """Builds the levels of one directory, collecting missing block names on the way."""

    def __init__(self, directory: Path, files: dict[str, str], gap: tuple[int, int, int] | None = None) -> None:
        self.directory = directory
        self.files = files
        self.gap = gap  # the colour of cells no block is listed for (white when None)
        self.missing: list[str] = []

    def paths(self, names: list[str], suffix: str, *, report: bool) -> list[str | None]:
        """The real file name of each block (None when missing), matched case-insensitively."""
        files = self.files
        out = [files.get(name.lower() + suffix) for name in names]
        if report and None in out:
            self.missing += [name + suffix for name, real in zip(names, out, strict=True) if real is None]
        return out

    def level(
        self, ini: IniFile, geom: Geometry, frame: Frame, size: tuple[int, int], ds: float, paths: list[str | None]
    ) -> Level:
        width, height = size
        check_extent(ini, geom, width, height, sum(name is not None for name in paths))
        px, py = positions(ini, geom, frame)
        grid = TileGrid(width, height, geom.block_width, geom.block_height)
        cells = regular_grid(px, py, geom, width, height)
        quality = ini.number("iFinalImageQuality")
        if cells is not None:
            reader: BlockGridReader | ComposedBlockReader = BlockGridReader(
                cells,
                self.directory,
                paths,
                int(quality) if quality and 1 <= quality <= 100 else None,
                (geom.block_width, geom.block_height),
                gap=self.gap,
            )
        else:
            block_size = (geom.block_width, geom.block_height)
            reader = ComposedBlockReader(grid, px, py, block_size, self.directory, paths, gap=self.gap)
        return Level(grid, ds, reader)


def open_slide(path: Path) -> Slide:
    directory = path if path.is_dir() else path.parent
    files = listing(directory)
    main_name = next((name for name in KNOWN_INI if name in files), None)
    if main_name is None:
        raise UnsupportedFormatError(f"{directory}: no FinalScan.ini (or other CWS INI file) in the directory")
    main = parse_ini(directory / files[main_name])
    check_blocks(main)
    names, specs = _level_files(main, main_name, files)
    parsed: list[tuple[str, IniFile, Geometry]] = []
    for name in names:
        ini = main if name == main_name else parse_ini(directory / files[name])
        if not ini.block_names:
            continue  # an empty companion INI (Olympus writes some): not a level
        measured = _measure_first_block(ini, files, directory, _suffix(ini))
        parsed.append((name, ini, geometry(ini, measured=measured)))
    # The finest file is level 0; the others are levels in its stage frame, coarsest last.
    parsed.sort(key=lambda item: item[2].ux)
    base_name, base, base_geom = parsed[0]
    frame, width, height = base_frame(base, base_geom)
    crop = specs.get(base_name, {})
    width = min(width, _size(main, crop, "iwidth") or width)
    height = min(height, _size(main, crop, "iheight") or height)
    builder = _Levels(directory, files, background(main))
    levels: list[Level] = []
    for name, ini, geom in parsed:
        ds = (geom.ux / base_geom.ux + geom.uy / base_geom.uy) / 2
        if levels and ds < levels[-1].downsample * 1.01:
            continue  # the same resolution twice (ScanSlide.ini is also our last level): keep the first
        spec = specs.get(name, {})
        zoom = number(spec["izoom"].text) if "izoom" in spec else None
        if zoom and abs(zoom - ds) <= 0.02 * ds:
            ds = zoom
        size = (max(1, math.ceil(width / ds)), max(1, math.ceil(height / ds)))
        if levels:
            declared_w, declared_h = _size(main, spec, "iwidth"), _size(main, spec, "iheight")
            # Other producers' [Level1+] sizes are unreliable (docs/formats.md §1.3): trust them only when they fit.
            if declared_w and declared_h and abs(declared_w - width / ds) <= 2 and abs(declared_h - height / ds) <= 2:
                size = (declared_w, declared_h)
        paths = builder.paths(ini.block_names, _suffix(ini), report=True)
        levels.append(builder.level(ini, geom, frame, size if levels else (width, height), ds, paths))
    planes = {
        plane: [builder.level(base, base_geom, frame, (width, height), 1.0, paths)]
        for plane, paths in _plane_paths(base, builder).items()
    }
    if builder.missing:
        listed = ", ".join(builder.missing[:_MAX_MISSING_LISTED])
        more = len(builder.missing) - _MAX_MISSING_LISTED
        message = f"{directory}: {len(builder.missing)} block file(s) missing, drawn white: {listed}"
        message += f" and {more} more" if more > 0 else ""
        warnings.warn(MissingBlocksWarning(message, builder.missing), stacklevel=3)
    properties, mpp, magnification, description = _metadata(main)
    return Slide(
        format=NAME,
        path=directory,
        levels=levels,
        properties=properties,
        mpp=mpp,
        magnification=magnification,
        associated=_associated(directory, files),
        description=description,
        focal_planes=planes,
    )


def _plane_paths(base: IniFile, builder: _Levels) -> dict[str, list[str | None]]:
    """Focal planes ``DaN_u1``..``DaN_d4``: files beside the level-0 blocks (docs/formats.md §1.1)."""
    found: dict[str, set[str]] = {}
    for lower in builder.files:
        match = _PLANE.fullmatch(lower)
        if match:
            found.setdefault(match.group(2), set()).add(match.group(1))
    planes: dict[str, list[str | None]] = {}
    suffix = _suffix(base)
    for plane in sorted(found):
        names = found[plane]
        if names.isdisjoint(name.lower() for name in base.block_names):
            continue  # plane files of some other block set
        # A block without this plane is drawn white in it, not reported: scanners stack only some fields.
        planes[plane] = builder.paths([f"{name}_{plane}" for name in base.block_names], suffix, report=False)
    return planes


def _metadata(main: IniFile) -> tuple[dict[str, str], tuple[float, float] | None, float | None, str | None]:
    properties = {f"cws.{main.header_names[key]}": value.text for key, value in main.header.items()}
    description = main.text("tDescription") or None
    properties.update({f"aperio.{key}": value for key, value in parse_fields(description).items()})
    mpp_value, magnification = scale(main)
    mpp = (mpp_value, mpp_value) if mpp_value else None
    properties["openslide.vendor"] = NAME
    return properties, mpp, magnification, description


def _associated(directory: Path, files: dict[str, str]) -> dict[str, AssociatedImage]:
    images = {}
    for lower, name in ASSOCIATED.items():
        real = files.get(lower)
        if real is None:
            continue
        path = directory / real
        try:
            info = codecs.checked_jpeg_info(read_block(path))
        except CompositeError as err:
            warnings.warn(f"{path}: {name} image skipped, not a readable JPEG ({err})", stacklevel=4)
            continue
        loader = _loader(path, (info.width, info.height))
        images[name] = AssociatedImage(name, info.width, info.height, loader, _encoded(path, info.rgb))
    return images


def _loader(path: Path, size: tuple[int, int]) -> Callable[[], RGBArray]:
    def load() -> RGBArray:
        data = read_block(path)
        try:
            return codecs.decode_jpeg(data, size=size)
        except TileReadError as err:
            raise TileReadError(f"{path}: {err}") from err

    return load


def _encoded(path: Path, rgb: bool) -> Callable[[], tuple[bytes, TileEncoding]]:
    def encoded() -> tuple[bytes, TileEncoding]:
        return read_block(path), TileEncoding("jpeg", rgb=rgb)

    return encoded
