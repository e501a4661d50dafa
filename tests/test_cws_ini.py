"""The one CWS INI module: the format and the server's slide list read the same numbers from it,
and every JPEG writer follows the one quality policy (docs/convert.md, "Quality")."""

from __future__ import annotations

from pathlib import Path

import pytest

from composite.convert import WriteOptions, convert
from composite.cwsini import block_canvas, level_sections, parse_ini, scale
from composite.errors import FormatError
from composite.formats.cws.placement import base_frame, geometry
from composite.server.slides import describe_slide

# Blocks 10 px wide at 4 stage units a pixel, centres 42 units apart: the canvas spans 20.5 px,
# where round-half-to-even (20) and the reader's floor(span + 0.5) (21) part ways.
SCANNER_INI = """[Header]
iImageWidth=10
iImageHeight=10
lXStepSize=40
lYStepSize=40
dMagnification=%MAGNIFICATION%
tDescription=Aperio Image Library|AppMag = 40|MPP = 0.25
[Da0]
x=42
y=0
[Da1]
x=0
y=0
"""


def test_server_and_format_agree_on_the_canvas_and_scale(tmp_path: Path) -> None:
    ini_path = tmp_path / "FinalScan.ini"
    ini_path.write_text(SCANNER_INI)
    ini = parse_ini(ini_path)
    _, width, height = base_frame(ini, geometry(ini))
    assert (width, height) == (21, 10) == block_canvas(ini)
    info = describe_slide(tmp_path, ini_path, ["FinalScan.ini"], name="s", url="slides/s/")
    assert (info.width, info.height) == (21, 10)
    assert (info.mpp, info.magnification) == scale(ini) == (0.25, 40.0)


def test_lenient_parsing_skips_what_strict_parsing_refuses(tmp_path: Path) -> None:
    path = tmp_path / "FinalScan.ini"
    path.write_text(SCANNER_INI + "not an INI line\n[Da2]\nx=1.5\ny=0\n")
    with pytest.raises(FormatError, match=r"FinalScan\.ini:14: expected"):
        parse_ini(path)
    lenient = parse_ini(path, strict=False)
    assert lenient.block_names == ["Da0", "Da1"]  # the bad line and the bad block are skipped


def test_head_only_stops_at_the_first_block(tmp_path: Path) -> None:
    path = tmp_path / "FinalScan.ini"
    blocks = SCANNER_INI[SCANNER_INI.index("[Da0]") :]
    path.write_text("[Header]\niImageWidth=10\n[Level0]\niWidth=7\niHeight=5\n" + blocks)
    head = parse_ini(path, head_only=True)
    assert head.block_names == [] and level_sections(head)[0]["iwidth"].text == "7"


def test_every_jpeg_level_follows_the_quality_policy(synthetic_svs: Path, tmp_path: Path) -> None:
    """90 at level 0, 95 below, for CWS as for SVS; --quality sets every level."""
    for quality, expected in ((None, [90, 95]), (80, [80, 80])):
        out = tmp_path / f"q{quality}"
        convert(synthetic_svs, out, to="cws", options=WriteOptions(tile_size=(256, 256), quality=quality))
        levels = level_sections(parse_ini(out / "FinalScan.ini", head_only=True))
        assert [int(levels[k]["iquality"].text) for k in (0, 1)] == expected
        level1 = parse_ini(out / levels[1]["tinifile"].text, head_only=True)
        assert level1.number("iFinalImageQuality") == expected[1]
