"""Running the batch's tasks on dask.distributed: a LocalCluster, or an existing scheduler.

The LocalCluster has one single-threaded worker process per core (the converter runs its own
decode/encode threads inside a slide), each limited to :data:`WORKER_MEMORY_MB`: the streaming
converter's known peak (every conversion in benchmarks/ stays under 400 MB, at 40k and 100k px
alike) plus a worker process's own footprint; a worker over its limit is restarted by its nanny.
Workers are forked from this process (dask's ``multiprocessing-method`` fork: two start in 0.2 s
where spawn takes 2 s; ``DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=spawn`` changes it).

A worker that dies while converting (killed, out of memory) costs only that slide: it is
submitted once more (:data:`RETRIES`), then reported failed. The scheduler itself charges a death
to every task assigned to the worker and reassigns them at once, even to a busy worker, so: no
more tasks are out than the live workers have threads, and the LocalCluster's scheduler does not
retry (``distributed.scheduler.allowed-failures`` = 0). An existing cluster keeps its own setting
(dask's default retries 3 times before the batch's own retry); docs/batch.md says to set 0.

Tasks are submitted largest source first, so a big slide does not start last and leave the
other cores idle at the end.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any

from ..errors import CompositeError
from .worker import convert_one

CONVERTER_PEAK_MB = 400
WORKER_BASE_MB = 250  # a dask worker process with numpy, tifffile, imagecodecs and the readers loaded
WORKER_MEMORY_MB = CONVERTER_PEAK_MB + WORKER_BASE_MB
RETRIES = 1  # a slide whose worker died is tried once more
# The LocalCluster's housekeeping, cut to what a batch uses: dask's defaults (stack sampling every
# 10 ms in each worker for the dashboard's profile, an event-loop health tick every 20 ms and
# psutil every 0.5 s in every server) cost 0.5 CPU-s per 5 s idle on 2 workers; these 0.1.
QUIET_CLUSTER = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
}


class ClusterError(CompositeError, RuntimeError):
    """dask is missing, or the scheduler cannot be reached."""


def local_size(processes: int | None, tasks: int) -> tuple[int, int]:
    """(worker processes, memory limit in MB each) for this machine and this many tasks."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    count = max(1, min(processes or cores, tasks))
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError):
        total_mb = count * WORKER_MEMORY_MB
    return count, max(256, min(WORKER_MEMORY_MB, int(total_mb * 0.9 / count)))


def run_tasks(
    tasks: list[dict[str, Any]],
    *,
    scheduler: str | None,
    processes: int | None,
    on_result: Callable[[int, Mapping[str, Any]], None],
    on_cluster: Callable[[str, str | None], None] | None = None,
    dashboard: bool = False,
) -> tuple[str, str | None]:
    """Run ``convert_one`` on every task; ``on_result(index, outcome)`` as each one finishes.

    Returns the cluster's description and its dashboard link (None without bokeh, or for a
    LocalCluster started without ``dashboard``: bokeh's start-up costs about a second).
    """
    try:
        import dask
        import distributed
        from distributed.scheduler import KilledWorker
    except ModuleNotFoundError as err:
        raise ClusterError(f"batch needs dask.distributed: pip install 'composite[dask]' ({err})") from None

    dd: Any = distributed  # untyped in places: mypy --strict would refuse every call
    Client, LocalCluster, as_completed = dd.Client, dd.LocalCluster, dd.as_completed

    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    with ExitStack() as stack:
        if address:
            try:
                client = stack.enter_context(Client(address, timeout="30s"))
            except (OSError, TimeoutError) as err:
                raise ClusterError(f"{address}: cannot reach the dask scheduler ({err})") from err
            description = f"scheduler {address}"
        else:
            count, memory_mb = local_size(processes, len(tasks))
            settings: dict[str, Any] = {"distributed.scheduler.allowed-failures": 0}  # we retry, not dask
            settings.update(QUIET_CLUSTER)
            if "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD" not in os.environ:
                settings["distributed.worker.multiprocessing-method"] = "fork"
            with dask.config.set(settings):
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=count,
                        threads_per_worker=1,
                        processes=True,
                        memory_limit=f"{memory_mb}MiB",
                        dashboard_address=":0" if dashboard and _has_bokeh() else None,
                        # the scheduler's HTTP server (health, metrics) runs anyway: on any free port,
                        # not on 8787, which another cluster may hold
                        scheduler_kwargs={"dashboard_address": ":0"},
                        silence_logs=logging.CRITICAL,
                    )
                )
                client = stack.enter_context(Client(cluster))
            description = f"local {count} workers x 1 thread, {memory_mb} MB each"
        link = _dashboard(client) if dashboard or address else None
        if on_cluster:
            on_cluster(description, link)
        order = sorted(range(len(tasks)), key=lambda i: -int(tasks[i].get("size") or 0))
        token = uuid.uuid4().hex[:8]
        futures: dict[Any, int] = {}
        deaths = [0] * len(tasks)
        running = as_completed()

        def submit() -> None:
            # No more tasks out than the live workers have threads: a task waiting on a worker
            # would be charged with that worker's death too, and largest-first needs our queue.
            free = max(1, sum(client.nthreads().values())) - running.count()
            while order and free > 0:
                index = order.pop(0)
                key = f"convert-{token}-{index}-{deaths[index]}"
                future = client.submit(convert_one, tasks[index], key=key, pure=False)
                futures[future] = index
                running.add(future)
                free -= 1

        submit()
        for future in running:
            index = futures.pop(future)
            try:
                outcome: Mapping[str, Any] | None = future.result()
            except KilledWorker:
                deaths[index] += 1
                outcome = None if deaths[index] <= RETRIES else {"status": "failed", "error": _death(tasks[index])}
            except Exception as err:  # the cluster went away, a task cancelled
                text = str(err).splitlines()[0] if str(err) else ""
                outcome = {"status": "failed", "error": f"{tasks[index]['source']}: {type(err).__name__}: {text}"}
            future.release()
            if outcome is None:
                order.insert(0, index)  # once more, first in line
            submit()  # before recording this one: the workers are not kept waiting on the ledger
            if outcome is not None:
                on_result(index, outcome)
    return description, link


def _death(task: Mapping[str, Any]) -> str:
    return f"{task['source']}: the worker died converting it, {RETRIES + 1} times (killed, or out of memory)"


def _threads(client: Any) -> int:
    workers = client.scheduler_info().get("workers", {})
    return sum(int(worker.get("nthreads", 1)) for worker in workers.values())


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


def _dashboard(client: Any) -> str | None:
    try:
        link = client.dashboard_link
    except Exception:  # a scheduler without a dashboard
        return None
    return str(link) if link and _has_bokeh() else None
