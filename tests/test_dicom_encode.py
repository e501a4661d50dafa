"""The DICOM writer's own header encoder against pydicom: tags, value representations, values.

composite/formats/dicom/write/encode.py writes headers without importing pydicom; pydicom is the
independent reader here (and test_dicom_write.py runs dciodvfy, wsidicom and OpenSlide on whole
series).
"""

from __future__ import annotations

import io
import math

import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword

from composite.formats.dicom.write.encode import TAGS, encode_file, format_ds, new_uid


@pytest.mark.parametrize("keyword", sorted(TAGS))
def test_each_tag_and_vr_is_the_dictionary_s(keyword: str) -> None:
    tag, vr = TAGS[keyword]
    assert tag == tag_for_keyword(keyword)
    assert vr == dictionary_VR(keyword)


def _read(meta: dict[str, object], dataset: dict[str, object]) -> pydicom.Dataset:
    data = encode_file(meta, dataset)
    assert len(data) % 2 == 0
    return pydicom.dcmread(io.BytesIO(data))


META = {
    "FileMetaInformationVersion": b"\x00\x01",
    "MediaStorageSOPClassUID": "1.2.840.10008.5.1.4.1.1.77.1.6",
    "MediaStorageSOPInstanceUID": "1.2.3",  # odd length: NUL-padded
    "TransferSyntaxUID": "1.2.840.10008.1.2.1",
    "ImplementationClassUID": "2.25.1",
    "ImplementationVersionName": "X",
}


def test_values_of_every_kind_read_back() -> None:
    icc = bytes(range(255))  # odd length: 00-padded
    dataset = {
        "SpecificCharacterSet": "ISO_IR 192",
        "ImageType": ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"],
        "PatientName": "Ødegård^Åse",  # UTF-8, odd byte count
        "PatientID": "",
        "SeriesNumber": "",
        "InstanceNumber": 7,
        "NumberOfFrames": 20875,
        "Rows": 240,
        "Columns": 256,
        "TotalPixelMatrixColumns": 100000,
        "ImagedVolumeWidth": 10.0625,
        "ImageOrientationSlide": [0, 1, 0, 1, 0, 0],
        "LossyImageCompressionRatio": "9.87654321012345",
        "LabelText": "a label, odd",
        "AcquisitionContextSequence": [],
        "ExtendedOffsetTable": bytes(range(16)),
        "OpticalPathSequence": [
            {
                "OpticalPathIdentifier": "1",
                "ICCProfile": icc,
                "ObjectiveLensPower": 40.0,
                "IlluminationTypeCodeSequence": [
                    {"CodeValue": "111744", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Brightfield illumination"}
                ],
            }
        ],
        "SharedFunctionalGroupsSequence": [
            {"PixelMeasuresSequence": [{"PixelSpacing": [0.00025, 0.000251], "SliceThickness": 0.0005}]}
        ],
    }
    ds = _read(META, dataset)
    assert ds.file_meta.MediaStorageSOPInstanceUID == "1.2.3"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.ImageType == ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
    assert str(ds.PatientName) == "Ødegård^Åse"
    assert ds.PatientID == "" and ds.SeriesNumber in ("", None)
    assert (ds.InstanceNumber, ds.NumberOfFrames, ds.Rows, ds.Columns) == (7, 20875, 240, 256)
    assert ds.TotalPixelMatrixColumns == 100000 and ds.ImagedVolumeWidth == 10.0625
    assert [float(v) for v in ds.ImageOrientationSlide] == [0, 1, 0, 1, 0, 0]
    assert float(ds.LossyImageCompressionRatio) == 9.87654321012345
    assert ds.LabelText == "a label, odd"
    assert len(ds.AcquisitionContextSequence) == 0
    assert ds.ExtendedOffsetTable == bytes(range(16))
    path = ds.OpticalPathSequence[0]
    assert path.ICCProfile[: len(icc)] == icc and float(path.ObjectiveLensPower) == 40
    assert path.IlluminationTypeCodeSequence[0].CodeMeaning == "Brightfield illumination"
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [0.00025, 0.000251]
    assert float(measures.SliceThickness) == 0.0005
    tags = [element.tag for element in ds]
    assert tags == sorted(tags)


@pytest.mark.parametrize("value", [0, 1, 40.0, 0.00025, 1 / 3, 2.0 / 3 * 1e-7, 123456789.123456789, 4.4e-3 * 40000])
def test_decimal_strings_fit_16_characters(value: float) -> None:
    text = format_ds(value)
    assert len(text) <= 16
    assert math.isclose(float(text), value, rel_tol=1e-9, abs_tol=1e-20)  # 16 characters: ~11 digits
    pydicom.valuerep.validate_value("DS", text, validation_mode=2)


def test_an_unknown_keyword_is_refused_and_uids_are_fresh() -> None:
    with pytest.raises(KeyError):
        encode_file(META, {"NotAKeyword": "x"})
    uids = {new_uid() for _ in range(100)}
    assert len(uids) == 100
    for uid in uids:
        assert uid.startswith("2.25.") and len(uid) <= 64
        pydicom.valuerep.validate_value("UI", uid, validation_mode=2)
