"""Batch conversion of whole archives on dask.distributed, resumable (``wsi-composite batch``).

``convert_many(src, dst, to=...)`` finds every slide under ``src`` (:mod:`.discover`), skips what
the ledger in ``dst`` says is done and unchanged (:mod:`.ledger`), converts the rest one slide a
task on a LocalCluster or an existing scheduler (:mod:`.cluster`, :mod:`.worker`) and writes
``dst/batch-report.jsonl`` (:mod:`.run`). dask is imported only when there is work to run; it is
the ``dask`` extra (``pip install composite[dask]``). Details: docs/batch.md.
"""

from __future__ import annotations

from .discover import Discovery, Job, ListFileError, discover
from .run import BatchReport, SlideResult, convert_many

__all__ = ["BatchReport", "Discovery", "Job", "ListFileError", "SlideResult", "convert_many", "discover"]
