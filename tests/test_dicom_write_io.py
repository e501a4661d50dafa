"""What an SVS -> DICOM copy loads: none of the TIFF writers (no level is computed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# In a fresh interpreter: convert to DICOM, then report whether a TIFF writer was loaded.
PROBE = """
import sys
from composite.convert import convert
convert(sys.argv[1], sys.argv[2], to="dicom")
print(any(name.startswith("composite.formats.tiffwrite") for name in sys.modules))
"""


def test_an_all_copy_conversion_loads_no_tiff_writer(synthetic_svs: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(synthetic_svs), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "False"
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
