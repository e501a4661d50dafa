"""`wsi-composite batch`: discovery, a LocalCluster run, reruns, a killed batch, a modified source.

Real parts throughout: the CLI in a subprocess, dask's default LocalCluster, outputs opened again
by composite and SVS outputs by OpenSlide. The external-cluster and killed-worker tests are in
test_batch_cluster.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openslide
import pytest

from composite import open_slide
from composite.batch import discover
from composite.cli import main
from composite.synthetic import write_synthetic_slide

from .batch_support import (
    CLI,
    IGNORED,
    REPO,
    SLIDES,
    ledger_lines,
    leftovers,
    make_mixed_folder,
    port_taken,
    report,
    run_batch,
)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mixed_folder(tmp_path_factory.mktemp("batch") / "archive")


def test_discovery_finds_each_slide_once(mixed: Path, tmp_path: Path) -> None:
    found = discover(mixed, tmp_path / "out", to="cws")
    assert sorted(job.name for job in found.jobs) == sorted(SLIDES)  # CWS, DICOM, ACI once; no ACI pieces
    assert sorted(str(p.relative_to(mixed)) for p in found.ignored) == sorted(IGNORED)
    outputs = {job.name: job.output.relative_to(tmp_path / "out") for job in found.jobs}
    assert str(outputs["b/deep/c/five.svs"]) == "b/deep/c/five"
    assert str(outputs["b/scan"]) == "b/scan"
    svs = {job.name: job.output.name for job in discover(mixed, tmp_path / "o", to="svs").jobs}
    assert svs["a/three.tif"] == "three.svs" and svs["dicom"] == "dicom.svs" and svs["mosaic.aci"] == "mosaic.svs"


def test_a_destination_inside_the_source_is_not_searched(mixed: Path, tmp_path: Path) -> None:
    inside = mixed / "out-inside"
    (inside / "x").mkdir(parents=True)
    write_synthetic_slide(inside / "x" / "old.svs", width=300, height=200, tile_size=240)
    try:
        assert all(not job.name.startswith("out-inside") for job in discover(mixed, inside, to="svs").jobs)
    finally:
        import shutil

        shutil.rmtree(inside)


def test_batch_on_the_local_cluster_then_rerun_then_a_changed_source(mixed: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    with port_taken(8787):  # another dask process's dashboard: nothing of it may reach stderr
        done = run_batch(str(mixed), str(dst), "--to", "svs")
    assert done.returncode == 1, done.stderr  # the truncated slide failed, nothing else
    slides, summary = report(dst)
    assert summary["ok"] == len(SLIDES) - 1 and summary["failed"] == 1 and summary["ignored"] == len(IGNORED)
    assert summary["cluster"].startswith("local")
    failed = slides["broken/truncated.svs"]
    single = subprocess.run(
        [*CLI, "convert", str(mixed / "broken/truncated.svs"), str(tmp_path / "single.svs")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert single.returncode == 2
    assert single.stderr.strip().splitlines()[-1] == f"wsi-composite: error: {failed['error']}"  # convert's own line
    assert done.stderr.strip().splitlines() == [f"wsi-composite: error: {failed['error']}"]
    for name in SLIDES[:-1]:
        result = slides[name]
        assert result["status"] == "ok" and result["output_size"] > 0 and result["megapixels"] > 0
        assert result["started"] <= result["finished"] and result["worker_deaths"] == 0
        output = Path(result["output"])
        with open_slide(mixed / name) as source, open_slide(output) as written:
            assert written.dimensions == source.dimensions
        with openslide.OpenSlide(output) as theirs:
            assert theirs.dimensions == written.dimensions
    assert (dst / "b/deep/c/five.svs").is_file() and (dst / "dicom.svs").is_file()
    assert not leftovers(dst)
    assert "ok" in done.stdout and "failed" in done.stdout and "skipped" in done.stdout

    again = run_batch(str(mixed), str(dst), "--to", "svs")  # nothing left: no cluster started
    assert again.returncode == 1
    slides2, summary2 = report(dst)
    assert summary2["skipped"] == len(SLIDES) - 1 and summary2["failed"] == 1 and summary2["cluster"] is None
    assert slides2["broken/truncated.svs"]["error"] == failed["error"]
    assert again.stderr.strip().splitlines() == [f"wsi-composite: error: {failed['error']}"]

    plan = run_batch(str(mixed), str(dst), "--to", "svs", "--quality", "80", "--dry-run")
    assert plan.stdout.count("(options changed)") == len(SLIDES)  # changed options: everything redone
    plan = run_batch(str(mixed), str(dst), "--to", "svs", "--ycbcr", "--dry-run")
    assert plan.stdout.count("(options changed)") == len(SLIDES)
    plan = run_batch(str(mixed), str(dst), "--to", "svs", "--dry-run", "--retry-failed")
    assert "convert  broken/truncated.svs" in plan.stdout and "(failed before, retried)" in plan.stdout

    write_synthetic_slide(mixed / "a/two.svs", width=500, height=375, tile_size=240, min_level_size=256)
    third = run_batch(str(mixed), str(dst), "--to", "svs")
    slides3, summary3 = report(dst)
    assert third.returncode == 1 and summary3["ok"] == 1 and summary3["skipped"] == len(SLIDES) - 2
    assert slides3["a/two.svs"]["status"] == "ok" and slides3["a/two.svs"]["reason"] == "source changed"
    with openslide.OpenSlide(dst / "a/two.svs") as theirs:
        assert theirs.dimensions == (500, 375)


def test_dry_run_writes_nothing(mixed: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    done = run_batch(str(mixed), str(dst), "--to", "cws", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert not dst.exists()
    lines = done.stdout.splitlines()
    assert sum(line.startswith("convert ") for line in lines) == len(SLIDES)
    assert f"{len(SLIDES)} to convert" in lines[-1] and f"{len(IGNORED)} files ignored" in lines[-1]


def _wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_sigkilled_batch_resumes_with_nothing_redone_or_lost(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for index in range(6):
        write_synthetic_slide(src / f"s{index}.svs", width=1920, height=1440, tile_size=240)
    argv = [*CLI, "batch", str(src), str(dst), "--to", "cws", "--processes", "2", "--quiet"]
    with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        _wait_for(lambda: any(e["status"] == "done" for e in ledger_lines(dst)), 120)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finished = {e["output"] for e in ledger_lines(dst) if e["status"] == "done"}
    assert 0 < len(finished) < 6
    resumed = run_batch(str(src), str(dst), "--to", "cws")
    assert resumed.returncode == 0, resumed.stderr
    slides, summary = report(dst)
    assert {r["output"] for r in slides.values() if r["status"] == "skipped"} == finished  # nothing redone
    assert summary["ok"] + summary["skipped"] == 6  # nothing lost
    assert not leftovers(dst)  # no half-written output anywhere
    for index in range(6):
        with open_slide(dst / f"s{index}") as written:
            assert written.dimensions == (1920, 1440)


def test_list_file_sources_and_destinations(mixed: Path, tmp_path: Path) -> None:
    listing = tmp_path / "slides.csv"
    listing.write_text(f"source,destination\n{mixed / 'a/one.svs'},first/one.svs\n# a comment\n\n{mixed / 'six.svs'}\n")
    done = run_batch(str(listing), str(tmp_path / "out"), "--to", "svs", "--dry-run")
    assert done.returncode == 0, done.stderr
    targets = [line.split("  ->  ")[1].split("  (")[0] for line in done.stdout.splitlines() if "->" in line]
    assert targets == [str(tmp_path / "out/first/one.svs"), str(tmp_path / "out/six.svs")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a.svs\t../escape.svs", "slides.txt:2: destination '../escape.svs' uses '..'"),
        ("a.svs\t/tmp/abs.svs", "slides.txt:2: destination '/tmp/abs.svs' is absolute (give --allow-absolute"),
        ("a.svs\tlink/x.svs", "slides.txt:2: destination of 'link/x.svs' leads out of"),
        ("a.svs\tx.svs\textra", "slides.txt:2: 3 fields, expected a source and a destination"),
        ("\tx.svs", "slides.txt:2: no source path before the destination"),
        ("a.svs\tbatch-ledger.jsonl", "slides.txt:2: destination 'batch-ledger.jsonl' is the batch's own file"),
    ],
)
def test_list_file_errors_are_one_line_with_the_line_number(
    tmp_path: Path, line: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "link").symlink_to(tmp_path)
    listing = tmp_path / "slides.txt"
    listing.write_text(f"# slides\n{line}\n")
    assert main(["batch", str(listing), str(dst), "--to", "svs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsi-composite: error: {tmp_path}/{message}")


def test_absolute_destination_when_allowed(tmp_path: Path) -> None:
    listing = tmp_path / "slides.txt"
    listing.write_text(f"a.svs\t{tmp_path / 'elsewhere/a.svs'}\n")
    done = run_batch(str(listing), str(tmp_path / "out"), "--to", "svs", "--dry-run", "--allow-absolute")
    assert done.returncode == 0 and f"->  {tmp_path / 'elsewhere/a.svs'}" in done.stdout


def test_list_file_with_nul_bytes_is_refused(tmp_path: Path) -> None:
    listing = tmp_path / "slides.txt"
    listing.write_bytes(b"a.svs\x00\n")
    done = run_batch(str(listing), str(tmp_path / "out"), "--to", "svs")
    assert done.returncode == 2 and "holds NUL bytes" in done.stderr and done.stderr.count("\n") == 1


def test_info_lists_the_slides_of_a_directory(mixed: Path) -> None:
    done = subprocess.run([*CLI, "info", str(mixed), "--json"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert sorted(row["path"] for row in rows) == sorted(SLIDES)
    five = next(row for row in rows if row["path"] == "b/deep/c/five.svs")
    with openslide.OpenSlide(mixed / "b/deep/c/five.svs") as theirs:
        assert (five["width"], five["height"]) == theirs.dimensions
        assert five["levels"] == theirs.level_count and five["format"] == "svs"
    assert five["size"] == (mixed / "b/deep/c/five.svs").stat().st_size
    text = subprocess.run([*CLI, "info", str(mixed)], capture_output=True, text=True, cwd=REPO)
    assert text.returncode == 0 and f"{len(SLIDES)} slides" in text.stdout and "b/scan  [cws]" in text.stdout


def test_cli_and_worker_import_no_more_than_they_need() -> None:
    """Other commands do not import dask; the worker function imports the converter, not dask or the CLI."""
    cli = "import sys; from composite.cli import build_parser; build_parser(); print('dask' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "False"
    names = ["dask", "distributed", "aiohttp", "composite.cli", "tqdm"]
    worker = f"import sys, composite.batch.worker; print([m for m in {names!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"


def test_progress_bar_and_dashboard_on_a_terminal_only(tmp_path: Path) -> None:
    from .test_progress_cli import _run

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.svs", "b.svs"):
        write_synthetic_slide(src / name, width=700, height=500, tile_size=240)
    with port_taken(8787):  # the dashboard goes to a free port, without a word about 8787
        code, shown = _run(["batch", str(src), str(tmp_path / "tty"), "--to", "cws"], terminal=True)
    assert code == 0, shown
    assert "slide" in shown and "MP/s" in shown and "%|" in shown, shown  # the bar: slides, rate, MP/s
    assert "dashboard http://" in shown and "wsi-composite: local " in shown
    assert "already in use" not in shown and ":8787" not in shown, shown
    for variant, terminal in (("pipe", False), ("quiet", True)):
        extra = ["--quiet"] if variant == "quiet" else []
        code, shown = _run(["batch", str(src), str(tmp_path / variant), "--to", "cws", *extra], terminal=terminal)
        assert code == 0 and shown == "", shown
