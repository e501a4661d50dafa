"""The SVS writer's lower levels run alongside level 0 (composite/formats/tiffwrite/alongside.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import tifffile

from composite.convert import WriteOptions, convert
from composite.errors import TileReadError
from composite.formats.tiffwrite.alongside import Alongside
from composite.progress import ProgressCallback
from composite.synthetic import write_synthetic_slide


def test_join_gives_the_result_and_forwards_progress_in_the_calling_thread() -> None:
    seen: list[tuple[str, int, int, str]] = []

    def work(progress: ProgressCallback) -> int:
        for done in range(1, 4):
            progress("level 1", done, 3)
        return 42

    alongside = Alongside(work)
    result = alongside.join(lambda *args: seen.append((*args, threading.current_thread().name)))
    assert result == 42
    assert seen and seen[-1] == ("level 1", 3, 3, threading.current_thread().name)


def test_an_error_of_the_work_stops_the_callers_work_at_its_next_report() -> None:
    failed = threading.Event()

    def work(progress: ProgressCallback) -> None:
        failed.set()
        raise TileReadError("tile 3,4 of level 1: damaged JPEG")

    alongside = Alongside(work)
    failed.wait(10)
    alongside._thread.join(10)  # the error is recorded when the thread ends
    report = alongside.checked(lambda *args: None)
    with pytest.raises(TileReadError, match="damaged JPEG"):
        for done in range(1000):
            report("level 0", done, 1000)
    with pytest.raises(TileReadError):
        alongside.join(lambda *args: None)


def test_stop_ends_the_work_at_its_next_report() -> None:
    reports = 0
    started = threading.Event()

    def work(progress: ProgressCallback) -> None:
        nonlocal reports
        while True:  # never ends on its own
            progress("level 1", reports, 0)
            reports += 1
            started.set()

    alongside = Alongside(work)
    started.wait(10)
    alongside.stop()  # would wait forever if the work did not stop
    assert not alongside._thread.is_alive() and reports > 0


def test_an_svs_with_a_damaged_lower_level_fails_with_its_error_and_leaves_nothing(tmp_path: Path) -> None:
    """Level 1's tiles are read alongside level 0: a damaged one fails the conversion, level 0 included."""
    source = write_synthetic_slide(tmp_path / "src.svs", width=3000, height=2000, min_level_size=200)
    with tifffile.TiffFile(source) as tif:
        lower = tif.pages[2]  # level 1 (the thumbnail is page 1)
        assert isinstance(lower, tifffile.TiffPage) and lower.is_tiled
        offset, count = lower.dataoffsets[0], lower.databytecounts[0]
    with open(source, "r+b") as fh:
        fh.seek(offset + count // 2)
        fh.write(b"\xff\xd9" * 8)  # an end-of-image marker mid-scan
        fh.seek(offset + 2)
        fh.write(b"\x00" * 16)  # and no valid header
    dst = tmp_path / "out.svs"
    with pytest.raises(TileReadError):
        convert(source, dst, options=WriteOptions(tile_size=(256, 256), quality=80, min_level_size=100))
    assert not dst.exists()
    assert not [p for p in tmp_path.iterdir() if p.name not in ("src.svs",)]
