"""The real inputs the fuzzer mutates: one small slide of every format composite reads.

Made once per campaign (a few seconds): a synthetic Aperio SVS with thumbnail, label and macro,
a YCbCr pyramidal TIFF, our own CWS conversion of the SVS and a scanner-style CWS (overlapping
blocks, focal planes), an ACI mosaic of two TIFFs and an ACI of pyramidal pieces, a plain JPEG;
and the OpenSlide project's real files from ``../shared/data/openslide`` when present (the DICOM
series comes only from there; without it a DICOM instance is written with pydicom).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from composite import codecs
from composite.convert import WriteOptions, convert
from composite.synthetic import region, write_synthetic_slide

if TYPE_CHECKING:
    import pytest

OPENSLIDE_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "openslide"


@dataclass(frozen=True)
class Seed:
    """One input: ``format`` is the family the mutators use; ``path`` a file or a directory."""

    format: str
    name: str
    path: Path


def shared_seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeds of one test run, made once under a lock: parallel workers (pytest-xdist) share
    them instead of each spending seconds on the same synthetic slides."""
    import fcntl
    import os

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "fuzz-seeds"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / "fuzz-seeds.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        make_seeds(root)
    return root


def make_seeds(root: Path) -> list[Seed]:
    root.mkdir(parents=True, exist_ok=True)
    done = root / ".complete"
    seeds: list[Seed] = []
    svs = root / "synthetic.svs"
    tif = root / "synthetic.tif"
    cws = root / "cws"
    scanner = root / "scanner"
    mosaic = root / "mosaic"
    pieces = root / "pieces"
    image = root / "plain.jpg"
    if not done.exists():
        write_synthetic_slide(svs, width=700, height=500, tile_size=240, min_level_size=128)
        write_synthetic_slide(tif, width=600, height=400, tile_size=256, layout="tiff", ycbcr=True, min_level_size=100)
        opts = WriteOptions(workers=1, overwrite=True)
        convert(svs, cws, to="cws", options=opts)
        from tests.cws_scanner import write_scanner_slide

        write_scanner_slide(scanner, cols=3, rows=2, planes=("u1",))
        _mosaic(mosaic)
        pieces.mkdir(exist_ok=True)
        convert(svs, pieces / "pieces.aci", options=WriteOptions(workers=1, overwrite=True, extra={"piece_size": 256}))
        image.write_bytes(codecs.encode_jpeg(region(0, 0, 200, 150), quality=80))
        if not OPENSLIDE_DATA.is_dir():
            _dicom(root / "dicom.dcm")
        done.touch()
    seeds += [
        Seed("svs", "synthetic.svs", svs),
        Seed("tiff", "synthetic.tif", tif),
        Seed("cws", "cws", cws),
        Seed("cws", "scanner", scanner),
        Seed("aci", "mosaic", mosaic),
        Seed("aci", "pieces", pieces),
        Seed("image", "plain.jpg", image),
    ]
    if OPENSLIDE_DATA.is_dir():
        seeds += [
            Seed("svs", "small.svs", OPENSLIDE_DATA / "small.svs"),
            Seed("tiff", "boxes.tiff", OPENSLIDE_DATA / "boxes.tiff"),
            Seed("dicom", "boxes_0.dcm", OPENSLIDE_DATA / "boxes_0.dcm"),
            Seed("dicom", "boxes_1.dcm", OPENSLIDE_DATA / "boxes_1.dcm"),
        ]
    else:
        seeds.append(Seed("dicom", "dicom.dcm", root / "dicom.dcm"))
    return seeds


def _mosaic(directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    for index in range(2):
        write_synthetic_slide(
            directory / f"part{index}.tif",
            width=300,
            height=260,
            tile_size=128,
            layout="tiff",
            ycbcr=True,
            min_level_size=64,
            seed=0,  # one texture for both: each seed costs a 2048 px pattern (seconds under load)
        )
    (directory / "mosaic.aci").write_text("edgetrim=no\npart0.tif 0 0\npart1.tif 10 280\n")


def _dicom(path: Path) -> None:
    """A one-frame VL whole-slide instance (used only when the OpenSlide files are absent)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.Rows = ds.Columns = 64
    ds.TotalPixelMatrixRows = ds.TotalPixelMatrixColumns = 64
    ds.NumberOfFrames = 1
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.PixelData = np.ascontiguousarray(region(0, 0, 64, 64)).tobytes()
    ds.save_as(path, enforce_file_format=True)


def copy_seed(seed: Seed, destination: Path) -> Path:
    """A private copy of ``seed`` under ``destination`` (a directory is copied whole)."""
    target = destination / seed.path.name
    if seed.path.is_dir():
        shutil.copytree(seed.path, target, symlinks=True)
    else:
        shutil.copyfile(seed.path, target)
    return target
