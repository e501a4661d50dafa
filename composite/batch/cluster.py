"""Running the batch's tasks on dask.distributed: a LocalCluster, or an existing scheduler.

The LocalCluster has one single-threaded worker process per core (the converter runs its own
decode/encode threads inside a slide), each limited to :data:`WORKER_MEMORY_MB`: the streaming
converter's known peak (every conversion in benchmarks/ stays under 400 MB, at 40k and 100k px
alike) plus a worker process's own footprint; a worker over its limit is restarted by its nanny.
Workers are forked from this process (dask's ``multiprocessing-method`` fork: two start in 0.2 s
where spawn takes 2 s; ``DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=spawn`` changes it).
:func:`starting` starts it on a thread while the caller prepares the tasks.

A worker that dies while converting (killed, out of memory) costs only that slide: it is
submitted once more (:data:`RETRIES`), then reported failed. The scheduler charges a death to
every task assigned to the worker (``processing`` on it, running or waiting there) and, with
``distributed.scheduler.allowed-failures`` = 0 (set for the LocalCluster: the batch retries, not
dask), fails them at once; so no slide may wait on a worker. Tasks waiting on the *scheduler*
are charged nothing. On the LocalCluster, a batch of more than twice the threads is submitted at
once: dask queues such a group (root-ish tasks) on its scheduler and, with ``worker-saturation``
1.0, hands each worker one slide at a time, the next as soon as one ends, with no round trip
through the client (20-40 ms a slide before). A smaller batch, and every batch on an existing
cluster (whose configuration is its own), is fed by the client: never more tasks out than the
live workers have threads. docs/batch.md says to run an existing scheduler with
``allowed-failures`` 0 (dask's default retries 3 times before the batch's own retry).

Tasks are submitted largest source first, so a big slide does not start last and leave the
other cores idle at the end; a retry goes first.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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


@dataclass
class Cluster:
    """A running cluster and this batch's client of it (:func:`start_cluster`); ``close`` ends both."""

    client: Any
    description: str  # "local N workers x 1 thread, M MB each" or "scheduler ADDRESS"
    link: str | None  # the dashboard's, if it has one we can show
    local_threads: int  # our own LocalCluster's threads (it queues root-ish tasks); 0 for a scheduler's
    stack: ExitStack

    def close(self) -> None:
        self.stack.close()


def start_cluster(*, scheduler: str | None, processes: int | None, tasks: int, dashboard: bool = False) -> Cluster:
    """Connect to ``scheduler`` (or ``DASK_SCHEDULER_ADDRESS``), or start a LocalCluster for ``tasks``.

    A LocalCluster has a dashboard link only with ``dashboard`` (and bokeh): bokeh's start-up costs
    about a second. Without it, its scheduler and workers serve no HTTP routes either (health,
    metrics: nothing asks a batch's own cluster for them).
    """
    try:
        import dask
        import distributed
    except ModuleNotFoundError as err:
        raise ClusterError(f"batch needs dask.distributed: pip install 'composite[dask]' ({err})") from None

    dd: Any = distributed  # untyped in places: mypy --strict would refuse every call
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    stack = ExitStack()
    try:
        if address:
            try:
                client = dd.Client(address, timeout="30s")
            except (OSError, TimeoutError) as err:
                raise ClusterError(f"{address}: cannot reach the dask scheduler ({err})") from err
            stack.callback(client.close)  # not its context: that is bound to the thread which entered it
            return Cluster(client, f"scheduler {address}", _dashboard(client), 0, stack)
        count, memory_mb = local_size(processes, tasks)
        settings: dict[str, Any] = {
            "distributed.scheduler.allowed-failures": 0,  # we retry, not dask
            "distributed.scheduler.worker-saturation": 1.0,  # a queued slide waits on the scheduler
            **QUIET_CLUSTER,
        }
        show = dashboard and _has_bokeh()
        if not show:
            settings |= {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
        if "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD" not in os.environ:
            settings["distributed.worker.multiprocessing-method"] = "fork"
        with dask.config.set(settings):
            cluster = dd.LocalCluster(
                n_workers=count,
                threads_per_worker=1,
                processes=True,
                memory_limit=f"{memory_mb}MiB",
                dashboard_address=":0" if show else None,
                # the scheduler's HTTP server runs anyway: on any free port, not on 8787,
                # which another cluster may hold
                scheduler_kwargs={"dashboard_address": ":0"},
                silence_logs=logging.CRITICAL,
            )
            stack.callback(cluster.close)
            client = dd.Client(cluster)
            stack.callback(client.close)
        description = f"local {count} workers x 1 thread, {memory_mb} MB each"
        return Cluster(client, description, _dashboard(client) if show else None, count, stack)
    except BaseException:
        stack.close()
        raise


@contextmanager
def starting(
    *, scheduler: str | None, processes: int | None, tasks: int, dashboard: bool = False
) -> Iterator[Future[Cluster]]:
    """:func:`start_cluster` on a thread, so that the caller prepares its tasks meanwhile (importing
    dask and starting a LocalCluster take about half a second of one core); closed on exit."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="batch-cluster")
    future = pool.submit(start_cluster, scheduler=scheduler, processes=processes, tasks=tasks, dashboard=dashboard)
    try:
        yield future
    finally:
        pool.shutdown(wait=True)
        if future.exception() is None:
            future.result().close()


def run_tasks(
    tasks: list[dict[str, Any]], *, cluster: Cluster, on_result: Callable[[int, Mapping[str, Any]], None]
) -> None:
    """Run ``convert_one`` on every task; ``on_result(index, outcome)`` as each one finishes
    (``outcome["worker_deaths"]``: how many workers died converting it)."""
    import distributed
    from distributed.scheduler import KilledWorker

    dd: Any = distributed  # untyped in places: mypy --strict would refuse every call

    client, local_threads = cluster.client, cluster.local_threads
    order = sorted(range(len(tasks)), key=lambda i: -int(tasks[i].get("size") or 0))
    group = f"convert-{uuid.uuid4().hex[:8]}"  # this batch's own task group on the scheduler
    futures: dict[Any, int] = {}
    deaths = [0] * len(tasks)
    running = dd.as_completed()

    def submit() -> None:
        if not order:
            return
        if local_threads and len(order) + running.count() > 2 * local_threads:
            # Root-ish (a group of more than twice the threads): our scheduler queues them and
            # hands each to a worker as soon as it is free (worker-saturation 1.0), with no
            # round trip through this client between two slides. Queued slides are charged
            # with no worker's death. One call: the whole group is seen at once, in order.
            batch = order[:]
            order.clear()
            keys = [(group, index, deaths[index]) for index in batch]
            priority = 1 if any(deaths[index] for index in batch) else 0  # a retry goes first
            mapped = client.map(convert_one, [tasks[i] for i in batch], key=keys, pure=False, priority=priority)
            for future, index in zip(mapped, batch, strict=True):
                futures[future] = index
                running.add(future)
            return
        # Otherwise no more tasks out than the live workers have threads: a task waiting on a
        # worker would be charged with that worker's death too, and largest-first needs our queue.
        free = max(1, sum(client.nthreads().values())) - running.count()
        while order and free > 0:
            index = order.pop(0)
            future = client.submit(convert_one, tasks[index], key=(group, index, deaths[index]), pure=False)
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
            on_result(index, {**outcome, "worker_deaths": deaths[index]})


def _death(task: Mapping[str, Any]) -> str:
    return f"{task['source']}: the worker died converting it, {RETRIES + 1} times (killed, or out of memory)"


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


def _dashboard(client: Any) -> str | None:
    try:
        link = client.dashboard_link
    except Exception:  # a scheduler without a dashboard
        return None
    return str(link) if link and _has_bokeh() else None
