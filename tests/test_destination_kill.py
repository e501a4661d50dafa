"""Replacing an output is crash-safe, and failures and signals leave nothing behind.

Each replacement step is hit with SIGKILL (``COMPOSITE_TEST_KILL_AT``, the process kills itself
there); the destination must then hold the old complete output or the new complete one (compared
byte for byte with reference runs), and the next run must leave only the new output. The
fallback without ``renameat2`` (``COMPOSITE_TEST_NO_EXCHANGE``) may leave no destination after
its first rename; :func:`composite.destination.repair` (which every run calls first) must put the
old one back. SIGTERM and SIGINT while writing, a file-size limit (``ulimit -f``) and third-party
log lines are checked through the command line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composite.cli import main
from composite.replace import repair
from composite.synthetic import write_synthetic_slide

ROOT = Path(__file__).resolve().parent.parent
State = dict[str, str]


def state(path: Path) -> State | None:
    """Relative path -> SHA-1 of every file of ``path`` (a file or a directory); None if absent."""
    if not os.path.lexists(path):
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): hashlib.sha1(p.read_bytes()).hexdigest() for p in files}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".partial", ".old")))


def cli(*args: str | Path, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "composite", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        **{"cwd": ROOT, **kwargs},  # type: ignore[call-overload]
    )


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two different sources and, for each output kind, the reference output of each."""
    root = tmp_path_factory.mktemp("kill")
    out = {
        "old": write_synthetic_slide(root / "old.svs", width=600, height=400, tile_size=240, min_level_size=256),
        "new": write_synthetic_slide(root / "new.svs", width=760, height=520, tile_size=240, min_level_size=256),
    }
    for name in ("old", "new"):
        for kind, suffix in (("svs", ".svs"), ("cws", "")):
            ref = root / f"ref-{name}-{kind}{suffix}"
            assert main(["convert", str(out[name]), str(ref), "--to", kind, "--quiet"]) == 0
            out[f"{name}-{kind}"] = ref
    return out


CASES = [
    ("svs", False, "written", "old"),
    ("svs", False, "replaced", "new"),
    ("cws", False, "written", "old"),
    ("cws", False, "exchanged", "new"),
    ("cws", True, "written", "old"),
    ("cws", True, "moved-old", None),  # the fallback's window: repaired by the next run
    ("cws", True, "moved-new", "new"),
]


@pytest.mark.parametrize(("kind", "fallback", "step", "holds"), CASES)
def test_kill_at_each_step(
    slides: dict[str, Path], tmp_path: Path, kind: str, fallback: bool, step: str, holds: str | None
) -> None:
    dst = tmp_path / ("out.svs" if kind == "svs" else "out")
    assert main(["convert", str(slides["old"]), str(dst), "--to", kind, "--quiet"]) == 0
    old, new = state(slides[f"old-{kind}"]), state(slides[f"new-{kind}"])
    assert state(dst) == old and old != new
    env = {"COMPOSITE_TEST_KILL_AT": step, **({"COMPOSITE_TEST_NO_EXCHANGE": "1"} if fallback else {})}
    killed = cli("convert", slides["new"], dst, "--to", kind, "--overwrite", "--quiet", env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if holds is None:
        assert state(dst) is None and leftovers(tmp_path)  # between the fallback's two renames
        repair(dst)
        assert state(dst) == old
    else:
        assert state(dst) == (old if holds == "old" else new)
        if step != "replaced":
            assert leftovers(tmp_path), "a kill before the clean-up leaves a temporary name"
    again = cli("convert", slides["new"], dst, "--to", kind, "--overwrite", "--quiet")
    assert again.returncode == 0, again.stderr
    assert state(dst) == new and leftovers(tmp_path) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_while_installing_deletes_the_temporary_output(
    slides: dict[str, Path], tmp_path: Path, signum: int, code: int
) -> None:
    dst = tmp_path / "out"
    assert main(["convert", str(slides["old"]), str(dst), "--to", "cws", "--quiet"]) == 0
    command = [sys.executable, "-m", "composite", "convert", str(slides["new"]), str(dst), "--overwrite", "--quiet"]
    env = {**os.environ, "COMPOSITE_TEST_PAUSE_AT": "written"}
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env) as process:
        assert process.stderr is not None
        assert process.stderr.readline() == "paused at written\n"
        assert leftovers(tmp_path)  # the complete new output, not yet in place
        process.send_signal(signum)
        rest = process.stderr.read()
        assert process.wait(timeout=60) == code, rest
    assert rest.count("\n") == 1 and "wsi-composite:" in rest
    assert state(dst) == state(slides["old-cws"]) and leftovers(tmp_path) == []


def test_sigterm_while_writing(tmp_path: Path) -> None:
    """SIGTERM as soon as the temporary output appears, with the writer's threads busy."""
    source = write_synthetic_slide(tmp_path / "big.svs", width=4000, height=3000, tile_size=240)
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "composite", "convert", str(source), str(out / "x"), "--to", "cws"]
    with subprocess.Popen([*command, "--tile-size", "500", "--quiet"], cwd=ROOT, stderr=subprocess.PIPE) as process:
        while process.poll() is None and not leftovers(out):
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    assert code in (143, 0)  # 0 only if it finished first (then x is complete)
    assert leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == ([] if code == 143 else ["x"])


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (8_000, 8_000))


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "{src}", "{dir}/x.svs"],
        ["convert", "{src}", "{dir}/x", "--to", "cws", "--tile-size", "500"],
        ["convert", "{src}", "{dir}/x.aci", "--piece-size", "256"],
        ["export", "{src}", "{dir}/e", "--levels", "0", "--format", "tiff"],
        ["redact", "{src}", "{dir}/x.tif", "--box", "0,0,100,100"],
        ["export", "{src}", "{dir}/e", "--associated"],
    ],
)
def test_file_size_limit_is_one_line_and_leaves_nothing(
    slides: dict[str, Path], tmp_path: Path, argv: list[str]
) -> None:
    source = slides["new"]
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(src=source, dir=out) for a in argv]
    result = cli(*args, "--quiet", preexec_fn=_limit_file_size)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "File too large" in result.stderr, result.stderr
    assert list(out.iterdir()) == []


def test_the_lead_smoke_same_file(tmp_path: Path) -> None:
    source = write_synthetic_slide(tmp_path / "s.svs", width=600, height=400, tile_size=240)
    before = state(source)
    result = cli("convert", "s.svs", "s.svs", "--overwrite", "--quiet", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert state(source) == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.svs"]


def test_third_party_log_lines_only_with_verbose(
    slides: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """In-process, pytest's handler stands for stderr (the CLI adds a stderr handler only when
    logging has none)."""
    from composite.cli import info

    describe = info.describe

    def noisy(slide):  # type: ignore[no-untyped-def]
        logging.getLogger("tifffile").warning("tifffile noise")
        return describe(slide)

    monkeypatch.setattr(info, "describe", noisy)
    assert main(["info", str(slides["old"])]) == 0
    assert "noise" not in caplog.text
    assert main(["info", str(slides["old"]), "--verbose"]) == 0
    assert caplog.text.count("tifffile noise") == 1
    assert main(["--verbose", "info", str(slides["old"])]) == 0
    assert caplog.text.count("tifffile noise") == 2
