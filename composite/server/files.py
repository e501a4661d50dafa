"""Static files from one directory tree, safely: path checks, validators, ranges, gzip for text.

``resolve`` maps a URL tail to a regular file under a base directory or refuses it: empty, ``.``
and ``..`` segments, hidden names (a leading dot), backslashes, NUL, drive letters and absolute
paths are refused before touching the disk, and a path whose real location (symlinks resolved)
is outside the base is refused after. Directories are never listed. Every refusal is a 404, so a
client cannot probe what exists outside the tree.

Small files (blocks are a few tens of kB) are read in one go on the event loop — a local read of
that size costs less than handing it to a thread — and kept with their response headers
(:mod:`composite.server.memory`, 64 MB by default) while their inode, device, mtime and size stay
the same, so a block asked for again costs the lstat calls of the path check and a dict lookup;
larger files are streamed in chunks read on a worker thread. Both follow the same rules: ETag
``"<mtime_ns>-<size>"`` (aiohttp's format), Last-Modified rounded up to the second, 304/412 on
conditional requests, one byte range per request. Text files (INI, HTML, JS, CSS, JSON) are
gzip-compressed for clients that accept it, with their own ETag; compressed bodies are cached by
(path, mtime, size), bounded in bytes.

Ranges follow RFC 9110 §14: ``bytes=a-b``, ``bytes=a-``, ``bytes=-n`` (unit case-insensitive,
ASCII digits only) on GET. A ``Range`` header with several ranges, one that does not parse (other
digits than ASCII ones included), a Range on HEAD or on an empty file is ignored (a 200 with the
whole file, as RFC 9110 allows); multipart range responses are not supported. A value beyond
2**63 - 1 (more than 19 significant digits: no file is that large) is a 416, as nginx answers.
``If-Range`` (§13.1.5) keeps the range only for the current ETag compared strongly (a weak tag
never matches) or an HTTP-date equal to Last-Modified; anything else gives the whole file.
A large file that cannot be sent in full (truncated or unreadable while being sent) ends with the
connection closed, so a short body is never taken for a complete one on a kept-alive connection.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import os
import re
import stat
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.helpers import parse_http_date
from multidict import CIMultiDictProxy

from .memory import SMALL_FILE, Block, BlockCache, ByteCache, etag_of, http_date, read_small, validator

CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_SHORT = "public, max-age=60"
CACHE_VIEWER = "public, max-age=300"
CACHE_API = "no-cache"

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".ini": "text/plain; charset=iso-8859-1",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
}
TEXT_SUFFIXES = frozenset({".ini", ".txt", ".html", ".js", ".mjs", ".css", ".json", ".map", ".svg"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})
FILE_CACHE_BYTES = 64 * 1024 * 1024
CHUNK = 256 * 1024
GZIP_MAX_FILE = 64 * 1024 * 1024
GZIP_CACHE_BYTES = 64 * 1024 * 1024
_SINGLE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
MAX_OFFSET = (1 << 63) - 1  # nginx's limit (off_t): a larger value is a 416 there and here
# Refused anywhere in a URL tail: a leading or doubled slash, a segment starting with a dot
# (hidden names, "." and ".."), an empty last segment, backslashes, NUL, a drive letter.
_REFUSED = re.compile(r"^/|//|(^|/)\.|/$|[\\\x00]|(^|/)[A-Za-z]:")


def suffix_of(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def content_type(path: str | Path) -> str:
    return CONTENT_TYPES.get(suffix_of(str(path)), "application/octet-stream")


def resolve(base: str | Path, tail: str) -> tuple[str, os.stat_result] | None:
    """The real path and stat of the regular file ``tail`` names under ``base`` (a real path), or None."""
    found = lookup(base, tail)
    if found is None or not stat.S_ISREG(found[1].st_mode):
        return None  # directories are never listed; devices, sockets and fifos never served
    return found


def lookup(base: str | Path, tail: str) -> tuple[str, os.stat_result] | None:
    """The real path and stat of what ``tail`` names under ``base`` (a real path), of any type,
    or None when the name is refused or leads outside ``base``."""
    if not tail or _REFUSED.search(tail):
        return None
    base_text = str(base)
    # Walk the components below the (already real) base with lstat: the common case has no
    # symlink and costs one lstat per component; any symlink sends the whole path to realpath.
    real = base_text
    try:
        for part in tail.split("/"):
            real = f"{real}/{part}"
            st = os.lstat(real)
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(f"{base_text}/{tail}")
                if not real.startswith(base_text + os.sep):
                    return None  # outside the tree, through a symlink
                # A symlink inside the tree may still point at a hidden name.
                if any(p.startswith(".") for p in real[len(base_text) + 1 :].split(os.sep)):
                    return None
                st = os.stat(real)
                break
    except (OSError, ValueError):
        return None
    return real, st


def _etag_matches(header: str, etags: tuple[str, ...]) -> bool:
    if header.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return any(etag in candidates for etag in etags)


def _validators(response: web.StreamResponse, etag: str, mtime: float) -> None:
    response.headers[hdrs.ETAG] = etag
    response.headers[hdrs.LAST_MODIFIED] = http_date(mtime)


def _has_conditions(headers: CIMultiDictProxy[str]) -> bool:
    """Whether a request may need anything but a plain 200 (ranges, validators)."""
    return (
        hdrs.RANGE in headers
        or hdrs.IF_NONE_MATCH in headers
        or hdrs.IF_MODIFIED_SINCE in headers
        or hdrs.IF_MATCH in headers
        or hdrs.IF_UNMODIFIED_SINCE in headers
    )


def precondition(request: web.BaseRequest, etags: tuple[str, ...], mtime: float) -> int | None:
    """412 or 304 when the request's conditional headers say so (RFC 9110 §13.2.2 order)."""
    if_match = request.headers.get(hdrs.IF_MATCH)
    if if_match is not None and not (if_match.strip() == "*" or etags[0] in {t.strip() for t in if_match.split(",")}):
        return 412
    if if_match is None and (since := request.if_unmodified_since) is not None and mtime > since.timestamp():
        return 412
    if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
    if if_none_match is not None:
        return 304 if _etag_matches(if_none_match, etags) else None
    if (since := request.if_modified_since) is not None and mtime <= since.timestamp():
        return 304
    return None


def _offset(digits: str) -> int:
    """The value of a run of ASCII digits, or -1 beyond :data:`MAX_OFFSET` (never a huge int())."""
    if len(digits) > 19:
        digits = digits.lstrip("0")
        if len(digits) > 19:
            return -1
    value = int(digits or "0")
    return value if value <= MAX_OFFSET else -1


def _if_range_holds(value: str, etag: str, mtime: float) -> bool:
    """RFC 9110 §13.1.5: an entity-tag compared strongly, or a date equal to Last-Modified."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag  # our ETags are strong: a weak tag never equals one
    since = parse_http_date(value)
    return since is not None and since.timestamp() == math.ceil(mtime)


def _byte_range(request: web.BaseRequest, size: int, etag: str, mtime: float) -> tuple[int, int] | None:
    """(start, stop) of the one range asked for; None for the whole file; (-1, -1) if unsatisfiable."""
    header = request.headers.get(hdrs.RANGE)
    if header is None or request.method != hdrs.METH_GET or size == 0:
        return None  # RFC 9110 §14.2: range handling is defined for GET only
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is not None and not _if_range_holds(if_range, etag, mtime):
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None  # several ranges, another unit, other digits, or garbage: ignore the header
    first, last = match.group(1), match.group(2)
    start = _offset(first) if first else 0
    end = _offset(last) if last else 0
    if start < 0 or end < 0:
        return (-1, -1)
    if first == "":
        start, stop = max(0, size - end), size
    else:
        if last != "" and end < start:
            return None  # an invalid range-spec: ignore the header
        stop = size if last == "" else min(end + 1, size)
    if start >= size or start >= stop:
        return (-1, -1)
    return start, stop


def answer_block(request: web.BaseRequest, block: Block) -> web.Response:
    """A 200, or 206/416 for a Range, of a file in memory whose preconditions have been checked."""
    size = len(block.body)
    span = _byte_range(request, size, block.etag, block.mtime)
    if span is None:
        return web.Response(body=block.body, headers=block.headers)
    start, stop = span
    if start < 0:
        return web.Response(status=416, headers={hdrs.CONTENT_RANGE: f"bytes */{size}"})
    return web.Response(
        body=block.body[start:stop],
        status=206,
        headers={**block.headers, hdrs.CONTENT_RANGE: f"bytes {start}-{stop - 1}/{size}"},
    )


class FileSender:
    """Builds responses for files already checked by :func:`resolve`.

    ``cache_control`` is sent with every file, except those whose suffix is in ``immutable``,
    which get :data:`CACHE_IMMUTABLE`.
    """

    def __init__(
        self, *, cache_control: str, immutable: frozenset[str] = frozenset(), cache_bytes: int = FILE_CACHE_BYTES
    ) -> None:
        self._cache_control = cache_control
        self._immutable = immutable
        self._gzip = ByteCache(GZIP_CACHE_BYTES)
        self._blocks = self.blocks = BlockCache(cache_bytes)

    def cache_control(self, suffix: str) -> str:
        return CACHE_IMMUTABLE if suffix in self._immutable else self._cache_control

    async def send(self, request: web.BaseRequest, path: str, st: os.stat_result) -> web.StreamResponse:
        """Answer for the file ``path`` whose stat :func:`resolve` gave (nothing is read for a 304)."""
        # The common case first, a block fetched without conditions: from memory it costs a dict
        # lookup and a comparison with the stat resolve has just taken.
        if not _has_conditions(request.headers):
            block = self._blocks.get(path)
            if block is not None and block.validator != (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size):
                block = None
            if block is None:
                suffix = suffix_of(path)
                if st.st_size <= SMALL_FILE and suffix not in TEXT_SUFFIXES:
                    try:
                        block = self._block(path, st, suffix)
                    except OSError:
                        raise web.HTTPNotFound() from None
            if block is not None and block.plain:
                return web.Response(body=block.body, headers=block.headers)
        return await self._send(request, path, st)

    def _block(self, path: str, st: os.stat_result, suffix: str) -> Block | None:
        """The small file ``path`` from memory when its stat has not changed, else read now."""
        block = self._blocks.get(path)
        if block is not None and block.validator == validator(st):
            return block
        st, data = read_small(path)
        if data is None:
            return None  # it grew past SMALL_FILE since resolve looked
        headers: dict[str, str] = {
            hdrs.CACHE_CONTROL: self.cache_control(suffix),
            hdrs.CONTENT_TYPE: CONTENT_TYPES.get(suffix, "application/octet-stream"),
            hdrs.ACCEPT_RANGES: "bytes",
        }
        text = suffix in TEXT_SUFFIXES
        if text:
            headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
        # Validators from the opened file's fstat, so they describe exactly the bytes read.
        block = Block(data, st, headers, plain=not text)
        if len(data) == st.st_size:
            self._blocks.put(path, block)
        return block

    async def _send(self, request: web.BaseRequest, path: str, st: os.stat_result) -> web.StreamResponse:
        h = request.headers
        suffix = suffix_of(path)
        cache_control = self.cache_control(suffix)
        headers: dict[str, str] = {
            hdrs.CACHE_CONTROL: cache_control,
            hdrs.CONTENT_TYPE: CONTENT_TYPES.get(suffix, "application/octet-stream"),
        }
        if suffix in TEXT_SUFFIXES:
            headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
            accepts_gzip = "gzip" in h.get(hdrs.ACCEPT_ENCODING, "").lower()
            if accepts_gzip and hdrs.RANGE not in h and st.st_size <= GZIP_MAX_FILE:
                return await self._send_gzip(request, path, st, headers)
        etag = etag_of(st)
        status = precondition(request, (etag,), st.st_mtime)
        if status is not None:
            response = web.Response(status=status, headers={hdrs.CACHE_CONTROL: cache_control})
            _validators(response, etag, st.st_mtime)
            return response
        block = None
        if st.st_size <= SMALL_FILE:
            try:
                block = self._block(path, st, suffix)
            except OSError:
                raise web.HTTPNotFound() from None
        if block is not None:
            return answer_block(request, block)
        headers[hdrs.ACCEPT_RANGES] = "bytes"
        span = _byte_range(request, st.st_size, etag, st.st_mtime)
        if span == (-1, -1):
            return web.Response(status=416, headers={hdrs.CONTENT_RANGE: f"bytes */{st.st_size}"})
        start, stop, status = 0, st.st_size, 200
        if span is not None:
            start, stop = span
            headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{stop - 1}/{st.st_size}"
            status = 206
        stream = web.StreamResponse(status=status, headers=headers)
        stream.content_length = stop - start
        _validators(stream, etag, st.st_mtime)
        await stream.prepare(request)
        if request.method != "HEAD" and not await _stream_file(stream, path, start, stop):
            # A short body must not be followed by another response on this connection: close it
            # (what was written is still flushed) and let aiohttp see the write_eof fail.
            request.protocol.force_close()
            return stream
        await stream.write_eof()
        return stream

    async def _send_gzip(
        self, request: web.BaseRequest, path: str, st: os.stat_result, headers: dict[str, str]
    ) -> web.StreamResponse:
        plain_etag = etag_of(st)
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}-gzip"'
        status = precondition(request, (etag, plain_etag), st.st_mtime)
        if status is not None:
            response = web.Response(status=status, headers={k: v for k, v in headers.items() if k != hdrs.CONTENT_TYPE})
            _validators(response, etag, st.st_mtime)
            return response
        key = (path, st.st_ino, st.st_mtime_ns, st.st_size)
        body = self._gzip.get(key)
        if body is None:
            body = await asyncio.get_running_loop().run_in_executor(None, _compress, path, st.st_size)
            self._gzip.put(key, body)
        headers[hdrs.CONTENT_ENCODING] = "gzip"
        response = web.Response(body=body, headers=headers)
        _validators(response, etag, st.st_mtime)
        return response


async def _stream_file(response: web.StreamResponse, path: str, start: int, stop: int) -> bool:
    """Send bytes [start, stop) of a large file in chunks read on a worker thread.

    False when they could not all be sent: the file shrank or failed to read, or the client left.
    """
    loop = asyncio.get_running_loop()
    try:
        handle = await loop.run_in_executor(None, open, path, "rb")
    except OSError:
        return False
    try:
        await loop.run_in_executor(None, handle.seek, start)
        remaining = stop - start
        while remaining > 0:
            chunk = await loop.run_in_executor(None, handle.read, min(CHUNK, remaining))
            if not chunk:
                return False  # the file shrank under us
            await response.write(chunk)
            remaining -= len(chunk)
        return True
    except OSError:  # a read error, or the client has gone (ConnectionError)
        return False
    finally:
        await loop.run_in_executor(None, handle.close)


def _compress(path: str, size: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(size + 1)
    return gzip.compress(data, compresslevel=6, mtime=0)
