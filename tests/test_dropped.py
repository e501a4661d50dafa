"""What an output cannot hold is said in one warning line each, and ``--strict`` makes it an error.

A 1200 x 900 SVS with levels at downsample 1, 4 and 16 (75 px) and a label and macro: a plain
TIFF drops the label and macro, ACI pieces too, every pyramid output drops the 75-px level
(4x steps stop at the first level of at most 1,024 px), and a redaction box grows to whole
16-px JPEG blocks. Under ``--strict`` each is exit 2 with nothing written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from composite.cli import main
from composite.synthetic import write_synthetic_slide


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dropped") / "s.svs"
    return write_synthetic_slide(path, width=1200, height=900, tile_size=240, min_level_size=100)


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, list[str]]:
    code = main([*map(str, argv), "--quiet"])
    return code, capsys.readouterr().err.splitlines()


LEVEL = "source levels not kept: 2 (75 x 56, downsample 16.04); the output's pyramid is 4x steps down to 300 px"
CASES = [
    ("x.tif", [], ["label and macro not written: a plain TIFF has no place for them", LEVEL]),
    ("x.tif", ["--ome"], [LEVEL]),
    ("x.svs", [], [LEVEL]),
    (
        "x",
        ["--to", "cws"],
        [
            "source levels not kept: 1 (300 x 225, downsample 4), 2 (75 x 56, downsample 16.04);"
            " the output's pyramid has level 0 only (1,200 px)"
        ],
    ),
    ("x.aci", [], ["label and macro not written: ACI pieces have no place for them"]),
]


@pytest.mark.parametrize(("name", "extra", "expected"), CASES)
def test_convert_says_what_is_dropped(
    slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, extra: list[str], expected: list[str]
) -> None:
    code, lines = run(capsys, "convert", slide, tmp_path / name, *extra)
    assert code == 0, lines
    assert len(lines) == len(expected), lines
    for line, text in zip(lines, expected, strict=True):
        assert line.startswith("wsi-composite: warning: ") and text in line, line
    code, lines = run(capsys, "convert", slide, tmp_path / "strict" / name, "--parents", "--strict", *extra)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("wsi-composite: error: ") and expected[0] in lines[0] and "--strict" in lines[0]
    assert not (tmp_path / "strict").exists()  # nothing written, the folder made by --parents removed


def test_redaction_says_how_much_is_blacked_out(
    slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run(capsys, "redact", slide, tmp_path / "r.svs", "--box", "10,10,20,20", "--box", "32,32,64,64")
    assert code == 0, lines
    grown = [line for line in lines if "blacks out" in line]
    assert len(grown) == 2, lines
    assert (
        "box 10,10,20,20 blacks out 0,0,32,32 at level 0 (+156%), up to 0,0,64,64 in level-0 pixels at level 1"
        in grown[0]
    )
    # on whole blocks at level 0, but not at level 1 (downsample 4: 16-px blocks are 64 px of level 0)
    assert (
        "box 32,32,64,64 blacks out 32,32,64,64 at level 0 (+0%), up to 0,0,128,128 in level-0 pixels at level 1"
        in grown[1]
    )
    code, lines = run(capsys, "redact", slide, tmp_path / "s.svs", "--box", "10,10,20,20", "--strict")
    assert code == 2 and len(lines) == 1 and "blacks out" in lines[0], lines
    assert not (tmp_path / "s.svs").exists() and not list(tmp_path.glob(".*partial"))


def test_redacted_regions_say_how_much_is_blacked_out(
    slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marks = tmp_path / "marks.geojson"
    square = [[[100, 100], [200, 100], [200, 200], [100, 200], [100, 100]]]  # 10,000 px
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": square}}
    marks.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    code, lines = run(capsys, "redact", slide, tmp_path / "r.svs", "--annotations", marks)
    assert code == 0, lines
    (line,) = [line for line in lines if "annotated regions" in line]
    match = re.search(r"\(10,000 px\) black out ([\d,]+) px at level 0 \(\+(\d+)%\), up to ([\d,]+) level-0 px", line)
    assert match, line
    level0, more, widest = int(match[1].replace(",", "")), int(match[2]), int(match[3].replace(",", ""))
    # whole 16-px blocks within a margin of the edge (24 px on a level this small), at level 0;
    # at level 1 (downsample 4) the same blocks are 64 level-0 px
    assert 12_000 <= level0 <= 40_000 and more == round(100 * (level0 / 10_000 - 1)) and widest > level0, line
    code, lines = run(capsys, "redact", slide, tmp_path / "s.svs", "--annotations", marks, "--strict")
    assert code == 2 and len(lines) == 1 and "annotated regions" in lines[0], lines
    assert not (tmp_path / "s.svs").exists()


def test_nothing_to_say(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_synthetic_slide(tmp_path / "a.svs", width=1200, height=900, tile_size=240, min_level_size=512)
    code, lines = run(capsys, "convert", source, tmp_path / "b.svs", "--strict")
    assert code == 0 and lines == []
