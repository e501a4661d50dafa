"""Turns the library's progress callback into tqdm bars (one per stage), or into nothing."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..progress import ProgressCallback, no_progress


@contextmanager
def progress_bar(
    *, quiet: bool = False, unit: str = "tile", postfix: Callable[[], str] | None = None
) -> Iterator[ProgressCallback]:
    """Yield a callback drawing a bar on stderr; silent when ``quiet`` or stderr is not a terminal.

    ``postfix`` (called at each update) adds text after the rate, e.g. a batch's megapixels/s.
    """
    if quiet or not sys.stderr.isatty():
        yield no_progress
        return
    from tqdm import tqdm  # only for a terminal: quiet runs (benchmarks, batch workers) skip it

    bars: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for finished in bars.values():  # stages run one after another: one line at a time
                finished.close()
            bars.clear()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit=unit, leave=False, dynamic_ncols=True)
        if postfix is not None:
            bar.set_postfix_str(postfix(), refresh=False)
        bar.update(done - bar.n)

    try:
        yield report
    finally:
        for bar in bars.values():
            bar.close()
