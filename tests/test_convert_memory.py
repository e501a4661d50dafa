"""Memory stays bounded by a few tile rows: peak RSS of a 20,000 x 20,000 conversion, measured in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LIMIT_MB = 500


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~1 min alone on 2 cores; the machine may be shared
def test_peak_rss_of_20k_conversion_below_500_mb(tmp_path: Path) -> None:
    # One level only, so the conversion must re-tile level 0 *and* compute every lower level:
    # the path that holds the most at once (source band, target rows, downsample rows).
    source = tmp_path / "big.svs"
    make = "from composite.synthetic import write_synthetic_slide as w; "
    make += f"w({str(source)!r}, width=20_000, height=20_000, min_level_size=100_000, associated=False, stamp=False)"
    subprocess.run([sys.executable, "-c", make], check=True, timeout=600)  # its memory is not ours to count
    dst = tmp_path / "out.svs"
    # VmHWM is the peak RSS of this process image only (ru_maxrss would also count the forked parent).
    script = textwrap.dedent(
        f"""
        import json, re
        from composite.convert import WriteOptions, convert
        report = convert({str(source)!r}, {str(dst)!r}, options=WriteOptions(tile_size=(512, 512), workers=2))
        status = open("/proc/self/status").read()
        peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
        levels = [[lvl.width, lvl.height, lvl.method] for lvl in report.levels]
        print(json.dumps({{"levels": levels, "peak_kb": peak_kb}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout)
    assert measured["levels"] == [
        [20000, 20000, "reencode"],
        [5000, 5000, "downsample"],
        [1250, 1250, "downsample"],
        [313, 313, "downsample"],
    ]
    peak_mb = measured["peak_kb"] / 1024
    assert peak_mb < LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "spool or temporary files left"
