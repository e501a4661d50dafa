"""A synthetic slide that looks like a scan: tissue pieces on glass, with dust and shading.

:class:`GlassScene` is an optional scene for :func:`composite.synthetic.write_synthetic_slide`
(``scene=GlassScene(width=..., height=..., tissue=0.35)``); without it the generator's default
pattern (tissue everywhere) is unchanged, so tests and benchmark figures made with it do not move.
Pixels are a pure function of level-0 coordinates and the seed:

- **glass**: a light grey (243, 243, 245) darkened towards the corners by up to
  :data:`SHADING` levels (a scanner's uneven illumination), with +-1 level of pixel noise;
- **tissue pieces**: a few overlapping ellipses with wavy borders in the middle of the slide,
  grown or shrunk together until they cover the ``tissue`` fraction of the area (measured on a
  coarse grid, so within about a percent); their border is 2 px soft. Inside: the default
  generator's H&E pattern, except for patches of **pale fat**: glass-coloured cells about 56 px
  across with pale pink membranes 1-2 px wide (the faintest tissue a glass test must keep);
- **dust**: dark specks 1.5-5 px across on about one in ten 384-px cells, over everything.

Lower levels are computed at their own scale (positions at level-pixel centres, the H&E pattern
box-averaged, edges, membranes and specks widened to a level pixel and faded by their coverage):
close to, but not exactly, box averages of level 0.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .codecs import RGBArray
from .synthetic import region as pattern_region

GLASS = (243.0, 243.0, 245.0)
SHADING = 7.0  # levels darker in the corners than in the centre
EDGE = 2.0  # px, soft border of a tissue piece at level 0
FAT_CELL = 56.0  # px, a fat cell's size
MEMBRANE = (226.0, 192.0, 214.0)
DUST_CELL = 384  # px; at most one speck per cell
DUST_CHANCE = 0.1
WOBBLE = 0.02  # of the slide's short side: how wavy the pieces' borders are
_COARSE = 160  # samples a side used to set the tissue fraction
Floats = NDArray[np.float32]


@dataclass(frozen=True)
class _Piece:
    cx: float
    cy: float
    rx: float
    ry: float

    @property
    def radius(self) -> float:
        return min(self.rx, self.ry)


@dataclass(frozen=True, kw_only=True)
class GlassScene:
    """Tissue pieces covering ``tissue`` of a ``width`` x ``height`` slide's area, on glass."""

    width: int
    height: int
    tissue: float = 0.35
    seed: int = 0
    pieces: tuple[_Piece, ...] = field(init=False, repr=False)
    threshold: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.tissue < 0.9:
            raise ValueError(f"tissue fraction must be in (0, 0.9), got {self.tissue}")
        rng = np.random.default_rng([self.seed, 18])
        size = min(self.width, self.height)
        pieces = tuple(
            _Piece(
                cx=float(rng.uniform(0.28, 0.72) * self.width),
                cy=float(rng.uniform(0.28, 0.72) * self.height),
                rx=float(rng.uniform(0.16, 0.3) * size),
                ry=float(rng.uniform(0.16, 0.3) * size),
            )
            for _ in range(4 + self.seed % 3)
        )
        object.__setattr__(self, "pieces", pieces)
        object.__setattr__(self, "threshold", self._fit_threshold())

    def _fit_threshold(self) -> float:
        xs = (np.arange(_COARSE, dtype=np.float32) + 0.5) * (self.width / _COARSE)
        ys = (np.arange(_COARSE, dtype=np.float32) + 0.5) * (self.height / _COARSE)
        inside = self._inside(xs, ys, limit=None)
        # The tissue is where ``inside`` > threshold: the threshold is that quantile of the samples.
        return float(np.quantile(inside, 1.0 - self.tissue))

    def _inside(self, xs: Floats, ys: Floats, *, limit: float | None) -> Floats:
        """How far (px) each point is inside the nearest piece's wavy border (negative: outside).
        Pieces farther than ``limit`` px from every point are skipped."""
        x, y = xs[None, :], ys[:, None]
        best = np.full((len(ys), len(xs)), -1e9, np.float32)
        turn = 2 * math.pi / max(self.width, self.height)
        wobble = WOBBLE * min(self.width, self.height) * (np.sin(x * 9 * turn + self.seed) + np.cos(y * 7 * turn))
        for piece in self.pieces:
            if limit is not None:
                reach_x, reach_y = piece.rx * (1 + limit / piece.radius), piece.ry * (1 + limit / piece.radius)
                if xs[-1] < piece.cx - reach_x or xs[0] > piece.cx + reach_x:
                    continue
                if ys[-1] < piece.cy - reach_y or ys[0] > piece.cy + reach_y:
                    continue
            d = np.sqrt(((x - piece.cx) / piece.rx) ** 2 + ((y - piece.cy) / piece.ry) ** 2)
            np.maximum(best, piece.radius * (1 - d), out=best)
        result: Floats = best + wobble
        return result

    def region(
        self, x: int, y: int, width: int, height: int, *, downsample: int = 1, tissue: bool = True, dust: bool = True
    ) -> RGBArray:
        """Pixels of a box of the level with ``downsample``; ``tissue``/``dust`` False leave those
        layers out (tests use the difference to know where tissue and dust are)."""
        ds = float(downsample)
        xs = ((np.arange(x, x + width, dtype=np.float32) + 0.5) * ds).astype(np.float32)
        ys = ((np.arange(y, y + height, dtype=np.float32) + 0.5) * ds).astype(np.float32)
        rgb = self._glass(xs, ys, x, y, ds)
        if tissue:
            edge = max(EDGE, ds)
            # The wobble reaches 2 * WOBBLE * size; beyond that and the edge nothing is tissue.
            reach = self.threshold - edge - 2 * WOBBLE * min(self.width, self.height)
            weight = np.clip((self._inside(xs, ys, limit=-reach) - self.threshold) / edge + 0.5, 0.0, 1.0)
            if weight.any():
                stained = pattern_region(x, y, width, height, downsample=downsample, seed=self.seed, holes=False)
                stained = stained.astype(np.float32)
                fat = self._fat(xs, ys, ds)
                pale = rgb * (1 - fat[1][:, :, None]) + np.asarray(MEMBRANE, np.float32) * fat[1][:, :, None]
                inner = stained * (1 - fat[0][:, :, None]) + pale * fat[0][:, :, None]
                rgb = rgb * (1 - weight[:, :, None]) + inner * weight[:, :, None]
        if dust:
            rgb = self._dust(rgb, xs, ys, ds)
        pixels: RGBArray = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
        return pixels

    def _glass(self, xs: Floats, ys: Floats, x: int, y: int, ds: float) -> Floats:
        u = (xs / self.width - 0.5) ** 2
        v = (ys / self.height - 0.5) ** 2
        shade = SHADING * 2 * (u[None, :] + v[:, None])
        noise = _noise(np.arange(x, x + len(xs)), np.arange(y, y + len(ys)), self.seed) / ds
        base = np.asarray(GLASS, np.float32)[None, None, :] - (shade + noise)[:, :, None]
        result: Floats = base.astype(np.float32)
        return result

    def _fat(self, xs: Floats, ys: Floats, ds: float) -> tuple[Floats, Floats]:
        """(weight of the fat patch, weight of its membranes) at each point."""
        turn = 2 * math.pi / max(self.width, self.height)
        patch = np.sin(xs[None, :] * 6 * turn + 1.0 + self.seed) * np.cos(ys[:, None] * 5 * turn + 0.3)
        fat = np.clip((patch - 0.7) * 16.0, 0.0, 1.0).astype(np.float32)
        wavy_x = xs[None, :] + 4.0 * np.sin(ys[:, None] / 9.0)
        wavy_y = ys[:, None] + 4.0 * np.sin(xs[None, :] / 11.0)
        gx = np.abs((wavy_x % FAT_CELL) - FAT_CELL / 2)
        gy = np.abs((wavy_y % FAT_CELL) - FAT_CELL / 2)
        to_wall = FAT_CELL / 2 - np.maximum(gx, gy)  # level-0 px from the cell wall
        # About 2 px wide at level 0; a coarser pixel holding a wall is covered 2 / ds of its width.
        scale = max(1.0, ds)
        membrane = np.clip(1.0 - to_wall / scale, 0.0, 1.0) * min(1.0, 2.0 / scale)
        return fat, membrane.astype(np.float32)

    def _dust(self, rgb: Floats, xs: Floats, ys: Floats, ds: float) -> Floats:
        margin = 8.0
        first_x, last_x = int((xs[0] - margin) // DUST_CELL), int((xs[-1] + margin) // DUST_CELL)
        first_y, last_y = int((ys[0] - margin) // DUST_CELL), int((ys[-1] + margin) // DUST_CELL)
        for cy in range(first_y, last_y + 1):
            for cx in range(first_x, last_x + 1):
                speck = _speck(self.seed, cx, cy)
                if speck is None:
                    continue
                sx, sy, radius, darkness = speck
                if not (xs[0] - margin <= sx <= xs[-1] + margin and ys[0] - margin <= sy <= ys[-1] + margin):
                    continue
                # Only the few pixels around the speck are touched.
                cols = np.flatnonzero(np.abs(xs - sx) <= margin * ds)
                rows = np.flatnonzero(np.abs(ys - sy) <= margin * ds)
                if not len(cols) or not len(rows):
                    continue
                box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
                dist = np.sqrt((xs[box[1]][None, :] - sx) ** 2 + (ys[box[0]][:, None] - sy) ** 2) / ds
                cover = np.clip(radius / ds + 0.5 - dist, 0.0, 1.0) * min(1.0, (radius / ds) ** 2 * 2)
                rgb[box] -= (darkness * cover)[:, :, None]
        return rgb


@functools.lru_cache(maxsize=65536)
def _speck(seed: int, cx: int, cy: int) -> tuple[float, float, float, float] | None:
    """The speck of dust cell (cx, cy): (x, y, radius, darkness), or None."""
    rng = np.random.default_rng([seed, cx & 0xFFFFFFFF, cy & 0xFFFFFFFF, 9])
    if rng.random() >= DUST_CHANCE:
        return None
    x = (cx + rng.uniform(0.1, 0.9)) * DUST_CELL
    y = (cy + rng.uniform(0.1, 0.9)) * DUST_CELL
    return float(x), float(y), float(rng.uniform(0.75, 2.5)), float(rng.uniform(60, 140))


def _noise(cols: NDArray[np.int64], rows: NDArray[np.int64], seed: int) -> Floats:
    """-1..1 per pixel, reproducible (a hash of the position)."""
    h = (cols[None, :].astype(np.int64) * 2654435761 + rows[:, None].astype(np.int64) * 40503 + seed * 97) & 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * 2246822519) & 0xFFFFFFFF
    result: Floats = (((h ^ (h >> 13)) & 0xFF).astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    return result
