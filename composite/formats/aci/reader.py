"""Open an ACI manifest as one lazy :class:`~composite.model.Slide` over its components.

Opening parses the manifest, checks every component path (docs/aci.md, "Untrusted input"),
opens each *distinct* component file once to learn its size and pyramid, and builds a spatial
index per layer; no pixel is read. Tiles are painted on demand from the components under them
(:mod:`.canvas`), borrowing open slides from a bounded pool (:mod:`.components`).

The slide: levels are the nominal layer (Z 0, else the first); other layers are
``focal_planes["z<Z>"]``; attributes become ``description`` (``attr=value`` joined by ``|``) and
``properties["aci.<attr>"]``; mpp and magnification are those of the largest component. Reduced
levels are the downsamples of the largest component's pyramid; components without that level are
reduced on the fly (a writer builds any further levels). Components may be anything
:func:`composite.registry.open_slide` opens, including other ACIs nested up to ``MAX_DEPTH``.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path

import numpy as np

from ... import registry
from ...codecs import TileEncoding
from ...errors import CompositeError, FormatError, LimitError, UnsafePathError, where
from ...geometry import TileGrid, choose_tile_size
from ...limits import identity
from ...model import Level, Slide
from .canvas import CompositeTileReader, LayerIndex, trimmed_sizes
from .components import DEFAULT_MAX_OPEN, ComponentInfo, ComponentPool
from .manifest import MAX_CANVAS_PIXELS, Manifest, read_manifest
from .paths import manifest_base, resolve_component
from .sniff import looks_like_aci
from .table import ComponentTable, first_lines

NAME = "aci"
_OPENING: ContextVar[tuple[tuple[int, int], ...]] = ContextVar("composite_aci_opening", default=())
MAX_DEPTH = 4
MAX_EMPTY_RATIO = 64  # a canvas may be this many times the area its images cover...
MAX_EMPTY_PIXELS = 2**28  # ... plus this much (a 16,384 px square), before it is refused as mostly empty
DEFAULT_TILE = 512


def open_slide(path: str | Path, *, allow_outside: bool = False, max_open: int = DEFAULT_MAX_OPEN) -> Slide:
    """Open the manifest at ``path``; ``allow_outside`` trusts component paths outside its directory."""
    path = Path(path)
    pool = ComponentPool(max_open=max_open)
    try:
        slide = _Opener(pool, allow_outside=allow_outside).open(path, depth=0, stack=(path,))
    except BaseException:
        pool.close()
        raise
    slide.closers.append(pool.close)
    return slide


def open_source(path: str | Path, *, allow_outside: bool = False) -> Slide:
    """Open any slide as :func:`composite.registry.open_slide` does, honouring ``allow_outside`` for ACI."""
    path = Path(path)
    if allow_outside and registry.detect_format(path).NAME == NAME:
        return open_slide(path, allow_outside=True)
    return registry.open_slide(path)


class _Opener:
    """Opens a composite and the composites nested in it, sharing one component pool."""

    def __init__(self, pool: ComponentPool, *, allow_outside: bool) -> None:
        self.pool = pool
        self.allow_outside = allow_outside

    def open(self, path: Path, *, depth: int, stack: tuple[Path, ...]) -> Slide:
        # Manifests being opened in this context, by file identity: a cycle through another
        # manifest, a hard link, a symlink or a non-.aci name is caught whichever way it comes
        # back here (also through registry.open_slide, which starts a new _Opener).
        opening = _OPENING.get()
        ident = _identity(path)
        if ident in opening:
            raise FormatError(f"{path}: manifests include each other ({' -> '.join(p.name for p in stack)})")
        if len(opening) > MAX_DEPTH:
            raise LimitError(f"{path}: ACI nested deeper than {MAX_DEPTH} levels")
        token = _OPENING.set((*opening, ident))
        try:
            manifest = read_manifest(path)
            if manifest.component_count == 0:
                raise FormatError(f"{path}: manifest has no image lines")
            files, infos, resolved = self._components(manifest, path, depth, stack)
            return _build(manifest, path, files, infos, resolved, self.pool)
        finally:
            _OPENING.reset(token)

    def _components(
        self, manifest: Manifest, path: Path, depth: int, stack: tuple[Path, ...]
    ) -> tuple[dict[str, int], list[ComponentInfo], list[Path]]:
        """Check every distinct path before opening any, then learn each file's header once."""
        base = manifest_base(path)
        by_text: dict[str, int] = {}
        by_real: dict[Path, int] = {}
        reals: list[Path] = []
        first: list[tuple[str, int]] = []
        for raw, line in first_lines(layer.components for layer in manifest.layers).items():
            real = resolve_component(raw, manifest=path, line=line, base=base, allow_outside=self.allow_outside)
            if real not in by_real:
                by_real[real] = len(reals)
                reals.append(real)
                first.append((raw, line))
            by_text[raw] = by_real[real]
        infos = [
            self._info(real, path, line, raw, depth, stack) for real, (raw, line) in zip(reals, first, strict=True)
        ]
        return by_text, infos, reals

    def _info(
        self, real: Path, manifest: Path, line: int, raw: str, depth: int, stack: tuple[Path, ...]
    ) -> ComponentInfo:
        def opener() -> Slide:
            if looks_like_aci(real):
                if _identity(real) in _OPENING.get():
                    chain = " -> ".join(p.name for p in (*stack, real))
                    raise FormatError(f"{where(manifest, line)}: manifests include each other ({chain})")
                if depth + 1 > MAX_DEPTH:
                    raise LimitError(f"{where(manifest, line)}: ACI nested deeper than {MAX_DEPTH} levels")
                return self.open(real, depth=depth + 1, stack=(*stack, real))
            return registry.open_slide(real)

        try:
            return self.pool.info(real, opener)
        except (UnsafePathError, LimitError):
            raise  # already precise: they name the nested manifest and line
        except CompositeError as err:
            if str(err).startswith(str(manifest)):
                raise
            message = f"{where(manifest, line)}: component {raw!r}: {err}"
            try:
                wrapped = type(err)(message)  # keep the class: callers catch SlideNotFoundError etc.
            except TypeError:
                wrapped = FormatError(message)
            raise wrapped from err


def _identity(path: Path) -> tuple[int, int]:
    try:
        return identity(path)
    except OSError as err:
        raise FormatError(f"{path}: cannot be opened ({err.strerror or err})") from err


def _build(
    manifest: Manifest,
    path: Path,
    files: dict[str, int],
    infos: list[ComponentInfo],
    reals: list[Path],
    pool: ComponentPool,
) -> Slide:
    widths = np.array([i.width for i in infos], np.int64)
    heights = np.array([i.height for i in infos], np.int64)
    layers = []
    canvas_w = canvas_h = 0
    covered = 0.0
    for layer in manifest.layers:
        if not layer.components:
            continue
        table = ComponentTable.of(layer.components)
        xs, ys = table.xs, table.ys
        ids = np.array([files[p] for p in table.paths], np.int64)[table.ids]
        ws, hs = widths[ids], heights[ids]
        if manifest.edgetrim:
            ws, hs = trimmed_sizes(xs, ys, ws, hs)
        canvas_w = max(canvas_w, int((xs + ws).max()))
        canvas_h = max(canvas_h, int((ys + hs).max()))
        covered += float((ws.astype(np.float64) * hs).sum())
        layers.append((layer, LayerIndex(xs, ys, ws, hs, ids, reals)))
    if canvas_w * canvas_h > MAX_CANVAS_PIXELS:
        raise LimitError(f"{path}: canvas {canvas_w} x {canvas_h} px is more than the {MAX_CANVAS_PIXELS:,} allowed")
    if canvas_w * canvas_h > MAX_EMPTY_RATIO * covered + MAX_EMPTY_PIXELS:
        # A conversion writes every tile of the canvas: a few components far apart would be
        # millions of white tiles from a few bytes of manifest (limits.md).
        raise LimitError(
            f"{path}: canvas {canvas_w} x {canvas_h} px is mostly empty: its images cover {covered:.0f} px "
            f"(limit: {MAX_EMPTY_RATIO} x that + {MAX_EMPTY_PIXELS:,} px)"
        )
    main = max(range(len(infos)), key=lambda i: (infos[i].width * infos[i].height, -i))
    downsamples = _downsamples(infos[main], canvas_w, canvas_h)
    tile = _tile_size(infos[main])
    encodings = {d: _copy_encoding(infos, d, tile) for d in downsamples}

    def levels_of(index: LayerIndex) -> list[Level]:
        levels = []
        for d in downsamples:
            grid = TileGrid(-(-canvas_w // d), -(-canvas_h // d), *tile)
            levels.append(Level(grid, float(d), CompositeTileReader(index, grid, d, pool, encoding=encodings[d])))
        return levels

    nominal = next((i for i, (layer, _) in enumerate(layers) if layer.z == 0), 0)
    planes = {f"z{_z_name(layer.z)}": levels_of(index) for i, (layer, index) in enumerate(layers) if i != nominal}
    mpp, magnification = infos[main].mpp, infos[main].magnification
    return Slide(
        format=NAME,
        path=path,
        levels=levels_of(layers[nominal][1]),
        properties=_properties(manifest, len(reals)),
        mpp=mpp,
        magnification=magnification,
        description="|".join(f"{k}={v}" for k, v in manifest.attributes) or None,
        focal_planes=planes,
    )


def _downsamples(main: ComponentInfo, width: int, height: int) -> list[int]:
    result = [1]
    for ds in sorted(set(main.downsamples)):
        if ds.is_integer() and ds > result[-1] and max(width, height) / ds >= 1:
            result.append(int(ds))
    return result


def _tile_size(main: ComponentInfo) -> tuple[int, int]:
    """The largest component's tile size when it is tiled (aligned pieces then copy), else 512."""
    base = main.levels[0]
    source = base.tile_size if base.tiled else None
    return choose_tile_size(source, default=(DEFAULT_TILE, DEFAULT_TILE), keep=(128, 2048), multiple=16)


def _copy_encoding(infos: list[ComponentInfo], downsample: int, tile: tuple[int, int]) -> TileEncoding | None:
    """JPEG when every component stores this level as tiled JPEG of the composite's tile size."""
    kinds = set()
    for info in infos:
        level = info.level_at(float(downsample))
        if level is None or not level.tiled or level.tile_size != tile or level.encoding is None:
            return None
        if level.encoding.compression != "jpeg":
            return None
        kinds.add(level.encoding.rgb)
    return TileEncoding("jpeg", rgb=kinds.pop()) if len(kinds) == 1 else None


def _z_name(z: float) -> str:
    return str(int(z)) if z.is_integer() else repr(z)


def _properties(manifest: Manifest, files: int) -> dict[str, str]:
    properties = {f"aci.{key}": value for key, value in manifest.attributes}
    properties["aci.layers"] = str(sum(1 for layer in manifest.layers if layer.components))
    properties["aci.components"] = str(manifest.component_count)
    properties["aci.files"] = str(files)
    properties["openslide.vendor"] = NAME
    return properties
