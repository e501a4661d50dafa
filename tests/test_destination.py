"""The source is never a destination: every writing command x every alias of a source.

Three sources (an SVS file, a CWS directory, an ACI manifest with its SVS pieces) and, for each,
the names that reach it: itself, ``./X``, ``sub/../X``, a symlink, a hard link, the folder holding
it, a symlink to that folder, a path inside it (CWS), a component (ACI). Every command that writes
runs on each with ``--overwrite``; each must refuse with one line and exit 2, before reading
pixels, and no file of the source may change (bytes, inode, mtime). Export may write into the
folder that holds its source (it adds files and never replaces the folder); it is checked the
same way for changed sources.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from composite.cli import main
from composite.synthetic import write_synthetic_slide

Snapshot = dict[str, tuple[str, int, int]]


def snapshot(root: Path) -> Snapshot:
    files: Snapshot = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            files[str(path.relative_to(root))] = (
                hashlib.sha1(path.read_bytes()).hexdigest(),
                st.st_ino,
                st.st_mtime_ns,
            )
    return files


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """src/s.svs, src/c (CWS of it), src/a.aci + src/a_pieces/ (ACI pieces of it)."""
    root = tmp_path_factory.mktemp("sources") / "src"
    root.mkdir()
    svs = write_synthetic_slide(root / "s.svs", width=700, height=500, tile_size=240, min_level_size=256)
    assert main(["convert", str(svs), str(root / "c"), "--to", "cws", "--quiet"]) == 0
    assert main(["convert", str(svs), str(root / "a.aci"), "--piece-size", "480", "--quiet"]) == 0
    return root


Alias = Callable[[Path], str]


def _symlink(target: Path) -> str:
    link = target.parent / f"link-to-{target.name}"
    if not link.is_symlink():
        link.symlink_to(target)
    return str(link)


def _hardlink(target: Path) -> str:
    link = target.parent / f"hard-{target.name}"
    if not link.exists():
        os.link(target, link)
    return str(link)


def _folder_link(target: Path) -> str:
    link = target.parent.parent / "link-to-src"
    if not link.is_symlink():
        link.symlink_to(target.parent)
    return str(link)


# (source name inside src/, alias name, alias) -> the destination string
ALIASES: list[tuple[str, str, Alias]] = []
for _name in ("s.svs", "c", "a.aci"):
    ALIASES += [
        (_name, "same", lambda p: str(p)),
        (_name, "dot", lambda p: f"./{p.name}"),
        (_name, "dotdot", lambda p: str(p.parent / ".." / p.parent.name / p.name)),
        (_name, "symlink", _symlink),
        (_name, "folder", lambda p: str(p.parent)),
        (_name, "folder-symlink", _folder_link),
    ]
ALIASES += [
    ("s.svs", "hardlink", _hardlink),
    ("a.aci", "hardlink", _hardlink),
    ("c", "inside", lambda p: str(p / "x.svs")),
    ("c", "block", lambda p: str(p / "FinalScan.ini")),
    ("a.aci", "component", lambda p: str(p.parent / "a_pieces" / "r0_c0.svs")),
    ("a.aci", "component-hardlink", lambda p: _hardlink(p.parent / "a_pieces" / "r0_c1.svs")),
    ("a.aci", "pieces-folder", lambda p: str(p.parent / "a_pieces")),
]

COMMANDS: list[tuple[str, Callable[[str, str], list[str]]]] = [
    *((f"convert-{to}", lambda s, d, to=to: ["convert", s, d, "--to", to]) for to in ("svs", "tiff", "cws", "aci")),
    *(
        (f"redact-{to}", lambda s, d, to=to: ["redact", s, d, "--to", to, "--box", "0,0,16,16"])
        for to in ("svs", "cws")
    ),
    ("compose", lambda s, d: ["compose", d, s, "--grid", "1x1"]),
    ("export", lambda s, d: ["export", s, d, "--associated"]),
]


@pytest.mark.parametrize("command", [name for name, _ in COMMANDS])
def test_no_command_modifies_its_source_through_any_alias(
    sources: Path, command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv_of = dict(COMMANDS)[command]
    monkeypatch.chdir(sources)
    before = snapshot(sources)
    refused = wrote = 0
    reasons: list[str] = []
    for name, alias_name, alias in ALIASES:
        destination = alias(sources / name)
        before = {**snapshot(sources), **before}  # aliases add links; the originals must not change
        quiet = [] if command == "compose" else ["--quiet"]
        code = main([*argv_of(str(sources / name), destination), "--overwrite", *quiet])
        err = capsys.readouterr().err
        case = f"{command} {name} -> {alias_name} ({destination})"
        export_into_folder = command == "export" and alias_name in ("folder", "folder-symlink", "pieces-folder")
        if export_into_folder:
            assert code == 0, f"{case}: {err}"
            wrote += 1
        else:
            assert code == 2, f"{case}: exit {code}: {err}"
            assert err.count("\n") == 1 and "error:" in err and "source" in err, f"{case}: {err}"
            reasons.append(f"{case}: {err.split(': ', 2)[-1].strip()}")
            refused += 1
        after = snapshot(sources)
        changed = [path for path, state in before.items() if after.get(path) != state]
        assert not changed, f"{case}: source files changed: {changed}"
        assert not list(sources.parent.rglob("*.partial")), case
        for extra in set(after) - set(before):
            if export_into_folder:
                (sources / extra).unlink()
    assert refused + wrote == len(ALIASES)
    print("\n".join(reasons))
    print(f"{command}: {refused} aliases refused, {wrote} exported beside the source, 0 sources changed")


@pytest.mark.parametrize("alias", ["same", "dot", "symlink", "hardlink"])
def test_annotations_convert_refuses_its_source(alias: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "marks.geojson"
    square = "[[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]"
    source.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
        f'"geometry": {{"type": "Polygon", "coordinates": {square}}}}}]}}'
    )
    before = source.read_bytes()
    dst = {
        "same": str(source),
        "dot": f"{tmp_path}/./marks.geojson",
        "symlink": str(tmp_path / "alias.geojson"),
        "hardlink": str(tmp_path / "hard.geojson"),
    }[alias]
    if alias == "symlink":
        os.symlink(source.name, dst)
    if alias == "hardlink":
        os.link(source, dst)
    capsys.readouterr()
    assert main(["annotations", "convert", str(source), dst, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the source" in err, err
    assert source.read_bytes() == before
    assert main(["annotations", "convert", str(source), str(tmp_path / "other.xml")]) == 0  # another name: fine
