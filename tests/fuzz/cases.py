"""Building one fuzz case: a mutated copy of a seed (or a special file put in its place).

A case lives in its own directory: ``in/`` holds the input, ``out/`` is where commands write.
Special files replace an input or one of its parts: a FIFO (must be refused without blocking), a
symlink loop, a symlink to ``/dev/zero`` (unbounded), a directory where a file is expected.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import binary, text
from .seeds import Seed, copy_seed

SPECIALS = ("fifo", "loop", "zero", "directory")
COMMANDS = ("svs", "cws", "tif", "export")


@dataclass
class Case:
    format: str
    seed: str
    what: str
    directory: Path
    input: Path
    command: str  # the second command after ``info``: one of COMMANDS

    def argvs(self) -> list[list[str]]:
        out = self.directory / "out"
        second = {
            "svs": ["convert", str(self.input), str(out / "o.svs"), "--quiet", "--workers", "2"],
            "cws": ["convert", str(self.input), str(out / "o"), "--to", "cws", "--quiet", "--workers", "2"],
            "tif": ["convert", str(self.input), str(out / "o.tif"), "--quiet", "--workers", "2"],
            "export": ["export", str(self.input), str(out / "e"), "--associated", "--top", "1", "--quiet"],
        }[self.command]
        return [["info", str(self.input)], second]


def special(path: Path, kind: str) -> None:
    """Replace ``path`` (file or directory) with a special file of ``kind``."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        os.symlink(path.name, path)
    elif kind == "zero":
        os.symlink("/dev/zero", path)
    else:
        path.mkdir()


def _mutate_file(path: Path, rng: random.Random, mutator: binary.Mutator) -> str:
    data, what = mutator(path.read_bytes(), rng)
    path.write_bytes(data)
    return what


def _parts(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def make_case(seed: Seed, rng: random.Random, directory: Path) -> Case:
    """Copy ``seed`` into ``directory/in`` and damage it one way."""
    (directory / "out").mkdir(parents=True)
    (directory / "in").mkdir()
    target = copy_seed(seed, directory / "in")
    command = rng.choice(COMMANDS)
    what = _damage(seed.format, target, rng)
    source = target
    if seed.format == "aci" and target.is_dir() and not target.is_symlink():
        source = next(target.glob("*.aci"), target)
    return Case(seed.format, seed.name, what, directory, source, command)


def _damage(fmt: str, target: Path, rng: random.Random) -> str:
    if rng.random() < 0.08 and (target.is_file() or rng.random() < 0.3):
        kind = rng.choice(SPECIALS)
        special(target, kind)
        return f"input-{kind}"
    if fmt in ("svs", "tiff"):
        return _mutate_file(target, rng, binary.mutate_tiff)
    if fmt == "dicom":
        return _mutate_file(target, rng, binary.mutate_dicom)
    if fmt == "image":
        return _mutate_file(target, rng, rng.choice((binary.mutate_jpeg, *binary.RAW)))
    if fmt == "cws":
        return _damage_cws(target, rng)
    return _damage_aci(target, rng)


def _damage_cws(directory: Path, rng: random.Random) -> str:
    ini = next(p for p in directory.iterdir() if p.suffix.lower() == ".ini")
    blocks = [p for p in _parts(directory) if p.suffix.lower() == ".jpg"]
    kind = rng.choice(("ini", "ini", "ini", "block", "block", "special", "truncated-scan"))
    if kind == "ini":
        new, what = text.mutate_ini(ini.read_text("utf-8", "replace"), rng)
        ini.write_text(new, "utf-8")
        return what
    if kind == "block":
        block = rng.choice(blocks)
        return f"{block.name}-" + _mutate_file(
            block, rng, rng.choice((binary.mutate_jpeg, binary.mutate_jpeg, *binary.RAW))
        )
    if kind == "special":
        victim = rng.choice([ini, *blocks])
        how = rng.choice(SPECIALS)
        special(victim, how)
        return f"{victim.name}-{how}"
    doomed = rng.sample(blocks, k=max(1, len(blocks) // 3))
    for block in doomed:
        if rng.random() < 0.5:
            block.unlink()
        else:
            block.write_bytes(block.read_bytes()[: rng.randrange(0, 200)])
    return f"truncated-scan-{len(doomed)}"


def _damage_aci(directory: Path, rng: random.Random) -> str:
    manifest = next(directory.glob("*.aci"))
    components = [p for p in _parts(directory) if p.suffix.lower() in (".tif", ".svs")]
    kind = rng.choice(("manifest", "manifest", "manifest", "component", "cycle"))
    if kind == "component" and components:
        part = rng.choice(components)
        if rng.random() < 0.25:
            how = rng.choice(SPECIALS)
            special(part, how)
            return f"{part.name}-{how}"
        return f"{part.name}-" + _mutate_file(part, rng, binary.mutate_tiff)
    names = [os.path.relpath(p, directory) for p in components]
    if kind == "cycle":
        # The manifest named again: through a second manifest, a hard link, a non-.aci name, a symlink.
        how = rng.choice(("self", "other", "hardlink", "symlink", "plain-name"))
        if how == "other":
            (directory / "other.aci").write_text(f"{manifest.name} 0 0\n")
            names = ["other.aci"]
        elif how == "hardlink":
            os.link(manifest, directory / "linked.aci")
            names = ["linked.aci"]
        elif how == "symlink":
            os.symlink(manifest.name, directory / "alias.txt")
            names = ["alias.txt"]
        elif how == "plain-name":
            shutil.copyfile(manifest, directory / "copy.dat")
            (directory / "copy.dat").write_text(f"{manifest.name} 5 5\n")
            names = ["copy.dat"]
        else:
            names = [manifest.name]
        lines = manifest.read_text().splitlines()
        lines.append(f"{names[0]} 0 0")
        manifest.write_text("\n".join(lines) + "\n")
        return f"aci-cycle-{how}"
    extra = ["/dev/zero", "../in", "/etc/passwd", "missing.tif", "."]
    new, what = text.mutate_aci(manifest.read_text("utf-8", "replace"), rng, names + extra)
    manifest.write_text(new, "utf-8")
    return what
