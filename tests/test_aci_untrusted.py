"""Untrusted manifests: no path leads outside the manifest's directory, nothing outside is read."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composite import registry
from composite.errors import UnsafePathError
from composite.formats.aci import open_slide
from tests.aci_support import pattern
from tests.cli import CLI


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/outside/secret.png, and tmp/slides/ holding ok.png, sub/ and a symlink out."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(pattern(10, 10, 1)).save(outside / "secret.png")
    root = tmp_path / "slides"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(pattern(10, 10, 2)).save(root / "ok.png")
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "sub" / "dirlink").symlink_to(outside, target_is_directory=True)
    (root / "inside.png").symlink_to(root / "ok.png")
    return root


EVIL = {
    "dotdot.aci": ("ok.png 0 0\n../../etc/passwd 0 0\n", 2, "'..' leads out"),
    "dotdot2.aci": ("sub/../../outside/secret.png 0 0\n", 1, "'..' leads out"),
    "absolute.aci": ("# c\n/etc/passwd 0 0\n", 2, "an absolute path"),
    "windows.aci": ("C:\\Windows\\win.ini 0 0\n", 1, "an absolute path"),
    "symlink.aci": ("ok.png 0 0\nok.png 0 10\nlink.png 0 20\n", 3, "a symlink leads out"),
    "dirlink.aci": ("sub/dirlink/secret.png 5 5\n", 1, "a symlink leads out"),
}


@pytest.mark.parametrize("name", sorted(EVIL))
def test_escapes_refused_before_anything_is_opened(tree: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text, line, reason = EVIL[name]
    (tree / name).write_text(text)
    opened: list[Path] = []
    real_open = registry.open_slide
    monkeypatch.setattr(registry, "open_slide", lambda p: opened.append(Path(p)) or real_open(p))
    with pytest.raises(UnsafePathError) as err:
        open_slide(tree / name)
    message = str(err.value)
    assert message.startswith(f"{tree / name}:{line}: component ")
    assert reason in message and "--allow-outside" in message
    assert not opened  # checked before any component is opened, even the safe ones


def test_paths_inside_are_fine_and_allow_outside_lifts_the_rule(tree: Path) -> None:
    (tree / "fine.aci").write_text("sub/../ok.png 0 0\ninside.png 0 10\nsub\\..\\ok.png 0 20\n")
    with open_slide(tree / "fine.aci") as slide:
        assert slide.dimensions == (30, 10)
    (tree / "trusted.aci").write_text(f"link.png 0 0\n{tree.parent / 'outside' / 'secret.png'} 0 10\n")
    with open_slide(tree / "trusted.aci", allow_outside=True) as slide:
        secret = np.asarray(Image.open(tree.parent / "outside" / "secret.png"))
        np.testing.assert_array_equal(slide.read_region((10, 0), 0, (10, 10)), secret)


@pytest.mark.parametrize("name", ["dotdot.aci", "absolute.aci", "symlink.aci"])
def test_cli_exits_2_with_one_line(tree: Path, name: str) -> None:
    text, line, reason = EVIL[name]
    (tree / name).write_text(text)
    result = subprocess.run([*CLI, "info", str(tree / name)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{tree / name}:{line}:" in lines[0] and reason in lines[0]
