"""``python -m tests.fuzz``: a randomised campaign (``make fuzz``); failures kept as reproducers.

python -m tests.fuzz --minutes 30 --out fuzz-out            # random seed, printed
python -m tests.fuzz --cases 200 --seed 7 --formats cws aci  # a fixed slice
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from .campaign import Summary, campaign


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="run for this long (default 5 unless --cases)")
    parser.add_argument("--cases", type=int, default=None, help="stop after this many cases")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"), help="work and reproducer directory")
    parser.add_argument("--formats", nargs="*", help="only these seed formats (svs tiff cws aci dicom image)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per command (default 10)")
    parser.add_argument("--rss-limit-mb", type=int, default=1024, help="resident memory limit (default 1024)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    minutes = args.minutes if args.minutes is not None or args.cases is not None else 5.0
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"fuzz: seed {seed}, {minutes or '-'} min, {args.cases or '-'} cases, out {args.out}", flush=True)
    last = [time.monotonic()]

    def progress(summary: Summary) -> None:
        if time.monotonic() - last[0] > 30:
            last[0] = time.monotonic()
            total = sum(summary.cases.values())
            print(f"fuzz: {total} cases, {summary.total_failures()} failures", flush=True)

    summary = campaign(
        args.out.resolve(),
        seed=seed,
        cases=args.cases,
        seconds=minutes * 60 if minutes else None,
        formats=tuple(args.formats) if args.formats else None,
        timeout=args.timeout,
        rss_limit=args.rss_limit_mb << 20,
        progress=progress,
        seed_dir=args.out.resolve() / "seeds",
    )
    for line in summary.lines():
        print(f"fuzz: {line}")
    for path in summary.reproducers:
        print(f"fuzz: reproducer {path}/repro.sh")
    return 1 if summary.total_failures() else 0


if __name__ == "__main__":
    sys.exit(main())
