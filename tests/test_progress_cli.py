"""Progress bars of long CLI jobs: drawn on a terminal (stage, tiles/s, ETA), absent otherwise."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest


def _run(args: list[str], *, terminal: bool) -> tuple[int, str]:
    """Run ``wsi-composite ARGS`` with stderr on a pseudo-terminal or a pipe; (exit code, stderr)."""
    argv = [sys.executable, "-m", "composite", *args]
    env = dict(os.environ)
    if not terminal:
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=120)
        return done.returncode, done.stderr.decode()
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty is 0 x 0
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=child, env=env) as process:
        os.close(child)
        chunks = []
        while True:
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=120)
    os.close(parent)
    return code, b"".join(chunks).decode(errors="replace")


JOBS = {
    "convert": lambda src, out: ["convert", str(src), str(out / "o.svs"), "--tile-size", "256"],
    "export": lambda src, out: ["export", str(src), str(out / "images"), "--levels", "0", "--format", "tiff"],
    "redact": lambda src, out: ["redact", str(src), str(out / "r.svs"), "--box", "0,0,300,300"],
}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_progress_bar_on_a_terminal_only(job: str, synthetic_svs: Path, tmp_path: Path) -> None:
    command = JOBS[job]
    (tmp_path / "tty").mkdir()
    code, shown = _run(command(synthetic_svs, tmp_path / "tty"), terminal=True)
    assert code == 0, shown
    assert "/s" in shown and "%|" in shown, shown  # a tqdm bar: percentage, bar, rate
    assert "<" in shown  # elapsed<remaining: the ETA
    for variant, terminal in (("pipe", False), ("quiet", True)):
        (tmp_path / variant).mkdir()
        extra = ["--quiet"] if variant == "quiet" else []
        code, shown = _run(command(synthetic_svs, tmp_path / variant) + extra, terminal=terminal)
        assert code == 0 and "%|" not in shown, (variant, shown)
