"""A fuzz campaign: cases from every seed, each run as ``info`` plus one writing command.

Every case must end in success or exit 2 with one line naming a file of the case; a traceback,
a run past the time limit, a resident set over the memory limit, another exit status, a
malformed message or a ``.partial`` file left behind is a failure. Failing cases are kept as
reproducers (the case directory with ``repro.sh`` and ``result.txt``); passing ones are deleted.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import stat
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import runner
from .cases import Case, make_case
from .seeds import Seed, make_seeds


@dataclass
class Summary:
    cases: Counter[str] = field(default_factory=Counter)  # per format
    failures: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # class -> format
    reproducers: list[Path] = field(default_factory=list)
    runs: int = 0
    slowest: float = 0.0
    most_cpu: float = 0.0
    peak_rss: int = 0
    seconds: float = 0.0

    def total_failures(self) -> int:
        return sum(sum(c.values()) for c in self.failures.values())

    def lines(self) -> list[str]:
        out = [
            f"cases: {sum(self.cases.values())} ({', '.join(f'{k} {v}' for k, v in sorted(self.cases.items()))})",
            f"command runs: {self.runs}; slowest {self.slowest:.2f} s (most CPU {self.most_cpu:.2f} s); "
            f"peak RSS {self.peak_rss / 2**20:.0f} MiB; "
            f"duration {self.seconds:.0f} s",
        ]
        for name in ("traceback", "hang", "memory", "partial", "exit", "message", "noise"):
            per = self.failures.get(name, Counter())
            detail = f" ({', '.join(f'{k} {v}' for k, v in sorted(per.items()))})" if per else ""
            out.append(f"{name}: {sum(per.values())}{detail}")
        return out


def partial_files(directory: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            if name.endswith(".partial") or ".partial" in name:
                found.append(Path(root) / name)
    return found


def run_case(case: Case, *, timeout: float, rss_limit: int) -> tuple[list[str], list[runner.RunResult]]:
    problems: list[str] = []
    results = []
    for argv in case.argvs():
        result = runner.run(argv, case.directory, timeout=timeout, rss_limit=rss_limit)
        result.problems = runner.judge(result, case.directory, rss_limit=rss_limit)
        results.append(result)
        problems += result.problems
    if partial_files(case.directory):
        problems.append("partial")
    return sorted(set(problems)), results


def _remove(directory: Path) -> None:
    def onerror(func: Callable[..., object], path: str, exc: object) -> None:
        try:
            os.chmod(path, stat.S_IRWXU)
            func(path)
        except OSError:
            pass

    shutil.rmtree(directory, onerror=onerror)


def _keep(case: Case, problems: list[str], results: list[runner.RunResult]) -> None:
    script = ["#!/bin/sh", f"# {case.format} {case.seed}: {case.what}", 'cd "$(dirname "$0")"']
    script += [f"wsi-composite {shlex.join(r.argv)}" for r in results]
    (case.directory / "repro.sh").write_text("\n".join(script) + "\n")
    report = [f"problems: {', '.join(problems)}", f"case: {case.format} {case.seed} {case.what}"]
    for r in results:
        report += [
            f"$ wsi-composite {shlex.join(r.argv)}",
            f"status {r.status} killed {r.killed or '-'} {r.seconds:.2f} s (cpu {r.cpu:.2f} s)"
            f" rss {r.max_rss >> 20} MiB",
            f"problems: {', '.join(r.problems) or '-'}",
            "stderr:",
            r.stderr[-4000:],
        ]
    (case.directory / "result.txt").write_text("\n".join(report) + "\n")


def campaign(
    work: Path,
    *,
    seed: int,
    cases: int | None = None,
    seconds: float | None = None,
    formats: tuple[str, ...] | None = None,
    timeout: float = runner.TIMEOUT,
    rss_limit: int = runner.RSS_LIMIT,
    progress: Callable[[Summary], None] | None = None,
    seed_dir: Path | None = None,
) -> Summary:
    """Run cases until ``cases`` are done or ``seconds`` have passed; failures stay under ``work``."""
    rng = random.Random(seed)
    seeds: list[Seed] = make_seeds(seed_dir or work / "seeds")
    if formats:
        seeds = [s for s in seeds if s.format in formats]
    summary = Summary()
    start = time.monotonic()
    index = 0
    while (cases is None or index < cases) and (seconds is None or time.monotonic() - start < seconds):
        chosen = seeds[index % len(seeds)]
        case_rng = random.Random(rng.getrandbits(64))
        directory = work / f"case-{seed}-{index:06d}-{chosen.format}"
        if directory.exists():
            _remove(directory)
        case = make_case(chosen, case_rng, directory)
        problems, results = run_case(case, timeout=timeout, rss_limit=rss_limit)
        summary.cases[case.format] += 1
        summary.runs += len(results)
        summary.slowest = max([summary.slowest, *(r.seconds for r in results)])
        summary.most_cpu = max([summary.most_cpu, *(r.cpu for r in results)])
        summary.peak_rss = max([summary.peak_rss, *(r.max_rss for r in results)])
        for problem in problems:
            summary.failures[problem][case.format] += 1
        if problems:
            _keep(case, problems, results)
            summary.reproducers.append(directory)
        else:
            _remove(directory)
        index += 1
        if progress:
            progress(summary)
    summary.seconds = time.monotonic() - start
    return summary
