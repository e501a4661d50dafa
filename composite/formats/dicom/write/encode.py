"""DICOM Part 10 bytes of the writer's headers (explicit VR little endian), without pydicom.

The writer's headers are a fixed set of attributes (:mod:`.dataset`), so encoding them needs
only their tags and value representations (:data:`TAGS`, taken from the DICOM dictionary; a test
checks each against pydicom's) and the encoding rules of PS3.5: elements in tag order, even
lengths (UI padded with NUL, OB with 00, text with a space), 4-byte lengths for OB/OV/SQ/UT...,
sequences and items of defined length, text in UTF-8 (SpecificCharacterSet ``ISO_IR 192``).
Importing pydicom costs a conversion about 0.2 s, more than writing a slide's headers ever did;
pydicom reads what this writes in the tests (and checks the user's ``--metadata`` values).

A dataset is a mapping of keyword -> value: ``str``, ``int``, ``float``, a list of them (a
multi-valued attribute), ``bytes`` (OB/OV) or a list of mappings (a sequence's items).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from typing import Any

# Implementation Class UID of composite's writer (fixed; 2.25 = derived from a UUID)
IMPLEMENTATION_UID = "2.25.134390598336772374580034254191474279562"

TAGS: dict[str, tuple[int, str]] = {
    "FileMetaInformationGroupLength": (0x00020000, "UL"),
    "FileMetaInformationVersion": (0x00020001, "OB"),
    "MediaStorageSOPClassUID": (0x00020002, "UI"),
    "MediaStorageSOPInstanceUID": (0x00020003, "UI"),
    "TransferSyntaxUID": (0x00020010, "UI"),
    "ImplementationClassUID": (0x00020012, "UI"),
    "ImplementationVersionName": (0x00020013, "SH"),
    "SpecificCharacterSet": (0x00080005, "CS"),
    "ImageType": (0x00080008, "CS"),
    "SOPClassUID": (0x00080016, "UI"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "PyramidUID": (0x00080019, "UI"),
    "StudyDate": (0x00080020, "DA"),
    "ContentDate": (0x00080023, "DA"),
    "AcquisitionDateTime": (0x0008002A, "DT"),
    "StudyTime": (0x00080030, "TM"),
    "ContentTime": (0x00080033, "TM"),
    "AccessionNumber": (0x00080050, "SH"),
    "Modality": (0x00080060, "CS"),
    "Manufacturer": (0x00080070, "LO"),
    "InstitutionName": (0x00080080, "LO"),
    "ReferringPhysicianName": (0x00080090, "PN"),
    "CodeValue": (0x00080100, "SH"),
    "CodingSchemeDesignator": (0x00080102, "SH"),
    "CodeMeaning": (0x00080104, "LO"),
    "StudyDescription": (0x00081030, "LO"),
    "SeriesDescription": (0x0008103E, "LO"),
    "ManufacturerModelName": (0x00081090, "LO"),
    "FrameType": (0x00089007, "CS"),
    "VolumetricProperties": (0x00089206, "CS"),
    "PatientName": (0x00100010, "PN"),
    "PatientID": (0x00100020, "LO"),
    "IssuerOfPatientID": (0x00100021, "LO"),
    "PatientBirthDate": (0x00100030, "DA"),
    "PatientSex": (0x00100040, "CS"),
    "PatientAge": (0x00101010, "AS"),
    "SliceThickness": (0x00180050, "DS"),
    "DeviceSerialNumber": (0x00181000, "LO"),
    "SoftwareVersions": (0x00181020, "LO"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "StudyID": (0x00200010, "SH"),
    "SeriesNumber": (0x00200011, "IS"),
    "InstanceNumber": (0x00200013, "IS"),
    "FrameOfReferenceUID": (0x00200052, "UI"),
    "PositionReferenceIndicator": (0x00201040, "LO"),
    "DimensionOrganizationUID": (0x00209164, "UI"),
    "DimensionOrganizationSequence": (0x00209221, "SQ"),
    "DimensionOrganizationType": (0x00209311, "CS"),
    "IlluminationTypeCodeSequence": (0x00220016, "SQ"),
    "SamplesPerPixel": (0x00280002, "US"),
    "PhotometricInterpretation": (0x00280004, "CS"),
    "PlanarConfiguration": (0x00280006, "US"),
    "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
    "PixelSpacing": (0x00280030, "DS"),
    "BitsAllocated": (0x00280100, "US"),
    "BitsStored": (0x00280101, "US"),
    "HighBit": (0x00280102, "US"),
    "PixelRepresentation": (0x00280103, "US"),
    "BurnedInAnnotation": (0x00280301, "CS"),
    "ICCProfile": (0x00282000, "OB"),
    "LossyImageCompression": (0x00282110, "CS"),
    "LossyImageCompressionRatio": (0x00282112, "DS"),
    "LossyImageCompressionMethod": (0x00282114, "CS"),
    "PixelMeasuresSequence": (0x00289110, "SQ"),
    "ContainerIdentifier": (0x00400512, "LO"),
    "IssuerOfTheContainerIdentifierSequence": (0x00400513, "SQ"),
    "ContainerTypeCodeSequence": (0x00400518, "SQ"),
    "SpecimenIdentifier": (0x00400551, "LO"),
    "SpecimenUID": (0x00400554, "UI"),
    "AcquisitionContextSequence": (0x00400555, "SQ"),
    "SpecimenDescriptionSequence": (0x00400560, "SQ"),
    "IssuerOfTheSpecimenIdentifierSequence": (0x00400562, "SQ"),
    "SpecimenPreparationSequence": (0x00400610, "SQ"),
    "WholeSlideMicroscopyImageFrameTypeSequence": (0x00400710, "SQ"),
    "XOffsetInSlideCoordinateSystem": (0x0040072A, "DS"),
    "YOffsetInSlideCoordinateSystem": (0x0040073A, "DS"),
    "ImagedVolumeWidth": (0x00480001, "FL"),
    "ImagedVolumeHeight": (0x00480002, "FL"),
    "ImagedVolumeDepth": (0x00480003, "FL"),
    "TotalPixelMatrixColumns": (0x00480006, "UL"),
    "TotalPixelMatrixRows": (0x00480007, "UL"),
    "TotalPixelMatrixOriginSequence": (0x00480008, "SQ"),
    "SpecimenLabelInImage": (0x00480010, "CS"),
    "FocusMethod": (0x00480011, "CS"),
    "ExtendedDepthOfField": (0x00480012, "CS"),
    "ImageOrientationSlide": (0x00480102, "DS"),
    "OpticalPathSequence": (0x00480105, "SQ"),
    "OpticalPathIdentifier": (0x00480106, "SH"),
    "IlluminationColorCodeSequence": (0x00480108, "SQ"),
    "ObjectiveLensPower": (0x00480112, "DS"),
    "OpticalPathIdentificationSequence": (0x00480207, "SQ"),
    "NumberOfOpticalPaths": (0x00480302, "UL"),
    "TotalPixelMatrixFocalPlanes": (0x00480303, "UL"),
    "LabelText": (0x22000002, "UT"),
    "BarcodeValue": (0x22000005, "LT"),
    "SharedFunctionalGroupsSequence": (0x52009229, "SQ"),
    "ExtendedOffsetTable": (0x7FE00001, "OV"),
    "ExtendedOffsetTableLengths": (0x7FE00002, "OV"),
}
_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}  # 4-byte lengths
_BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_NUMBERS = {"US": "H", "UL": "I", "SS": "h", "SL": "i", "FL": "f", "FD": "d"}
_ITEM = b"\xfe\xff\x00\xe0"


def new_uid() -> str:
    """A fresh UID: ``2.25.`` and a random UUID as an integer (PS3.5 B.2)."""
    return f"2.25.{uuid.uuid4().int}"


def format_ds(value: float) -> str:
    """A decimal string (DS) of at most 16 characters for ``value``."""
    text = repr(float(value))
    digits = 15
    while len(text) > 16 and digits > 0:
        text = f"{value:.{digits}g}"
        digits -= 1
    return text


def encode_file(meta: Mapping[str, Any], dataset: Mapping[str, Any]) -> bytes:
    """A Part 10 file's bytes up to its Pixel Data: preamble, ``DICM``, file meta (its group
    length added), then ``dataset``."""
    group = encode_dataset(meta)
    return bytes(128) + b"DICM" + _element(0x00020000, "UL", len(group)) + group + encode_dataset(dataset)


def encode_dataset(dataset: Mapping[str, Any]) -> bytes:
    """The elements of ``dataset`` in tag order; KeyError names a keyword not in :data:`TAGS`."""
    elements = sorted((*TAGS[keyword], value) for keyword, value in dataset.items())
    return b"".join(_element(tag, vr, value) for tag, vr, value in elements)


def _element(tag: int, vr: str, value: Any) -> bytes:
    body = _value(vr, value)
    head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode("ascii"))
    if vr in _LONG:
        return head + struct.pack("<HI", 0, len(body)) + body
    if len(body) > 0xFFFF:
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr}: {len(body)} bytes do not fit a short element")
    return head + struct.pack("<H", len(body)) + body


def _value(vr: str, value: Any) -> bytes:
    if vr == "SQ":
        items = [encode_dataset(item) for item in value]
        return b"".join(_ITEM + struct.pack("<I", len(item)) + item for item in items)
    if vr in _BINARY:
        data = bytes(value)
        return data + b"\x00" * (len(data) & 1)
    values = list(value) if isinstance(value, list | tuple) else [value]
    if vr in _NUMBERS:
        return struct.pack(f"<{len(values)}{_NUMBERS[vr]}", *values)
    text = "\\".join(_text(vr, v) for v in values).encode("utf-8")
    if len(text) & 1:
        text += b"\x00" if vr == "UI" else b" "
    return text


def _text(vr: str, value: Any) -> str:
    if value is None:
        return ""
    if vr == "DS" and not isinstance(value, str):
        return format_ds(value)
    return str(value)
