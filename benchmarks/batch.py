"""Batch conversion against shell loops of single converts and a libvips dzsave loop (issue 15).

```sh
.venv/bin/python benchmarks/batch.py                 # 16 mixed slides, every job once
.venv/bin/python benchmarks/batch.py --repeat 3      # median of 3, jobs interleaved
.venv/bin/python benchmarks/batch.py --jobs batch,xargs --rerun 0
```

The 16 synthetic SVS slides (240-px RGB JPEG tiles, like benchmarks/run.py's) are of mixed sizes,
four each of 1,500, 3,000, 6,000 and 10,000 px wide, made once into ``benchmarks/cache/batch/``.
Every job converts all of them to CWS by byte copy, each run of a job into a new folder under
``benchmarks/cache/out/batch/`` (``sync`` before each; the folder is emptied at the start and at
the end of the whole benchmark, never between jobs: see "Deleting between jobs" below):

- ``batch``: ``wsi-composite batch SRC OUT --to cws --quiet`` (LocalCluster, one worker per core);
- ``loop``: a shell loop of ``wsi-composite convert SLIDE OUT/NAME --to cws --quiet``, one at a time;
- ``xargs``: the same converts through ``xargs -P CORES``;
- ``dzsave``/``dzsave-xargs``: libvips 8.18 (pip, as in run.py) ``dzsave`` of each slide, JPEG Q80
  256-px tiles, in a loop and through ``xargs -P CORES`` (libvips re-encodes: it has no byte copy);
- ``batch-1``/``batch-4``: the batch on the first 1 and 4 slides (how its cost grows with the work).

Each ``batch`` run's timeline comes from its report (per slide, when its worker started and
finished it): the time before the first slide started (command, plan, dask's import, the
cluster's start), each worker's slide time, the gaps between two slides on a worker, and the time
after the last slide (closing the cluster, the report, the exit).

Then the rerun overhead: a finished batch run again (every slide skipped, no cluster started),
over the 16 slides and over ``--rerun N`` tiny slides (default 1,000: each one a 256 x 192 px SVS,
converted once first), as wall time per slide; and the fingerprint alone (stat + two 1 MiB reads,
what a rerun pays for a copied or restored archive) per slide, in-process. Memory: each slide's
worker peak RSS during its conversion (from batch-report.jsonl) against one ``convert`` of the
largest slide measured through launch.py. Jobs are timed by measure.py (wall, CPU, peak RSS of the
whole process tree); results go to ``benchmarks/results/batch-*.json``.

Deleting between jobs: this machine's ext4 has no journal, and then the kernel avoids reusing an
inode freed in the last 5 s (300 s while its inode-table block is dirty): ``find_inode_bit`` in
fs/ext4/ialloc.c skips each such inode, from the start of the block group, for every file
created. A job that starts right after the previous job's 8,500 files were deleted pays a scan over
them per file it creates (perf: 40% of a batch's CPU in ``recently_deleted``; a 16-slide batch
took 0.3-1.0 s of system CPU into new folders and 2.4-4.8 s right after ``rm -rf`` of the last
output). Jobs therefore write into folders of their own and nothing is deleted until the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import inputs  # noqa: E402
from measure import Measurement, compile_package, run_measured  # noqa: E402

from composite.synthetic import write_synthetic_slide  # noqa: E402

CACHE = HERE / "cache" / "batch"
OUT = HERE / "cache" / "out" / "batch"
RESULTS = HERE / "results"
LOGS = HERE / "cache" / "out"
WIDTHS = (1500, 3000, 6000, 10000)
CORES = len(os.sched_getaffinity(0))


def slides() -> list[Path]:
    """The 16 mixed slides, made once (interleaved sizes, so no order favours a job)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(16):
        width = WIDTHS[index % len(WIDTHS)]
        path = CACHE / f"s{index:02d}-{width}.svs"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            write_synthetic_slide(tmp, width=width, height=width * 3 // 4, tile_size=240, quality=80)
            tmp.rename(path)
        made.append(path)
    return made


def tiny_slides(count: int) -> Path:
    folder = HERE / "cache" / f"batch-tiny-{count}"
    if not (folder / f"t{count - 1:05d}.svs").exists():
        folder.mkdir(parents=True, exist_ok=True)
        first = write_synthetic_slide(folder / "t00000.svs", width=256, height=192, tile_size=240)
        for index in range(1, count):
            shutil.copyfile(first, folder / f"t{index:05d}.svs")
    return folder


def source_dir(paths: list[Path], name: str) -> Path:
    """A folder of symlinks to ``paths`` (batch takes a folder; links cost nothing)."""
    folder = HERE / "cache" / f"batch-set-{name}"
    if folder.is_symlink():  # a shared cache linked in (benchmarks/cache/* -> elsewhere): made here instead
        folder.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in paths:
        (folder / path.name).symlink_to(path)
    return folder


def commands(sources: list[Path], vips: Path | None, out: Path, sets: dict[str, Path]) -> dict[str, list[str]]:
    """Each job's command, writing into ``out`` (``sets``: the folders of 16, 1 and 4 slides)."""
    ours = " ".join(inputs.wsi_composite())
    names = " ".join(str(p) for p in sources)
    convert = f'{ours} convert "$0" "{out}/$(basename "$0" .svs)" --to cws --quiet'
    batch = [*inputs.wsi_composite(), "batch"]
    jobs = {
        "batch": [*batch, str(sets["16"]), str(out), "--to", "cws", "--quiet"],
        "loop": ["sh", "-c", f"for f in {names}; do sh -c '{convert}' \"$f\" || exit 1; done"],
        "xargs": ["sh", "-c", f"printf '%s\\n' {names} | xargs -P {CORES} -n 1 sh -c '{convert}'"],
        "batch-1": [*batch, str(sets["1"]), str(out), "--to", "cws", "--quiet"],
        "batch-4": [*batch, str(sets["4"]), str(out), "--to", "cws", "--quiet"],
    }
    if vips is not None:
        dz = f'{vips} {HERE / "vips_job.py"} dzsave "$0" "{out}/$(basename "$0" .svs)"'
        jobs["dzsave"] = ["sh", "-c", f"for f in {names}; do sh -c '{dz}' \"$f\" || exit 1; done"]
        jobs["dzsave-xargs"] = ["sh", "-c", f"printf '%s\\n' {names} | xargs -P {CORES} -n 1 sh -c '{dz}'"]
    return jobs


def run_job(name: str, argv: list[str], out: Path) -> Measurement:
    """Run one job into ``out``, a folder of its own (nothing is deleted before it: module docstring)."""
    out.mkdir(parents=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    os.sync()
    result = run_measured(argv, log=LOGS / f"batch-{name}.log")
    if not result.ok:
        raise SystemExit(f"{name} failed: {result.stderr_tail}")
    return result


def timeline(out: Path, started: float, ended: float) -> dict[str, float]:
    """Where a batch run's wall time went, from its report's per-slide ``started``/``finished``
    (worker clocks; this machine's): before the first slide started (the command's start, its plan,
    importing dask, the cluster's start), the slides' own time and the gaps between two slides of a
    worker, and after the last slide ended (closing the cluster, the report, the exit)."""
    lines = [json.loads(line) for line in (out / "batch-report.jsonl").read_text().splitlines()]
    slides = [line for line in lines if line.get("started") and line.get("finished")]
    workers: dict[str, list[tuple[float, float]]] = {}
    for line in slides:
        workers.setdefault(line["worker"], []).append((line["started"], line["finished"]))
    gaps = []
    for spans in workers.values():
        spans.sort()
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    return {
        "to_first_slide_s": min(line["started"] for line in slides) - started,
        "slide_s_per_worker": max(sum(b - a for a, b in spans) for spans in workers.values()),
        "gap_ms_median": statistics.median(gaps) * 1000 if gaps else 0.0,
        "gaps_s_per_worker": sum(gaps) / len(workers),
        "after_last_slide_s": ended - max(line["finished"] for line in slides),
    }


def rerun_overhead(folder: Path, dst: Path) -> dict[str, float]:
    """Wall per slide of a rerun where every slide is done (no cluster), and of the fingerprint."""
    count = sum(1 for _ in folder.iterdir())
    base = [*inputs.wsi_composite(), "batch", str(folder), str(dst), "--to", "cws", "--quiet"]
    if not (dst / "batch-ledger.jsonl").exists():
        run_measured(base, log=LOGS / "batch-rerun-first.log")
    rerun = run_measured(base, log=LOGS / "batch-rerun.log")
    empty = HERE / "cache" / "batch-empty"
    empty.mkdir(exist_ok=True)
    nothing = run_measured(
        [*inputs.wsi_composite(), "batch", str(empty), str(dst.with_name(dst.name + "-empty")), "--to", "cws"],
        log=LOGS / "batch-empty.log",
    )
    from composite.batch.ledger import signature

    paths = sorted(folder.iterdir())
    start = time.perf_counter()
    for path in paths:
        signature(path.resolve())
    fingerprint = (time.perf_counter() - start) / len(paths)
    return {
        "slides": count,
        "rerun_wall_s": rerun.wall_s,
        "startup_wall_s": nothing.wall_s,
        "per_slide_ms": (rerun.wall_s - nothing.wall_s) / count * 1000,
        "per_slide_with_startup_ms": rerun.wall_s / count * 1000,
        "fingerprint_ms": fingerprint * 1000,
    }


def memory(sources: list[Path], out: Path) -> dict[str, float]:
    """Worker peak RSS per slide (the batch run into ``out``) against one convert of the largest slide."""
    lines = [json.loads(line) for line in (out / "batch-report.jsonl").read_text().splitlines()]
    peaks = [line["peak_rss_mb"] for line in lines if line.get("peak_rss_mb")]
    largest = max(sources, key=lambda p: p.stat().st_size)
    target = out / "single"
    single = run_measured(
        [*inputs.wsi_composite(), "convert", str(largest), str(target), "--to", "cws", "--quiet"],
        log=LOGS / "batch-single.log",
    )
    return {"worker_peak_mb": max(peaks), "single_convert_peak_mb": single.peak_rss_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", help="comma-separated: batch,loop,xargs,dzsave,dzsave-xargs,batch-1,batch-4")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--rerun", type=int, default=1000, help="tiny slides for the rerun figure (0: skip)")
    args = parser.parse_args(argv)
    compile_package()  # the jobs run our package as installed: with its bytecode cache
    sources = slides()
    vips = inputs.vips_python()
    sets = {name: source_dir(paths, name) for name, paths in (("16", sources), ("1", sources[:1]), ("4", sources[:4]))}
    shutil.rmtree(OUT, ignore_errors=True)  # a previous run's, if it was stopped
    chosen = [j.strip() for j in args.jobs.split(",")] if args.jobs else list(commands(sources, vips, OUT, sets))
    runs: dict[str, list[Measurement]] = {name: [] for name in chosen}
    timelines: list[dict[str, float]] = []
    for round_ in range(args.repeat):
        for name in chosen:
            out = OUT / f"{name}-{round_}"
            started = time.time()
            runs[name].append(run_job(name, commands(sources, vips, out, sets)[name], out))
            note = ""
            if name == "batch":
                timelines.append(timeline(out, started, time.time()))
                note = "  (" + ", ".join(f"{k} {v:.3f}" for k, v in timelines[-1].items()) + ")"
            print(f"  {name}: {runs[name][-1].wall_s:.2f} s, load {runs[name][-1].load1:.2f}{note}", flush=True)
    megapixels = sum(w * (w * 3 // 4) for w in (int(p.stem.split("-")[1]) for p in sources)) / 1e6
    rows = {}
    for name, measured in runs.items():
        wall = statistics.median(m.wall_s for m in measured)
        rows[name] = {
            "wall_s": wall,
            "cpu_use": statistics.median(m.cpu_use for m in measured),
            "peak_rss_mb": max(m.peak_rss_mb for m in measured),
            "load1": measured[0].load1,
            "walls_s": [m.wall_s for m in measured],  # every run, in round order
            "loads1": [m.load1 for m in measured],
        }
    extra: dict[str, object] = {}
    if timelines:
        extra["batch_timeline"] = {key: statistics.median(t[key] for t in timelines) for key in timelines[0]}
    if "batch" in runs:
        out = OUT / "batch-rerun"
        run_job("batch", commands(sources, vips, out, sets)["batch"], out)  # a finished batch, rerun below
        extra["memory"] = memory(sources, out)
        extra["rerun_16"] = rerun_overhead(sets["16"], out)
    if args.rerun:
        tiny = tiny_slides(args.rerun)
        extra["rerun_tiny"] = rerun_overhead(tiny, HERE / "cache" / "out" / f"batch-tiny-{args.rerun}")
    print(f"\n16 mixed slides ({megapixels:.0f} MP level 0) -> CWS, {CORES} cores")
    print(f"{'job':14}{'wall s':>9}{'MP/s':>8}{'CPU use':>9}{'peak MB':>9}{'batch is':>10}")
    for name, row in rows.items():
        ratio = rows[name]["wall_s"] / rows["batch"]["wall_s"] if "batch" in rows else float("nan")
        count = {"batch-1": 1, "batch-4": 4}.get(name, 16)
        mp = (
            megapixels * count / 16
            if count == 16
            else sum(int(p.stem.split("-")[1]) ** 2 * 3 // 4 for p in sources[:count]) / 1e6
        )
        print(
            f"{name:14}{row['wall_s']:9.2f}{mp / row['wall_s']:8.1f}{row['cpu_use']:9.2f}"
            f"{row['peak_rss_mb']:9.0f}{ratio if count == 16 else float('nan'):9.2f}x"
        )
    for key, value in extra.items():
        print(f"{key}: {json.dumps(value)}")
    shutil.rmtree(OUT, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record = {"rows": rows, "extra": extra, "megapixels": megapixels, "cores": CORES, "repeat": args.repeat}
    (RESULTS / f"batch-{stamp}.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
