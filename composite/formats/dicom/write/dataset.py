"""The DICOM header of each written instance (VL Whole Slide Microscopy Image IOD, PS3.3 A.32.8).

Every attribute comes from one of three places, and from nowhere else:

- the slide: sizes, tile size, pixel spacing (mpp), objective power, the frames' encoding;
- the user's ``--metadata`` file (:mod:`.metadata`): patient, study, specimen and equipment
  attributes; absent ones are written empty where the IOD allows (type 2) and as the documented
  placeholder ``UNKNOWN`` where it needs a value (type 1: container and specimen identifiers,
  device serial number), never as invented data;
- the conversion: fresh UIDs (or ``--study-uid``/``--series-uid``), content date and time,
  instance numbers, and this converter as the equipment's software.

Fixed choices: one optical path (brightfield, full-spectrum illumination, an sRGB ICC profile:
the pixels are shown as stored, as OpenSlide shows them), one focal plane, ``TILED_FULL``
frames, slide-corner frame of reference with the image's rows along the slide's y axis.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .... import __version__

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
PLACEHOLDER = "UNKNOWN"
SLICE_THICKNESS_MM = 0.0005  # nominal 0.5 um: ImagedVolumeDepth must not be 0 (C.8.12.4.1.2)
KINDS = {"VOLUME", "LABEL", "OVERVIEW", "THUMBNAIL"}


@dataclass(frozen=True)
class SeriesInfo:
    """What every instance of one written series shares."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    pyramid_uid: str
    dimension_uid: str
    specimen_uid: str
    metadata: Mapping[str, Any]
    mpp: tuple[float, float] | None
    magnification: float | None
    base_size: tuple[int, int]
    now: datetime.datetime
    acquired: str  # AcquisitionDateTime (DT)


@dataclass(frozen=True)
class Pixels:
    """How an instance's frames are stored."""

    transfer_syntax: str
    photometric: str
    lossy_method: str | None  # ISO_10918_1, ISO_15444_1; None: lossless


def code(value: str, scheme: str, meaning: str) -> Any:
    from pydicom import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


@functools.cache
def srgb_profile() -> bytes:
    """An sRGB ICC profile (Pillow's), which the optical path of colour images must carry."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    data: bytes = profile.tobytes()
    return data


def instance_dataset(
    series: SeriesInfo,
    *,
    kind: str,
    number: int,
    size: tuple[int, int],
    tile: tuple[int, int],
    frames: int,
    pixels: Pixels,
    resampled: bool,
    original: bool,
) -> Any:
    """The header (with file meta) of one instance: a pyramid level (``kind`` VOLUME) or an
    associated image (LABEL, OVERVIEW), ``size`` its total pixel matrix made of ``tile`` frames."""
    from pydicom import Dataset, FileMetaDataset, Sequence
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, generate_uid

    if kind not in KINDS:
        raise ValueError(f"unknown image kind {kind!r}")
    ds = Dataset()
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(WSI_SOP_CLASS)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = UID(pixels.transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"COMPOSITE_{__version__}"[:16]
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    image_type = ["ORIGINAL" if original else "DERIVED", "PRIMARY", kind, "RESAMPLED" if resampled else "NONE"]
    ds.ImageType = image_type
    ds.SOPClassUID = WSI_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    _patient_study_series(ds, series)
    ds.InstanceNumber = number
    ds.ContentDate = series.now.strftime("%Y%m%d")
    ds.ContentTime = series.now.strftime("%H%M%S")
    ds.AcquisitionDateTime = series.acquired
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = "SLIDE_CORNER"
    _equipment(ds, series.metadata)
    _specimen(ds, series.metadata, series.specimen_uid)
    _image_pixel(ds, size=size, tile=tile, frames=frames, pixels=pixels)
    ds.DimensionOrganizationType = "TILED_FULL"
    organisation = Dataset()
    organisation.DimensionOrganizationUID = series.dimension_uid
    ds.DimensionOrganizationSequence = Sequence([organisation])
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = size
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfOpticalPaths = 1
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = 0
    origin.YOffsetInSlideCoordinateSystem = 0
    ds.TotalPixelMatrixOriginSequence = Sequence([origin])
    ds.ImageOrientationSlide = [0, 1, 0, 1, 0, 0]
    ds.VolumetricProperties = "VOLUME"
    ds.SpecimenLabelInImage = "YES" if kind in {"LABEL", "OVERVIEW"} else "NO"
    ds.BurnedInAnnotation = "YES" if kind in {"LABEL", "OVERVIEW"} else "NO"
    ds.FocusMethod = "AUTO"
    ds.ExtendedDepthOfField = "NO"
    ds.AcquisitionContextSequence = Sequence()
    ds.OpticalPathSequence = Sequence([_optical_path(series)])
    shared = Dataset()
    frame_type = Dataset()
    frame_type.FrameType = image_type
    shared.WholeSlideMicroscopyImageFrameTypeSequence = Sequence([frame_type])
    path_id = Dataset()
    path_id.OpticalPathIdentifier = "1"
    shared.OpticalPathIdentificationSequence = Sequence([path_id])
    spacing = _spacing(series, size) if kind in {"VOLUME", "THUMBNAIL"} else None
    measures = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    if spacing is not None:
        measures.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # mm: row spacing, column spacing
        measures.SliceThickness = _ds(SLICE_THICKNESS_MM)
        ds.ImagedVolumeWidth = size[0] * spacing[0]
        ds.ImagedVolumeHeight = size[1] * spacing[1]
        ds.ImagedVolumeDepth = SLICE_THICKNESS_MM * 1000  # um
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    if kind == "VOLUME":
        ds.PyramidUID = series.pyramid_uid
    if kind == "LABEL":
        ds.LabelText = series.metadata.get("LabelText", "")
        ds.BarcodeValue = series.metadata.get("BarcodeValue", "")
    return ds


def _ds(value: float) -> Any:
    from pydicom.valuerep import DSfloat

    return DSfloat(value, auto_format=True)


def _spacing(series: SeriesInfo, size: tuple[int, int]) -> tuple[float, float] | None:
    """(column, row) pixel spacing in mm of an image of ``size`` covering the level-0 area."""
    if series.mpp is None:
        return None
    base_w, base_h = series.base_size
    return series.mpp[0] / 1000 * base_w / size[0], series.mpp[1] / 1000 * base_h / size[1]


def _patient_study_series(ds: Any, series: SeriesInfo) -> None:
    given = series.metadata
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    ):  # fmt: skip
        setattr(ds, keyword, given.get(keyword, ""))
    for keyword in ("StudyDescription", "SeriesDescription", "IssuerOfPatientID", "PatientAge"):
        if keyword in given:
            setattr(ds, keyword, given[keyword])
    ds.StudyInstanceUID = series.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.Modality = "SM"
    ds.SeriesNumber = given.get("SeriesNumber", "")


def _equipment(ds: Any, given: Mapping[str, Any]) -> None:
    ds.Manufacturer = given.get("Manufacturer", "composite")
    ds.ManufacturerModelName = given.get("ManufacturerModelName", "wsi-composite convert")
    ds.DeviceSerialNumber = given.get("DeviceSerialNumber", PLACEHOLDER)
    ds.SoftwareVersions = [f"composite {__version__}"]
    if "InstitutionName" in given:
        ds.InstitutionName = given["InstitutionName"]


def _specimen(ds: Any, given: Mapping[str, Any], specimen_uid: str) -> None:
    from pydicom import Dataset, Sequence

    ds.ContainerIdentifier = given.get("ContainerIdentifier", PLACEHOLDER)
    ds.IssuerOfTheContainerIdentifierSequence = Sequence()
    ds.ContainerTypeCodeSequence = Sequence([code("433466003", "SCT", "Microscope slide")])
    specimen = Dataset()
    specimen.SpecimenIdentifier = given.get("SpecimenIdentifier", ds.ContainerIdentifier)
    specimen.SpecimenUID = specimen_uid
    specimen.IssuerOfTheSpecimenIdentifierSequence = Sequence()
    specimen.SpecimenPreparationSequence = Sequence()
    ds.SpecimenDescriptionSequence = Sequence([specimen])


def _image_pixel(ds: Any, *, size: tuple[int, int], tile: tuple[int, int], frames: int, pixels: Pixels) -> None:
    ds.Columns, ds.Rows = tile
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = pixels.photometric
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if pixels.lossy_method is not None:
        from .frames import RATIO_PLACEHOLDER

        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = RATIO_PLACEHOLDER
        ds.LossyImageCompressionMethod = pixels.lossy_method
    else:
        ds.LossyImageCompression = "00"


def _optical_path(series: SeriesInfo) -> Any:
    from pydicom import Dataset, Sequence

    path = Dataset()
    path.OpticalPathIdentifier = "1"
    path.IlluminationTypeCodeSequence = Sequence([code("111744", "DCM", "Brightfield illumination")])
    path.IlluminationColorCodeSequence = Sequence([code("414298005", "SCT", "Full Spectrum")])
    path.ICCProfile = srgb_profile()
    if series.magnification is not None:
        path.ObjectiveLensPower = _ds(series.magnification)
    return path
