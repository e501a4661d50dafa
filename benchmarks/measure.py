"""Run one benchmark job as a child process and account for it: wall, CPU and peak RSS.

The job is spawned by launch.py, a shim that imports nothing heavy, and accounted with
``os.wait4``: on Linux that covers the job and every descendant it waited for, and ``ru_maxrss``
is the largest resident set among them. See launch.py for why the shim is needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def compile_package() -> None:
    """Byte-compile the composite package the jobs import, as installing it from a wheel does.

    Under PYTHONDONTWRITEBYTECODE=1 (set in some environments; in this project's benchmark machine
    too) an editable checkout has no bytecode cache, so every command would compile our modules
    again (about 30 ms of CPU for a conversion's 35 modules), which no installed copy pays.
    Up-to-date files are skipped, so this is quick after the first time.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("composite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(location, quiet=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Measurement:
    wall_s: float
    cpu_s: float  # user + system of the child and its waited-for children
    peak_rss_mb: float
    returncode: int
    stderr_tail: str
    load1: float  # the 1-minute load average when the job started: how shared the machine was

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def cpu_use(self) -> float:
        """Cores busy on average (CPU time / wall time): 2.0 keeps both of a 2-core machine busy."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


LAUNCH = Path(__file__).resolve().with_name("launch.py")


def run_measured(argv: Sequence[str | Path], *, sync: bool = False, log: Path) -> Measurement:
    """Run ``argv`` to completion through launch.py; with ``sync``, count flushing its writes too.

    Stdout is discarded (progress bars would only add noise); stderr is kept in ``log`` and its
    last lines are returned so a failed job can say why.
    """
    record = log.with_suffix(".json")
    # -S: no site packages, so the shim (whose memory is every job's floor) stays a few MB.
    shim = [sys.executable, "-S", str(LAUNCH), str(record), str(log), "--", *map(str, argv)]
    load1 = os.getloadavg()[0]
    subprocess.run(shim, check=True)
    data = json.loads(record.read_text())
    wall = data["wall_s"]
    if sync:
        start = time.perf_counter()
        os.sync()
        wall += time.perf_counter() - start
    lines = log.read_text(errors="replace").strip().splitlines()
    return Measurement(
        wall_s=wall,
        cpu_s=data["cpu_s"],
        peak_rss_mb=data["peak_rss_mb"],
        returncode=data["returncode"],
        stderr_tail=" | ".join(lines[-3:]),
        load1=load1,
    )
