"""Run one command line of ``wsi-composite`` in a forked child under limits, and judge the result.

The parent has imported composite (and every format module) once; each run forks, so a case
costs milliseconds instead of an interpreter start. The child gets its own stdout/stderr files,
an address-space ceiling (``RLIMIT_AS``, a backstop so a runaway allocation cannot take the
machine down) and runs :func:`composite.cli.main` exactly as the console script does: an
exception that escapes is printed as the interpreter would (a traceback) and the exit status is 1.

The parent polls the child: past ``timeout`` seconds it is killed (a *hang*), and its resident
set is sampled from ``/proc`` (a sample over ``rss_limit`` kills it: *memory*); the peak RSS from
``wait4`` is checked too. A finished run is judged by :func:`judge`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT = 10.0  # seconds a command may take on a small input
RSS_LIMIT = 1 << 30  # 1 GiB resident
TERM_GRACE = 2.0  # seconds between SIGTERM and SIGKILL on a timeout
AS_LIMIT = 6 << 30  # address space: a backstop only (thread stacks and arenas reserve much more than they use)
POLL = 0.05  # seconds between RSS samples of a running child (at most)
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class RunResult:
    argv: list[str]
    status: int | None  # exit status; None when killed
    seconds: float
    max_rss: int  # bytes
    stdout: str
    stderr: str
    killed: str = ""  # "timeout" or "memory" when the parent killed the child
    cpu: float = 0.0  # CPU seconds the child used (user + system): a hang on a loaded machine uses few
    problems: list[str] = field(default_factory=list)


def _child(argv: list[str], out: Path, err: Path) -> None:
    try:
        os.setpgid(0, 0)
        fd_out = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd_err = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        # The parent's sys.stdout/stderr may be a capture object (pytest): write to the files.
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from composite.cli import main

        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = 1
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:
            pass
    os._exit(code)


_LAZY_CODECS = ("jpeg8", "jpeg2k", "jpegls", "lzw", "zstd", "dicomrle", "zlib", "deflate", "png")


def preload() -> None:
    """Import what the commands import, once in the parent, so each forked child starts warm.

    Besides the modules, what they load lazily at first use: imagecodecs' codec extensions and
    Pillow's format plugins (a child that loaded them itself would spend ~40 ms per command).
    """
    if _PRELOADED:
        return
    import importlib

    from composite import cli, convert, registry

    cli.build_parser()
    registry.format_modules()
    for writer in convert.WRITERS.values():
        importlib.import_module(writer.split(":")[0])
    for name in (
        "composite.tools.export",
        "composite.formats.dicom.opening",
        "composite.formats.cws.read",
        "composite.glass",
        "pydicom",
        "subprocess",
        "encodings.utf_8_sig",
        "PIL.ImageCms",
    ):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    import imagecodecs
    from PIL import Image

    Image.init()
    for codec in _LAZY_CODECS:
        with contextlib.suppress(Exception):
            getattr(imagecodecs, f"{codec}_decode")
    _PRELOADED.append(True)


_PRELOADED: list[bool] = []


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def run(argv: list[str], workdir: Path, *, timeout: float = TIMEOUT, rss_limit: int = RSS_LIMIT) -> RunResult:
    """Run ``wsi-composite ARGV`` in a forked child; output files go to ``workdir``."""
    preload()
    out, err = workdir / ".stdout", workdir / ".stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    # The parent's objects move out of the collector's reach in the child: its collections then
    # neither walk the hundreds of thousands of imported objects nor copy their pages.
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        _child(argv, out, err)
    gc.unfreeze()
    killed = ""
    term_at = 0.0
    peak = 0
    status_word = 0
    usage = None
    waiter = _exit_waiter(pid)
    delay = 0.005
    try:
        while True:
            done, status_word, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            elapsed = time.monotonic() - start
            peak = max(peak, _rss(pid))
            if not killed and (elapsed > timeout or peak > rss_limit):
                # A timeout is a polite kill first (SIGTERM, as a batch runner would send; the command
                # may remove its temporary output), SIGKILL after TERM_GRACE; memory: SIGKILL at once.
                killed = "timeout" if elapsed > timeout else "memory"
                _signal(pid, signal.SIGTERM if killed == "timeout" else signal.SIGKILL)
                term_at = elapsed
            elif killed == "timeout" and elapsed > term_at + TERM_GRACE:
                _signal(pid, signal.SIGKILL)
            # Wake at the child's exit (a pidfd), else after ``delay`` to sample its RSS again.
            waiter(delay)
            delay = min(delay * 2, POLL)
    finally:
        waiter(None)
    seconds = time.monotonic() - start
    max_rss = max(peak, usage.ru_maxrss * 1024 if usage else 0)
    status = os.waitstatus_to_exitcode(status_word)
    result = RunResult(
        argv,
        status if status >= 0 else None,
        seconds,
        max_rss,
        _read(out),
        _read(err),
        killed,
        cpu=usage.ru_utime + usage.ru_stime if usage else 0.0,
    )
    out.unlink(missing_ok=True)
    err.unlink(missing_ok=True)
    return result


def _exit_waiter(pid: int) -> Callable[[float | None], None]:
    """``wait(seconds)`` returns when the child exits or ``seconds`` pass; ``wait(None)`` closes.

    A pidfd (Linux >= 5.3) becomes readable at the child's exit, so a run that takes 60 ms is
    seen ending at 60 ms, not at the next poll; without pidfds it is a plain sleep.
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return lambda seconds: time.sleep(seconds) if seconds else None
    poller = select.poll()
    poller.register(fd, select.POLLIN)

    def wait(seconds: float | None) -> None:
        if seconds is None:
            os.close(fd)
        else:
            poller.poll(seconds * 1000)

    return wait


def _signal(pid: int, number: int) -> None:
    for target in (-pid, pid):  # the child's process group (its threads' children too), then itself
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, number)


def _read(path: Path) -> str:
    try:
        return path.read_bytes()[:20_000].decode("utf-8", "replace")
    except OSError:
        return ""


def judge(result: RunResult, case_dir: Path, *, rss_limit: int = RSS_LIMIT) -> list[str]:
    """The failure classes of one run: traceback, hang, memory, exit, message, noise.

    Success is exit 0; a refusal is exit 2 with exactly one ``wsi-composite: error:`` line that
    names a path inside the case's directory (warning lines are allowed besides it).
    """
    problems: list[str] = []
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if "Traceback (most recent call last)" in result.stderr:
        problems.append("traceback")
    if result.killed == "timeout":
        problems.append("hang")
    if result.killed == "memory" or result.max_rss > rss_limit or "MemoryError" in result.stderr:
        problems.append("memory")
    if result.killed:
        return problems
    if result.status not in (0, 2):
        if not problems:
            problems.append("exit")
        return problems
    errors = [line for line in lines if line.startswith("wsi-composite: error:")]
    foreign = [line for line in lines if not line.startswith(("wsi-composite: error:", "wsi-composite: warning:"))]
    if result.status == 2 and (len(errors) != 1 or str(case_dir) not in errors[0]):
        problems.append("message")
    if result.status == 0 and errors:
        problems.append("message")
    if foreign and "traceback" not in problems:
        problems.append("noise")
    return problems
