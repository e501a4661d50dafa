"""How the DICOM writer loads pydicom: without its download helpers (requests, tqdm), which stay
importable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# In a fresh interpreter: convert to DICOM, then report what pydicom saw and whether requests
# and tqdm import afterwards. argv: src, dst, and "thread" to run a second thread meanwhile.
PROBE = """
import sys, threading
from composite.convert import convert
stop = threading.Event()
if sys.argv[3] == "thread":
    threading.Thread(target=stop.wait).start()
convert(sys.argv[1], sys.argv[2], to="dicom")
stop.set()
import pydicom.data.download as download
import requests, tqdm
print(download.HAVE_REQUESTS, requests.get is not None, tqdm.tqdm is not None)
"""


@pytest.mark.parametrize(("threads", "expected"), [("alone", "False True True"), ("thread", "True True True")])
def test_pydicom_loads_without_its_download_helpers(
    synthetic_svs: Path, tmp_path: Path, threads: str, expected: str
) -> None:
    pytest.importorskip("requests")
    pytest.importorskip("tqdm")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(synthetic_svs), str(tmp_path / "out"), threads],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == expected  # helpers hidden only with no other thread
    assert (tmp_path / "out" / "level-0.dcm").is_file()
