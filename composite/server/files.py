"""Static files from one directory tree, safely: path checks, caching headers, gzip for text.

``resolve`` maps a URL tail to a regular file under a base directory or refuses it: empty, ``.``
and ``..`` segments, hidden names (a leading dot), backslashes, NUL, drive letters and absolute
paths are refused before touching the disk, and a path whose real location (symlinks resolved)
is outside the base is refused after. Directories are never listed. Every refusal is a 404, so a
client cannot probe what exists outside the tree.

Binary files go out through aiohttp's ``FileResponse`` (sendfile, single Range requests,
ETag/Last-Modified and 304s). Text files (INI, HTML, JS, CSS, JSON) are gzip-compressed for
clients that accept it, with their own ETag for the compressed variant; compressed bodies are
cached in memory by (path, mtime, size), bounded in total bytes. A ``Range`` header with several
ranges, or one that does not parse, is ignored (a 200 with the whole file, as RFC 9110 allows).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import stat
from collections import OrderedDict
from pathlib import Path

from aiohttp import hdrs, web

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
GZIP_MAX_FILE = 64 * 1024 * 1024
GZIP_CACHE_BYTES = 64 * 1024 * 1024
_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_BAD_SEGMENT = re.compile(r"[\\\x00]|^[A-Za-z]:")


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def resolve(base: Path, tail: str) -> Path | None:
    """The regular file ``tail`` names under ``base`` (a real path), or None when refused."""
    if not tail or tail.startswith("/"):
        return None
    parts = tail.split("/")
    for part in parts:
        if not part or part.startswith(".") or _BAD_SEGMENT.search(part):
            return None
    real = os.path.realpath(os.path.join(base, *parts))
    base_text = str(base)
    if not real.startswith(base_text + os.sep):
        return None  # outside the tree, through a symlink
    # A symlink inside the tree may still point at a hidden name.
    if any(part.startswith(".") for part in real[len(base_text) + 1 :].split(os.sep)):
        return None
    try:
        if not stat.S_ISREG(os.stat(real).st_mode):
            return None  # directories are never listed; devices, sockets and fifos never served
    except OSError:
        return None
    return Path(real)


def _etag_matches(header: str, etags: tuple[str, ...]) -> bool:
    if header.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return any(etag in candidates for etag in etags)


class _GzipCache:
    """Compressed text bodies keyed by (path, mtime_ns, size); least recently used leave first."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._bytes = 0
        self._entries: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()

    def get(self, key: tuple[str, int, int]) -> bytes | None:
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def put(self, key: tuple[str, int, int], body: bytes) -> None:
        if len(body) > self._limit:
            return
        self._entries[key] = body
        self._bytes += len(body)
        while self._bytes > self._limit:
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old)


def _compress(path: Path, size: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(size + 1)
    return gzip.compress(data, compresslevel=6, mtime=0)


class FileSender:
    """Builds responses for files already checked by :func:`resolve`."""

    def __init__(self) -> None:
        self._gzip = _GzipCache(GZIP_CACHE_BYTES)

    async def send(self, request: web.Request, path: Path, *, cache_control: str) -> web.StreamResponse:
        suffix = path.suffix.lower()
        if suffix in TEXT_SUFFIXES and "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower():
            st = os.stat(path)
            if st.st_size <= GZIP_MAX_FILE and hdrs.RANGE not in request.headers:
                return await self._send_gzip(request, path, st, cache_control=cache_control)
        headers = {hdrs.CACHE_CONTROL: cache_control, hdrs.CONTENT_TYPE: content_type(path)}
        if suffix in TEXT_SUFFIXES:
            headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
        response = web.FileResponse(path, headers=headers)
        rng = request.headers.get(hdrs.RANGE)
        if rng is not None and not _SINGLE_RANGE.match(rng.strip()):
            # aiohttp answers 416 to several ranges; ignoring the header is the friendlier legal answer.
            plain = request.clone(headers={k: v for k, v in request.headers.items() if k.lower() != "range"})
            await response.prepare(plain)
        return response

    async def _send_gzip(
        self, request: web.Request, path: Path, st: os.stat_result, *, cache_control: str
    ) -> web.StreamResponse:
        plain_etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}-gzip"'
        headers = {hdrs.CACHE_CONTROL: cache_control, hdrs.ETAG: etag, hdrs.VARY: hdrs.ACCEPT_ENCODING}
        if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
        # Same rules as FileResponse: If-None-Match wins over If-Modified-Since; Last-Modified is
        # rounded up to the second, so an mtime with a fraction still revalidates.
        if (if_none_match is not None and _etag_matches(if_none_match, (etag, plain_etag))) or (
            if_none_match is None
            and (since := request.if_modified_since) is not None
            and st.st_mtime <= since.timestamp()
        ):
            not_modified = web.Response(status=304, headers=headers)
            not_modified.last_modified = st.st_mtime
            return not_modified
        key = (str(path), st.st_mtime_ns, st.st_size)
        body = self._gzip.get(key)
        if body is None:
            body = await asyncio.get_running_loop().run_in_executor(None, _compress, path, st.st_size)
            self._gzip.put(key, body)
        headers[hdrs.CONTENT_ENCODING] = "gzip"
        headers[hdrs.CONTENT_TYPE] = content_type(path)
        response = web.Response(body=body, headers=headers)
        response.last_modified = st.st_mtime
        return response
