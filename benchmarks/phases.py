"""Where a conversion's time goes: start-up, tile work, the rest, and the tile work by kind.

Usage: phases.py [--json OUT.json] -- convert SRC DST [OPTIONS]   (the wsi-composite arguments)

Byte-compiles the package (as an installed copy has it), then runs the command in a fresh child
process with light instruments (a clock around a few functions, no profiler) and prints:

- **phases**: the interpreter's start-up (from the process's start, read from /proc), the time
  to the first tile (imports, opening, planning), the tile window (first to last tile reported
  by the writer), and after it (companions, closing, renaming). "Outside tile work" is
  everything but the window.
- **kinds**: per instrumented function, the calls and their summed wall and CPU seconds over
  all threads: decode (JPEG and J2K), encode (tile encoding), downsample (box filter), spool
  (pack/unpack of computed levels), block writes (CWS files), TIFF writes (tifffile), and
  waiting: the calling thread blocked on a worker's result, a tile worker blocked on a decode
  (a stall of the pipeline), and other threads (companions, block writers) blocked on their own
  tasks, which is no stall. Sums over threads can exceed the
  wall time (two cores); decode and encode inside the writer's thread count as theirs.
- **idle**: per thread pool (by name: tiles, blocks, companions), the seconds its workers sat
  with nothing queued, summed over workers, while the pool existed: a tile worker idle while
  tile work remains is a stall of the pipeline (one core unused), the tile pool's idle time at
  a level's end is its drain.
"""

from __future__ import annotations

import os
import sys
import time

if __name__ == "__main__" and "COMPOSITE_PHASES_CHILD" not in os.environ:
    # Byte-compile the package first (measure.compile_package: as an installed copy has it), then
    # measure in a fresh process, whose start-up this one's work is not part of.
    import subprocess

    from measure import compile_package

    compile_package()
    child = [sys.executable, __file__, *sys.argv[1:]]
    sys.exit(subprocess.call(child, env={**os.environ, "COMPOSITE_PHASES_CHILD": "1"}))

_UPTIME = float(open("/proc/uptime").read().split()[0])  # noqa: SIM115 (read at once, first thing)
_STARTED = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")  # noqa: SIM115
STARTUP = _UPTIME - _STARTED  # seconds from the process's start to here (10 ms resolution)
T0 = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import Future  # noqa: E402
from typing import Any  # noqa: E402

TOTALS: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # kind -> calls, wall, cpu
_LOCK = threading.Lock()
_MAIN = threading.main_thread()


def timed(kind: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            with _LOCK:
                total = TOTALS[kind]
                total[0] += 1
                total[1] += wall
                total[2] += cpu

    return wrapper


def instrument() -> None:
    """Clocks around the functions the pipeline spends its time in (module attributes, patched
    where they are looked up)."""
    import importlib

    from composite import codecs, pyramid, resample

    for name in ("decode_jpeg", "decode_jpeg2000"):
        setattr(codecs, name, timed("decode", getattr(codecs, name)))
    for name in ("encode_jpeg", "encode_jpeg2000", "encode_lzw"):
        setattr(codecs, name, timed("encode", getattr(codecs, name)))
    codecs.pack_pixels = timed("spool", codecs.pack_pixels)  # type: ignore[assignment]
    codecs.unpack_pixels = timed("spool", codecs.unpack_pixels)  # type: ignore[assignment]
    box = timed("downsample", resample.box_downsample)
    for module in (resample, pyramid, importlib.import_module("composite.model")):
        module.box_downsample = box  # type: ignore[attr-defined]
    companions = importlib.import_module("composite.formats.cws.companions")
    companions.box_downsample = box  # type: ignore[attr-defined]
    cws_write = importlib.import_module("composite.formats.cws.write")
    cws_write._write_block = timed("block writes", cws_write._write_block)  # type: ignore[attr-defined]
    tifffile = importlib.import_module("tifffile")
    tifffile.TiffWriter.write = timed("TIFF writes", tifffile.TiffWriter.write)  # type: ignore[method-assign]
    waiting = timed("waiting (calling thread)", Future.result)
    stalled = timed("waiting (a worker on a decode)", Future.result)
    others = timed("waiting (other threads)", Future.result)

    def result(self: Future[Any], timeout: float | None = None) -> Any:
        if not self.done():
            thread = threading.current_thread()
            if thread is _MAIN:
                return waiting(self, timeout)
            # only a tile worker waiting is a stall of the pipeline (an encode on a decode)
            return (stalled if thread.name.startswith("composite-tiles") else others)(self, timeout)
        return Future.result.__wrapped__(self, timeout)  # type: ignore[attr-defined]

    result.__wrapped__ = Future.result  # type: ignore[attr-defined]
    Future.result = result  # type: ignore[method-assign]
    _time_idle_workers()


class _TimedQueue:
    """A pool's work queue as its workers see it: the time each ``get`` blocks is the worker idle."""

    def __init__(self, queue: Any, kind: str) -> None:
        self._queue, self._kind = queue, kind

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        wall = time.perf_counter()
        try:
            return self._queue.get(block, timeout)
        finally:
            wall = time.perf_counter() - wall
            with _LOCK:
                total = IDLE[self._kind]
                total[0] += 1
                total[1] += wall

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


IDLE: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # pool -> waits, idle seconds


def _time_idle_workers() -> None:
    """Wrap the work queue each new pool worker reads (concurrent.futures looks ``_worker`` up
    when it starts a thread): the seconds a worker waits for a task, per pool name."""
    from concurrent.futures import thread

    worker = thread._worker

    def timed_worker(executor_reference: Any, work_queue: Any, *rest: Any) -> None:
        name = threading.current_thread().name.rsplit("_", 1)[0].removeprefix("composite-")
        worker(executor_reference, _TimedQueue(work_queue, f"idle ({name} pool workers)"), *rest)

    thread._worker = timed_worker  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the wsi-composite arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    reports: list[tuple[float, float, str]] = []  # wall, process CPU, stage
    cpu0 = time.process_time()  # the interpreter's start-up CPU is in it
    from composite import cli
    from composite.cli import convert as cli_convert

    instrument()
    original = cli_convert.convert

    def convert(*a: Any, progress: Any = None, **k: Any) -> Any:
        def report(stage: str, done: int, total: int) -> None:
            reports.append((time.perf_counter(), time.process_time(), stage))
            if progress is not None:
                progress(stage, done, total)

        return original(*a, progress=report, **k)

    cli_convert.convert = convert  # type: ignore[assignment]
    code = cli.main(command)
    end, cpu = time.perf_counter(), time.process_time()
    first, last = (reports[0], reports[-1]) if reports else ((end, cpu, ""), (end, cpu, ""))
    window = "tile window (first to last tile)"
    phases = {  # name -> (wall, CPU of the whole process)
        "start-up (interpreter)": (STARTUP, cpu0),
        "to the first tile (imports, open, plan)": (first[0] - T0, first[1] - cpu0),
        window: (last[0] - first[0], last[1] - first[1]),
        "after the last tile (companions, closing)": (end - last[0], cpu - last[1]),
    }
    total = (STARTUP + end - T0, cpu)
    phases["outside tile work"] = (total[0] - phases[window][0], total[1] - phases[window][1])
    phases["total"] = total
    print(f"{' '.join(command)}  (exit {code})", file=sys.stderr)
    for name, (seconds, used) in phases.items():
        print(f"  {name:<44} {seconds:7.3f} s wall {used:7.3f} s CPU", file=sys.stderr)
    for kind, (calls, wall, kind_cpu) in sorted(TOTALS.items(), key=lambda kv: -kv[1][1]):
        print(f"  {kind:<28} {int(calls):7d} calls {wall:7.3f} s wall {kind_cpu:7.3f} s CPU", file=sys.stderr)
    for kind, (waits, idle) in sorted(IDLE.items()):
        print(f"  {kind:<28} {int(waits):7d} waits {idle:7.3f} s wall", file=sys.stderr)
    if args.json:
        kinds = {k: {"calls": int(v[0]), "wall_s": v[1], "cpu_s": v[2]} for k, v in TOTALS.items()}
        record = {"command": command, "phases": {k: {"wall_s": w, "cpu_s": c} for k, (w, c) in phases.items()}}
        record["kinds"] = kinds
        record["idle"] = {k: {"waits": int(v[0]), "wall_s": v[1]} for k, v in IDLE.items()}
        with open(args.json, "w") as out:
            json.dump(record, out, indent=2)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
