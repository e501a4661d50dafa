"""A dask worker preload for the batch tests: a slide named ``victim*`` hangs its worker.

``dask worker --preload tests/batch_victim.py`` with ``BATCH_VICTIM_DIR`` set: converting a
source whose name starts with ``victim`` writes ``<name>.<attempt>.pid`` (this worker's pid) into
that directory and sleeps, so that the test can SIGKILL the worker in the middle of the slide.
``victim-once*`` converts normally from its second attempt on; ``victim-always*`` hangs every time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import composite.batch.worker as worker

# dask may import a preload twice: wrap the original function, never the wrapper
_original = getattr(worker, "unpatched_convert_one", worker.convert_one)
worker.unpatched_convert_one = _original  # type: ignore[attr-defined]


def convert_one(task: dict[str, Any]) -> dict[str, Any]:
    name = Path(task["source"]).name
    if name.startswith("victim"):
        directory = Path(os.environ["BATCH_VICTIM_DIR"])
        attempt = len(list(directory.glob(f"{name}.*.pid"))) + 1
        (directory / f"{name}.{attempt}.pid").write_text(str(os.getpid()))
        if name.startswith("victim-always") or attempt == 1:
            time.sleep(300)
    return _original(task)


worker.convert_one = convert_one
