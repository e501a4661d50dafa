"""Replacing an ACI output crash-safely: the manifest's rename is the single commit point.

An ACI output is two names, ``DST.aci`` and ``DST_pieces/``; no rename swaps both at once. So a
replacement never touches the pieces the current manifest names. The new pieces are written in a
new *generation* folder inside the existing pieces folder (``DST_pieces/.g<PID>-<hex>.partial``
while written, renamed to ``DST_pieces/g<PID>-<hex>/`` when complete), the new manifest names
them, and its rename over ``DST.aci`` commits the new output; only then is everything else in
``DST_pieces/`` (the old pieces, older generations, leftovers of killed runs) deleted.

A kill at any step leaves ``DST.aci`` naming a complete set of pieces: before the commit the old
manifest and its untouched pieces, after it the new ones. What a killed run leaves besides (an
unreferenced generation, a ``.partial``) is deleted by the next run that writes ``DST``
(:func:`sweep`, after its own commit); a reader never looks at it. A first write (no pieces
folder yet) puts the folder in place and then the manifest: a kill between the two leaves only
the folder, which needs ``--overwrite`` to be replaced like any existing output.

Test hooks (``COMPOSITE_TEST_KILL_AT``, :mod:`composite.replace`): ``aci-pieces`` after the new
generation is in place, ``aci-committed`` after the manifest's rename, before the sweep.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from ...errors import CompositeError
from ...replace import _alive, _hook, remove
from .manifest import read_manifest


def new_generation() -> str:
    """A generation folder's name: the writing process and a random part."""
    return f"g{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def generation(folder: Path, name: str) -> Iterator[Path]:
    """Yield a temporary folder for the pieces of generation ``name`` inside ``folder``.

    The caller writes the pieces, then calls :func:`put_in_place` and commits the manifest. On
    an error or a signal the temporary folder, or the generation if it was already in place but
    not committed, is deleted.
    """
    tmp = folder / f".{name}.partial"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        remove(folder / name)
        raise


def put_in_place(tmp: Path, name: str) -> None:
    """Rename the complete generation ``tmp`` to its final name (not yet named by any manifest)."""
    os.rename(tmp, tmp.parent / name)
    _hook("aci-pieces")


def sweep(manifest: Path, folder: Path) -> None:
    """Delete what ``folder`` holds that ``manifest`` does not name (old pieces, uncommitted
    generations); a generation or temporary of another writer that is still running is kept."""
    _hook("aci-committed")
    try:
        parsed = read_manifest(manifest)
    except (OSError, CompositeError):
        return  # nothing known to be safe to delete
    prefix = folder.name + "/"
    kept = {c.path[len(prefix) :].split("/", 1)[0] for _, c in parsed.components() if c.path.startswith(prefix)}
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return
    for entry in entries:
        if entry in kept or _running(entry):
            continue
        remove(folder / entry)


def _running(entry: str) -> bool:
    """A generation (``g<PID>-...``) or its temporary (``.g<PID>-....partial``) of a live process."""
    name = entry.removeprefix(".")
    if not name.startswith("g") or "-" not in name:
        return False
    pid = name[1:].partition("-")[0]
    return pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid))
