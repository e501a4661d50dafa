"""`wsi-composite quality`: its numbers agree with an independent computation on the same tiles."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import openslide
import pytest
from numpy.typing import NDArray

from tests.cli import run as run_cli

run = partial(run_cli, "quality")  # wsi-composite quality ARGS...


def independent(tiles: list[NDArray[np.uint8]], codec: str, quality: int) -> tuple[float, float]:
    """Factor and RMS with imagecodecs called directly, the way the tool says it encodes."""
    raw = encoded = 0
    squared = 0.0
    for tile in tiles:
        if codec == "jpeg-rgb":  # Aperio's way: RGB samples, no subsampling
            data = imagecodecs.jpeg8_encode(tile, level=quality, colorspace="RGB", outcolorspace="RGB")
            back = imagecodecs.jpeg8_decode(data, colorspace="RGB", outcolorspace="RGB")
        elif codec == "jpeg-ycbcr":
            data = imagecodecs.jpeg8_encode(tile, level=quality, subsampling="420")
            back = imagecodecs.jpeg8_decode(data)
        else:  # quality q is a PSNR target of 30 + 20 q / 100 dB (composite.codecs)
            data = imagecodecs.jpeg2k_encode(tile, level=30 + 20 * quality // 100, codecformat="J2K")
            back = imagecodecs.jpeg2k_decode(data)
        raw += tile.size
        encoded += len(data)
        squared += float(((back.astype(np.float64) - tile) ** 2).sum())
    return raw / encoded, math.sqrt(squared / raw)


def report(slide: Path, *args: str) -> dict[str, Any]:
    result = run(str(slide), "--json", *args)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_numbers_match_an_independent_computation(synthetic_svs: Path) -> None:
    data = report(synthetic_svs, "--sample", "6", "--seed", "3")
    size = (data["tile_width"], data["tile_height"])
    assert size == (240, 240) and len(data["tiles"]) == 6 and data["tissue_tiles"] == 6
    with openslide.OpenSlide(synthetic_svs) as theirs:
        tiles = [
            np.ascontiguousarray(np.asarray(theirs.read_region((c * 240, r * 240), 0, size))[:, :, :3])
            for c, r in data["tiles"]
        ]
    for tile in tiles:  # the sample prefers tissue: each tile has enough non-glass pixels
        assert (tile.min(axis=2) < 220).mean() >= 0.1
    rows = {(row["codec"], row["quality"]): row for row in data["results"]}
    assert set(rows) == {(c, q) for c in ("jpeg-rgb", "jpeg-ycbcr", "jpeg2000") for q in (30, 50, 70)}
    for (codec, quality), row in rows.items():
        factor, rms = independent(tiles, codec, quality)
        # the tool adds a 16-byte Adobe marker to RGB JPEG; the pixels come from another decoder
        assert row["factor"] == pytest.approx(factor, rel=0.02), (codec, quality)
        assert row["rms"] == pytest.approx(rms, abs=0.05), (codec, quality)
    aperio = {(c, q): (rows[(c, q)]["aperio_factor"], rows[(c, q)]["aperio_rms"]) for c, q in rows}
    assert aperio[("jpeg-rgb", 30)] == (21, 3.4) and aperio[("jpeg-ycbcr", 70)] == (13, 2.2)
    assert aperio[("jpeg2000", 30)] == (55, 3.8) and aperio[("jpeg2000", 70)] == (25, 2.6)
    for codec in ("jpeg-rgb", "jpeg-ycbcr", "jpeg2000"):  # lower quality: smaller files, larger error
        assert rows[(codec, 30)]["factor"] > rows[(codec, 70)]["factor"]
        assert rows[(codec, 30)]["rms"] > rows[(codec, 70)]["rms"]


def test_sample_is_deterministic(synthetic_svs: Path) -> None:
    first = report(synthetic_svs, "--sample", "4", "--seed", "7")
    again = report(synthetic_svs, "--sample", "4", "--seed", "7")
    other = report(synthetic_svs, "--sample", "4", "--seed", "8")
    assert first == again
    assert first["tiles"] != other["tiles"]


def test_text_output(synthetic_svs: Path) -> None:
    result = run(str(synthetic_svs), "--sample", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "2 level-0 tiles of 240x240" in lines[0] and "Aperio factor" in result.stdout
    assert sum(1 for line in lines if line.split()[:1] in (["jpeg-rgb"], ["jpeg-ycbcr"], ["jpeg2000"])) == 9


def test_bad_arguments(synthetic_svs: Path, tmp_path: Path) -> None:
    assert run(str(synthetic_svs), "--sample", "0").returncode == 2
    missing = run(str(tmp_path / "none.svs"))
    assert missing.returncode == 2 and "none.svs" in missing.stderr and "Traceback" not in missing.stderr
