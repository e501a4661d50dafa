"""The batch's memory between runs: ``DST/batch-ledger.jsonl``, and what counts as unchanged.

One JSON object a line, appended, never rewritten. A ``"done"`` line is written when a slide's
output is complete (renamed into place): source path, ``size``, ``mtime_ns``, ``fingerprint``
(BLAKE2b of the size and the first and last MiB), the options, the output path and its size.
A ``"started"`` line is written when a slide is handed to the cluster, so that a rerun after a
kill knows the output path is the batch's own to replace. The last line for an output wins; a
torn last line (a kill while appending) is ignored.

A slide is skipped on a rerun when its last line is ``"done"`` for the same source, options,
size, mtime and fingerprint, and its output still exists. A ``"failed"`` line (with the error)
makes a rerun report the same failure without converting again while source and options are
unchanged (a truncated file stays truncated), unless failures are to be retried. The fingerprint costs two 1 MiB reads,
so it is recomputed only when the source's inode or ctime differ from the ledger's (a file
copied or restored); otherwise ``stat`` alone decides (the kernel changes ctime on every write,
and it cannot be set back). A directory source (CWS, DICOM) is fingerprinted from the names,
sizes and mtimes of its files plus the contents of its INI files.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CompositeError

LEDGER = "batch-ledger.jsonl"
REPORT = "batch-report.jsonl"
LOCK = ".batch.lock"
_MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Signature:
    """What identifies a source's content: size, mtime, fingerprint (and inode/ctime, to skip it)."""

    size: int
    mtime_ns: int
    fingerprint: str
    inode: int = 0
    ctime_ns: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "fingerprint": self.fingerprint,
            "inode": self.inode,
            "ctime_ns": self.ctime_ns,
        }


def signature(path: Path, known: Mapping[str, Any] | None = None) -> Signature:
    """The signature of ``path``; with ``known`` (a ledger line) the fingerprint is reused when
    size, mtime, inode and ctime all still match it."""
    st = path.stat()
    if path.is_dir():
        return _directory_signature(path)
    if (
        known is not None
        and known.get("size") == st.st_size
        and known.get("mtime_ns") == st.st_mtime_ns
        and known.get("inode") == st.st_ino
        and known.get("ctime_ns") == st.st_ctime_ns
    ):
        return Signature(st.st_size, st.st_mtime_ns, str(known.get("fingerprint")), st.st_ino, st.st_ctime_ns)
    digest = hashlib.blake2b(str(st.st_size).encode(), digest_size=16)
    with path.open("rb") as fh:
        digest.update(fh.read(_MIB))
        if st.st_size > _MIB:
            fh.seek(max(_MIB, st.st_size - _MIB))
            digest.update(fh.read(_MIB))
    return Signature(st.st_size, st.st_mtime_ns, digest.hexdigest(), st.st_ino, st.st_ctime_ns)


def _directory_signature(path: Path) -> Signature:
    digest = hashlib.blake2b(digest_size=16)
    size = 0
    mtime = path.stat().st_mtime_ns
    with os.scandir(path) as it:
        entries = sorted((e for e in it if e.is_file(follow_symlinks=False)), key=lambda e: e.name)
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        size += st.st_size
        mtime = max(mtime, st.st_mtime_ns)
        digest.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if entry.name.lower().endswith(".ini"):
            with open(entry.path, "rb") as fh:
                digest.update(fh.read(_MIB))
    return Signature(size, mtime, digest.hexdigest())


def output_size(path: Path) -> int:
    """Bytes of a file, or of every file below a directory (a CWS output)."""
    if not path.is_dir():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(os.lstat(os.path.join(root, name)).st_size for name in files)
    return total


def read_ledger(dst: Path) -> dict[str, dict[str, Any]]:
    """The last line for each output path (absolute), from ``DST/batch-ledger.jsonl``."""
    entries: dict[str, dict[str, Any]] = {}
    try:
        with (dst / LEDGER).open("rb") as fh:
            for raw in fh:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue  # a line torn by a kill
                if isinstance(entry, dict) and isinstance(entry.get("output"), str):
                    entries[entry["output"]] = entry
    except FileNotFoundError:
        pass
    return entries


_last_sync = [0.0]


def append(dst: Path, entries: Iterable[Mapping[str, Any]], *, name: str = LEDGER) -> None:
    """Append JSON lines with one write (a kill leaves whole lines behind).

    The lines are in the page cache at once, which a killed process cannot lose; they are
    flushed to disk at most once a second (an fsync can wait for a busy disk's whole journal).
    """
    data = b"".join(json.dumps(entry, separators=(",", ":")).encode() + b"\n" for entry in entries)
    if not data:
        return
    fd = os.open(dst / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        if time.monotonic() - _last_sync[0] > 1.0:
            os.fsync(fd)
            _last_sync[0] = time.monotonic()
    finally:
        os.close(fd)


def same_input(entry: Mapping[str, Any] | None, source: Path, sig: Signature) -> bool:
    """Whether a ledger line is about this source, as it is now (its options are the caller's to
    compare: :func:`composite.batch.run.stored_key`)."""
    return (
        entry is not None
        and entry.get("source") == str(source)
        and entry.get("size") == sig.size
        and entry.get("mtime_ns") == sig.mtime_ns
        and entry.get("fingerprint") == sig.fingerprint
    )


class BatchLockedError(CompositeError, RuntimeError):
    """Another batch is writing into the same DST."""


@contextmanager
def locked(dst: Path) -> Iterator[None]:
    """Hold ``DST/.batch.lock`` (flock: released by the kernel even when the process is killed)."""
    dst.mkdir(parents=True, exist_ok=True)
    fd = os.open(dst / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchLockedError(f"{dst}: another batch is writing here ({dst / LOCK} is locked)") from None
        yield
    finally:
        os.close(fd)


def remove_partials(outputs: Iterable[Path]) -> list[Path]:
    """Remove what killed conversions to ``outputs`` left beside them: ``.NAME.<hex>.partial`` and
    ``.old`` (an ACI output's pieces directory's too). One listing per directory, however many
    outputs it holds (a resumed batch of thousands of slides in one folder)."""
    wanted: dict[Path, set[str]] = {}
    for output in outputs:
        names = wanted.setdefault(output.parent, set())
        names.add(output.name)
        if output.suffix.lower() == ".aci":  # the ACI writer's pieces directory
            names.add(re.sub(r"[\s=#]", "_", output.stem) + "_pieces")
    removed = []
    for parent, names in wanted.items():
        try:
            with os.scandir(parent) as it:
                leftovers = [
                    Path(e.path)
                    for e in it
                    if e.name.startswith(".") and e.name.endswith((".partial", ".old")) and _leftover_of(e.name, names)
                ]
        except FileNotFoundError:
            continue
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _leftover_of(name: str, names: set[str]) -> bool:
    """Whether ``.NAME.…`` names a temporary of one of ``names`` (``.x.svs.12-ab.partial``: ``x.svs``)."""
    body = name[1:]
    return any(body[:i] in names for i, char in enumerate(body) if char == ".")
