"""Which slides a batch converts, and where each one goes.

``SRC`` is a directory, searched recursively, or a list file (``.txt``, ``.csv``, ``.list``,
``.lst``), or a single slide. In a directory a slide is:

- a TIFF file (SVS, pyramidal TIFF, OME-TIFF, NDPI...: TIFF magic bytes, whatever the name);
- a CWS directory (it holds ``FinalScan.ini`` or another level INI): one slide, not entered;
- a directory holding DICOM Part 10 files: one slide (its series), its files not slides of their own;
- an ACI manifest (``.aci``): one slide; the files it names are not slides of their own;
- a file named like a slide (``.svs``, ``.tif``, ``.ndpi``, ``.dcm``...) that is none of these:
  listed, so that converting it fails with the reader's own error instead of passing unseen.

Anything else (text, plain JPEG/PNG pictures, hidden files and directories) is ignored and
counted. Symlinked directories are not followed (no cycles); ``DST`` is skipped when inside SRC.

Outputs mirror the sources' paths relative to SRC under DST, with the output format's naming:
``a/b/x.svs`` -> ``DST/a/b/x`` (CWS), ``x.svs`` (SVS), ``x.tif`` (TIFF), ``x.aci`` (ACI).

A list file is untrusted input: one source per line, optionally a destination (after a TAB in a
text list, in the second column of a CSV; a first CSV row ``source,destination`` is a header).
Blank lines and ``#`` comments are skipped; relative sources are relative to the list's
directory. A destination is relative to DST and must stay inside it: absolute paths, ``..`` and
symlinks leading out are refused with ``list:line: ...`` unless ``allow_absolute`` (then an
absolute destination is used as given; ``..`` is still refused).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from ..errors import CompositeError, LimitError, UnsafePathError, where

LIST_SUFFIXES = {".txt", ".csv", ".list", ".lst"}
SLIDE_SUFFIXES = {
    ".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".vms", ".mrxs", ".svslide", ".dcm", ".aci", ".qptiff",
}  # fmt: skip
OUTPUT_SUFFIX = {"svs": ".svs", "tiff": ".tif", "aci": ".aci", "cws": ""}
RESERVED = {"batch-ledger.jsonl", "batch-report.jsonl", ".batch.lock"}
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # as composite.formats.tiff
_CWS_INI = {"finalscan.ini", "scanslide.ini", "finalcond.ini", "slidescan.ini", "slidecond.ini"}
_MAX_LIST_LINES = 1_000_000
_MAX_LINE_CHARS = 8192


class ListFileError(CompositeError, ValueError):
    """A list file line that cannot be used (a usage error: nothing is converted)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One slide to convert: its source, its output and the name it has in reports."""

    source: Path
    output: Path
    name: str
    error: str | None = None  # known before converting (two sources with one output)


@dataclass
class Discovery:
    jobs: list[Job] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def output_name(relative: PurePath, *, to: str, is_dir: bool) -> PurePath:
    """``relative`` with the output format's naming (directories keep their whole name)."""
    base = relative if is_dir else relative.with_suffix("")
    return base.with_name(base.name + OUTPUT_SUFFIX[to])


def discover(src: Path, dst: Path, *, to: str, allow_absolute: bool = False) -> Discovery:
    """The jobs of a batch from ``src`` (directory, list file or one slide) into ``dst``."""
    if not src.exists():
        raise ListFileError(f"{src}: no such file or directory")
    found = Discovery()
    if src.is_file() and src.suffix.lower() in LIST_SUFFIXES:
        jobs = list(_read_list(src, dst, to=to, allow_absolute=allow_absolute))
    elif src.is_dir() and not _is_cws(src) and not _dicom_files(src):
        sources: list[tuple[Path, bool]] = []
        _walk(src, dst.absolute(), sources, found.ignored)
        jobs = [
            Job(path, dst / output_name(path.relative_to(src), to=to, is_dir=is_dir), str(path.relative_to(src)))
            for path, is_dir in sources
        ]
        jobs.sort(key=lambda job: job.name)
    else:
        jobs = [Job(src, dst / output_name(PurePath(src.name), to=to, is_dir=src.is_dir()), src.name)]
    found.jobs = _mark_collisions(jobs)
    return found


def _mark_collisions(jobs: list[Job]) -> list[Job]:
    seen: dict[Path, Job] = {}
    marked = []
    for job in jobs:
        key = Path(os.path.normpath(job.output.absolute()))
        first = seen.setdefault(key, job)
        if first is not job:
            job = Job(job.source, job.output, job.name, f"{job.output}: also the output of {first.source}")
        marked.append(job)
    return marked


def _is_cws(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(entry.name.lower() in _CWS_INI for entry in entries)
    except OSError:
        return False


def _dicom_files(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            files = [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_file(follow_symlinks=False)]
    except OSError:
        return []
    return [path for path in files if _head(path, 132)[128:132] == b"DICM"]


def _head(path: Path, count: int) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(count)
    except OSError:
        return b""


def _walk(root: Path, skip: Path, sources: list[tuple[Path, bool]], ignored: list[Path]) -> None:
    """Depth-first in name order; appends (path, is_dir) slides and ignored files."""
    stack = [root]
    components: set[Path] = set()
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        names = {entry.name.lower() for entry in entries}
        if directory != root and names & _CWS_INI:
            sources.append((directory, True))
            continue
        subdirs, files = [], []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if path.absolute() != skip:
                    subdirs.append(path)
            elif entry.is_file():
                files.append((path, _head(path, 132)))  # one read a file: DICOM preamble and magic
        if directory != root and any(head[128:132] == b"DICM" for _, head in files):
            sources.append((directory, True))  # a DICOM series: its files are not slides of their own
            files = [(path, head) for path, head in files if head[128:132] != b"DICM"]
        for path, head in files:
            _classify(path, head, sources, ignored, components)
        stack.extend(reversed(subdirs))
    if components:  # files an ACI manifest names are parts of that slide
        kept = [(p, d) for p, d in sources if d or p.resolve() not in components]
        sources[:] = kept


def _classify(
    path: Path, head: bytes, sources: list[tuple[Path, bool]], ignored: list[Path], components: set[Path]
) -> None:
    suffix = path.suffix.lower()
    if head[:4] in _TIFF_MAGICS or suffix in SLIDE_SUFFIXES:
        sources.append((path, False))
        if suffix == ".aci":
            components.update(_aci_components(path))
    else:
        ignored.append(path)


def _aci_components(manifest: Path) -> set[Path]:
    """The files an ACI manifest names (nothing when it does not parse: it fails when converted)."""
    from ..formats.aci.manifest import decode, parse_manifest

    try:
        parsed = parse_manifest(decode(manifest.read_bytes()[:16_000_000]), source=str(manifest))
    except (CompositeError, OSError):
        return set()
    base = manifest.absolute().parent
    return {
        (base / component.path.replace("\\", "/")).resolve()
        for layer in parsed.layers
        for component in layer.components
    }


def _read_list(listing: Path, dst: Path, *, to: str, allow_absolute: bool) -> Iterator[Job]:
    data = listing.read_bytes()
    if b"\x00" in data:
        raise ListFileError(f"{listing}: a list of slides is text, this file holds NUL bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ListFileError(f"{where(listing, line)}: not UTF-8 text") from None
    base = listing.absolute().parent
    is_csv = listing.suffix.lower() == ".csv"
    for number, raw in enumerate(text.splitlines(), start=1):
        if number > _MAX_LIST_LINES:
            raise LimitError(f"{listing}: more than {_MAX_LIST_LINES} lines")
        if len(raw) > _MAX_LINE_CHARS:
            raise ListFileError(f"{where(listing, number)}: line longer than {_MAX_LINE_CHARS} characters")
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        fields = _fields(raw, is_csv, listing, number)
        if is_csv and number == 1 and fields[0].strip().lower() == "source":
            continue
        source_text = fields[0].strip()
        if not source_text:
            raise ListFileError(f"{where(listing, number)}: no source path before the destination")
        source = Path(source_text) if os.path.isabs(source_text) else base / source_text
        if len(fields) > 1 and fields[1].strip():
            output = _destination(fields[1].strip(), dst, allow_absolute, listing, number)
        else:
            relative = source.relative_to(base) if source.is_relative_to(base) else PurePath(source.name)
            output = dst / output_name(PurePath(os.path.normpath(relative)), to=to, is_dir=source.is_dir())
            _check_inside(output, dst, listing, number, fields[0])
        yield Job(source, output, source_text)


def _fields(raw: str, is_csv: bool, listing: Path, number: int) -> list[str]:
    if is_csv:
        try:
            fields = next(csv.reader(io.StringIO(raw)))
        except (csv.Error, StopIteration) as err:
            raise ListFileError(f"{where(listing, number)}: not a CSV row ({err})") from None
    else:
        fields = raw.split("\t")
    if len(fields) > 2:
        raise ListFileError(f"{where(listing, number)}: {len(fields)} fields, expected a source and a destination")
    return fields


def _destination(text: str, dst: Path, allow_absolute: bool, listing: Path, number: int) -> Path:
    pure = PurePath(text.replace("\\", "/"))
    if ".." in pure.parts:
        raise UnsafePathError(f"{where(listing, number)}: destination {text!r} uses '..'")
    if pure.is_absolute():
        if not allow_absolute:
            raise UnsafePathError(
                f"{where(listing, number)}: destination {text!r} is absolute "
                "(give --allow-absolute to write outside DST)"
            )
        return Path(pure)
    output = dst / pure
    _check_inside(output, dst, listing, number, text)
    return output


def _check_inside(output: Path, dst: Path, listing: Path, number: int, text: str) -> None:
    root = dst.absolute().resolve()
    real = output.absolute().resolve()
    if not real.is_relative_to(root) or real == root:
        raise UnsafePathError(f"{where(listing, number)}: destination of {text!r} leads out of {dst}")
    if real.relative_to(root).parts[0] in RESERVED:
        raise UnsafePathError(f"{where(listing, number)}: destination {text!r} is the batch's own file")
