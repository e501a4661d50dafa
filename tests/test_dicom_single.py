"""Plain DICOM images (16-bit grey, multi-frame) export to 8-bit pictures the way FORMATS §4 says.

The expected values come from pydicom's own modality/VOI LUT functions (an independent
implementation of PS3.3 C.11), scaled from their output range to 0..255.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import RLELossless

from composite import open_slide
from composite.synthetic import region
from tests.cli import CLI

from .test_dicom_files import lut_item, write_image


def ct_like(seed: int = 0, shape: tuple[int, int] = (96, 128)) -> NDArray[np.uint16]:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 3000, shape[1])[None, :] + np.linspace(0, 900, shape[0])[:, None]
    return (ramp + rng.integers(0, 200, shape)).astype(np.uint16)


def export_png(path: Path, outdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "export", str(path), str(outdir), "--format", "png", *extra], capture_output=True, text=True, timeout=120
    )


def grey(path: Path) -> NDArray[np.uint8]:
    with Image.open(path) as image:
        assert image.mode == "L", "a grey DICOM exports as an 8-bit grey image"
        return np.asarray(image)


def reference(ds: Any, stored: NDArray[Any]) -> NDArray[np.float64]:
    """pydicom's windowed values mapped onto 0..255 (windowing's output range is the data's)."""
    values = apply_modality_lut(stored, ds)
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return apply_voi_lut(values, ds).astype(np.float64) * 255 / (2**bits - 1)
    if "WindowCenter" in ds:
        bits = int(ds.BitsStored)
        low, high = (0, 2**bits - 1) if ds.PixelRepresentation == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        low, high = low * slope + intercept, high * slope + intercept
        return (apply_voi_lut(values, ds).astype(np.float64) - low) * 255 / (high - low)
    values = values.astype(np.float64)
    return (values - values.min()) * 255 / (values.max() - values.min())


def check(path: Path, png: Path, *, invert: bool = False) -> None:
    ds = pydicom.dcmread(path)
    expected = reference(ds, ds.pixel_array)
    if invert:
        expected = 255 - expected
    ours = grey(png).astype(np.float64)
    assert np.abs(ours - expected).max() <= 1.0  # rounding only
    assert ours.min() < 30 and ours.max() > 225, "the test image spans the window"


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_rescale_then_window(tmp_path: Path, photometric: str) -> None:
    path = write_image(
        tmp_path / "ct.dcm",
        ct_like(),
        photometric=photometric,
        RescaleSlope=1,
        RescaleIntercept=-1024,
        WindowCenter=[1000, 40],  # the first window is used
        WindowWidth=[1600, 400],
    )
    result = export_png(path, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    check(path, tmp_path / "out" / "level0.png", invert=photometric == "MONOCHROME1")


def test_no_window_scales_min_to_max(tmp_path: Path) -> None:
    path = write_image(tmp_path / "plain.dcm", ct_like(1), bits_stored=12)
    assert export_png(path, tmp_path / "out").returncode == 0
    ours = grey(tmp_path / "out" / "level0.png")
    check(path, tmp_path / "out" / "level0.png")
    assert ours.min() == 0 and ours.max() == 255


def test_signed_samples_and_slope(tmp_path: Path) -> None:
    data = (ct_like(2).astype(np.int32) - 1500).astype(np.int16)
    path = write_image(
        tmp_path / "signed.dcm", data, RescaleSlope=2, RescaleIntercept=100, WindowCenter=0, WindowWidth=5000
    )
    assert export_png(path, tmp_path / "out").returncode == 0
    check(path, tmp_path / "out" / "level0.png")


def test_voi_lut_sequence_wins_over_window(tmp_path: Path) -> None:
    table = (np.sqrt(np.arange(4096) / 4095) * 65535).astype(np.uint16)  # a gamma curve
    path = write_image(
        tmp_path / "lut.dcm",
        np.clip(ct_like(3), 0, 4095).astype(np.uint16),
        bits_stored=12,
        WindowCenter=10,
        WindowWidth=20,
        VOILUTSequence=pydicom.Sequence([lut_item(table, 0, 16)]),
    )
    assert export_png(path, tmp_path / "out").returncode == 0
    check(path, tmp_path / "out" / "level0.png")


def test_modality_lut_sequence(tmp_path: Path) -> None:
    table = (4095 - np.arange(4096)).astype(np.uint16)  # an inverting modality LUT
    path = write_image(
        tmp_path / "mlut.dcm",
        np.clip(ct_like(4), 0, 4095).astype(np.uint16),
        bits_stored=12,
        ModalityLUTSequence=pydicom.Sequence([lut_item(table, 0, 16)]),
    )
    assert export_png(path, tmp_path / "out").returncode == 0
    check(path, tmp_path / "out" / "level0.png")


def test_jpeg_export_is_8_bit_grey(tmp_path: Path) -> None:
    path = write_image(tmp_path / "ct.dcm", ct_like(), WindowCenter=1500, WindowWidth=3000)
    result = subprocess.run(
        [*CLI, "export", str(path), str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    jpeg = grey(tmp_path / "out" / "level0.jpg")
    ds = pydicom.dcmread(path)
    assert np.abs(jpeg.astype(float) - reference(ds, ds.pixel_array)).mean() < 3  # a noisy image at q90


def test_each_frame_of_a_multi_frame_image_exports(tmp_path: Path) -> None:
    frames = np.stack([ct_like(seed) for seed in range(3)])
    frames[1] //= 2  # different content per frame
    path = write_image(tmp_path / "multi.dcm", frames, WindowCenter=1500, WindowWidth=3000)
    with open_slide(path) as slide:
        assert sorted(slide.focal_planes) == ["frame-2", "frame-3"]
    result = export_png(path, tmp_path / "out", "--plane", "all")
    assert result.returncode == 0, result.stderr
    ds = pydicom.dcmread(path)
    expected = reference(ds, ds.pixel_array)
    names = ["level0.png", "level0_frame-2.png", "level0_frame-3.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    for index, name in enumerate(names):
        assert np.abs(grey(tmp_path / "out" / name) - expected[index]).max() <= 1.0
    only = export_png(path, tmp_path / "two", "--plane", "frame-2")
    assert only.returncode == 0 and [p.name for p in (tmp_path / "two").iterdir()] == ["level0_frame-2.png"]
    wrong = export_png(path, tmp_path / "three", "--plane", "frame-9")
    assert wrong.returncode == 2 and "frame-9" in wrong.stderr and "frame-2" in wrong.stderr


def _encapsulated(path: Path, out: Path, syntax: str, frame: bytes) -> Path:
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize("codec", ["rle", "jpegls", "jpeg-lossless", "jpeg2000", "htj2k"])
def test_compressed_frames_read_like_uncompressed(tmp_path: Path, codec: str) -> None:
    data = ct_like(5)
    native = write_image(tmp_path / "native.dcm", data, WindowCenter=1500, WindowWidth=3000)
    out = tmp_path / f"{codec}.dcm"
    if codec == "rle":  # pydicom's own RLE encoder
        ds = pydicom.dcmread(native)
        ds.compress(RLELossless)
        ds.save_as(out)
    else:
        syntax, frame = {
            "jpegls": ("1.2.840.10008.1.2.4.80", imagecodecs.jpegls_encode(data)),
            "jpeg-lossless": ("1.2.840.10008.1.2.4.70", imagecodecs.ljpeg_encode(data)),
            "jpeg2000": ("1.2.840.10008.1.2.4.90", imagecodecs.jpeg2k_encode(data, level=0, codecformat="J2K")),
            "htj2k": ("1.2.840.10008.1.2.4.201", imagecodecs.htj2k_encode(data)),
        }[codec]
        _encapsulated(native, out, syntax, bytes(frame))
    with open_slide(native) as expected, open_slide(out) as slide:
        assert np.array_equal(slide.read_region((0, 0), 0, (128, 96)), expected.read_region((0, 0), 0, (128, 96)))


def test_rgb_secondary_capture_rle(tmp_path: Path) -> None:
    rgb = region(0, 0, 40, 30)
    ds = pydicom.dcmread(write_image(tmp_path / "grey.dcm", ct_like(6, (30, 40))))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = rgb.tobytes()
    ds.compress(RLELossless)  # RLE stores one segment per sample
    ds.save_as(tmp_path / "rgb.dcm")
    with open_slide(tmp_path / "rgb.dcm") as slide:
        assert np.array_equal(slide.read_region((0, 0), 0, (40, 30)), rgb)
