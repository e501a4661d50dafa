"""Hand-made CWS directories for the server and viewer tests.

``write_scanner_cws`` imitates a Bacus/Aperio scanner: FinalScan.INI with overlapping 752x480
blocks numbered in serpentine order, plus a ScanSlide.INI overview in the same stage frame (upper
case ``.INI`` names, CRLF, no [LevelN] sections, no tMPP). ``write_levels_cws`` writes our own
layout (FORMATS.md §1.5 and docs/serve.md) for the server tests that need a small directory
quickly; the end-to-end viewer tests use the real writer through ``composite.convert`` when it
exists. Both read the source with composite's own reader; the viewer is then checked against
OpenSlide, an independent reader.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

import composite
from composite.codecs import RGBArray

UNITS_PER_PIXEL = 4  # stage units per level-0 pixel, as the scanners and our writer use


def _jpeg(pixels: RGBArray, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality, subsampling=0)
    return out.getvalue()


def _ini(header: dict[str, object], sections: list[tuple[str, dict[str, object]]], *, crlf: bool) -> bytes:
    lines = ["[Header]", *(f"{k}={v}" for k, v in header.items())]
    for name, values in sections:
        lines.append(f"[{name}]")
        lines.extend(f"{k}={v}" for k, v in values.items())
    newline = "\r\n" if crlf else "\n"
    return (newline.join(lines) + newline).encode("latin-1")


def _companions(slide: composite.Slide, out: Path) -> dict[str, int]:
    flags = {}
    for kind, name, key in (
        ("thumbnail", "SlideThumb.jpg", "bHasThumb"),
        ("label", "Label.jpg", "bHasLabel"),
        ("macro", "Macro.jpg", "bHasMacro"),
    ):
        if kind in slide.associated:
            (out / name).write_bytes(_jpeg(slide.associated_images[kind], 90))
        flags[key] = int(kind in slide.associated)
    return flags


def write_levels_cws(
    source: Path, out: Path, *, block: int = 256, quality: int = 92, pad: tuple[int, int, int] | None = None
) -> Path:
    """Our layout: [LevelK] sections, row-major blocks, one INI per level.

    Edge blocks are cropped to the image, or full-size and padded with the colour ``pad`` (which
    the viewer must then crop away, as it must for the real writer's padded edges).
    """
    out.mkdir(parents=True)
    with composite.open_slide(source) as slide:
        width, height = slide.dimensions
        count = slide.level_count
        level_sections = []
        for k, level in enumerate(slide.levels):
            zoom = round(level.downsample)
            ini_name = "FinalScan.ini" if k == 0 else "ScanSlide.ini" if k == count - 1 else f"ScanLevel{k}.ini"
            level_sections.append(
                (
                    f"Level{k}",
                    {
                        "iZoom": zoom,
                        "iWidth": level.width,
                        "iHeight": level.height,
                        "iQuality": quality,
                        "iBlockWidth": block,
                        "iBlockHeight": block,
                        "tIniFile": ini_name,
                    },
                )
            )
            blocks = []
            prefix = "Da" if k == 0 else f"L{k}Da"
            for row in range(math.ceil(level.height / block)):
                for col in range(math.ceil(level.width / block)):
                    x, y = col * block, row * block
                    w, h = min(block, level.width - x), min(block, level.height - y)
                    name = f"{prefix}{len(blocks)}"
                    pixels = level.read_region(x, y, w, h)
                    if pad is not None:
                        padded = np.empty((block, block, 3), np.uint8)
                        padded[:] = pad
                        padded[:h, :w] = pixels
                        pixels = padded
                    (out / f"{name}.jpg").write_bytes(_jpeg(pixels, quality))
                    # Centre of the nominal block, stage origin at the image centre, axes reversed.
                    cx, cy = (x + block / 2) * zoom, (y + block / 2) * zoom
                    blocks.append(
                        (
                            name,
                            {
                                "x": round((width / 2 - cx) * UNITS_PER_PIXEL),
                                "y": round((height / 2 - cy) * UNITS_PER_PIXEL),
                                "z": 0,
                            },
                        )
                    )
            header = {
                "iImageWidth": block,
                "iImageHeight": block,
                "lXStepSize": block * zoom * UNITS_PER_PIXEL,
                "lYStepSize": block * zoom * UNITS_PER_PIXEL,
                "lXStageRef": 0,
                "lYStageRef": 0,
                "lXOffset": 0,
                "lYOffset": 0,
                "tImageType": ".jpg",
            }
            if k == 0:
                header |= {
                    "dMagnification": slide.magnification or 20,
                    "tMPP": slide.mpp[0] if slide.mpp else 0.5,
                    "iFinalImageQuality": quality,
                    "iAnalysisImageCount": len(blocks),
                    "iLayers": 1,
                    "iLevels": count,
                    "tDescription": (slide.description or "").replace("\r\n", "|"),
                    **_companions(slide, out),
                }
                final_blocks = blocks
            else:
                (out / ini_name).write_bytes(_ini(header, blocks, crlf=False))
            if k == 0:
                final_header = header
        (out / "FinalScan.ini").write_bytes(_ini(final_header, level_sections + final_blocks, crlf=False))
    return out


def _serpentine(cols: int, rows: int) -> list[tuple[int, int]]:
    order = []
    for row in range(rows):
        order.extend((col, row) for col in (range(cols) if row % 2 == 0 else range(cols - 1, -1, -1)))
    return order


def _scanner_ini(
    pixels_at: object,
    cols: int,
    rows: int,
    *,
    block: tuple[int, int],
    overlap: int,
    units: int,
    left: int,
    top: int,
    prefix: str,
    out: Path,
    quality: int,
) -> tuple[dict[str, object], list[tuple[str, dict[str, object]]]]:
    """Blocks of one scanner INI; ``left``/``top`` are the stage coordinates of its canvas corner."""
    bw, bh = block
    sections = []
    for n, (col, row) in enumerate(_serpentine(cols, rows)):
        x, y = col * (bw - overlap), row * (bh - overlap)
        name = f"{prefix}{n}"
        (out / f"{name}.jpg").write_bytes(_jpeg(pixels_at(x, y, bw, bh), quality))  # type: ignore[operator]
        sections.append((name, {"x": left - (x + bw // 2) * units, "y": top - (y + bh // 2) * units, "z": 0}))
    header = {
        "iImageWidth": bw,
        "iImageHeight": bh,
        "lXStepSize": bw * units,
        "lYStepSize": bh * units,
        "lXStageRef": left,
        "lYStageRef": top,
        "lXOffset": 0,
        "lYOffset": 0,
        "dMagnification": 40,
        "iAnalysisImageCount": len(sections),
        "tOperatorID": "",
        "iVersion": 2,
    }
    return header, sections


def write_scanner_cws(
    source: Path,
    out: Path,
    *,
    block: tuple[int, int] = (752, 480),
    overlap: int = 16,
    overview_downsample: int = 8,
    overview_margin: int = 400,
    quality: int = 95,
) -> Path:
    """Scanner-style: overlapping blocks over the whole source, white beyond it, and an overview.

    The overview (``overview_downsample`` x coarser) starts ``overview_margin`` level-0 pixels
    above and left of the high-resolution canvas, so the viewer must align the two by stage
    coordinates, not by assuming they share a corner.
    """
    out.mkdir(parents=True)
    bw, bh = block
    origin_x, origin_y = 2_000_000, 1_500_000  # stage coordinates of the level-0 canvas corner
    with composite.open_slide(source) as slide:
        width, height = slide.dimensions
        full = np.asarray(slide.read_region((0, 0), 0, (width, height)))

    def level0(x: int, y: int, w: int, h: int) -> RGBArray:
        tile = np.full((h, w, 3), 255, np.uint8)
        part = full[y : y + h, x : x + w]
        tile[: part.shape[0], : part.shape[1]] = part
        return tile

    cols = math.ceil((width - overlap) / (bw - overlap))
    rows = math.ceil((height - overlap) / (bh - overlap))
    header, sections = _scanner_ini(
        level0,
        cols,
        rows,
        block=block,
        overlap=overlap,
        units=UNITS_PER_PIXEL,
        left=origin_x,
        top=origin_y,
        prefix="Da",
        out=out,
        quality=quality,
    )
    (out / "FinalScan.INI").write_bytes(_ini(header, sections, crlf=True))

    ds, margin = overview_downsample, overview_margin
    small = np.asarray(Image.fromarray(full).resize((width // ds, height // ds), Image.Resampling.BOX))

    def overview(x: int, y: int, w: int, h: int) -> RGBArray:
        tile = np.full((h, w, 3), 255, np.uint8)
        x -= margin // ds
        y -= margin // ds
        src = small[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)]
        tile[max(0, -y) : max(0, -y) + src.shape[0], max(0, -x) : max(0, -x) + src.shape[1]] = src
        return tile

    ocols = math.ceil((width + 2 * margin) / ds / bw)
    orows = math.ceil((height + 2 * margin) / ds / bh)
    header, sections = _scanner_ini(
        overview,
        ocols,
        orows,
        block=block,
        overlap=0,
        units=UNITS_PER_PIXEL * ds,
        left=origin_x + margin * UNITS_PER_PIXEL,
        top=origin_y + margin * UNITS_PER_PIXEL,
        prefix="Ss",
        out=out,
        quality=quality,
    )
    (out / "ScanSlide.INI").write_bytes(_ini(header, sections, crlf=True))
    return out
