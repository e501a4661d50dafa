"""``convert_many``: plan a batch against its ledger, run what is left, record every outcome.

The plan (discovery, ledger, signatures) needs no dask, so a dry run or a rerun with nothing
left never starts a cluster (nor imports dask). What is left goes to :mod:`.cluster`, one slide a
task, largest first; each finished slide is appended to the ledger as it arrives, so a killed
batch keeps everything it finished. ``DST/batch-report.jsonl`` gets one line per slide (done,
skipped or failed) and a last ``"summary"`` line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UnsupportedFormatError
from ..output import WriteOptions
from ..progress import ProgressCallback, no_progress
from . import ledger
from .discover import OUTPUT_SUFFIX, Job, discover

Status = str  # "ok" | "skipped" | "failed" | "todo" (a dry run's)


@dataclass
class SlideResult:
    """One slide's outcome. ``reason`` says why a slide is (re)done: new, changed, unfinished..."""

    name: str
    source: str
    output: str
    status: Status
    reason: str = ""
    error: str | None = None
    megapixels: float = 0.0
    seconds: float = 0.0
    output_size: int = 0
    peak_rss_mb: float | None = None
    warnings: list[str] = field(default_factory=list)
    worker: str | None = None
    worker_deaths: int = 0  # workers that died while converting it (killed, out of memory)
    started: float | None = None  # on the worker's clock, seconds since the epoch (the batch's timeline)
    finished: float | None = None


@dataclass
class BatchReport:
    results: list[SlideResult]
    ignored: list[str]
    seconds: float
    dry_run: bool = False
    cluster: str | None = None  # "local N x 1" or the scheduler's address; None when none was needed
    dashboard: str | None = None

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 when some slides failed."""
        return 1 if self.count("failed") else 0


_UNKEYED = ("workers", "overwrite", "parents", "extra")  # no effect on the output; extra: moved into typed fields


def _plain(options: WriteOptions) -> dict[str, Any]:
    fields = asdict(options)
    for name in _UNKEYED:
        fields.pop(name, None)
    plain: dict[str, Any] = json.loads(json.dumps(fields, sort_keys=True, default=str))  # tuples: lists
    return plain


def _differing(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the fields equal to their default (nested format options field by field)."""
    kept: dict[str, Any] = {}
    for name, value in values.items():
        default = defaults.get(name, _MISSING)
        if isinstance(value, dict) and isinstance(default, dict):
            value = _differing(value, default)
            if value:
                kept[name] = value
        elif value != default:
            kept[name] = value
    return kept


_MISSING = object()
_DEFAULTS = _plain(WriteOptions())


def options_key(to: str, options: WriteOptions) -> dict[str, Any]:
    """The options that change the output, as the ledger stores them (plain JSON): the output
    format and only the fields that differ from their defaults, so that a field added to
    :class:`WriteOptions` (with a default that keeps the output as it was) leaves every ledger
    line valid. ``workers``, ``overwrite`` and ``parents`` never count."""
    return {"to": to, **_differing(_plain(options), _DEFAULTS)}


def stored_key(stored: Any) -> Any:
    """A ledger line's ``options`` in :func:`options_key`'s form: lines written before keys were
    sparse hold every field, their defaults included (a default that has since changed stays:
    the output would differ)."""
    if not isinstance(stored, dict):
        return stored
    rest = {name: value for name, value in stored.items() if name != "to"}
    return {"to": stored.get("to"), **_differing(rest, _DEFAULTS)}


def convert_many(
    src: str | Path,
    dst: str | Path,
    *,
    to: str,
    options: WriteOptions | None = None,
    allow_outside: bool = False,
    allow_absolute: bool = False,
    scheduler: str | None = None,
    processes: int | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    dashboard: bool = False,
    progress: ProgressCallback | None = None,
    on_slide: Callable[[SlideResult], None] | None = None,
    on_cluster: Callable[[str, str | None], None] | None = None,
) -> BatchReport:
    """Convert every slide of ``src`` (directory, list file or one slide) into ``dst`` as ``to``.

    ``scheduler`` (or ``DASK_SCHEDULER_ADDRESS``) is an existing dask cluster; without one a
    ``LocalCluster`` of ``processes`` workers (default: one per core) runs and is closed. Slides
    finished and unchanged since a previous run into ``dst`` are skipped. ``progress`` gets
    ``("slides", done, total)``, ``on_slide`` each result as it arrives, ``on_cluster`` the
    cluster's description and dashboard link once it is up (a LocalCluster has a dashboard only
    with ``dashboard``). A slide that failed before is not tried again while unchanged unless
    ``retry_failed``. Raises only for usage errors
    (an unreadable list file, an unknown format, DST locked by another batch).
    """
    started = time.perf_counter()
    src, dst = Path(src), Path(dst)
    to = to.lower()
    if to not in OUTPUT_SUFFIX:
        raise UnsupportedFormatError(f"unknown output format {to!r} (expected one of {', '.join(OUTPUT_SUFFIX)})")
    options = options or WriteOptions()
    progress = progress or no_progress
    found = discover(src, dst, to=to, allow_absolute=allow_absolute)
    key = options_key(to, options)
    report = BatchReport([], [str(p) for p in found.ignored], 0.0, dry_run=dry_run)
    if dry_run:
        report.results = [result for result, _ in _plan(found.jobs, dst, key, retry_failed)]
        report.seconds = time.perf_counter() - started
        return report
    with ledger.locked(dst):
        planned = _plan(found.jobs, dst, key, retry_failed)
        report.results = [result for result, _ in planned]
        todo = [(i, result, entry) for i, (result, entry) in enumerate(planned) if result.status == "todo"]
        total, done = len(planned), len(planned) - len(todo)
        progress("slides", done, total)
        for result in report.results:
            if result.status != "todo" and on_slide:
                on_slide(result)
        if todo:
            from .cluster import run_tasks, starting  # dask is imported only when there is work

            # The cluster starts on a thread while this one prepares the tasks and reads the
            # sources' signatures (I/O and hashing, which leave the interpreter lock free).
            with starting(scheduler=scheduler, processes=processes, tasks=len(todo), dashboard=dashboard) as up:
                ledger.remove_partials(Path(result.output) for _, result, _ in todo)
                shared = {**asdict(options), "extra": dict(options.extra)}  # the same for every slide
                tasks = [_task(result, entry, to, shared, allow_outside) for _, result, entry in todo]
                ledger.append(dst, ({"status": "started", "source": r.source, "output": r.output} for _, r, _ in todo))
                signatures: dict[int, ledger.Signature] = {}
                for index, (_, result, _) in enumerate(todo):
                    if up.done():
                        break  # the rest is read as each slide finishes
                    with suppress(OSError):
                        signatures[index] = ledger.signature(Path(result.source))
                reported: set[int] = set()

                def finished(index: int, outcome: Mapping[str, Any]) -> None:
                    nonlocal done
                    if index in reported:
                        return
                    reported.add(index)
                    _, result, _ = todo[index]
                    _apply(result, outcome)
                    _record(dst, result, key, signatures.pop(index, None))
                    done += 1
                    progress("slides", done, total)
                    if on_slide:
                        on_slide(result)

                cluster = up.result()
                report.cluster, report.dashboard = cluster.description, cluster.link
                if on_cluster:
                    on_cluster(cluster.description, cluster.link)
                run_tasks(tasks, cluster=cluster, on_result=finished)
        report.seconds = time.perf_counter() - started
        _write_report(dst, report)
    return report


def _plan(
    jobs: list[Job], dst: Path, key: Mapping[str, Any], retry_failed: bool
) -> list[tuple[SlideResult, dict[str, Any] | None]]:
    """Each job with its decision, signatures checked in parallel threads (stat and two reads each)."""
    entries = ledger.read_ledger(dst)

    def decide(job: Job) -> tuple[SlideResult, dict[str, Any] | None]:
        source, output = job.source.absolute(), job.output.absolute()
        result = SlideResult(job.name, str(source), str(output), "todo")
        entry = entries.get(str(output))
        if job.error:
            result.status, result.error = "failed", job.error
            return result, entry
        result.reason = _reason(entry, source, output, key)
        if result.reason == "done" and entry:
            result.status, result.reason = "skipped", "done before, unchanged"
            result.megapixels = float(entry.get("megapixels", 0.0))
            result.output_size = int(entry.get("output_size", 0))
        elif result.reason == "failed" and entry and not retry_failed:
            result.status, result.reason, result.error = "failed", "failed before, unchanged", entry.get("error")
        elif result.reason == "failed":
            result.reason = "failed before, retried"
        return result, entry

    if len(jobs) < 64:
        return [decide(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(decide, jobs))


def _reason(entry: dict[str, Any] | None, source: Path, output: Path, key: Mapping[str, Any]) -> str:
    if entry is None:
        return "new"
    if entry.get("status") not in ("done", "failed"):
        return "unfinished"
    if entry.get("source") != str(source):
        return "other source"
    if stored_key(entry.get("options")) != key:
        return "options changed"
    try:
        sig = ledger.signature(source, entry)
    except OSError:
        return "source missing"
    if not ledger.same_input(entry, source, sig):
        return "source changed"
    if entry["status"] == "failed":
        return "failed"
    if not (output.exists() or output.is_symlink()):
        return "output missing"
    return "done"


def _task(
    result: SlideResult,
    entry: dict[str, Any] | None,
    to: str,
    shared: dict[str, Any],
    allow_outside: bool,
) -> dict[str, Any]:
    """What a worker gets for one slide (:func:`composite.batch.worker.convert_one`); ``shared``
    is the batch's WriteOptions as a dict, made once for the batch."""
    # Ours to replace: an output the ledger knows, or one absent now (if it exists when the task
    # runs, an earlier attempt of this batch wrote it: dask reruns a finished task whose result
    # was held by a worker that died).
    output = Path(result.output)
    overwrite = shared["overwrite"] or entry is not None or not (output.exists() or output.is_symlink())
    return {
        "source": result.source,
        "output": result.output,
        "to": to,
        "options": {**shared, "overwrite": overwrite},
        "allow_outside": allow_outside,
        "size": _size_hint(Path(result.source)),
    }


def _size_hint(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _apply(result: SlideResult, outcome: Mapping[str, Any]) -> None:
    result.status = "ok" if outcome.get("status") == "ok" else "failed"
    result.error = outcome.get("error")
    result.megapixels = float(outcome.get("megapixels") or 0.0)
    result.seconds = float(outcome.get("seconds") or 0.0)
    result.output_size = int(outcome.get("output_size") or 0)
    result.peak_rss_mb = outcome.get("peak_rss_mb")
    result.warnings = list(outcome.get("warnings") or [])
    result.worker = outcome.get("worker")
    result.worker_deaths = int(outcome.get("worker_deaths") or 0)
    result.started, result.finished = outcome.get("started"), outcome.get("finished")


def _record(dst: Path, result: SlideResult, key: Mapping[str, Any], sig: ledger.Signature | None = None) -> None:
    """A ``done`` or ``failed`` ledger line for a slide just converted (or not); ``sig``: the
    source's signature read before it was converted, if it was (a source changed meanwhile is
    then redone by the next run)."""
    source = Path(result.source)
    try:
        sig = sig or ledger.signature(source)
    except OSError:
        return  # the source went away meanwhile: nothing to skip next time
    status = "done" if result.status == "ok" else "failed"
    entry = {"status": status, "source": result.source, **sig.as_json(), "options": dict(key)}
    entry |= {"output": result.output, "output_size": result.output_size, "megapixels": result.megapixels}
    if result.error:
        entry["error"] = result.error
    entry |= {"seconds": round(result.seconds, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    ledger.append(dst, [entry])


def _write_report(dst: Path, report: BatchReport) -> None:
    lines = [asdict(result) for result in report.results]
    summary: dict[str, Any] = {"summary": True, **{s: report.count(s) for s in ("ok", "skipped", "failed")}}
    summary |= {"ignored": len(report.ignored), "seconds": round(report.seconds, 3), "cluster": report.cluster}
    summary["megapixels"] = round(sum(r.megapixels for r in report.results if r.status == "ok"), 3)
    tmp = dst / f".{ledger.REPORT}.{os.getpid()}.partial"
    with tmp.open("w") as fh:
        for line in [*lines, summary]:
            fh.write(json.dumps(line) + "\n")
    os.replace(tmp, dst / ledger.REPORT)
