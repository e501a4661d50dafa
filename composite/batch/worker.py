"""The one function a dask worker runs: convert one slide, return what happened as a dict.

Imports only the converter (and the ACI reader when a manifest is trusted), never dask: the
worker process already has dask, and this module must stay importable without it. Errors never
escape: a slide that fails returns its one-line error, the text ``wsi-composite convert`` prints.
Only a dead worker (killed, out of memory) reaches the client as an exception.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any


def convert_one(task: dict[str, Any]) -> dict[str, Any]:
    """Convert ``task["source"]`` to ``task["output"]`` (keys: ``to``, ``options``, ``allow_outside``).

    Returns ``status`` ("ok" or "failed"), ``error``, ``megapixels``, ``seconds``,
    ``output_size``, ``peak_rss_mb`` (this worker process while converting), ``warnings``, ``worker``,
    and ``started``/``finished`` (wall clock, seconds since the epoch: the batch's timeline).
    """
    started = time.time()
    from ..convert import AciOptions, DicomOptions, TiffOptions, WriteOptions, convert
    from ..errors import CompositeError
    from .ledger import output_size

    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # its warnings repeat the error we return
    _reset_peak_rss()
    start = time.perf_counter()
    source, output = Path(task["source"]), Path(task["output"])
    raw = dict(task["options"])
    if raw.get("tile_size") is not None:
        raw["tile_size"] = tuple(raw["tile_size"])
    for name, kind in (("tiff", TiffOptions), ("aci", AciOptions), ("dicom", DicomOptions)):  # travel as dicts
        if isinstance(raw.get(name), dict):
            raw[name] = kind(**raw[name])
    result: dict[str, Any] = {"status": "failed", "error": None, "megapixels": 0.0, "output_size": 0, "warnings": []}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            options = WriteOptions(**{**raw, "parents": True})  # the batch mirrors the source tree under DST
            if task.get("allow_outside"):
                from ..formats.aci import open_source

                with open_source(source, allow_outside=True) as slide:
                    report = convert(slide, output, to=task["to"], options=options)
            else:
                report = convert(source, output, to=task["to"], options=options)
        level0 = report.levels[0] if report.levels else None
        result.update(
            status="ok",
            megapixels=(level0.width * level0.height / 1e6) if level0 else 0.0,
            output_size=output_size(output),
            warnings=[str(w.message).splitlines()[0] for w in caught][:10],
        )
    except CompositeError as err:
        result["error"] = str(err)
    except OSError as err:
        result["error"] = f"{err.filename or source}: {err.strerror or err}"
    except Exception as err:  # a reader's or writer's bug must not stop the batch
        text = str(err).splitlines()[0] if str(err) else ""
        result["error"] = f"{source}: {type(err).__name__}: {text}"
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = _peak_rss_mb()
    result["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    result["started"], result["finished"] = started, time.time()
    return result


def _reset_peak_rss() -> None:
    """Reset this process's peak RSS (VmHWM) so the figure is this slide's (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
