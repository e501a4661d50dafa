"""Small files kept in memory for the server: bytes, validators and prebuilt response headers.

:class:`BlockCache` holds :class:`Block` objects (a small file's bytes with its ETag,
Last-Modified and the headers of a 200) by real path, bounded in bytes, evicting a random entry
when full; :class:`ByteCache` is a plain LRU of bytes (compressed text bodies). Nothing here
decides whether a file may be served — :func:`composite.server.files.resolve` does — and a kept
copy is only valid while the file's :func:`validator` (inode, device, mtime, size) is unchanged.
"""

from __future__ import annotations

import email.utils
import functools
import math
import os
import random
from collections import OrderedDict

from aiohttp import hdrs

__all__ = ["SMALL_FILE", "Block", "BlockCache", "ByteCache", "etag_of", "http_date", "read_small", "validator"]

SMALL_FILE = 1024 * 1024


@functools.lru_cache(maxsize=4096)
def _http_date(second: int) -> str:
    return email.utils.formatdate(second, usegmt=True)


def http_date(mtime: float) -> str:
    """Last-Modified for a file: rounded up to the second, as aiohttp's FileResponse does."""
    return _http_date(math.ceil(mtime))  # blocks written together share a second: format it once


def read_small(path: str) -> tuple[os.stat_result, bytes | None]:
    """The file's stat and, when it is small, its bytes (stat taken on the opened file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_size > SMALL_FILE:
            return st, None
        chunks = []
        remaining = st.st_size
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return st, b"".join(chunks)
    finally:
        os.close(fd)


def validator(st: os.stat_result) -> tuple[int, int, int, int]:
    """What must not change for a kept copy of a file to stay valid."""
    return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size)


def etag_of(st: os.stat_result) -> str:
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


class ByteCache:
    """File bodies keyed by path and stat fields; least recently used leave first."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._bytes = 0
        self._entries: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()

    def get(self, key: tuple[str, int, int, int]) -> bytes | None:
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def put(self, key: tuple[str, int, int, int], body: bytes) -> None:
        if len(body) > self._limit:
            return
        self._entries[key] = body
        self._bytes += len(body)
        while self._bytes > self._limit:
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old)


class Block:
    """A small file in memory with its validators and the headers of a 200 for it.

    ``st`` is the file's stat (for a virtual file: its source's, with an ``etag`` of its own).
    """

    __slots__ = ("body", "etag", "headers", "mtime", "plain", "validator")

    def __init__(
        self, body: bytes, st: os.stat_result, headers: dict[str, str], *, plain: bool, etag: str | None = None
    ) -> None:
        self.body = body
        self.validator = validator(st)
        self.etag = etag or etag_of(st)
        self.mtime = st.st_mtime
        self.headers = {**headers, hdrs.ETAG: self.etag, hdrs.LAST_MODIFIED: http_date(st.st_mtime)}
        self.plain = plain  # the same bytes for every client (text may be sent gzipped instead)


class BlockCache:
    """Small files by real path, bounded in bytes; a random entry leaves when it is full.

    Random eviction rather than LRU: a client walking through more blocks than fit (a viewer
    panning across a large slide, a crawler) would make LRU evict every block just before it is
    asked for again, so nothing would ever be served from memory; random eviction keeps about
    limit/working-set of them. Lookups also stay a plain dict access (no reordering per hit).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._bytes = 0
        self._entries: dict[str, Block] = {}
        self._paths: list[str] = []  # the keys again, so that a random one can be picked
        self._random = random.Random(0)
        self.get = self._entries.get

    def put(self, path: str, block: Block) -> None:
        size = len(block.body)
        if size > self._limit:
            return
        old = self._entries.get(path)
        if old is None:
            self._paths.append(path)
        else:
            self._bytes -= len(old.body)
        self._entries[path] = block
        self._bytes += size
        while self._bytes > self._limit:
            index = self._random.randrange(len(self._paths))
            self._paths[index], self._paths[-1] = self._paths[-1], self._paths[index]
            victim = self._entries.pop(self._paths.pop())
            self._bytes -= len(victim.body)
