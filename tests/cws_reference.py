"""An independent CWS reader that follows FORMATS.md §1.4 literally; it imports nothing from composite.

It proves our writer places blocks the way third-party readers compute (olyvslideconv does the
same arithmetic): one INI file is one level; every section with x= and y= is a block
``<section>.jpg``; ``ux = lXStepSize / iImageWidth``; a block's top-left pixel is
``round((xMax - x) / ux), round((yMax - y) / uy)``; the canvas is
``(xMax - xMin + lXStepSize) / ux`` wide; blocks further right or lower are painted on top; gaps
are white (``gap`` another colour: our ``tBackgroundColor`` for glass left out); ``crop`` (or
``[Level0]`` iWidth/iHeight) cuts the canvas to the true size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def read_ini(path: Path) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for raw in path.read_text(encoding="latin-1").splitlines():
        line = raw.strip()
        if line.startswith("[") and "]" in line:
            current = sections.setdefault(line[1 : line.index("]")], {})
        elif "=" in line:
            key, value = line.split("=", 1)
            current.setdefault(key.strip().lower(), value.strip())
    return sections


def compose_level(
    ini_path: Path, crop: tuple[int, int] | None = None, gap: tuple[int, int, int] = (255, 255, 255)
) -> NDArray[np.uint8]:
    """The pixels of the level one INI file describes, as §1.4 places them."""
    sections = read_ini(ini_path)
    header = {k.lower(): v for k, v in next(v for k, v in sections.items() if k.lower() == "header").items()}
    block_w, block_h = int(header["iimagewidth"]), int(header["iimageheight"])
    step_x, step_y = float(header["lxstepsize"]), float(header["lystepsize"])
    ux, uy = step_x / block_w, step_y / block_h
    blocks = [(name, int(v["x"]), int(v["y"])) for name, v in sections.items() if "x" in v and "y" in v]
    x_max, x_min = max(b[1] for b in blocks), min(b[1] for b in blocks)
    y_max, y_min = max(b[2] for b in blocks), min(b[2] for b in blocks)
    width, height = round((x_max - x_min + step_x) / ux), round((y_max - y_min + step_y) / uy)
    level0 = next((v for k, v in sections.items() if k.lower() == "level0"), None)
    if crop is None and level0 and "iwidth" in level0 and ini_path.name.lower() == "finalscan.ini":
        crop = (int(level0["iwidth"]), int(level0["iheight"]))
    canvas = np.full((height, width, 3), gap, np.uint8)
    placed = sorted((round((y_max - y) / uy), round((x_max - x) / ux), name) for name, x, y in blocks)
    for top, left, name in placed:
        path = ini_path.parent / f"{name}.jpg"
        if not path.exists():
            continue
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        h, w = min(pixels.shape[0], height - top), min(pixels.shape[1], width - left)
        canvas[top : top + h, left : left + w] = pixels[:h, :w]
    if crop is not None:
        canvas = canvas[: crop[1], : crop[0]]
    return canvas
