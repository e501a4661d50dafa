"""Scanner-style CWS directories for the tests, with the pixels a correct reader must show.

Like a Bacus/Olympus scan: 752x480 blocks overlapping their neighbours by 16 px, numbered
serpentine, ``FinalScan.INI`` in upper case with CRLF lines, odd key case and spaces around
``=``, ``dMagnification=%MAGNIFICATION%``. Each block's right and bottom 16 px, which the
neighbour further right or lower covers, are painted pure red: a reader with the wrong paint order
shows red. Options add a cropped edge column, a missing block, a focal stack and a low-resolution
``ScanSlide.INI``. The expected image is built by decoding the written JPEGs with Pillow.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from composite.synthetic import region

BLOCK_W, BLOCK_H, OVERLAP = 752, 480, 16
STEP_W, STEP_H = BLOCK_W - OVERLAP, BLOCK_H - OVERLAP
UNITS = 4  # stage units per pixel
RED = np.array([255, 0, 0], np.uint8)


@dataclass
class ScannerSlide:
    path: Path
    expected: NDArray[np.uint8]  # level 0 as a correct reader shows it (white where nothing is)
    planes: dict[str, NDArray[np.uint8]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    overview: NDArray[np.uint8] | None = None  # ScanSlide.INI's level, when written
    overview_ds: int = 0


def _jpeg(pixels: NDArray[np.uint8], quality: int = 92) -> tuple[bytes, NDArray[np.uint8]]:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    data = buffer.getvalue()
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _header(cols: int, rows: int, *, width: int, height: int, units: int) -> list[str]:
    return [
        "[Header]",
        "iVersion = 2",
        f"IIMAGEWIDTH = {width}",
        f"iImageHeight={height}",
        f"lXStepSize = {width * units}",
        f"lyStepSize={height * units}",
        "lXStageRef = 500000",
        "lYStageRef=400000",
        "lXOffset=0",
        "dMagnification=%MAGNIFICATION%",
        "tMPP = 0.2500",
        "tDescription=Bacus WebSlide|AppMag = 40|MPP = 0.25|Scanner = TEST",
        f"iAnalysisImageCount={cols * rows}",
    ]


def write_scanner_slide(
    directory: Path,
    *,
    cols: int = 4,
    rows: int = 3,
    crop_last_col: int | None = 300,
    missing: tuple[int, int] | None = (1, 1),
    planes: tuple[str, ...] = ("u1", "d1"),
    overview_ds: int = 0,
    x_origin: int = 900_000,
    y_origin: int = 700_000,
    shuffle: bool = False,
    true_size: tuple[int, int] | None = None,
) -> ScannerSlide:
    """Write the directory; blocks (col, row) are numbered serpentine from the top-left.

    ``shuffle`` writes the block sections in a random order; ``true_size`` adds a ``[Level0]``
    section that crops the canvas.
    """
    directory.mkdir(parents=True, exist_ok=True)
    canvas_w = (cols - 1) * STEP_W + BLOCK_W
    canvas_h = (rows - 1) * STEP_H + BLOCK_H
    truth = region(0, 0, canvas_w, canvas_h, seed=3)
    expected = np.full((canvas_h, canvas_w, 3), 255, np.uint8)
    plane_expected = {plane: np.full_like(expected, 255) for plane in planes}
    lines = _header(cols, rows, width=BLOCK_W, height=BLOCK_H, units=UNITS)
    slide = ScannerSlide(directory, expected)
    sections: list[list[str]] = []
    number = 0
    paint: list[tuple[int, int, str, NDArray[np.uint8]]] = []  # painted in (row, col) order at the end
    for row in range(rows):
        order = range(cols) if row % 2 == 0 else range(cols - 1, -1, -1)
        for col in order:
            x, y = col * STEP_W, row * STEP_H
            width = crop_last_col if (crop_last_col and col == cols - 1) else BLOCK_W
            block = truth[y : y + BLOCK_H, x : x + width].copy()
            if col < cols - 1:
                block[:, -OVERLAP:] = RED  # covered by the block to the right
            if row < rows - 1:
                block[-OVERLAP:, :] = RED  # covered by the block below
            name = f"Da{number}"
            # Stage x/y: the centre of the nominal block; larger x is further left, larger y further up.
            stage_x = x_origin - UNITS * (x + BLOCK_W // 2)
            stage_y = y_origin - UNITS * (y + BLOCK_H // 2)
            sections.append([f"[{name}]", f"x = {stage_x}", f"Y={stage_y}", "z=0"])
            data, decoded = _jpeg(block)
            if (col, row) == missing:
                slide.missing.append(f"{name}.jpg")
            else:
                (directory / f"{name}.jpg").write_bytes(data)
                paint.append((y, x, "", decoded))
            for k, plane in enumerate(planes):
                shifted = np.clip(block.astype(int) + (30 if plane.startswith("u") else -30) * (k + 1), 0, 255)
                pdata, pdecoded = _jpeg(shifted.astype(np.uint8))
                (directory / f"{name}_{plane}.jpg").write_bytes(pdata)
                paint.append((y, x, plane, pdecoded))
            number += 1
    for y, x, plane, pixels in sorted(paint, key=lambda item: item[:2]):
        target = plane_expected[plane] if plane else expected
        target[y : y + pixels.shape[0], x : x + pixels.shape[1]] = pixels
    if shuffle:
        random.Random(7).shuffle(sections)
    if true_size:
        lines += ["[Level0]", "iZoom=1", f"iWidth={true_size[0]}", f"iHeight={true_size[1]}"]
        slide.expected = expected[: true_size[1], : true_size[0]]
        plane_expected = {plane: pixels[: true_size[1], : true_size[0]] for plane, pixels in plane_expected.items()}
    lines += [line for section in sections for line in section]
    (directory / "FinalScan.INI").write_bytes("\r\n".join(lines).encode() + b"\r\n")
    slide.planes = plane_expected
    if overview_ds:
        slide.overview_ds = overview_ds
        slide.overview = _write_overview(directory, truth, overview_ds, x_origin, y_origin)
    return slide


def _write_overview(
    directory: Path, truth: NDArray[np.uint8], ds: int, x_origin: int, y_origin: int
) -> NDArray[np.uint8]:
    """A ScanSlide.INI level at 1/ds in the same stage frame: 200x150 px blocks, no overlap."""
    small = np.asarray(Image.fromarray(truth).reduce(ds))
    bw, bh = 200, 150
    cols, rows = -(-small.shape[1] // bw), -(-small.shape[0] // bh)
    units = UNITS * ds
    lines = _header(cols, rows, width=bw, height=bh, units=units)
    expected = np.full((rows * bh, cols * bw, 3), 255, np.uint8)
    for row in range(rows):
        for col in range(cols):
            block = np.full((bh, bw, 3), 255, np.uint8)
            part = small[row * bh : (row + 1) * bh, col * bw : (col + 1) * bw]
            block[: part.shape[0], : part.shape[1]] = part
            data, decoded = _jpeg(block)
            name = f"O{row}_{col}"
            (directory / f"{name}.jpg").write_bytes(data)
            expected[row * bh : (row + 1) * bh, col * bw : (col + 1) * bw] = decoded
            stage_x = x_origin - units * (col * bw) - units * bw // 2
            stage_y = y_origin - units * (row * bh) - units * bh // 2
            lines += [f"[{name}]", f"x={stage_x}", f"y={stage_y}"]
    (directory / "ScanSlide.INI").write_text("\n".join(lines) + "\n")
    return expected[: small.shape[0], : small.shape[1]]
