"""Bad destinations are refused before any work, with one line and exit 2, leaving nothing behind.

Under /proc, a parent that is a file, an export folder that is a file, a missing folder (an
error unless ``--parents``), a name over the filesystem's limit, a CWS ``--overwrite`` onto a
regular file, a file output onto a directory, a FIFO, a read-only folder (run as nobody when the
tests run as root, since root writes anywhere).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from composite.cli import main
from composite.synthetic import write_synthetic_slide

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "s.svs"
    return write_synthetic_slide(path, width=600, height=400, tile_size=240, min_level_size=256)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("wsi-composite: error: "), err
    for text in expected:
        assert text in err, err
    return err


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".partial", ".old"))]


def test_proc_and_parent_that_is_a_file(small_svs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(["convert", str(small_svs), "/proc/composite-test.svs", "--quiet"], capsys, "/proc")
    refused(["export", str(small_svs), "/proc/composite-test", "--quiet"], capsys, "/proc")
    (tmp_path / "file.txt").write_text("x")
    refused(["convert", str(small_svs), str(tmp_path / "file.txt" / "x.svs"), "--quiet"], capsys, "not a directory")
    refused(["redact", str(small_svs), str(tmp_path / "file.txt" / "x"), "--quiet"], capsys, "not a directory")
    refused(["export", str(small_svs), str(tmp_path / "file.txt"), "--quiet"], capsys, "is not a directory")
    refused(["export", str(small_svs), str(tmp_path / "file.txt" / "sub"), "--quiet"], capsys, "not a directory")
    assert (tmp_path / "file.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_missing_folders_need_parents(small_svs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "a" / "b"
    for argv in (
        ["convert", str(small_svs), str(deep / "x.svs"), "--quiet"],
        ["convert", str(small_svs), str(deep / "x"), "--to", "cws", "--quiet"],
        ["convert", str(small_svs), str(deep / "x.aci"), "--quiet"],
        ["redact", str(small_svs), str(deep / "x.svs"), "--quiet"],
        ["export", str(small_svs), str(deep / "out"), "--quiet"],
        ["compose", str(deep / "x.aci"), str(small_svs), "--grid", "1x1", "--allow-outside"],
    ):
        refused(argv, capsys, "no such directory", "--parents")
        assert list(tmp_path.iterdir()) == []
    assert main(["export", str(small_svs), str(tmp_path / "out"), "--associated", "--quiet"]) == 0  # like mkdir
    assert main(["convert", str(small_svs), str(deep / "x.svs"), "--parents", "--quiet"]) == 0
    assert main(["export", str(small_svs), str(deep / "c" / "d"), "--associated", "--parents", "--quiet"]) == 0
    assert (deep / "x.svs").is_file() and (deep / "c" / "d" / "label.jpg").is_file()
    capsys.readouterr()
    # a failure after the folders were made removes them again
    refused(["convert", str(tmp_path / "missing.svs"), str(tmp_path / "p" / "q" / "x.svs"), "--parents"], capsys)
    assert not (tmp_path / "p").exists()


def test_names_too_long(small_svs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(["convert", str(small_svs), str(tmp_path / ("x" * 300 + ".svs")), "--quiet"], capsys, "too long")
    refused(["export", str(small_svs), str(tmp_path / ("x" * 300)), "--quiet"], capsys)
    # a name that fits but leaves no room for the temporary suffix still works
    longest = tmp_path / ("y" * 251 + ".svs")
    assert main(["convert", str(small_svs), str(longest), "--quiet"]) == 0
    assert longest.is_file() and not leftovers(tmp_path)
    assert main(["convert", str(small_svs), str(longest), "--quiet", "--overwrite"]) == 0


def test_wrong_kind_of_existing_destination(
    small_svs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    regular = tmp_path / "plain"
    regular.write_text("keep me")
    refused(
        ["convert", str(small_svs), str(regular), "--to", "cws", "--overwrite", "--quiet"], capsys, "not a directory"
    )
    assert regular.read_text() == "keep me"
    folder = tmp_path / "folder.svs"
    (folder / "inner").mkdir(parents=True)
    refused(["convert", str(small_svs), str(folder), "--overwrite", "--quiet"], capsys, "is a directory")
    empty = tmp_path / "empty.svs"
    empty.mkdir()
    refused(["convert", str(small_svs), str(empty), "--quiet"], capsys, "is a directory")
    fifo = tmp_path / "fifo.svs"
    os.mkfifo(fifo)
    refused(["convert", str(small_svs), str(fifo), "--overwrite", "--quiet"], capsys, "not a regular file")
    assert (folder / "inner").is_dir() and not leftovers(tmp_path)


def test_read_only_folder(small_svs: Path) -> None:
    """As root a mode-555 folder is writable, so the command runs as nobody (setpriv)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a folder read-only")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    base = Path(tempfile.mkdtemp(prefix="composite-ro-"))
    try:
        base.chmod(0o755)
        source = base / "s.svs"
        shutil.copy(small_svs, source)
        source.chmod(0o644)
        locked = base / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        for argv in (
            ["convert", str(source), str(locked / "x.svs")],
            ["convert", str(source), str(locked / "x"), "--to", "cws"],
            ["export", str(source), str(locked)],
            ["export", str(source), str(locked / "sub")],
        ):
            result = subprocess.run(
                [*prefix, sys.executable, "-m", "composite", *argv, "--quiet"],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
            assert result.returncode == 2, result.stderr
            assert result.stderr.count("\n") == 1 and "Permission denied" in result.stderr, result.stderr
            assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(base)
