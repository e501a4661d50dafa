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
from .encode import IMPLEMENTATION_UID, new_uid

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


Dataset = dict[str, Any]  # keyword -> value, as :mod:`.encode` writes it


@dataclass
class Header:
    """One instance's header: the file meta and the dataset (everything but Pixel Data)."""

    meta: Dataset
    dataset: Dataset


def code(value: str, scheme: str, meaning: str) -> Dataset:
    return {"CodeValue": value, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning}


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
) -> Header:
    """The header of one instance: a pyramid level (``kind`` VOLUME) or an associated image
    (LABEL, OVERVIEW), ``size`` its total pixel matrix made of ``tile`` frames."""
    if kind not in KINDS:
        raise ValueError(f"unknown image kind {kind!r}")
    sop_uid = new_uid()
    meta: Dataset = {
        "FileMetaInformationVersion": b"\x00\x01",
        "MediaStorageSOPClassUID": WSI_SOP_CLASS,
        "MediaStorageSOPInstanceUID": sop_uid,
        "TransferSyntaxUID": pixels.transfer_syntax,
        "ImplementationClassUID": IMPLEMENTATION_UID,
        "ImplementationVersionName": f"COMPOSITE_{__version__}"[:16],
    }
    image_type = ["ORIGINAL" if original else "DERIVED", "PRIMARY", kind, "RESAMPLED" if resampled else "NONE"]
    ds: Dataset = {
        "SpecificCharacterSet": "ISO_IR 192",
        "ImageType": image_type,
        "SOPClassUID": WSI_SOP_CLASS,
        "SOPInstanceUID": sop_uid,
    }
    _patient_study_series(ds, series)
    ds["InstanceNumber"] = number
    ds["ContentDate"] = series.now.strftime("%Y%m%d")
    ds["ContentTime"] = series.now.strftime("%H%M%S")
    ds["AcquisitionDateTime"] = series.acquired
    ds["FrameOfReferenceUID"] = series.frame_of_reference_uid
    ds["PositionReferenceIndicator"] = "SLIDE_CORNER"
    _equipment(ds, series.metadata)
    _specimen(ds, series.metadata, series.specimen_uid)
    _image_pixel(ds, size=size, tile=tile, frames=frames, pixels=pixels)
    ds["DimensionOrganizationType"] = "TILED_FULL"
    ds["DimensionOrganizationSequence"] = [{"DimensionOrganizationUID": series.dimension_uid}]
    ds["TotalPixelMatrixColumns"], ds["TotalPixelMatrixRows"] = size
    ds["TotalPixelMatrixFocalPlanes"] = 1
    ds["NumberOfOpticalPaths"] = 1
    ds["TotalPixelMatrixOriginSequence"] = [{"XOffsetInSlideCoordinateSystem": 0, "YOffsetInSlideCoordinateSystem": 0}]
    ds["ImageOrientationSlide"] = [0, 1, 0, 1, 0, 0]
    ds["VolumetricProperties"] = "VOLUME"
    ds["SpecimenLabelInImage"] = "YES" if kind in {"LABEL", "OVERVIEW"} else "NO"
    ds["BurnedInAnnotation"] = "YES" if kind in {"LABEL", "OVERVIEW"} else "NO"
    ds["FocusMethod"] = "AUTO"
    ds["ExtendedDepthOfField"] = "NO"
    ds["AcquisitionContextSequence"] = []
    ds["OpticalPathSequence"] = [_optical_path(series)]
    spacing = _spacing(series, size) if kind in {"VOLUME", "THUMBNAIL"} else None
    measures: Dataset = {}
    if spacing is not None:
        measures["PixelSpacing"] = [spacing[1], spacing[0]]  # mm: row spacing, column spacing
        measures["SliceThickness"] = SLICE_THICKNESS_MM
        ds["ImagedVolumeWidth"] = size[0] * spacing[0]
        ds["ImagedVolumeHeight"] = size[1] * spacing[1]
        ds["ImagedVolumeDepth"] = SLICE_THICKNESS_MM * 1000  # um
    ds["SharedFunctionalGroupsSequence"] = [
        {
            "WholeSlideMicroscopyImageFrameTypeSequence": [{"FrameType": image_type}],
            "OpticalPathIdentificationSequence": [{"OpticalPathIdentifier": "1"}],
            "PixelMeasuresSequence": [measures],
        }
    ]
    if kind == "VOLUME":
        ds["PyramidUID"] = series.pyramid_uid
    if kind == "LABEL":
        ds["LabelText"] = series.metadata.get("LabelText", "")
        ds["BarcodeValue"] = series.metadata.get("BarcodeValue", "")
    return Header(meta, ds)


def _spacing(series: SeriesInfo, size: tuple[int, int]) -> tuple[float, float] | None:
    """(column, row) pixel spacing in mm of an image of ``size`` covering the level-0 area."""
    if series.mpp is None:
        return None
    base_w, base_h = series.base_size
    return series.mpp[0] / 1000 * base_w / size[0], series.mpp[1] / 1000 * base_h / size[1]


def _patient_study_series(ds: Dataset, series: SeriesInfo) -> None:
    given = series.metadata
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    ):  # fmt: skip
        ds[keyword] = given.get(keyword, "")
    for keyword in ("StudyDescription", "SeriesDescription", "IssuerOfPatientID", "PatientAge"):
        if keyword in given:
            ds[keyword] = given[keyword]
    ds["StudyInstanceUID"] = series.study_uid
    ds["SeriesInstanceUID"] = series.series_uid
    ds["Modality"] = "SM"
    ds["SeriesNumber"] = given.get("SeriesNumber", "")


def _equipment(ds: Dataset, given: Mapping[str, Any]) -> None:
    ds["Manufacturer"] = given.get("Manufacturer", "composite")
    ds["ManufacturerModelName"] = given.get("ManufacturerModelName", "wsi-composite convert")
    ds["DeviceSerialNumber"] = given.get("DeviceSerialNumber", PLACEHOLDER)
    ds["SoftwareVersions"] = [f"composite {__version__}"]
    if "InstitutionName" in given:
        ds["InstitutionName"] = given["InstitutionName"]


def _specimen(ds: Dataset, given: Mapping[str, Any], specimen_uid: str) -> None:
    container = given.get("ContainerIdentifier", PLACEHOLDER)
    ds["ContainerIdentifier"] = container
    ds["IssuerOfTheContainerIdentifierSequence"] = []
    ds["ContainerTypeCodeSequence"] = [code("433466003", "SCT", "Microscope slide")]
    specimen: Dataset = {
        "SpecimenIdentifier": given.get("SpecimenIdentifier", container),
        "SpecimenUID": specimen_uid,
        "IssuerOfTheSpecimenIdentifierSequence": [],
        "SpecimenPreparationSequence": [],
    }
    ds["SpecimenDescriptionSequence"] = [specimen]


def _image_pixel(ds: Dataset, *, size: tuple[int, int], tile: tuple[int, int], frames: int, pixels: Pixels) -> None:
    ds["Columns"], ds["Rows"] = tile
    ds["NumberOfFrames"] = frames
    ds["SamplesPerPixel"] = 3
    ds["PhotometricInterpretation"] = pixels.photometric
    ds["PlanarConfiguration"] = 0
    ds["BitsAllocated"] = 8
    ds["BitsStored"] = 8
    ds["HighBit"] = 7
    ds["PixelRepresentation"] = 0
    if pixels.lossy_method is not None:
        from .frames import RATIO_PLACEHOLDER

        ds["LossyImageCompression"] = "01"
        ds["LossyImageCompressionRatio"] = RATIO_PLACEHOLDER
        ds["LossyImageCompressionMethod"] = pixels.lossy_method
    else:
        ds["LossyImageCompression"] = "00"


def _optical_path(series: SeriesInfo) -> Dataset:
    path: Dataset = {
        "OpticalPathIdentifier": "1",
        "IlluminationTypeCodeSequence": [code("111744", "DCM", "Brightfield illumination")],
        "IlluminationColorCodeSequence": [code("414298005", "SCT", "Full Spectrum")],
        "ICCProfile": srgb_profile(),
    }
    if series.magnification is not None:
        path["ObjectiveLensPower"] = series.magnification
    return path
