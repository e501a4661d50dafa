"""The progress callback the library reports through (the library itself never prints).

A long job calls ``progress(stage, done, total)``: ``stage`` names what is being counted
(``"level 0"``, ``"pieces"``), ``done`` and ``total`` count its units (usually tiles). ``total``
is fixed for a stage; a new stage starts a new count. The CLI turns this into a progress bar.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The default callback: report nothing."""
