"""The command line as the tests run it: ``python -m composite`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "composite"]


def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``wsi-composite ARGS...`` and capture its output as text (never raises on failure)."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False)
