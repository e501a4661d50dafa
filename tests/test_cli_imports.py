"""The command line imports what the command it runs needs, not every subcommand's libraries.

Each case runs ``python -m composite ...`` in a fresh interpreter and lists ``sys.modules`` at
exit; the assertions are on module names (never on times): start-up is what a small slide's
conversion and each slide of a batch pay (issue #20).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from composite.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parent.parent

# Runs the CLI as ``python -m composite`` does and writes the loaded modules to argv[1] at exit.
RUNNER = """
import atexit, runpy, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv = ["wsi-composite", *sys.argv[2:]]
runpy.run_module("composite", run_name="__main__")
"""

# The same, also listing (in argv[2]) the modules loaded when the writer reports progress first:
# what start-up, format detection, opening and planning imported, before any tile.
FIRST_TILE_RUNNER = """
import atexit, runpy, sys
import composite.progress
out, first = sys.argv[1:3]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
def record(stage, done, total):
    if not record.seen:
        record.seen = True
        open(first, "w").write("\\n".join(sorted(sys.modules)))
record.seen = False
composite.progress.no_progress = record  # the callback of --quiet runs
sys.argv = ["wsi-composite", *sys.argv[3:]]
runpy.run_module("composite", run_name="__main__")
"""

OTHER_COMMANDS = {f"composite.cli.{name}" for name in COMMANDS}
NEVER = {"aiohttp", "dask", "distributed", "pydicom", "shapely", "defusedxml", "tqdm"}  # not for these commands
PIXELS = {"numpy", "PIL", "imagecodecs", "tifffile", "composite.model", "composite.codecs"}

# What an SVS -> CWS byte copy must not load: the other readers (format detection stops at the
# TIFF reader's magic bytes; the CWS package's reader is not the writer's), the glass test (only
# with --skip-glass), the spool of computed levels, OpenSSL's hashes and uuid (issue #20).
NOT_FOR_A_BYTE_COPY = {
    "composite.formats.dicom.opening",
    "composite.formats.dicom.instance",
    "composite.formats.dicom.single",
    "composite.formats.dicom.wsi",
    "composite.formats.cws.read",
    "composite.cwsini",
    "composite.glass",
    "composite.glass_screen",
    "hashlib",
    "uuid",
    "tempfile",
}


def loaded(tmp_path: Path, *args: str | Path) -> set[str]:
    listing = tmp_path / "modules.txt"
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(listing), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(listing.read_text().split())


def loaded_at_first_tile(tmp_path: Path, *args: str | Path) -> tuple[set[str], set[str]]:
    """The modules loaded when the first tile is reported, and at exit."""
    listing, first = tmp_path / "modules.txt", tmp_path / "first.txt"
    done = subprocess.run(
        [sys.executable, "-c", FIRST_TILE_RUNNER, str(listing), str(first), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(first.read_text().split()), set(listing.read_text().split())


def under(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


def test_convert_help_loads_no_pixel_library(tmp_path: Path) -> None:
    modules = loaded(tmp_path, "convert", "--help")
    assert "composite.cli.convert" in modules and "composite.convert" in modules
    assert not modules & (PIXELS | NEVER)
    assert not modules & (OTHER_COMMANDS - {"composite.cli.convert", "composite.cli.compose"})
    assert not under(modules, "composite.formats", "composite.tools", "composite.plan", "composite.tiling")


def test_top_level_help_and_version_import_no_command(tmp_path: Path) -> None:
    for args in (["--help"], ["--version"]):
        modules = loaded(tmp_path, *args)
        assert not modules & (PIXELS | NEVER | OTHER_COMMANDS), args


def test_info_loads_the_reader_only(tmp_path: Path, synthetic_svs: Path) -> None:
    modules = loaded(tmp_path, "info", synthetic_svs)
    assert {"composite.cli.info", "composite.formats.tiff", "numpy"} <= modules
    assert not modules & NEVER
    assert not modules & (OTHER_COMMANDS - {"composite.cli.info"})
    writing = ("composite.plan", "composite.pyramid", "composite.formats.tiffwrite", "composite.formats.cws.write")
    assert not under(modules, "composite.tools", "composite.formats.aci", "PIL", *writing)
    assert not modules & NOT_FOR_A_BYTE_COPY


WRITERS = [("cws", "composite.formats.cws.write"), ("svs", "composite.formats.tiffwrite.svs")]
OTHER_WRITERS = {
    "composite.formats.cws.write",
    "composite.formats.tiffwrite.svs",
    "composite.formats.tiffwrite.generic",  # the package no longer imports both of its writers
    "composite.formats.dicom.write",
}


@pytest.mark.parametrize(("to", "writer"), WRITERS)
def test_convert_loads_its_writer_only(tmp_path: Path, synthetic_svs: Path, to: str, writer: str) -> None:
    modules = loaded(tmp_path, "convert", synthetic_svs, tmp_path / "out", "--to", to, "--quiet")
    assert {writer, "composite.plan", "composite.formats.tiff"} <= modules
    assert not modules & (OTHER_WRITERS - {writer})
    assert not modules & NEVER
    assert not modules & (OTHER_COMMANDS - {"composite.cli.convert", "composite.cli.compose"})
    assert not under(modules, "composite.tools", "composite.formats.aci", "composite.annotations", "composite.batch")


def test_stub_commands_list_the_same_help_as_the_full_parser() -> None:
    """``--help`` without a command lists the commands from COMMANDS without importing them: the
    same text as the parser with every command registered."""
    assert build_parser(only="").format_help() == build_parser().format_help()
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(COMMANDS)  # type: ignore[union-attr]


def test_svs_to_cws_byte_copy_loads_only_what_it_runs(tmp_path: Path, synthetic_svs: Path) -> None:
    first, at_exit = loaded_at_first_tile(
        tmp_path, "convert", synthetic_svs, tmp_path / "out", "--to", "cws", "--quiet"
    )
    assert {"composite.formats.dicom", "composite.formats.tiff", "composite.formats.cws.write"} <= first
    assert not at_exit & NOT_FOR_A_BYTE_COPY
    assert not under(first, "PIL")  # Pillow: only for resizing the thumbnail, on the companions' thread


def test_skip_glass_loads_the_glass_test(tmp_path: Path, synthetic_svs: Path) -> None:
    """The other side of the test above: the glass test is there when asked for."""
    out = tmp_path / "out"
    modules = loaded(tmp_path, "convert", synthetic_svs, out, "--to", "cws", "--skip-glass", "--quiet")
    assert {"composite.glass", "composite.glass_screen"} <= modules
    assert not modules & (NOT_FOR_A_BYTE_COPY - {"composite.glass", "composite.glass_screen"})
