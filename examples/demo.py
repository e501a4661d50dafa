"""The demo `make demo` runs: make a synthetic sample slide, then run the main job on it.

The main job: convert the sample to a CWS directory (a slide any web server can host), then serve
it with ``wsi-composite serve`` and print the viewer's URL (Ctrl-C stops). ``--no-serve``
(``make demo DEMO_SERVE=0``) stops after converting, for scripted runs.
Uses only the public API and the CLI, the way a user would.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

from composite.synthetic import write_synthetic_slide


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--no-serve", action="store_true", help="stop after converting to CWS")
    parser.add_argument("--port", type=int, default=8080, help="port for the viewer (0: any free one)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sample = args.out / "sample.svs"
    if not sample.exists():
        print(f"writing the bundled synthetic sample slide to {sample} ...", flush=True)
        write_synthetic_slide(sample, width=12000, height=9000, tile_size=240, quality=80)
    cli = [sys.executable, "-m", "composite"]
    subprocess.run([*cli, "info", str(sample)], check=True)
    slides = args.out / "slides"
    cws = slides / "sample"
    if not (cws / "FinalScan.ini").exists():
        print(f"converting {sample} to the CWS directory {cws} ...", flush=True)
        subprocess.run([*cli, "convert", str(sample), str(cws), "--to", "cws", "--overwrite", "--parents"], check=True)
    if args.no_serve:
        print(f"CWS slide ready in {cws}; serve it with: {_script()} serve {slides}")
        print(f"(or put wsi-composite on PATH first: source {_script().parent}/activate)")
        return 0
    # The server prints the viewer URL (http://127.0.0.1:PORT/) and lists every slide under slides/.
    # Ctrl-C goes to it (it stops cleanly); this script only waits for it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.run([*cli, "serve", str(slides), "--port", str(args.port)]).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


def _script() -> Path:
    """The console script of this environment, relative to the working directory when inside it,
    so the printed command works as typed (the venv's bin/ is not on PATH unless activated)."""
    script = Path(sys.executable).parent / "wsi-composite"
    try:
        return script.relative_to(Path.cwd())
    except ValueError:
        return script


if __name__ == "__main__":
    raise SystemExit(main())
