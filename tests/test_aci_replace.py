"""Replacing an ACI output (a manifest and its pieces folder) is crash-safe.

The new pieces go to a new generation folder inside ``DST_pieces/`` and the manifest's rename
commits them (composite/formats/aci/generations.py). The process is SIGKILLed at each step
(``COMPOSITE_TEST_KILL_AT``): the manifest must then name a complete set of pieces, byte for
byte those of a reference conversion of the old or of the new source, and the next run must
leave only the new manifest and one generation of pieces.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from composite.cli import main
from composite.formats.aci.manifest import read_manifest
from composite.synthetic import write_synthetic_slide

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--piece-size", "256", "--quiet"]


def pieces(manifest: Path) -> dict[str, str] | None:
    """Each piece the manifest names (``layer/row_col`` without the generation folder) -> SHA-1."""
    if not manifest.exists():
        return None
    found = {}
    for layer, component in read_manifest(manifest).components():
        parts = component.path.split("/")
        assert parts[0] == manifest.stem + "_pieces", component.path
        name = "/".join(part for part in parts[1:] if not part.startswith("g"))
        found[f"{layer.number}:{name}"] = hashlib.sha1((manifest.parent / component.path).read_bytes()).hexdigest()
    return found


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name]


def cli(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "composite", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("aci-replace")
    out = {
        "old": write_synthetic_slide(root / "old.svs", width=600, height=400, tile_size=240, min_level_size=128),
        "new": write_synthetic_slide(root / "new.svs", width=760, height=520, tile_size=240, min_level_size=128),
    }
    for name in ("old", "new"):
        ref = root / f"ref-{name}.aci"
        assert main(["convert", str(out[name]), str(ref), *ARGS]) == 0
        out[f"ref-{name}"] = ref
    return out


@pytest.mark.parametrize(
    ("step", "holds"),
    [
        ("written", "old"),  # the first piece of the new generation is being put in place
        ("aci-pieces", "old"),  # the whole new generation in place, not yet named by the manifest
        ("aci-committed", "new"),  # the manifest renamed; the old pieces not yet deleted
    ],
)
def test_kill_at_each_step_leaves_a_complete_output(
    sources: dict[str, Path], tmp_path: Path, step: str, holds: str
) -> None:
    dst = tmp_path / "out.aci"
    folder = tmp_path / "out_pieces"
    assert main(["convert", str(sources["old"]), str(dst), *ARGS]) == 0
    old, new = pieces(sources["ref-old"]), pieces(sources["ref-new"])
    assert pieces(dst) == old and old != new
    killed = cli("convert", sources["new"], dst, "--overwrite", *ARGS, env={"COMPOSITE_TEST_KILL_AT": step})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert pieces(dst) == (old if holds == "old" else new)
    named = {c.path.split("/")[1] for _, c in read_manifest(dst).components()}
    assert set(os.listdir(folder)) - named  # what the kill left: old pieces, a generation or a .partial
    again = cli("convert", sources["new"], dst, "--overwrite", *ARGS, env={})
    assert again.returncode == 0, again.stderr
    assert pieces(dst) == new
    (generation,) = os.listdir(folder)  # the old pieces and every leftover are gone
    assert generation.startswith("g") and not partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.aci", "out_pieces"]


def test_a_failed_replacement_keeps_the_old_output(
    sources: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from composite.formats.aci import split

    dst = tmp_path / "out.aci"
    assert main(["convert", str(sources["old"]), str(dst), *ARGS]) == 0
    before = pieces(dst)
    write_pieces = split._write_pieces

    def full_disk(*args: Any) -> Any:
        write_pieces(*args)  # every piece written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(split, "_write_pieces", full_disk)
    capsys.readouterr()
    assert main(["convert", str(sources["new"]), str(dst), "--overwrite", *ARGS]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert pieces(dst) == before and not partials(tmp_path)
    assert sorted(os.listdir(tmp_path / "out_pieces")) == sorted({name.split(":")[1] for name in before or {}})


def test_a_generation_of_a_running_writer_is_not_swept(sources: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "out.aci"
    assert main(["convert", str(sources["old"]), str(dst), *ARGS]) == 0
    with subprocess.Popen(["sleep", "60"]) as other:
        busy = tmp_path / "out_pieces" / f".g{other.pid}-0123abcd.partial"
        busy.mkdir()
        dead = tmp_path / "out_pieces" / "g999999999-0123abcd"  # no such process
        dead.mkdir()
        assert main(["convert", str(sources["new"]), str(dst), "--overwrite", *ARGS]) == 0
        assert busy.is_dir() and not dead.exists()
        other.kill()
    assert pieces(dst) == pieces(sources["ref-new"])


def test_an_empty_pieces_folder_is_a_first_write(sources: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "out_pieces").mkdir()  # made beforehand, like mkdir before a CWS conversion
    assert main(["convert", str(sources["old"]), str(tmp_path / "out.aci"), *ARGS]) == 0
    assert all(c.path.count("/") == 1 for _, c in read_manifest(tmp_path / "out.aci").components())
