"""A real full disk (ENOSPC), not only ``ulimit -f``: a 2 MB tmpfs mounted in a private mount
namespace (``unshare -m``), an old output on it, and a replacement that does not fit.

The command must print one line, exit 2, leave no ``.partial`` and leave the old output as it
was. Mounting needs CAP_SYS_ADMIN (root in this container; not in an unprivileged container or
CI runner): without it the test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from composite.synthetic import write_synthetic_slide

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the private mount namespace: mount, write the old output, try the new one, report.
_INSIDE = r"""
import hashlib, json, os, subprocess, sys
mount, old, new, name, *extra = sys.argv[1:]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mount], check=True)
def cli(*args):
    return subprocess.run([sys.executable, "-m", "composite", *args], capture_output=True, text=True)
def state():
    out = {}
    for folder, _, files in os.walk(mount):
        for f in files:
            path = os.path.join(folder, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, mount)] = hashlib.sha1(fh.read()).hexdigest()
    return out
dst = os.path.join(mount, name)
first = cli("convert", old, dst, "--quiet", *extra)
before = state()
second = cli("convert", new, dst, "--quiet", "--overwrite", *extra)
print(json.dumps({"first": [first.returncode, first.stderr], "second": [second.returncode, second.stderr],
                  "before": before, "after": state()}))
subprocess.run(["umount", mount])
"""


def _namespace_works(probe: Path) -> str | None:
    """None when a tmpfs can be mounted in a private mount namespace here, else why not."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare or mount is not installed"
    probe.mkdir()
    script = f"mount -t tmpfs -o size=1m tmpfs {probe} && umount {probe}"
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True)
    if done.returncode != 0:
        return f"cannot mount a tmpfs in a private namespace: {done.stderr.decode(errors='replace').strip()}"
    return None


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("enospc")
    why = _namespace_works(root / "probe")
    if why:
        pytest.skip(why)
    return {
        "old": write_synthetic_slide(root / "old.svs", width=600, height=400, tile_size=240, min_level_size=256),
        # about 4 MB of JPEG tiles: more than the 2 MB tmpfs holds
        "new": write_synthetic_slide(root / "new.svs", width=4000, height=3000, tile_size=240, quality=90),
    }


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("out.svs", []),
        ("out", ["--to", "cws"]),
        ("out.aci", ["--piece-size", "1024"]),
    ],
)
def test_a_full_disk_is_one_line_and_keeps_the_old_output(
    sources: dict[str, Path], tmp_path: Path, name: str, extra: list[str]
) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    command = ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _INSIDE]
    command += [str(mount), str(sources["old"]), str(sources["new"]), name, *extra]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=os.environ, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["first"][0] == 0, report["first"]
    assert report["before"], "the old output was written"
    code, stderr = report["second"]
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "No space left on device" in stderr, stderr
    assert stderr.startswith(f"wsi-composite: error: {mount / name}"), stderr
    assert report["after"] == report["before"]  # the old output as it was, nothing else (no .partial)
    assert not any(".partial" in path for path in report["after"])
