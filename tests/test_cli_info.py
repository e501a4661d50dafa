"""`wsi-composite info`: JSON agrees with OpenSlide; bad input is one line on stderr, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import openslide
import pytest

from tests.cli import run


@pytest.mark.parametrize("name", ["small.svs", "boxes.tiff"])
def test_info_json_agrees_with_openslide_on_shared_slides(openslide_data: Path, name: str) -> None:
    check_info(openslide_data / name)


def test_info_json_agrees_with_openslide_on_synthetic(synthetic_svs: Path, synthetic_tiff: Path) -> None:
    check_info(synthetic_svs)
    check_info(synthetic_tiff)


def check_info(path: Path) -> None:
    result = run("info", str(path), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert set(info) >= {"format", "levels", "mpp", "magnification", "associated", "properties"}
    with openslide.OpenSlide(path) as theirs:
        assert len(info["levels"]) == theirs.level_count
        assert [(lv["width"], lv["height"]) for lv in info["levels"]] == list(theirs.level_dimensions)
        for level in info["levels"]:
            assert set(level) >= {"width", "height", "downsample", "tile_width", "tile_height", "compression"}
        props = theirs.properties
        if "openslide.mpp-x" in props:
            assert info["mpp"] == pytest.approx([float(props["openslide.mpp-x"]), float(props["openslide.mpp-y"])])
        else:
            assert info["mpp"] is None
        power = props.get("openslide.objective-power")
        assert info["magnification"] == (pytest.approx(float(power)) if power else None)
        assert {k: (v["width"], v["height"]) for k, v in info["associated"].items()} == {
            k: v.size for k, v in theirs.associated_images.items()
        }


def test_info_text_output(synthetic_svs: Path) -> None:
    result = run("info", str(synthetic_svs))
    assert result.returncode == 0
    assert "3000 x 2200" in result.stdout and "label: 387 x 463" in result.stdout


def _bad_inputs(tmp: Path, data: Path) -> list[Path]:
    (tmp / "empty.svs").write_bytes(b"")
    (tmp / "text.svs").write_text("hello, I am not a slide\n")
    (tmp / "folder").mkdir()
    return [data / "unopenable.tiff", tmp / "missing.svs", tmp / "folder", tmp / "empty.svs", tmp / "text.svs"]


def test_bad_input_is_one_line_exit_2(tmp_path: Path, openslide_data: Path) -> None:
    for path in _bad_inputs(tmp_path, openslide_data):
        result = run("info", str(path))
        assert result.returncode == 2, path
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(path) in lines[0]
        assert "Traceback" not in result.stderr


def test_unreadable_pixels_via_cli_do_not_crash_info(openslide_data: Path) -> None:
    # info reads metadata only, so a slide with damaged tiles still describes itself.
    result = run("info", str(openslide_data / "unreadable.svs"), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["format"] == "svs"
