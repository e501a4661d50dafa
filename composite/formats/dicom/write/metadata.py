"""``--metadata FILE.json`` and ``--study-uid``/``--series-uid``: what the user tells the DICOM writer.

The file is one JSON object whose keys are DICOM keywords from :data:`KEYS` (patient, study,
series, specimen, equipment) and whose values are strings (``SeriesNumber`` may be an integer).
Each value is checked against its attribute's value representation (dates ``YYYYMMDD``, times
``HHMMSS``, person names, lengths), so a wrong value is a one-line error before anything is
written. Unknown keys are refused (a misspelt key would otherwise be silently dropped).
``mpp`` (a number, micrometres per pixel) is the one non-DICOM key: the pixel spacing for a
source that does not record it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ....errors import FormatError

KEYS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
    "SeriesNumber", "SeriesDescription", "AcquisitionDateTime",
    "ContainerIdentifier", "SpecimenIdentifier", "LabelText", "BarcodeValue",
    "Manufacturer", "ManufacturerModelName", "DeviceSerialNumber", "InstitutionName",
)  # fmt: skip
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_MAX_BYTES = 1 << 20


def check_uid(text: str, what: str) -> str:
    """``text`` when it is a valid DICOM UID (digits and dots, no leading zeros, <= 64 chars)."""
    if len(text) > 64 or not _UID.fullmatch(text):
        raise FormatError(f"{what} {text!r} is not a DICOM UID (digits and dots, no leading zeros, at most 64)")
    return text


def load_metadata(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """The checked metadata from a JSON file (or an already-loaded mapping); {} for None."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        data: Any = dict(source)
        where = "metadata"
    else:
        path = Path(source)
        where = str(path)
        try:
            if path.stat().st_size > _MAX_BYTES:
                raise FormatError(f"{path}: metadata file larger than {_MAX_BYTES} bytes")
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise FormatError(f"{path}: cannot read metadata ({err.strerror or err})") from err
        except (ValueError, UnicodeDecodeError) as err:
            raise FormatError(f"{path}: not a JSON file ({err})") from err
    if not isinstance(data, dict):
        raise FormatError(f"{where}: metadata must be a JSON object of DICOM keyword -> value")
    checked: dict[str, Any] = {}
    for key, value in data.items():
        if key == "mpp":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1000:
                raise FormatError(f"{where}: mpp must be a number of micrometres per pixel, got {value!r}")
            checked[key] = float(value)
            continue
        if key not in KEYS:
            raise FormatError(f"{where}: unknown metadata key {key!r} (expected one of {', '.join(KEYS)}, mpp)")
        checked[key] = _checked(where, key, value)
    return checked


def _checked(where: str, key: str, value: Any) -> Any:
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import DataElement
    from pydicom.valuerep import validate_value

    if key == "SeriesNumber" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise FormatError(f"{where}: {key} must be a string, got {type(value).__name__}")
    vr = dictionary_VR(key)
    try:
        validate_value(vr, value, validation_mode=2)  # config.RAISE
        DataElement(key, vr, value)
    except (ValueError, TypeError) as err:
        raise FormatError(f"{where}: {key} {value!r} is not a valid {vr} value ({err})") from err
    return value
