"""The demo `make demo` runs: make a synthetic sample slide, then run the main job on it.

Uses only the public API and the CLI, the way a user would.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from composite.synthetic import write_synthetic_slide


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sample = args.out / "sample.svs"
    if not sample.exists():
        print(f"writing the bundled synthetic sample slide to {sample} ...", flush=True)
        write_synthetic_slide(sample, width=12000, height=9000, tile_size=240, quality=80)
    cli = [sys.executable, "-m", "composite"]
    subprocess.run([*cli, "info", str(sample)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
