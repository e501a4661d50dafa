"""Block fetches per second and latency: ``wsi-composite serve`` static and virtual, aiohttp's ceiling, nginx.

``.venv/bin/python benchmarks/serve.py`` (or ``make bench-serve``) converts a synthetic SVS to CWS
(cached under benchmarks/cache/serve/), starts our server and Debian's nginx on 127.0.0.1 over the
same directory, and hammers each with the same block URLs round-robin: ``--connections``
concurrent keep-alive connections for ``--seconds``, in alternating rounds so that the two see the
same machine load. The load generator is wrk (Debian package ``wrk``) when installed, else a
bounded aiohttp client in its own process. Prints req/s, p50/p99 latency and error counts for
each server and the ratio ours/nginx; writes the numbers to benchmarks/results/serve-*.json.

Both servers get the same number of worker processes (``--workers``, default one per CPU core, as
each runs by default): ours runs one event loop per process (``wsi-composite serve --workers N``),
nginx ``worker_processes N``.
Both run without an access log (nginx ``access_log off``, ours ``--quiet``). The load average
at the start and the end is printed and recorded: nginx's rate is bounded by the load
generator, so it moves with whatever else the machine is doing — compare runs made together.

Without ``--dir``, ROOT also holds the SVS itself (``slide.svs`` beside the converted ``slide/``),
and two more jobs run in the same rounds: **virtual**, the same block names fetched from our
server's virtual CWS directory of the SVS (``/slides/slide.svs/Da<N>.jpg``: tiles copied from the
SVS per request, docs/serve.md), and **ceiling**, aiohttp's own rate on this machine
(``benchmarks/aiohttp_ceiling.py``: the same low-level server, workers and client, one constant
body of the median block size, no handler work). The targets of issue #17 are printed with the
ratios: virtual >= 90 % of static req/s with p99 within 1.5x, static >= 85 % of the ceiling,
static p99 within 2x of nginx's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WEB = REPO / "composite" / "web"  # the viewer, served by nginx as our server serves it
sys.path.insert(0, str(REPO))

from benchmarks.http_servers import composite_server, cpu_seconds, load, nginx_server  # noqa: E402
from composite.cli.serve import default_processes  # noqa: E402
from composite.convert import WriteOptions, convert  # noqa: E402
from composite.synthetic import write_synthetic_slide  # noqa: E402

CACHE = HERE / "cache" / "serve"
RESULTS = HERE / "results"

WRK_SCRIPT = """\
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""


def slide_root(width: int, height: int) -> Path:
    """ROOT with a synthetic SVS (``slide.svs``) and its CWS conversion (``slide/``), made once and cached."""
    root = CACHE / f"root-{width}x{height}"
    if not (root / "slide" / "FinalScan.ini").exists() or not (root / "slide.svs").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        svs = write_synthetic_slide(CACHE / f"synthetic-{width}x{height}.svs", width=width, height=height)
        shutil.rmtree(root, ignore_errors=True)
        convert(svs, root / "slide", to="cws", options=WriteOptions(parents=True))
        shutil.copy(svs, root / "slide.svs")
    return root


@contextlib.contextmanager
def ceiling_server(workers: int, size: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """benchmarks/aiohttp_ceiling.py on a free port; yields (base URL, process)."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "aiohttp_ceiling.py"), "--workers", str(workers), "--size", str(size)],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"aiohttp_ceiling.py did not start: {url!r}")
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_wrk(base: str, script: Path, *, connections: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), base.rstrip("/")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def millis(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            raise RuntimeError(f"wrk output without a {label}% line:\n{out}")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout) (\d+)", out))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"requests": requests, "req_per_s": rate, "p50_ms": millis("50"), "p99_ms": millis("99"), "errors": errors}


def _python_client(base: str, paths: list[str], connections: int, seconds: float, queue: Any) -> None:
    result = asyncio.run(load(base, paths, connections=connections, seconds=seconds))
    latencies = sorted(result.latencies) or [0.0]
    queue.put(
        {
            "requests": result.requests,
            "req_per_s": result.requests / result.seconds,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "errors": sum(result.errors.values()),
        }
    )


def run_python(base: str, paths: list[str], *, connections: int, seconds: float) -> dict[str, Any]:
    queue: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_python_client, args=(base, paths, connections, seconds, queue))
    process.start()
    result: dict[str, Any] = queue.get(timeout=seconds + 120)
    process.join()
    return result


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in rounds)
    return {
        "requests": requests,
        "req_per_s": statistics.mean(r["req_per_s"] for r in rounds),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": max(r["p99_ms"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "cpu_us_per_request": statistics.mean(r["cpu_us_per_request"] for r in rounds),
        "rounds": rounds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="a ROOT of CWS directories (default: a converted synthetic slide)")
    parser.add_argument("--size", default="20000x15000", help="synthetic slide size when --dir is not given")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--warmup",
        type=float,
        default=10.0,
        help="seconds of load per job before measuring (fills the page cache and our block cache; the"
        " virtual job's first fetch of each block reads the SVS)",
    )
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_processes(),
        help=f"worker processes for both servers (default: one per CPU core, {default_processes()} here)",
    )
    parser.add_argument("--cache-mb", type=int, help="our server's --cache-mb (default: its default)")
    args = parser.parse_args()

    if args.dir:
        root = args.dir.resolve()
    else:
        width, height = (int(v) for v in args.size.split("x"))
        root = slide_root(width, height)
    paths = sorted("slides/" + p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    if not paths:
        print(f"{root}: no .jpg blocks below it", file=sys.stderr)
        return 2
    # The same names from the virtual CWS directory of the SVS beside the converted slide.
    virtual = [] if args.dir else [p.replace("slides/slide/", "slides/slide.svs/", 1) for p in paths]
    block_size = int(statistics.median((root / p.removeprefix("slides/")).stat().st_size for p in paths))
    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        print("nginx is not installed (apt-get install nginx)", file=sys.stderr)
        return 2
    load_start = round(os.getloadavg()[0], 2)
    print(
        f"{len(paths)} blocks under {root}; client {client}, {args.connections} connections,"
        f" {args.workers} worker process(es) each, our --cache-mb {args.cache_mb or 'default'},"
        f" {args.rounds} rounds of {args.seconds:g} s per server",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        scripts: dict[str, Path] = {}
        for kind, urls in (("static", paths), ("virtual", virtual), ("ceiling", ["block.jpg"])):
            url_list = Path(tmp) / f"{kind}.txt"
            url_list.write_text("".join(f"/{p}\n" for p in urls))
            scripts[kind] = Path(tmp) / f"{kind}.lua"
            scripts[kind].write_text(WRK_SCRIPT % url_list)
        lists = {"static": paths, "virtual": virtual, "ceiling": ["block.jpg"]}

        def measure(base: str, pid: int, seconds: float, kind: str = "static") -> dict[str, Any]:
            before = cpu_seconds(pid)
            if client == "wrk":
                result = run_wrk(base, scripts[kind], connections=args.connections, seconds=seconds)
            else:
                result = run_python(base, lists[kind], connections=args.connections, seconds=seconds)
            # CPU per request moves less with what else the machine is doing than req/s does.
            result["cpu_us_per_request"] = (cpu_seconds(pid) - before) / max(result["requests"], 1) * 1e6
            return result

        cache = ["--cache-mb", str(args.cache_mb)] if args.cache_mb is not None else []
        with (
            composite_server(root, "--quiet", "--workers", str(args.workers), *cache) as (ours, ours_process),
            nginx_server(WEB, root, Path(tmp) / "nginx", workers=args.workers) as (
                theirs,
                theirs_process,
            ),
            ceiling_server(args.workers, block_size) as (bare, bare_process),
        ):
            jobs = [("composite", ours, ours_process.pid, "static")]
            if virtual:
                jobs.append(("virtual", ours, ours_process.pid, "virtual"))
            jobs += [("ceiling", bare, bare_process.pid, "ceiling"), ("nginx", theirs, theirs_process.pid, "static")]
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in jobs}
            for _, base, pid, kind in jobs:
                measure(base, pid, args.warmup, kind)  # warm-up: page cache, block cache, the slide opened
            for _ in range(args.rounds):
                for name, base, pid, kind in jobs:
                    rounds[name].append(measure(base, pid, args.seconds, kind))

    results = {name: combine(r) for name, r in rounds.items()}
    ratio = results["composite"]["req_per_s"] / results["nginx"]["req_per_s"]
    print(f"{'job':<12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'CPU us/req':>12}")
    for name, r in results.items():
        print(
            f"{name:<12}{r['req_per_s']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['errors']:>8}"
            f"{r['cpu_us_per_request']:>12.1f}"
        )
    static, ceiling, nginx = results["composite"], results["ceiling"], results["nginx"]
    print(f"ratio composite/nginx: {ratio:.1%} of nginx's requests per second")
    targets = {
        "static/ceiling req/s": (static["req_per_s"] / ceiling["req_per_s"], ">= 85%"),
        "static/nginx p99": (static["p99_ms"] / nginx["p99_ms"], "<= 2x"),
    }
    if "virtual" in results:
        targets["virtual/static req/s"] = (results["virtual"]["req_per_s"] / static["req_per_s"], ">= 90%")
        targets["virtual/static p99"] = (results["virtual"]["p99_ms"] / static["p99_ms"], "<= 1.5x")
    for label, (value, target) in targets.items():
        shown = f"{value:.1%}" if "req/s" in label else f"{value:.2f}x"
        print(f"{label:<22}{shown:>8}   (target {target})")
    print(f"load average at start {load_start}, at end {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"serve-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "root": str(root),
                "client": client,
                "connections": args.connections,
                "workers": args.workers,
                "cache_mb": args.cache_mb,
                "seconds_per_round": args.seconds,
                "warmup_seconds": args.warmup,
                "ratio": ratio,
                "targets": {label: value for label, (value, _) in targets.items()},
                "block_size": block_size,
                "load_average": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
                **results,
            },
            indent=2,
        )
    )
    print(f"written {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
