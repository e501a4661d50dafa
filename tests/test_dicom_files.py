"""Builders of small DICOM files for the tests, written with pydicom (an independent writer).

``write_wsi_instance`` writes one VL Whole Slide Microscopy instance (TILED_FULL or
TILED_SPARSE, JPEG / JPEG 2000 / uncompressed frames); ``write_image`` writes a plain
single- or multi-frame grey image with optional rescale, window and LUTs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


def _meta(sop_class: str, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    return meta


def _jpeg_rgb(tile: NDArray[np.uint8]) -> bytes:
    """A baseline RGB JPEG with an Adobe marker, as OpenSlide's test DICOM has."""
    data = bytes(imagecodecs.jpeg8_encode(tile, level=95, colorspace="RGB", outcolorspace="RGB"))
    return data if b"Adobe" in data[:64] else data[:2] + ADOBE_RGB + data[2:]


def write_wsi_instance(
    path: Path,
    pixels: NDArray[np.uint8],
    *,
    series_uid: str,
    tile: int = 64,
    kind: str = "VOLUME",
    codec: str = "jpeg",
    sparse: bool = False,
    missing: Iterable[tuple[int, int]] = (),
    spacing_mm: float = 0.00025,
    power: float = 40,
) -> Path:
    """Write ``pixels`` (h, w, 3) as one WSI instance; ``missing`` tiles are left out (sparse)."""
    height, width = pixels.shape[:2]
    cols, rows = -(-width // tile), -(-height // tile)
    skip = set(missing)
    frames: list[bytes] = []
    positions: list[tuple[int, int]] = []
    for row in range(rows):
        for col in range(cols):
            if (col, row) in skip:
                continue
            block = np.full((tile, tile, 3), 255, np.uint8)
            part = pixels[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile]
            block[: part.shape[0], : part.shape[1]] = part
            if codec == "jpeg":
                frames.append(_jpeg_rgb(block))
            elif codec == "jpeg2000":
                frames.append(bytes(imagecodecs.jpeg2k_encode(block, level=0, codecformat="J2K")))
            else:
                frames.append(block.tobytes())
            positions.append((col, row))
    syntax = {"jpeg": JPEGBaseline8Bit, "jpeg2000": JPEG2000, "none": ExplicitVRLittleEndian}[codec]
    ds = Dataset()
    ds.file_meta = _meta(WSI, syntax)
    ds.SOPClassUID = WSI
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE" if kind != "THUMBNAIL" else "RESAMPLED"]
    ds.PatientName = "Test^Patient"
    ds.PatientID = "P-0001"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.Rows = tile
    ds.Columns = tile
    ds.NumberOfFrames = len(frames)
    ds.TotalPixelMatrixColumns = width
    ds.TotalPixelMatrixRows = height
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.DimensionOrganizationType = "TILED_SPARSE" if sparse else "TILED_FULL"
    measures = Dataset()
    measures.PixelSpacing = [spacing_mm, spacing_mm]
    measures.SliceThickness = 0
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    optical = Dataset()
    optical.OpticalPathIdentifier = "0"
    optical.ObjectiveLensPower = power
    ds.OpticalPathSequence = Sequence([optical])
    if sparse:
        groups = []
        for col, row in positions:
            position = Dataset()
            position.ColumnPositionInTotalImagePixelMatrix = col * tile + 1
            position.RowPositionInTotalImagePixelMatrix = row * tile + 1
            position.XOffsetInSlideCoordinateSystem = 0
            position.YOffsetInSlideCoordinateSystem = 0
            position.ZOffsetInSlideCoordinateSystem = 0
            group = Dataset()
            group.PlanePositionSlideSequence = Sequence([position])
            groups.append(group)
        ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    if codec == "none":
        ds.PixelData = b"".join(frames)
    else:
        ds.PixelData = encapsulate(frames, has_bot=True)
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def write_image(
    path: Path,
    frames: NDArray[Any],
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **attributes: Any,
) -> Path:
    """A plain (non-WSI) grey image: ``frames`` is (h, w) or (n, h, w) of uint8/uint16/int16."""
    data = np.asarray(frames)
    ds = Dataset()
    ds.file_meta = _meta(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = data.shape[-2:]
    if data.ndim == 3:
        ds.NumberOfFrames = data.shape[0]
    bits = data.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if data.dtype.kind == "i" else 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = data.astype(data.dtype.newbyteorder("<")).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def lut_item(table: NDArray[Any], first: int, bits: int) -> Dataset:
    """A Modality/VOI LUT Sequence item."""
    item = Dataset()
    item.LUTDescriptor = [len(table) if len(table) < 65536 else 0, first, bits]
    item.add_new("LUTData", "OW", np.asarray(table, "<u2").tobytes())
    return item


def read_back(path: Path) -> Any:
    return pydicom.dcmread(path)
