"""Speed and memory of our conversions against libvips and the disk, measured in one run.

``make bench`` (or ``.venv/bin/python benchmarks/run.py``) makes a synthetic 40,000 x 30,000 SVS
(``--big``: 100,000 x 80,000, ``--small``: 12,000 x 9,000; cached under benchmarks/cache/), runs
every job below as a child process and prints one table: wall time, level-0 megapixels per
second, CPU use (CPU time / wall time), peak RSS, and each job's speed and memory against the
peer doing the same work; each re-encode job also gets its speed as a share of the codec ceiling
(ceiling.py: its level-0 tiles decoded and encoded at its settings, nothing else) and of its work
ceiling (ceiling.py --work: every level's tiles read, decoded, encoded and written as the job's
output is, a file each or one file, with no retiling or pipeline). Results are also written as
JSON to benchmarks/results/. See benchmarks/README.md.

Every run writes into a new folder of its own, and outputs are deleted only at the end: on this
VM's ext4 (no journal) the kernel scans past inodes freed in the last 5-300 s for every file it
creates, so deleting one job's thousands of tiles made the next job's file creation several times
slower (2,000 files: 0.08 s fresh, 0.4-0.9 s within minutes of deleting as many). Leave a few
minutes after deleting many files before running it, or the first jobs pay that too.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import inputs
from measure import Measurement, compile_package, run_measured

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUT = inputs.CACHE / "out"


class Unavailable(Exception):
    """A job that cannot run here (our converter not there yet, libvips not installable)."""


@dataclasses.dataclass
class Context:
    svs: Path
    width: int
    height: int
    refresh: bool
    targets: set[str]
    vips: Path | None
    wsidicomizer: Path | None = None
    cws_blocks: int | None = None  # files our default CWS has (set by job 1; sizes job 8)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    def require(self, *targets: str) -> None:
        missing = [t for t in targets if t not in self.targets]
        if missing:
            raise Unavailable(f"`wsi-composite convert --to {'/'.join(missing)}` does not exist yet")

    def ours(self, target: str, src: Path, out: Path, *options: str) -> list[str]:
        self.require(target)
        return [*inputs.wsi_composite(), "convert", str(src), str(out), "--to", target, *options, "--quiet"]

    def glass(self) -> Path:
        """The glass slide of this size (made and cached on first use)."""
        return inputs.glass_slide(self.width, self.height)

    def pip_vips(self, *args: str | Path) -> list[str]:
        if self.vips is None:
            raise Unavailable(f"could not install {' '.join(inputs.VIPS_REQUIREMENTS)}")
        return [str(self.vips), str(HERE / "vips_job.py"), *map(str, args)]


Command = Callable[[Context, Path], list[str]]


@dataclasses.dataclass(frozen=True)
class Job:
    id: str
    name: str
    command: Command
    peers: tuple[str, ...] = ()
    ceiling: str | None = None  # the codec ceiling job of a re-encode job
    work: str | None = None  # its work ceiling: every level read, re-encoded and written, no pipeline


def _ceiling(*options: str, cws: bool = False) -> Command:
    """ceiling.py on the SVS (or on job 4's CWS blocks): its result file replaces the measured time."""

    def command(ctx: Context, out: Path) -> list[str]:
        src = inputs.our_block_cws(ctx.svs, refresh=ctx.refresh) if cws else ctx.svs
        return _ceiling_argv(src, out, *options)

    return command


def _ceiling_argv(src: Path, out: Path, *options: str) -> list[str]:
    result = out.with_suffix(".ceiling.json")  # run_job reads the codec section's time from it
    return [sys.executable, str(HERE / "ceiling.py"), str(src), str(result), "--quality", "80", *options]


def _work_ceiling(*options: str, files: bool) -> Command:
    """ceiling.py --work on the SVS: a file per tile (a CWS's work) or one file (an SVS's)."""

    def command(ctx: Context, out: Path) -> list[str]:
        sink = ["--files", str(out)] if files else ["--file", str(out.with_suffix(".svs"))]
        return _ceiling_argv(ctx.svs, out, "--work", *sink, *options)

    return command


def _wsidicomizer(ctx: Context, out: Path) -> list[str]:
    if ctx.wsidicomizer is None:
        raise Unavailable(f"could not install {' '.join(inputs.WSIDICOMIZER_REQUIREMENTS)}")
    # its defaults, like ours: copy the tiles it can, one thread per core, Basic Offset Table
    return [str(ctx.wsidicomizer), "-i", str(ctx.svs), "-o", str(out)]


def _system_dzsave(ctx: Context, out: Path) -> list[str]:
    if not shutil.which("vips"):
        raise Unavailable("no `vips` on PATH (Debian: apt-get install libvips-tools)")
    return ["vips", "dzsave", str(ctx.svs), str(out), "--suffix", ".jpg[Q=80]", "--tile-size", "256", "--overlap", "0"]


def _cws_to_svs(*options: str) -> Command:
    def command(ctx: Context, out: Path) -> list[str]:
        ctx.require("cws", "svs")  # the input is made by our CWS writer
        cws = inputs.our_block_cws(ctx.svs, refresh=ctx.refresh)
        return ctx.ours("svs", cws, out.with_suffix(".svs"), *options)

    return command


def _arrayjoin(ctx: Context, out: Path) -> list[str]:
    if {"cws", "svs"} <= ctx.targets:
        plan = inputs.cws_block_plan(inputs.our_block_cws(ctx.svs, refresh=ctx.refresh))
    else:
        plan = inputs.standin_block_plan(ctx.width, ctx.height)
        ctx.notes["7"] = "stand-in 752x480 blocks (our CWS writer not there yet)"
    out.mkdir(parents=True)
    plan_path = out / "blocks.json"
    plan_path.write_text(json.dumps(plan))
    return ctx.pip_vips("arrayjoin", plan_path, out / "assembled.tif")


def _plain_copy(ctx: Context, out: Path) -> list[str]:
    count = ctx.cws_blocks
    if count is None:
        count = inputs.svs_tile_count(ctx.svs)
        ctx.notes["8"] = f"{count} files: the SVS's tile count (job 1 not run, its block count unknown)"
    return [sys.executable, str(HERE / "plain_copy.py"), str(ctx.svs), str(out), str(count)]


JOBS = (
    Job("1", "ours: SVS -> CWS default (byte copy)", lambda c, o: c.ours("cws", c.svs, o), ("3", "8")),
    Job(
        "2",
        "ours: SVS -> CWS re-encoded 256 Q80",
        lambda c, o: c.ours("cws", c.svs, o, "--tile-size", "256", "--quality", "80"),
        ("3",),
        "c",
        "cf",
    ),
    # 2y and 6y write what libvips writes (YCbCr 4:2:0 JPEG); 2 and 6 write Aperio's RGB JPEG,
    # which has twice the samples to encode: the like-for-like comparison is 2y/6y.
    Job(
        "2y",
        "ours: SVS -> CWS re-encoded 256 Q80 YCbCr",
        lambda c, o: c.ours("cws", c.svs, o, "--tile-size", "256", "--quality", "80", "--ycbcr"),
        ("3",),
        "cy",
        "cfy",
    ),
    Job("3", "libvips (pip) dzsave 256 Q80, tiffload", lambda c, o: c.pip_vips("dzsave", c.svs, o)),
    Job("3b", "libvips (Debian CLI) vips dzsave 256 Q80", _system_dzsave),
    Job("4", "ours: CWS 752x480 -> SVS default", _cws_to_svs(), ("7",)),
    # Job 4's default keeps the 752x480 blocks as tiles (a byte copy); 4b does job 7's work.
    Job(
        "4b",
        "ours: CWS 752x480 -> SVS re-encoded 256 Q80",
        _cws_to_svs("--tile-size", "256", "--quality", "80"),
        ("7",),
        "c4",
    ),
    # 4y writes what job 7's tiffsave writes (YCbCr 4:2:0), like 2y and 6y.
    Job(
        "4y",
        "ours: CWS 752x480 -> SVS 256 Q80 YCbCr",
        _cws_to_svs("--tile-size", "256", "--quality", "80", "--ycbcr"),
        ("7",),
        "c4y",
    ),
    Job(
        "5", "libvips (pip) tiffsave 256 Q80 pyramid", lambda c, o: c.pip_vips("tiffsave", c.svs, o.with_suffix(".tif"))
    ),
    Job(
        "6",
        "ours: SVS -> SVS re-encoded 256 Q80",
        lambda c, o: c.ours("svs", c.svs, o.with_suffix(".svs"), "--tile-size", "256", "--quality", "80"),
        ("5",),
        "c",
        "cs",
    ),
    Job(
        "6y",
        "ours: SVS -> SVS re-encoded 256 Q80 YCbCr",
        lambda c, o: c.ours("svs", c.svs, o.with_suffix(".svs"), "--tile-size", "256", "--quality", "80", "--ycbcr"),
        ("5",),
        "cy",
        "csy",
    ),
    Job("7", "libvips (pip) arrayjoin 752x480 + tiffsave", _arrayjoin),
    Job("8", "plain copy of tile bytes, 1 file each", _plain_copy),
    # DICOM WSI: every level an instance, the SVS's JPEG tiles copied as frames (both tools)
    Job("9", "ours: SVS -> DICOM default (byte copy)", lambda c, o: c.ours("dicom", c.svs, o), ("9w",)),
    Job("9w", "wsidicomizer (pip) SVS -> DICOM default", _wsidicomizer),
    # Skipping glass (docs/cws.md): the glass slide (35% tissue) as CWS with and without glass blocks
    Job("g", "ours: glass SVS -> CWS default (byte copy)", lambda c, o: c.ours("cws", c.glass(), o)),
    Job("gs", "ours: glass SVS -> CWS --skip-glass", lambda c, o: c.ours("cws", c.glass(), o, "--skip-glass"), ("g",)),
    # Codec ceilings (run with any job naming them): level-0 tiles decoded + encoded Q80, nothing else
    Job("c", "codec ceiling: SVS tiles -> RGB JPEG Q80", _ceiling()),
    Job("cy", "codec ceiling: SVS tiles -> YCbCr JPEG Q80", _ceiling("--ycbcr")),
    Job("c4", "codec ceiling: CWS blocks -> RGB JPEG Q80", _ceiling(cws=True)),
    Job("c4y", "codec ceiling: CWS blocks -> YCbCr JPEG Q80", _ceiling("--ycbcr", cws=True)),
    # Work ceilings (with jobs 2, 2y, 6, 6y): every level's tiles read, re-encoded, written; no pipeline
    Job("cf", "work ceiling: all levels, RGB, file a tile", _work_ceiling(files=True)),
    Job("cfy", "work ceiling: all levels, YCbCr, file a tile", _work_ceiling("--ycbcr", files=True)),
    Job("cs", "work ceiling: all levels, RGB, one file", _work_ceiling(files=False)),
    Job("csy", "work ceiling: all levels, YCbCr, one file", _work_ceiling("--ycbcr", files=False)),
)


def _select(spec: str | None, *, exact: bool = False) -> list[Job]:
    if not spec:
        return list(JOBS)
    wanted = {s.strip() for s in spec.split(",") if s.strip()}
    # "3" selects both dzsave lines (3 and 3b), "2" both 2 and 2y, "9" 9 and 9w; "3b" only that one
    # (with ``exact``, "3" is job 3 alone).
    chosen = [j for j in JOBS if j.id in wanted or (not exact and j.id.rstrip("byw") in wanted)]
    unknown = wanted - {j.id for j in JOBS} - {j.id.rstrip("byw") for j in JOBS}
    if unknown:
        raise ValueError(f"unknown job(s) {', '.join(sorted(unknown))} (known: {', '.join(j.id for j in JOBS)})")
    ceilings = {c for j in chosen for c in (j.ceiling, j.work) if c}  # a re-encode job brings its ceilings
    return [j for j in JOBS if j in chosen or j.id in ceilings]


def _count_blocks(out: Path) -> int:
    return sum(1 for _ in out.rglob("*.jpg"))


def run_job(job: Job, ctx: Context, *, out: Path, sync: bool) -> Measurement | str:
    """One measured run of ``job`` writing to ``out`` (a new name); a string says why it could not run."""
    try:
        argv = job.command(ctx, out)
    except Unavailable as why:
        return f"n/a (not available: {why})"
    out.parent.mkdir(parents=True, exist_ok=True)
    os.sync()  # the previous job's writes must not be flushed on this one's clock
    result = run_measured(argv, sync=sync, log=out.parent / f"{out.name}.log")
    ctx.notes.setdefault(f"{job.id} command", " ".join(argv))
    ceiling = out.with_suffix(".ceiling.json")
    if result.ok and ceiling.exists():  # a codec ceiling: its codec section's time, not the process's
        codec = json.loads(ceiling.read_text())
        ceiling.unlink()
        result = dataclasses.replace(result, wall_s=codec["codec_wall_s"], cpu_s=codec["codec_cpu_s"])
    if result.ok and job.id in ("g", "gs"):
        files = [p for p in out.rglob("*") if p.is_file()]
        ctx.notes[job.id] = f"{len(files)} files, {sum(p.stat().st_size for p in files)} bytes"
    if result.ok and job.id == "1":
        ctx.cws_blocks = _count_blocks(out)
        ctx.notes["1"] = f"{ctx.cws_blocks} block files"
    return result if result.ok else f"failed (exit {result.returncode}: {result.stderr_tail[-200:]})"


def _summary(runs: list[Measurement]) -> dict[str, float]:
    return {
        "wall_s": statistics.median(r.wall_s for r in runs),
        "cpu_s": statistics.median(r.cpu_s for r in runs),
        "cpu_use": statistics.median(r.cpu_use for r in runs),
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
        "load1": statistics.median(r.load1 for r in runs),
    }


def _paired(results: dict[str, dict[str, object]], job: str, other: str) -> list[float]:
    """``other``'s wall time over ``job``'s, round by round (a round runs every job once, within
    minutes): the speed of this VM's host drifts by 10-25 % over a benchmark, and a ratio taken
    inside a round is not moved by it, where the ratio of the two medians would be."""
    mine, theirs = results[job].get("runs"), results.get(other, {}).get("runs")
    if not isinstance(mine, list) or not isinstance(theirs, list):
        return []
    return [t["wall_s"] / m["wall_s"] for m, t in zip(mine, theirs, strict=False)]


def _spread(values: list[float], unit: str) -> str:
    """The rounds' range after a median, when there was more than one round."""
    if len(values) < 2:
        return ""
    if unit == "%":
        return f" [{min(values):.0f}-{max(values):.0f}%]"
    return f" [{min(values):.2f}-{max(values):.2f}]"


def _table(jobs: list[Job], results: dict[str, dict[str, object]], megapixels: float) -> str:
    columns = ("wall s", 8), ("MP/s", 7), ("CPU use", 7), ("RSS MB", 7), ("load", 5)
    head = f"{'job':<4} {'what':<44} " + " ".join(f"{c:>{w}}" for c, w in columns) + "  vs peer (speed, RSS)"
    lines = [head, "-" * len(head)]
    for job in jobs:
        res = results[job.id]
        if "error" in res:
            lines.append(f"{job.id:<4} {job.name:<44} {res['error']}")
            continue
        s: dict[str, float] = res["summary"]  # type: ignore[assignment]
        versus = []
        for peer in job.peers:
            other = results.get(peer, {}).get("summary")
            speeds = _paired(results, job.id, peer)
            if isinstance(other, dict) and speeds:
                rss = s["peak_rss_mb"] / other["peak_rss_mb"]
                versus.append(f"{statistics.median(speeds):.2f}x speed{_spread(speeds, 'x')}, {rss:.2f}x RSS of {peer}")
        for kind, ceiling in (("ceiling", job.ceiling), ("work ceiling", job.work)):
            shares = [100 * ratio for ratio in _paired(results, job.id, ceiling or "")]
            if shares:
                versus.append(f"{statistics.median(shares):.0f}%{_spread(shares, '%')} of {kind} {ceiling}")
        lines.append(
            f"{job.id:<4} {job.name:<44} {s['wall_s']:8.2f} {megapixels / s['wall_s']:7.1f} "
            f"{s['cpu_use']:7.2f} {s['peak_rss_mb']:7.0f} {s['load1']:5.1f}  {'; '.join(versus)}"
        )
    return "\n".join(lines)


def _run_all(
    jobs: list[Job],
    ctx: Context,
    runs: dict[str, list[Measurement]],
    errors: dict[str, str],
    *,
    outputs: Path,
    repeat: int,
    sync: bool,
) -> None:
    """Every job ``repeat`` times, interleaved, each run into a new folder under ``outputs``."""
    for attempt in range(repeat):
        for job in jobs:
            if job.id in errors:
                continue
            print(f"[{attempt + 1}/{repeat}] job {job.id}: {job.name} ...", end=" ", flush=True)
            result = run_job(job, ctx, out=outputs / f"job{job.id}-{attempt + 1}", sync=sync)
            if isinstance(result, str):
                errors[job.id] = result
                print(result)
            else:
                runs[job.id].append(result)
                print(f"{result.wall_s:.1f} s, {result.peak_rss_mb:.0f} MB (load {result.load1:.1f} at start)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--big", action="store_true", help="100,000 x 80,000 px instead of 40,000 x 30,000")
    size.add_argument("--small", action="store_true", help="12,000 x 9,000 px (a biopsy) instead of 40,000 x 30,000")
    parser.add_argument("--jobs", help="comma-separated job ids to run (default: all), e.g. 1,3")
    parser.add_argument("--exact", action="store_true", help="job ids as given: 3 is not also 3b")
    parser.add_argument("--repeat", type=int, default=1, help="runs per job, interleaved (median wall is shown)")
    parser.add_argument("--sync", action="store_true", help="count flushing each job's writes to disk in its time")
    parser.add_argument("--refresh", action="store_true", help="remake cached inputs made by our converter")
    parser.add_argument("--keep-outputs", action="store_true", help="leave outputs in benchmarks/cache/out/run-*/")
    args = parser.parse_args(argv)
    try:
        jobs = _select(args.jobs, exact=args.exact)
    except ValueError as err:
        parser.error(str(err))
    compile_package()  # the jobs run our package as installed: with its bytecode cache
    width, height = (100_000, 80_000) if args.big else (12_000, 9_000) if args.small else (40_000, 30_000)
    needs_vips = any(j.id in {"3", "5", "7"} for j in jobs)
    ctx = Context(
        svs=inputs.synthetic_slide(width, height),
        width=width,
        height=height,
        refresh=args.refresh,
        targets=inputs.converter_targets(),
        vips=inputs.vips_python() if needs_vips else None,
        wsidicomizer=inputs.wsidicomizer() if any(j.id == "9w" for j in jobs) else None,
    )
    versions = inputs.tool_versions(ctx.vips)
    if ctx.wsidicomizer is not None:
        versions["pip wsidicomizer"] = " ".join(inputs.WSIDICOMIZER_REQUIREMENTS)
    megapixels = width * height / 1e6
    runs: dict[str, list[Measurement]] = {j.id: [] for j in jobs}
    errors: dict[str, str] = {}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outputs = OUT / f"run-{stamp}"
    try:
        _run_all(jobs, ctx, runs, errors, outputs=outputs, repeat=args.repeat, sync=args.sync)
    finally:
        if not args.keep_outputs:
            shutil.rmtree(outputs, ignore_errors=True)
    results: dict[str, dict[str, object]] = {}
    for job in jobs:
        entry: dict[str, object] = {"name": job.name, "peers": list(job.peers)}
        if job.id in errors:
            entry["error"] = errors[job.id]
        else:
            entry["runs"] = [dataclasses.asdict(r) for r in runs[job.id]]
            entry["summary"] = _summary(runs[job.id])
        results[job.id] = entry
    print()
    print(f"{width} x {height} px SVS ({megapixels:.0f} MP at level 0), {args.repeat} run(s) each:")
    print("median wall, CPU use and load (1-min load average at the start), largest RSS; speeds against")
    print("a peer or a ceiling are the median of each round's ratio [the rounds' range]")
    print(", ".join(f"{k} {v}" for k, v in versions.items()))
    print(_table(jobs, results, megapixels))
    for key, note in sorted(ctx.notes.items()):
        if "command" not in key:
            print(f"note {key}: {note}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench-{width}x{height}-{stamp}.json"
    record = {
        "argv": sys.argv,
        "slide": {"path": str(ctx.svs), "width": width, "height": height, "megapixels": megapixels},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "versions": versions,
        "notes": ctx.notes,
        "jobs": results,
    }
    path.write_text(json.dumps(record, indent=2))
    print(f"results: {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
