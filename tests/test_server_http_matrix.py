"""Range, If-Range and the conditional headers, every combination, against an oracle.

The oracle below is written from RFC 9110 (§13.1, §13.2.2, §14) as plainly as possible, plus the
choices docs/serve.md states (several ranges, an invalid or non-ASCII range, a Range on HEAD or on
an empty file: ignored, 200; a value beyond 2**63 - 1: 416, as nginx). Each request goes over a
raw socket to the real ``wsi-composite serve`` and its status, Content-Range, Content-Length and
body are compared with the oracle's; the server's log must hold no traceback. The same requests
go to nginx where nginx follows the same rules (it answers a malformed Range with 416, compares
If-Modified-Since for equality only, requires If-None-Match and If-Modified-Since to agree and
answers an invalid If-Unmodified-Since date with 412),
which checks the oracle itself against an independent implementation.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.http_servers import composite_server, nginx_server
from composite.server import web_directory
from tests.http_raw import RawClient

REPO = Path(__file__).resolve().parent.parent
MAX_OFFSET = 2**63 - 1
MTIME_NS = 1_700_000_000_250_000_000  # a fraction of a second: Last-Modified must be rounded one way
# a block, an INI (text: gzip for clients that ask, none here), a streamed file, an empty file
FILES = {"Da1.jpg": 40_000, "ScanLevel1.ini": 3_000, "Macro.jpg": 1_500_000, "empty.jpg": 0}
Headers = list[tuple[str, str]]


def http_date(seconds: float, form: str = "imf") -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    pattern = {
        "imf": "%a, %d %b %Y %H:%M:%S GMT",
        "rfc850": "%A, %d-%b-%y %H:%M:%S GMT",
        "asctime": "%a %b %e %H:%M:%S %Y",
    }
    return moment.strftime(pattern[form])


def parse_date(text: str) -> float | None:
    """The three HTTP-date forms of RFC 9110 §5.6.7; None for anything else."""
    for pattern in ("%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y"):
        try:
            moment = datetime.datetime.strptime(" ".join(text.split()), pattern)
        except ValueError:
            continue
        return moment.replace(tzinfo=datetime.UTC).timestamp()
    return None


def number(digits: str) -> int:
    """An ASCII digit string's value, capped just above MAX_OFFSET (no int() of 5,000 digits)."""
    significant = digits.lstrip("0")
    return MAX_OFFSET + 1 if len(significant) > 19 else int(significant or "0")


def oracle(method: str, headers: Headers, size: int, etag: str, modified: str) -> tuple[int, int, int]:
    """(status, start, stop) that RFC 9110 and our stated choices give; the body is data[start:stop]."""
    h = dict(headers)
    last_modified = parse_date(modified)
    assert last_modified is not None
    if "If-Match" in h:  # §13.2.2 step 1, strong comparison
        if h["If-Match"].strip() != "*" and etag not in [t.strip() for t in h["If-Match"].split(",")]:
            return 412, 0, 0
    elif "If-Unmodified-Since" in h:  # step 2, only without If-Match
        since = parse_date(h["If-Unmodified-Since"])
        if since is not None and last_modified > since:
            return 412, 0, 0
    if "If-None-Match" in h:  # step 3, weak comparison
        tags = [t.strip() for t in h["If-None-Match"].split(",")]
        if "*" in tags or etag.removeprefix("W/") in [t.removeprefix("W/") for t in tags]:
            return 304, 0, 0
    elif "If-Modified-Since" in h:  # step 4, only without If-None-Match
        since = parse_date(h["If-Modified-Since"])
        if since is not None and last_modified <= since:
            return 304, 0, 0
    whole = (200, 0, size)
    if "Range" not in h or method != "GET" or size == 0:
        return whole
    if "If-Range" in h:  # step 5 / §13.1.5
        validator = h["If-Range"]
        if validator.startswith('"'):
            holds = validator == etag
        elif validator.startswith("W/"):
            holds = False
        else:
            holds = parse_date(validator) == last_modified
        if not holds:
            return whole
    unit, _, spec = h["Range"].partition("=")
    first, dash, last = spec.partition("-")
    if unit.lower() != "bytes" or not dash or "," in spec or "-" in last:
        return whole
    if not all(c in "0123456789" for c in first + last) or first == last == "":
        return whole
    if first and last and number(last) < number(first):
        return whole  # an invalid range-spec: the header is ignored
    if number(first) > MAX_OFFSET or number(last) > MAX_OFFSET:
        return 416, 0, 0
    if first == "":
        if number(last) == 0:
            return 416, 0, 0
        return 206, max(0, size - number(last)), size
    if number(first) >= size:
        return 416, 0, 0
    return 206, number(first), size if last == "" else min(number(last) + 1, size)


def ranges(size: int) -> list[tuple[str, bool]]:
    """(Range value, whether nginx answers it as RFC 9110 and we do)."""
    n = max(size, 1)
    nines = "9" * 5000
    return [
        ("bytes=0-0", True), ("bytes=0-9", True), ("bytes=5-", True), ("bytes=-5", True), ("bytes=-0", True),
        ("bytes=0-", True), (f"bytes={n - 1}-", True), (f"bytes={n}-", True), (f"bytes={n + 5}-99999999", True),
        (f"bytes=0-{n + 100}", True), (f"bytes=-{n + 100}", True), (f"bytes={max(0, n - 10)}-{n - 1}", True),
        ("Bytes=0-5", True), ("BYTES=-3", True), ("items=0-5", True), ("bytes=", True),
        ("bytes=" + "0" * 30 + "5-9", True), (f"bytes={MAX_OFFSET}-", True), (f"bytes=0-{MAX_OFFSET}", True),
        (f"bytes={MAX_OFFSET + 1}-", True), (f"bytes=0-{2**64}", True), (f"bytes={nines}-", True),
        (f"bytes=0-{nines}", True), (f"bytes=-{nines}", True),
        # nginx differs: it answers these 416 (or multipart) where RFC 9110 lets us ignore them
        ("bytes=10-5", False), ("bytes=0-1,3-4", False), ("bytes=abc", False), ("bytes=-", False),
        ("bytes=1-2-3", False), ("bytes=5 - 9", False), ("bytes=\u0660-\u0665", False),
        ("bytes=\uff10-\uff15", False), ("bytes=1\u0665-20", False), ("bytes=+5-9", False),
    ]  # fmt: skip


def if_ranges(etag: str, modified: float) -> list[str | None]:
    return [
        None, etag, "W/" + etag, '"other"', http_date(modified), http_date(modified + 1), http_date(modified - 1),
        http_date(modified, "rfc850"), http_date(modified, "asctime"), "garbage", "",
    ]  # fmt: skip


def conditions(etag: str, modified: float) -> list[tuple[Headers, bool]]:
    """If-None-Match / If-Modified-Since / If-Match / If-Unmodified-Since sets, and whether nginx
    follows RFC 9110 on them."""
    now = [("If-Modified-Since", http_date(modified))]
    return [
        ([], True), ([("If-None-Match", etag)], True), ([("If-None-Match", "W/" + etag)], True),
        ([("If-None-Match", '"other"')], True), ([("If-None-Match", f'"other", {etag}')], True),
        ([("If-None-Match", "*")], True), (now, True), ([("If-Modified-Since", http_date(modified - 3600))], True),
        ([("If-Modified-Since", "yesterday")], True), ([("If-Modified-Since", http_date(modified, "rfc850"))], True),
        ([("If-Modified-Since", http_date(modified + 3600))], False),  # nginx: exact dates only
        ([("If-None-Match", '"other"'), *now], False),  # nginx: both must say "not modified"
        ([("If-None-Match", etag), ("If-Modified-Since", http_date(modified - 3600))], False),
        ([("If-Match", etag)], True), ([("If-Match", '"other"')], True), ([("If-Match", "W/" + etag)], True),
        ([("If-Match", "*")], True), ([("If-Unmodified-Since", http_date(modified))], True),
        ([("If-Unmodified-Since", http_date(modified - 3600))], True),
        ([("If-Unmodified-Since", "soon")], False),  # nginx: 412, where §13.1.4 says ignore an invalid date
        ([("If-Match", '"other"'), ("If-None-Match", etag)], True),  # 412 before 304
    ]  # fmt: skip


def cases(size: int, etag: str, modified: str) -> Iterator[tuple[str, Headers, bool]]:
    """(method, headers, comparable with nginx) for one file and one server's validators."""
    seconds = parse_date(modified)
    assert seconds is not None
    for value, same in ranges(size):
        for if_range in if_ranges(etag, seconds):
            yield "GET", [("Range", value)] + ([("If-Range", if_range)] if if_range is not None else []), same
        yield "HEAD", [("Range", value)], False  # nginx sends 206 to HEAD; §14.2 defines ranges for GET only
    for headers, same in conditions(etag, seconds):
        for extra in ([], [("Range", "bytes=0-9")], [("Range", f"bytes={size}-")]):
            yield "GET", headers + extra, same
        yield "HEAD", headers, same


async def run_matrix(port: int, root: Path, *, nginx: bool) -> tuple[int, list[str]]:
    """Every case against every file; returns the request count and the mismatches."""
    client = RawClient("127.0.0.1", port)
    wrong: list[str] = []
    count = 0
    try:
        for name in FILES:
            data = (root / "slide" / name).read_bytes()
            target = f"/slides/slide/{name}"
            plain = await client.request("GET", target)
            etag, modified = plain.headers["etag"], plain.headers["last-modified"]
            for method, headers, comparable in cases(len(data), etag, modified):
                if nginx and not (comparable and data):
                    continue
                count += 1
                got = await client.request(method, target, headers)
                status, start, stop = oracle(method, headers, len(data), etag, modified)
                problems = []
                if got.status != status:
                    problems.append(f"status {got.status} (expected {status})")
                elif status in (200, 206):
                    if method == "GET" and got.body != data[start:stop]:
                        problems.append(f"body of {len(got.body)} bytes (expected [{start}:{stop}])")
                    length = got.headers.get("content-length", None if method == "GET" else str(stop - start))
                    if length != str(stop - start):  # optional in an answer to HEAD (RFC 9110 §8.6)
                        problems.append(f"Content-Length {got.headers.get('content-length')} (expected {stop - start})")
                expected_range = {206: f"bytes {start}-{stop - 1}/{len(data)}", 416: f"bytes */{len(data)}"}.get(status)
                if got.status == status and got.headers.get("content-range") != expected_range:
                    problems.append(f"Content-Range {got.headers.get('content-range')!r} (expected {expected_range!r})")
                if problems:
                    wrong.append(f"{method} {name} {[(k, v[:40]) for k, v in headers]}: {'; '.join(problems)}")
    finally:
        await client.close()
    return count, wrong


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("matrix")
    (root / "slide").mkdir()
    generator = random.Random(21)
    for name, size in FILES.items():
        path = root / "slide" / name
        path.write_bytes(generator.randbytes(size))
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return root


def _record(name: str, text: str) -> None:
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / name).write_text(text)


def test_matrix_against_the_oracle(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with composite_server(root, "--quiet", "--workers", "1", log=log) as (url, process):
        count, wrong = asyncio.run(run_matrix(int(url.rsplit(":", 1)[1].strip("/")), root, nginx=False))
        assert process.poll() is None
    text = log.read_text()
    _record("http-matrix.txt", f"composite: {count} requests, {len(wrong)} wrong\n" + "\n".join(wrong[:50]))
    assert count >= 200
    assert wrong == []
    assert "Traceback" not in text and "Error handling request" not in text, text[:2000]


def test_nginx_agrees_with_the_oracle(root: Path, tmp_path: Path) -> None:
    """Where nginx's rules are RFC 9110's, it gives the oracle's answers: the oracle is not ours alone."""
    with nginx_server(web_directory(), root, tmp_path / "nginx") as (url, _):
        count, wrong = asyncio.run(run_matrix(int(url.rsplit(":", 1)[1].strip("/")), root, nginx=True))
    _record("http-matrix-nginx.txt", f"nginx: {count} requests, {len(wrong)} wrong\n" + "\n".join(wrong[:50]))
    assert count >= 200
    assert wrong == []
