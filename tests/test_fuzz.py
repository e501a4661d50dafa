"""The fuzz and fault suite's fixed-seed slice (``make fuzz`` runs the long randomised campaign).

Each case is a damaged copy of a real input (tests/fuzz): TIFF tags and IFD chains, JPEG
segments in tiles, blocks and frames, CWS INI keys and values, ACI lines, DICOM elements, and
special files (FIFO, symlink loop, /dev/zero, a directory) in place of inputs or their parts.
``info`` and one writing command run in a forked child under a time and memory limit; each must
succeed or exit 2 with one line naming a file of the case, with no traceback, no run past 10 s,
no resident set over 1 GiB, and no ``.partial`` file left.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fuzz import runner
from tests.fuzz.campaign import campaign
from tests.fuzz.cases import special
from tests.fuzz.seeds import shared_seeds

# Judged here; "noise" (third-party log lines before our error) is reported by the campaign.
FAILURES = ("traceback", "hang", "memory", "partial", "exit", "message")
SLICE = {"svs": 16, "tiff": 16, "cws": 20, "aci": 16, "dicom": 12, "image": 6}


@pytest.fixture(scope="session")
def fuzz_seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_seeds(tmp_path_factory)


@pytest.mark.parametrize("fmt", sorted(SLICE))
def test_fixed_seed_slice(fmt: str, fuzz_seeds: Path, tmp_path: Path, openslide_data: Path) -> None:
    summary = campaign(tmp_path, seed=13, cases=SLICE[fmt], formats=(fmt,), seed_dir=fuzz_seeds)
    assert sum(summary.cases.values()) == SLICE[fmt]
    failed = {name: dict(per) for name, per in summary.failures.items() if name in FAILURES}
    details = [(path / "result.txt").read_text()[:1500] for path in summary.reproducers[:3]]
    assert not failed, "\n".join(summary.lines() + details)


def _judge(argv: list[str], case: Path) -> runner.RunResult:
    result = runner.run(argv, case)
    result.problems = runner.judge(result, case)
    return result


def test_a_fifo_ini_is_refused_at_once(tmp_path: Path) -> None:
    """The lead's smoke test: FinalScan.ini a FIFO with no writer must not block the open."""
    slide = tmp_path / "slide"
    slide.mkdir()
    os.mkfifo(slide / "FinalScan.ini")
    result = _judge(["info", str(slide)], tmp_path)
    assert result.status == 2 and not result.problems, result
    assert (
        result.stderr.strip()
        == f"wsi-composite: error: {slide / 'FinalScan.ini'}: INI file is a FIFO, not a regular file"
    )


@pytest.mark.parametrize("kind", ["fifo", "loop", "zero", "directory"])
@pytest.mark.parametrize("name", ["slide.svs", "slide.tif", "slide.aci", "slide.dcm", "slide.jpg"])
def test_special_files_as_input_are_one_line(kind: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.touch()
    special(path, kind)
    result = _judge(["info", str(path)], tmp_path)
    assert result.status == 2 and not result.problems, result


@pytest.mark.parametrize("kind", ["fifo", "loop", "zero", "directory"])
def test_special_files_inside_a_cws_are_refused(kind: str, tmp_path: Path, fuzz_seeds: Path) -> None:
    from tests.fuzz.seeds import copy_seed, make_seeds

    seed = next(s for s in make_seeds(fuzz_seeds) if s.name == "cws")
    (tmp_path / "out").mkdir()
    slide = copy_seed(seed, tmp_path)
    special(slide / "Da0.jpg", kind)
    special(slide / "Label.jpg", kind)
    result = _judge(["convert", str(slide), str(tmp_path / "out" / "o.svs"), "--quiet"], tmp_path)
    assert not result.problems, result
    if kind == "directory":  # not a block file: missing, drawn white, and said so
        assert result.status == 0 and "missing, drawn white: Da0.jpg" in result.stderr, result
    else:
        assert result.status == 2 and "Da0.jpg: tile (0, 0): block " in result.stderr, result.stderr
