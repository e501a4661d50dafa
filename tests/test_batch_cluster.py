"""A worker killed during a slide, on a real cluster: `wsi-composite batch --scheduler` with a
`dask scheduler` and two `dask worker` processes started by the test, and the default LocalCluster.

The workers preload tests/batch_victim.py, which makes a slide named ``victim-*`` hang its worker;
the test SIGKILLs that worker process in the middle of the slide. ``victim-once`` is retried on a
worker and converts; ``victim-always`` kills its worker twice and is reported failed; the other
slides are not affected (no slide queued on the scheduler, nor on a worker, is charged with another's
death: ``worker_deaths`` in the report).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from composite import open_slide
from composite.synthetic import write_synthetic_slide

from .batch_support import REPO, leftovers, report, run_batch

DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]
PRELOAD = REPO / "tests" / "batch_victim.py"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(scheduler address, directory the victim preload writes pids to)."""
    victims = tmp_path / "victims"
    victims.mkdir()
    env = dict(
        os.environ,
        BATCH_VICTIM_DIR=str(victims),
        DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0",
    )
    info = tmp_path / "scheduler.json"
    log = open(tmp_path / "cluster.log", "w")  # noqa: SIM115
    common = {"cwd": REPO, "env": env, "stdout": log, "stderr": log, "start_new_session": True}
    scheduler = subprocess.Popen(
        [*DASK, "--scheduler-file", str(info), "--host", "127.0.0.1", "--port", "0", "--no-dashboard"], **common
    )
    workers = []
    try:
        deadline = time.monotonic() + 60
        address = None
        while address is None and time.monotonic() < deadline:
            try:
                address = json.loads(info.read_text())["address"]  # written, then filled: retry
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        assert address, "the scheduler did not start"
        for _ in range(2):
            workers.append(
                subprocess.Popen(
                    [*WORKER, address, "--nthreads", "1", "--no-dashboard", "--preload", str(PRELOAD)],
                    **common,
                )
            )
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, victims
    finally:
        for process in [*workers, scheduler]:  # each with its nanny's worker: a process group
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_existing_cluster_and_a_worker_killed_during_a_slide(cluster: tuple[str, Path], tmp_path: Path) -> None:
    address, victims = cluster
    src, dst = tmp_path / "src", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    for name in ("plain-1.svs", "sub/plain-2.svs", "victim-once.svs", "victim-always.svs"):
        write_synthetic_slide(src / name, width=900, height=700, tile_size=240, min_level_size=256)
    env = dict(os.environ, DASK_SCHEDULER_ADDRESS=address)
    err, returncode = _batch_killing_victims([str(src), str(dst), "--to", "svs"], env, victims)
    assert returncode == 1, err
    slides, summary = report(dst)
    assert summary["cluster"] == f"scheduler {address}"
    assert {name: r["status"] for name, r in slides.items()} == {
        "plain-1.svs": "ok",
        "sub/plain-2.svs": "ok",
        "victim-once.svs": "ok",
        "victim-always.svs": "failed",
    }
    assert "the worker died converting it, 2 times" in slides["victim-always.svs"]["error"]
    assert err.strip().splitlines() == [f"wsi-composite: error: {slides['victim-always.svs']['error']}"]
    always = sorted(p.name for p in victims.glob("victim-always*"))
    assert always == ["victim-always.svs.1.pid", "victim-always.svs.2.pid"]
    for name in ("plain-1.svs", "sub/plain-2.svs", "victim-once.svs"):
        with open_slide(dst / name) as written:
            assert written.dimensions == (900, 700)
    assert not leftovers(dst) and not (dst / "victim-always.svs").exists()
    deaths = {name: r["worker_deaths"] for name, r in slides.items()}
    assert deaths == {"plain-1.svs": 0, "sub/plain-2.svs": 0, "victim-once.svs": 1, "victim-always.svs": 2}
    again = run_batch(str(src), str(dst), "--to", "svs", "--scheduler", address)
    _, summary = report(dst)
    assert again.returncode == 1 and summary["skipped"] == 3 and summary["cluster"] is None


def test_local_cluster_queue_and_a_worker_killed_during_a_slide(tmp_path: Path) -> None:
    """More slides than twice the threads: the LocalCluster's scheduler queues them (root-ish,
    worker-saturation 1.0), and a worker killed mid-slide costs only that slide. The victims are
    the largest, so they start first, with all the other slides queued."""
    victims, src, dst = tmp_path / "victims", tmp_path / "src", tmp_path / "out"
    victims.mkdir()
    src.mkdir()
    names = [f"plain-{index}.svs" for index in range(6)] + ["victim-once.svs", "victim-always.svs"]
    for name in names:
        width = 1400 if name.startswith("victim") else 900
        write_synthetic_slide(src / name, width=width, height=700, tile_size=240, min_level_size=256)
    env = dict(os.environ, BATCH_VICTIM_DIR=str(victims), DASK_DISTRIBUTED__WORKER__PRELOAD=json.dumps([str(PRELOAD)]))
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    err, returncode = _batch_killing_victims([str(src), str(dst), "--to", "svs", "--processes", "2"], env, victims)
    assert returncode == 1, err
    slides, summary = report(dst)
    assert summary["cluster"].startswith("local 2 workers")
    assert {name: r["status"] for name, r in slides.items()} == {
        **{name: "ok" for name in names[:-1]},
        "victim-always.svs": "failed",
    }
    assert "the worker died converting it, 2 times" in slides["victim-always.svs"]["error"]
    deaths = {name: r["worker_deaths"] for name, r in slides.items()}
    assert deaths == {**{name: 0 for name in names[:6]}, "victim-once.svs": 1, "victim-always.svs": 2}
    for name in names[:-1]:
        with open_slide(dst / name) as written:
            assert written.dimensions == (1400 if name.startswith("victim") else 900, 700)
    assert not leftovers(dst) and not (dst / "victim-always.svs").exists()


def _batch_killing_victims(args: list[str], env: dict[str, str], victims: Path) -> tuple[str, int]:
    """Run the batch and SIGKILL the worker of each victim's attempt (victim-once's first,
    victim-always's two) as it hangs; (stderr, exit status)."""
    with subprocess.Popen(
        [sys.executable, "-m", "composite", "batch", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as batch:
        killed: set[str] = set()
        expected = {"victim-once.svs.1.pid", "victim-always.svs.1.pid", "victim-always.svs.2.pid"}
        deadline = time.monotonic() + 150
        while killed != expected and time.monotonic() < deadline and batch.poll() is None:
            for pid_file in victims.glob("*.pid"):
                if pid_file.name in expected - killed and pid_file.read_text():
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the worker process, mid-slide
                    killed.add(pid_file.name)
            time.sleep(0.05)
        _, err = batch.communicate(timeout=150)
    assert killed == expected, err
    return err, batch.returncode
