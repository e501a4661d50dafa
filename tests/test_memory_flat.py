"""Peak memory of a conversion stays flat when the slide grows (streaming, not whole levels).

Each conversion runs in a fresh interpreter that reports its own address space's high-water mark
(VmHWM). Not ``ru_maxrss`` from wait4: on Linux that also counts the resident set of the process
the child was spawned from (here, pytest holding the generated slides), which would make any two
figures look alike. Nothing here is timed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from composite.synthetic import write_synthetic_slide

SMALL, LARGE = 4_000, 16_000  # 16x the pixels; a row of tiles is 4x as wide
# Measured 2026-11-28: 52 -> 58, 54 -> 61 and 65 -> 68 MB. Holding full-width tile rows instead of
# stripes would add about 25 MB at LARGE, more than the allowance.
RATIO, SLACK_MB = 1.2, 8.0

# Runs the CLI in-process and prints the peak resident set of this process alone.
_CHILD = """
import re, sys
from composite.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
print("VmHWM", int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)))
sys.exit(code)
"""

CONVERSIONS = {
    "svs-to-cws-copy": ("cws", []),
    "svs-to-cws-256": ("cws", ["--tile-size", "256", "--quality", "80"]),
    "svs-to-svs-256": ("svs", ["--tile-size", "256", "--quality", "80"]),
    "svs-to-dicom-copy": ("dicom", []),
}


def _targets() -> set[str]:
    usage = subprocess.run(
        [sys.executable, "-m", "composite", "convert", "--help"], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"--to \{?([\w|,]+)", usage)
    return set(re.split(r"[|,]", found.group(1))) if found else set()


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("memory")
    return {
        size: write_synthetic_slide(root / f"{size}.svs", width=size, height=size, quality=80, stamp=False)
        for size in (SMALL, LARGE)
    }


def _peak_mb(src: Path, dst: Path, target: str, options: list[str]) -> float:
    argv = [sys.executable, "-c", _CHILD, "convert", str(src), str(dst), "--to", target, *options, "--quiet"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=240)
    assert done.returncode == 0, done.stderr
    assert dst.exists() and (not dst.is_dir() or any(dst.iterdir())), f"{dst} was not written"
    found = re.search(r"^VmHWM (\d+)$", done.stdout, re.MULTILINE)
    assert found, done.stdout
    return int(found.group(1)) / 1024


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_peak_memory_flat_across_slide_sizes(name: str, slides: dict[int, Path], tmp_path: Path) -> None:
    target, options = CONVERSIONS[name]
    if target not in _targets():
        pytest.skip(f"`wsi-composite convert --to {target}` does not exist yet")
    suffix = ".svs" if target == "svs" else ""
    small = _peak_mb(slides[SMALL], tmp_path / f"small{suffix}", target, options)
    large = _peak_mb(slides[LARGE], tmp_path / f"large{suffix}", target, options)
    assert small > 0
    print(f"{name}: {small:.1f} MB at {SMALL} px, {large:.1f} MB at {LARGE} px")
    assert large <= small * RATIO + SLACK_MB, (
        f"{name}: peak RSS {large:.0f} MB at {LARGE} px vs {small:.0f} MB at {SMALL} px "
        f"(allowed {small * RATIO + SLACK_MB:.0f} MB)"
    )
