"""Non-tiled DICOM images (CT, MR, CR, secondary capture ...): each frame an 8-bit picture.

A single-frame instance is a one-level slide; a multi-frame one has frame 1 as its levels and
frames 2..N as focal planes named ``frame-2`` ... ``frame-N``, so each frame can be exported.
Grey samples become 8-bit display values the way docs/formats.md §4 says: the modality LUT (Modality
LUT Sequence, else Rescale Slope/Intercept), then the first VOI LUT (VOI LUT Sequence) or the
first window (Window Center/Width with VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID), else
linear scaling of the frame's own minimum..maximum, to 0..255 rounded half up; MONOCHROME1 is
then inverted. Colour frames (RGB, YBR) are shown as stored, high bit depths scaled to 8 bits.

Not supported: PALETTE COLOR (palette LUTs), presentation states, overlays, frames larger than
the instance reader's frame limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ... import codecs
from ...codecs import RGBArray
from ...errors import FormatError
from ...geometry import TileGrid
from ...model import Level, Slide
from .instance import Instance
from .properties import dicom_properties


def lut_table(item: Any, path: Path, *, signed: bool) -> tuple[NDArray[np.float64], int, int]:
    """(table, first mapped input value, bits of the output) of a Modality/VOI LUT item.

    The first mapped value is unsigned in the descriptor unless the LUT's input is signed.
    """
    try:
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
        data = item.LUTData
    except (AttributeError, TypeError, ValueError) as err:
        raise FormatError(f"{path}: bad LUT ({err})") from err
    entries = entries or 65536
    if isinstance(data, (bytes, bytearray)):
        table = np.frombuffer(data, "<u2" if bits > 8 or len(data) >= 2 * entries else "u1")
    else:
        table = np.asarray(data if isinstance(data, (list, tuple)) else list(data))
    table = table[:entries].astype(np.float64)
    if len(table) == 0:
        raise FormatError(f"{path}: empty LUT")
    if signed and first >= 32768:
        first -= 65536
    return table, first, bits


def _apply_lut(values: NDArray[np.float64], table: NDArray[np.float64], first: int) -> NDArray[np.float64]:
    index = np.clip(np.floor(values).astype(np.int64) - first, 0, len(table) - 1)
    result: NDArray[np.float64] = table[index]
    return result


def modality(values: NDArray[Any], ds: Any, path: Path) -> NDArray[np.float64]:
    """Stored values to modality values (e.g. Hounsfield units)."""
    sequence = ds.get("ModalityLUTSequence")
    data = values.astype(np.float64)
    if sequence:
        table, first, _ = lut_table(sequence[0], path, signed=int(ds.get("PixelRepresentation", 0) or 0) == 1)
        return _apply_lut(data, table, first)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return data * slope + intercept


def _first_number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
        value = value[0] if len(value) else None
    return None if value is None else float(value)


def voi(values: NDArray[np.float64], ds: Any, path: Path) -> NDArray[np.float64]:
    """Modality values to 0..255 (floats): VOI LUT, else window, else the data's min..max."""
    sequence = ds.get("VOILUTSequence")
    if sequence:
        table, first, bits = lut_table(sequence[0], path, signed=bool(values.min() < 0))
        top = float((1 << bits) - 1) if bits > 0 else float(table.max() or 1)
        return _apply_lut(values, table, first) * (255.0 / top)
    center = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        if function == "SIGMOID":
            return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        if function == "LINEAR_EXACT":
            return np.clip(((values - center) / width + 0.5) * 255.0, 0.0, 255.0)
        if width >= 1:  # LINEAR (PS3.3 C.11.2.1.2.1)
            if width == 1:
                return np.where(values <= center - 0.5, 0.0, 255.0)
            return np.clip(((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0, 0.0, 255.0)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) * (255.0 / (high - low))


def render(inst: Instance, index: int) -> RGBArray:
    """Frame ``index`` as 8-bit RGB for display (grey repeated in three channels)."""
    samples = inst.samples_of(index)
    if inst.samples == 1:
        grey = voi(modality(samples[:, :, 0], inst.ds, inst.path), inst.ds, inst.path)
        pixels = np.floor(np.clip(grey, 0.0, 255.0) + 0.5).astype(np.uint8)
        if inst.photometric == "MONOCHROME1":
            pixels = 255 - pixels
        return codecs.as_rgb(pixels)
    if inst.photometric not in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        raise FormatError(f"{inst.path}: PhotometricInterpretation {inst.photometric} is not supported")
    if inst.codec == "none" and inst.photometric == "YBR_FULL_422":
        raise FormatError(f"{inst.path}: uncompressed YBR_FULL_422 is not supported")
    if samples.dtype != np.uint8:
        shift = max(inst.bits_stored - 8, 0)
        samples = (np.clip(samples, 0, None) >> shift).astype(np.uint8)
    return codecs.as_rgb(samples)


class FrameReader:
    """A one-tile level showing one frame, rendered on each read (nothing to byte-copy)."""

    def __init__(self, inst: Instance, index: int) -> None:
        self._inst = inst
        self._index = index

    @property
    def encoding(self) -> None:
        return None

    def read_encoded(self, col: int, row: int) -> bytes | None:
        return None

    def read_tile(self, col: int, row: int) -> RGBArray | None:
        return render(self._inst, self._index)


def _mpp(ds: Any) -> tuple[float, float] | None:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        if spacing is not None and len(spacing) == 2 and float(spacing[0]) > 0 and float(spacing[1]) > 0:
            return float(spacing[1]) * 1000.0, float(spacing[0]) * 1000.0
    except (TypeError, ValueError):
        return None
    return None


def build_slide(path: Path, inst: Instance) -> Slide:
    grid = TileGrid(inst.columns, inst.rows, inst.columns, inst.rows)
    levels = [Level(grid, 1.0, FrameReader(inst, index)) for index in range(inst.frame_count)]
    mpp = _mpp(inst.ds)
    properties = dicom_properties(inst.ds)
    properties["openslide.vendor"] = "dicom"
    return Slide(
        format="dicom",
        path=path,
        levels=levels[:1],
        properties=properties,
        mpp=mpp,
        focal_planes={f"frame-{index + 1}": [level] for index, level in enumerate(levels) if index > 0},
        closers=[inst.close],
    )
