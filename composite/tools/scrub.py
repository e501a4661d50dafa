"""De-identification of slide metadata: the fields ``redact --scrub`` removes.

Aperio ImageDescription fields (``|key = value``) and the properties readers expose (``aperio.*``,
``tiff.*``, ``dicom.*``, ``cws.*`` ...) are dropped when their field name is one of
:data:`IDENTIFYING_FIELDS` (compared case-insensitively, without spaces or underscores) or names
a patient, person, institution or date. The list is in docs/tools.md; extend it here.
"""

from __future__ import annotations

import re

# Aperio description fields and TIFF tags that identify a patient, a person, a place or a time
IDENTIFYING_FIELDS = (
    # Aperio ImageDescription
    "Filename",
    "User",
    "Date",
    "Time",
    "Time Zone",
    "ScanScope ID",
    "Barcode",
    "ImageID",
    "DSR ID",
    "Slide",
    "SlideID",
    "Rack",
    "Session",
    "Title",
    "Operator",
    "OperatorID",
    # TIFF tags
    "DateTime",
    "Artist",
    "HostComputer",
    "Copyright",
    "DocumentName",
    "PageName",
    "ImageUniqueID",
    # CWS header
    "tOperatorID",
    "tTimeOfScan",
    "tWebSlideTitle",
    # DICOM attributes
    "AccessionNumber",
    "ContainerIdentifier",
    "DeviceSerialNumber",
    "SpecimenIdentifier",
    "StudyID",
    "OperatorsName",
    "ReferringPhysicianName",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
)
# any field whose name contains one of these (DICOM PatientName, StudyDate, AcquisitionDateTime ...)
IDENTIFYING_PARTS = ("patient", "date", "time", "physician", "institution", "barcode", "operator")
_KEY = re.compile(r"[\s_]+")
_NAMES = {_KEY.sub("", name).lower() for name in IDENTIFYING_FIELDS}


def is_identifying(field: str) -> bool:
    """Whether a field (``Filename``, ``aperio.ScanScope ID``, ``dicom.PatientName``) identifies."""
    name = field.rsplit(".", 1)[-1]
    name = re.sub(r"\[\d+\]$", "", name)
    key = _KEY.sub("", name).lower()
    return key in _NAMES or any(part in key for part in IDENTIFYING_PARTS)


def scrub_description(description: str | None) -> str | None:
    """An Aperio-style description without its identifying ``|key = value`` fields."""
    if description is None or "|" not in description:
        return description
    head, *fields = description.split("|")
    kept = [f for f in fields if not is_identifying(f.split("=", 1)[0].strip())]
    return "|".join([head, *kept])


def scrub_properties(properties: dict[str, str]) -> dict[str, str]:
    """The properties without identifying fields; descriptions inside are scrubbed too."""
    kept = {key: value for key, value in properties.items() if not is_identifying(key)}
    for key, value in kept.items():
        if key.endswith("ImageDescription") or key.endswith("tDescription"):
            kept[key] = scrub_description(value) or ""
    return kept
