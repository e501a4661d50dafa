"""``wsi-composite convert``: summary lines, user errors as one line with exit 2, killed runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from composite.cli import main
from composite.cli.convert import tile_size
from composite.synthetic import write_synthetic_slide


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "source.svs"
    return write_synthetic_slide(path, width=1500, height=1100, min_level_size=200)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_convert_prints_one_line_per_level(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "out.svs"
    assert main(["convert", str(source), str(dst), "--quiet", "--workers", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{dst}  [svs]"
    assert out[1].strip() == "level 0: 1500 x 1100  downsample 1  tiles 240x240  jpeg  copy"
    assert out[2].strip().startswith("level 1: 375 x 275  downsample 4") and out[2].endswith("copy")
    assert out[-1].strip() == "associated: thumbnail, label, macro"


def test_convert_options_reach_the_writer(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "out"
    args = ["convert", str(source), str(dst), "--to", "tiff", "--tile-size", "256x128", "--compression", "lzw"]
    assert main([*args, "--bigtiff", "yes", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{dst}  [tiff]" in out and "tiles 256x128  lzw  reencode" in out
    with dst.open("rb") as fh:
        assert fh.read(4) == b"II+\x00"  # BigTIFF


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "bmp"], "unknown output format 'bmp'"),
        (["--tile-size", "250"], "tile size 250x250 cannot be written to TIFF"),
    ],
)
def test_bad_options_are_one_line_exit_2(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    dst = tmp_path / "out.svs"
    assert main(["convert", str(source), str(dst), *args, "--quiet"]) == 2
    assert message in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_existing_destination_needs_overwrite(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "out.svs"
    dst.write_bytes(b"keep me")
    assert main(["convert", str(source), str(dst), "--quiet"]) == 2
    line = _error_line(capsys)
    assert str(dst) in line and "--overwrite" in line
    assert dst.read_bytes() == b"keep me"
    assert main(["convert", str(source), str(dst), "--quiet", "--overwrite"]) == 0
    assert dst.read_bytes()[:4] == b"II*\x00"


def test_existing_empty_directory_is_a_fine_cws_destination(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "slide"
    dst.mkdir()
    assert main(["convert", str(source), str(dst), "--quiet"]) == 0
    assert (dst / "FinalScan.ini").is_file()
    capsys.readouterr()
    assert main(["convert", str(source), str(dst), "--quiet"]) == 2  # no longer empty
    assert "--overwrite" in _error_line(capsys)


def test_unknown_extension_and_missing_source(tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(source), str(tmp_path / "out.png"), "--quiet"]) == 2
    assert "out.png" in _error_line(capsys)
    missing = tmp_path / "missing.svs"
    assert main(["convert", str(missing), str(tmp_path / "out.svs"), "--quiet"]) == 2
    assert str(missing) in _error_line(capsys)


def test_tile_size_parsing(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tile_size("512") == (512, 512)
    assert tile_size("512x256") == (512, 256)
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(source), str(tmp_path / "out.svs"), "--tile-size", "big"])
    assert exit_info.value.code == 2
    assert "expected N or WxH, got 'big'" in capsys.readouterr().err


def test_killed_conversion_leaves_nothing_at_destination(source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.svs"
    script = textwrap.dedent(
        f"""
        import sys, time
        from composite.convert import WriteOptions, convert

        def progress(stage, done, total):
            if stage == "level 0" and done == 5:
                print("midway", flush=True)
                time.sleep(300)

        convert({str(source)!r}, {str(dst)!r}, options=WriteOptions(workers=1, tile_size=(256, 256)), progress=progress)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "midway"
        partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        assert len(partial) == 1 and partial[0].stat().st_size > 0, "the writer is mid-file"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert not dst.exists()
    assert all(p.name.startswith(".") for p in tmp_path.iterdir()), "only the hidden temporary name remains"
