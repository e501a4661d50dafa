"""Work on a thread of its own while the calling thread writes level 0: the SVS writer's lower levels.

Level 0 keeps both cores busy most of the time, not all of it (hand-overs between the pipeline's
tasks, the calling thread's writing); the lower levels, thumbnail, label and macro, written at
the same time from this thread, fill those gaps instead of running after level 0 with the
pipeline starting and draining once more per level. The work reports progress into a slot that
:meth:`Alongside.join` forwards from the calling thread once level 0 is done (so a progress bar
or a ``--strict`` warning only ever runs in one thread); an error in either thread stops the
other at its next progress report.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ...progress import ProgressCallback

T = TypeVar("T")
_POLL_S = 0.1  # how often join() forwards the work's progress


class _Stopped(Exception):
    """Raised in the work's thread at its next progress report once the caller gave up."""


class Alongside(Generic[T]):
    """``work(progress)`` started on a daemon thread at once; :meth:`join` for its result."""

    def __init__(self, work: Callable[[ProgressCallback], T]) -> None:
        self._stop = threading.Event()
        self._latest: tuple[str, int, int] | None = None
        self._result: list[T] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name="composite-alongside", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[ProgressCallback], T]) -> None:
        try:
            self._result.append(work(self._report))
        except BaseException as err:  # handed to the calling thread by join() or checked()
            self._error = err

    def _report(self, stage: str, done: int, total: int) -> None:
        if self._stop.is_set():
            raise _Stopped
        self._latest = (stage, done, total)

    def checked(self, progress: ProgressCallback) -> ProgressCallback:
        """``progress`` for the calling thread's own work: raises the work's error once it has one."""

        def report(stage: str, done: int, total: int) -> None:
            if self._error is not None:
                raise self._error
            progress(stage, done, total)

        return report

    def join(self, progress: ProgressCallback) -> T:
        """Wait for the work, forwarding its latest progress; its result, or its error raised here."""
        while True:
            self._thread.join(_POLL_S)
            if self._latest is not None and self._error is None:
                progress(*self._latest)
            if not self._thread.is_alive():
                break
        if self._error is not None:
            raise self._error
        return self._result[0]

    def stop(self) -> None:
        """Make the work stop at its next progress report, and wait until it has."""
        self._stop.set()
        self._thread.join()
