"""Folders of slides for the batch tests, and the helpers that run and read a batch."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from composite.convert import WriteOptions, convert
from composite.synthetic import region, write_synthetic_slide
from tests.cli import CLI

from .test_dicom_files import write_wsi_instance

REPO = Path(__file__).resolve().parent.parent

# relative path -> what it is; every one of these is a slide the batch must find
SLIDES = [
    "a/one.svs",
    "a/two.svs",
    "a/three.tif",
    "b/four.tif",
    "b/deep/c/five.svs",
    "b/scan",  # a CWS directory: one slide
    "dicom",  # a DICOM series directory: one slide
    "mosaic.aci",  # an ACI manifest with its pieces directory: one slide
    "six.svs",
    "seven.svs",
    "eight.tif",
    "broken/truncated.svs",
]
IGNORED = ["notes.txt", "b/picture.jpg"]


def make_mixed_folder(root: Path) -> Path:
    """A dozen small slides of every format composite reads, one truncated, plus non-slides."""
    for index, name in enumerate(SLIDES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 400 + 60 * index
        if name.endswith(".svs") and "truncated" not in name:
            write_synthetic_slide(path, width=size, height=size * 3 // 4, tile_size=240, min_level_size=256)
        elif name.endswith(".tif"):
            write_synthetic_slide(
                path, width=size, height=size * 2 // 3, tile_size=256, layout="tiff", ycbcr=True, min_level_size=256
            )
    work = root.parent / f"{root.name}-work"
    work.mkdir()
    donor = write_synthetic_slide(work / "donor.svs", width=1000, height=700, tile_size=240, min_level_size=256)
    convert(donor, root / "b/scan", to="cws")
    convert(donor, root / "mosaic.aci", to="aci", options=WriteOptions(extra={"piece_size": 512}))
    uid = generate_uid()
    (root / "dicom").mkdir()
    write_wsi_instance(root / "dicom/l0.dcm", region(0, 0, 320, 256), series_uid=uid)
    write_wsi_instance(root / "dicom/l1.dcm", region(0, 0, 80, 64, downsample=4), series_uid=uid)
    data = donor.read_bytes()
    (root / "broken/truncated.svs").write_bytes(data[: len(data) // 3])
    (root / "notes.txt").write_text("not a slide\n")
    (root / "b/picture.jpg").write_bytes((root / "b/scan/Label.jpg").read_bytes())
    return root


def run_batch(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "batch", *args], capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ), cwd=REPO
    )


def report(dst: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """batch-report.jsonl: the slides by name, and the summary line."""
    lines = [json.loads(line) for line in (dst / "batch-report.jsonl").read_text().splitlines()]
    assert lines[-1].get("summary") is True
    return {line["name"]: line for line in lines[:-1]}, lines[-1]


def ledger_lines(dst: Path) -> list[dict[str, Any]]:
    path = dst / "batch-ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def leftovers(dst: Path) -> list[Path]:
    """Anything a conversion leaves while unfinished: hidden temporary names."""
    return [p for p in dst.rglob("*") if p.name.endswith((".partial", ".old"))]


@contextlib.contextmanager
def port_taken(port: int = 8787) -> Iterator[None]:
    """Hold ``port`` (dask's default dashboard port) while the block runs, as another dask process
    would; if something holds it already, the condition is met as it is."""
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
            sock.listen()
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
        yield
