"""What an SVS -> DICOM copy loads: pydicom without its download helpers (requests, tqdm), which
stay importable, and none of the TIFF writers (no level is computed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# In a fresh interpreter: convert to DICOM, then report whether a TIFF writer was loaded, what
# pydicom saw and whether requests and tqdm import afterwards. argv: src, dst, and "thread" to
# run a second thread meanwhile.
PROBE = """
import sys, threading
from composite.convert import convert
stop = threading.Event()
if sys.argv[3] == "thread":
    threading.Thread(target=stop.wait).start()
convert(sys.argv[1], sys.argv[2], to="dicom")
stop.set()
print(any(name.startswith("composite.formats.tiffwrite") for name in sys.modules))
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
    tiff_writers, helpers = done.stdout.split("\n")[-3:-1]
    assert tiff_writers == "False"
    assert helpers == expected  # hidden only with no other thread
    assert (tmp_path / "out" / "level-0.dcm").is_file()


# The command line in a fresh interpreter, as the console script runs it; at exit, after main
# returned, prints how many objects the final garbage collection will skip.
COMMAND = """
import atexit, gc, runpy, sys
atexit.register(lambda: print(gc.get_freeze_count()))
sys.argv = ["wsi-composite", *sys.argv[1:]]
runpy.run_module("composite", run_name="__main__")
"""


def test_the_command_lines_last_collection_skips_what_it_loaded(synthetic_svs: Path, tmp_path: Path) -> None:
    """Objects frozen when the command returns are left out of the interpreter's final collection
    (it walked every object of pydicom, numpy ... for 40-60 ms after a DICOM conversion)."""
    args = ["convert", str(synthetic_svs), str(tmp_path / "out"), "--to", "dicom", "--quiet"]
    done = subprocess.run([sys.executable, "-c", COMMAND, *args], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 10_000  # 0 without the freeze; 37,000 here
