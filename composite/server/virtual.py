"""Virtual CWS directories: slides stored as SVS, TIFF, DICOM or ACI, served as the CWS directory
``convert --to cws`` writes for them, one file at a time.

A slide at ``ROOT/a/case.svs`` (or a DICOM series directory ``ROOT/a/series/``) answers at
``/slides/a/case.svs/<name>`` for the names of :class:`composite.formats.cws.layout.CwsLayout`
under the plan ``convert`` makes with default options (``FinalScan.ini``, ``ScanLevel<k>.ini``,
``ScanSlide.ini``, ``Da<N>.jpg``, ``L<k>Da<N>.jpg``, ``SlideThumb.jpg``, ``Ss1.jpg``, ``Label.jpg``,
``Macro.jpg``), with the bytes the writer writes: JPEG tiles copied (tables merged, the Adobe
marker for RGB), other tiles decoded and encoded as JPEG, levels the source lacks computed from the
nearest stored level (their rows spooled to a temporary file while the slide is open).

- **Open slides** are kept in an LRU bounded in count (``max_slides``) and in the files they read
  (``max_files``: a DICOM series' instances, an ACI's components); an evicted slide is closed when
  the last request using it is done. A slide is valid while its source's stat identity (inode,
  device, mtime, size; a DICOM series: its directory's) is unchanged: a changed or removed file is
  noticed on the next request.
- **Off the event loop.** Opening a slide, reading tile bytes and decoding/encoding run on a small
  thread pool; concurrent requests for one file share one computation. What is produced goes to
  the site's bounded block cache (:class:`composite.server.memory.BlockCache`), keyed by source and
  name and checked against the source's identity, so a block asked again costs a dict lookup.
- **Skipping glass** (``skip_glass``, ``serve --skip-glass``): the ``convert --skip-glass``
  layout, its decisions made by :class:`composite.glass.GlassMap` surveying a whole level (every
  block of it decoded at reduced scale) the first time that level's INI file or one of its blocks
  is asked for; a block left out is a 404.
- **Errors.** A slide that fails to open answers 422 with its one-line error (paths relative to
  ROOT) for every name, as does a block that cannot be read (a damaged tile); a name the layout
  does not have, and a directory that is no DICOM series, are 404. Never a 500.

This is the only server module importing the format readers; the site imports it when a request or
the slide list first meets a non-CWS slide, so serving CWS directories alone never loads them.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import hdrs, web

from ..formats.cws.companions import write_companions
from ..formats.cws.layout import CwsLayout
from ..formats.cws.write import WRITER
from ..glass import GlassMap
from ..output import WriteOptions
from ..plan import make_plan
from ..progress import no_progress
from ..registry import open_slide, source_files
from ..tiling import EncodedTile
from .files import CACHE_IMMUTABLE, CACHE_SHORT, CONTENT_TYPES, answer_block, precondition
from .memory import Block, BlockCache, http_date
from .slides import VIRTUAL_SUFFIXES, Identity, SlideInfo, identity_of, is_series

WORKERS = 4
MAX_SLIDES = 16
MAX_FILES = 256
MAX_FAILED = 1024  # remembered failures (a bad slide is not reopened for every request)


class SlideFailed(Exception):
    """A slide that cannot be opened or read: its one-line error (422)."""


class NotASlide(Exception):
    """A path that is no slide the server offers (404)."""


class _Open:
    """An open slide, its plan and layout; closed once evicted and unused."""

    def __init__(self, path: str, identity: Identity, *, skip_glass: bool) -> None:
        self.path, self.identity = path, identity
        if os.path.isdir(path):
            if not is_series(path):
                raise NotASlide(path)
            with os.scandir(path) as entries:
                self.files = sum(1 for _ in entries)
        elif os.path.splitext(path)[1].lower() not in VIRTUAL_SUFFIXES:
            raise NotASlide(path)
        self.slide = open_slide(path)
        try:
            plan = self.plan = make_plan(self.slide, WriteOptions(skip_glass=skip_glass), WRITER.rules, spool_dir=None)
            keep = None
            if plan.glass is not None:
                # The writer's glass decisions, made for a whole level the first time it is listed
                # or one of its blocks is asked for (each block must be tested before the INI).
                def survey(index: int) -> Iterator[EncodedTile]:
                    return plan.levels[index].tiles(progress=no_progress)

                grids, levels = [level.grid for level in plan.levels], [level.level for level in plan.levels]
                keep = GlassMap(grids, plan.glass, levels=levels, survey=survey).keep
            self.layout = CwsLayout(plan, keep=keep)
            if not os.path.isdir(path):
                self.files = len(source_files(path))
        except BaseException:
            self.slide.close()
            raise
        self.users = 0
        self.evicted = False
        self._companions: dict[str, bytes] | None = None
        self._lock = threading.Lock()

    def read(self, name: str) -> bytes | None:
        """The bytes of file ``name`` of the virtual directory, None when it has no such file."""
        layout = self.layout
        if name in layout.ini_names:
            return layout.ini_text(layout.ini_names.index(name))
        if name in layout.companions.values():
            return self._companion(name)
        ref = layout.block_ref(name)
        return None if ref is None else layout.block(ref)

    def _companion(self, name: str) -> bytes | None:
        # The writer's own function, into a scratch directory: the same bytes as a converted slide.
        with self._lock:
            if self._companions is None:
                plan = self.plan
                with tempfile.TemporaryDirectory(prefix=".composite-companions-") as tmp:
                    levels = [level.level for level in plan.levels]
                    write_companions(self.slide, Path(tmp), levels=levels, quality=plan.levels[0].quality)
                    self._companions = {
                        file: (Path(tmp) / file).read_bytes()
                        for file in self.layout.companions.values()
                        if (Path(tmp) / file).is_file()
                    }
            return self._companions.get(name)

    def close(self) -> None:
        self.plan.close()
        self.slide.close()


class VirtualSlides:
    """The open slides of one server process and the answers for their files."""

    def __init__(
        self,
        root: str,
        *,
        blocks: BlockCache,
        max_slides: int = MAX_SLIDES,
        max_files: int = MAX_FILES,
        workers: int = WORKERS,
        skip_glass: bool = False,
    ) -> None:
        self._root = root.rstrip(os.sep) + os.sep
        self._skip_glass = skip_glass
        self._blocks = blocks
        self._max_slides, self._max_files = max(1, max_slides), max(1, max_files)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="composite-virtual")
        self._lock = threading.Lock()  # the tables below
        self._opening = threading.Lock()  # one slide opened at a time
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._failed: OrderedDict[str, tuple[Identity, str | None]] = OrderedDict()  # None: not a slide
        self._inflight: dict[str, asyncio.Future[Block | None]] = {}

    # -- the HTTP side (event loop) -------------------------------------------------------------
    async def send(self, request: web.BaseRequest, path: str, st: os.stat_result, name: str) -> web.StreamResponse:
        """Answer for file ``name`` of the slide at real path ``path`` whose stat is ``st``."""
        identity = identity_of(st)
        key = f"\0{path}/{name}"
        h = request.headers
        conditional = hdrs.RANGE in h or hdrs.IF_NONE_MATCH in h or hdrs.IF_MODIFIED_SINCE in h
        if not (conditional or hdrs.IF_MATCH in h or hdrs.IF_UNMODIFIED_SINCE in h):
            block = self._blocks.get(key)
            if block is not None and block.validator == identity and block.plain:
                return web.Response(body=block.body, headers=block.headers)
        text = name.endswith(".ini")
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}-{name}"'
        gzipped = text and hdrs.RANGE not in h and "gzip" in h.get(hdrs.ACCEPT_ENCODING, "").lower()
        etags = (etag[:-1] + '-gzip"', etag) if gzipped else (etag,)
        status = precondition(request, etags, st.st_mtime)
        if status is not None:
            headers = {hdrs.CACHE_CONTROL: CACHE_SHORT if text else CACHE_IMMUTABLE, hdrs.ETAG: etags[0]}
            headers[hdrs.LAST_MODIFIED] = http_date(st.st_mtime)
            return web.Response(status=status, headers=headers)
        block = await self._block(key, path, st, name, etag)
        if gzipped:
            block = await self._gzipped(key + "\0gzip", block, st, etags[0])
        return answer_block(request, block)

    async def _block(self, key: str, path: str, st: os.stat_result, name: str, etag: str) -> Block:
        identity = identity_of(st)
        block = self._blocks.get(key)
        if block is not None and block.validator == identity:
            return block
        future = self._inflight.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = asyncio.ensure_future(loop.run_in_executor(self._pool, self._produce, path, st, name, etag))
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._done(key, done))
        try:
            block = await asyncio.shield(future)
        except SlideFailed as err:
            raise web.HTTPUnprocessableEntity(text=str(err)) from None
        except NotASlide:
            raise web.HTTPNotFound() from None
        if block is None:
            raise web.HTTPNotFound()
        if block.validator == identity:
            self._blocks.put(key, block)
        return block

    def _done(self, key: str, future: asyncio.Future[Block | None]) -> None:
        self._inflight.pop(key, None)
        if not future.cancelled():
            future.exception()  # retrieved: every waiter may have left (clients that went away)

    async def _gzipped(self, key: str, block: Block, st: os.stat_result, etag: str) -> Block:
        found = self._blocks.get(key)
        if found is not None and found.validator == block.validator:
            return found
        body = await asyncio.get_running_loop().run_in_executor(self._pool, _gzip, block.body)
        headers = {k: v for k, v in block.headers.items() if k not in (hdrs.ETAG, hdrs.LAST_MODIFIED)}
        headers[hdrs.CONTENT_ENCODING] = "gzip"
        gzipped = Block(body, st, headers, plain=False, etag=etag)
        self._blocks.put(key, gzipped)
        return gzipped

    # -- the slide side (worker threads) --------------------------------------------------------
    def _produce(self, path: str, st: os.stat_result, name: str, etag: str) -> Block | None:
        entry = self._acquire(path, identity_of(st))
        try:
            data = entry.read(name)
        except Exception as err:  # a damaged tile, a reader's surprise: one line, never a 500
            raise SlideFailed(self._one_line(err)) from None
        finally:
            self._release(entry)
        if data is None:
            return None
        suffix = os.path.splitext(name)[1]
        text = suffix == ".ini"
        headers: dict[str, str] = {
            hdrs.CACHE_CONTROL: CACHE_SHORT if text else CACHE_IMMUTABLE,
            hdrs.CONTENT_TYPE: CONTENT_TYPES[suffix],
            hdrs.ACCEPT_RANGES: "bytes",
        }
        if text:
            headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
        return Block(data, st, headers, plain=not text, etag=etag)

    def _one_line(self, err: BaseException) -> str:
        text = str(err) or type(err).__name__
        return " ".join(text.replace(self._root, "").split())

    def _acquire(self, path: str, identity: Identity) -> _Open:
        entry = self._cached(path, identity)
        if entry is not None:
            return entry
        with self._opening:
            entry = self._cached(path, identity)
            if entry is not None:
                return entry
            try:
                entry = _Open(path, identity, skip_glass=self._skip_glass)
            except NotASlide:
                self._remember(path, identity, None)
                raise
            except Exception as err:
                message = self._one_line(err)
                self._remember(path, identity, message)
                raise SlideFailed(message) from None
            with self._lock:
                self._failed.pop(path, None)
                self._open[path] = entry
                entry.users += 1
                self._evict()
            return entry

    def _cached(self, path: str, identity: Identity) -> _Open | None:
        with self._lock:
            entry = self._open.get(path)
            if entry is not None and entry.identity != identity:
                self._drop(path)
                entry = None
            if entry is not None:
                self._open.move_to_end(path)
                entry.users += 1
                return entry
            failed = self._failed.get(path)
            if failed is not None and failed[0] == identity:
                if failed[1] is None:
                    raise NotASlide(path)
                raise SlideFailed(failed[1])
            return None

    def _remember(self, path: str, identity: Identity, message: str | None) -> None:
        with self._lock:
            self._failed[path] = (identity, message)
            self._failed.move_to_end(path)
            while len(self._failed) > MAX_FAILED:
                self._failed.popitem(last=False)

    def _release(self, entry: _Open) -> None:
        with self._lock:
            entry.users -= 1
            if entry.evicted and entry.users == 0:
                entry.close()

    def _drop(self, path: str) -> None:
        entry = self._open.pop(path)
        entry.evicted = True
        if entry.users == 0:
            entry.close()

    def _evict(self) -> None:
        while len(self._open) > 1 and (
            len(self._open) > self._max_slides or sum(e.files for e in self._open.values()) > self._max_files
        ):
            self._drop(next(iter(self._open)))

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    # -- the slide list -------------------------------------------------------------------------
    def describe(self, path: Path, identity: Identity, name: str, url: str) -> tuple[SlideInfo, list[str]]:
        """``/api/slides``'s entry for the non-CWS slide at ``path`` and the files it reads."""
        try:
            entry = self._acquire(str(path), identity)
        except NotASlide:
            return _failed(name, url, "not a DICOM series"), []
        except SlideFailed as err:
            return _failed(name, url, str(err)), []
        try:
            slide, layout = entry.slide, entry.layout
            reads = [os.path.realpath(p) for p in source_files(path)] if stat.S_ISREG(os.stat(path).st_mode) else []
            images: dict[str, str | None] = {"thumbnail": url + layout.companions["thumbnail"]}
            for kind in ("label", "macro"):
                images[kind] = url + layout.companions[kind] if kind in layout.companions else None
            images["annotations"] = None
            info = SlideInfo(
                name=name,
                url=url,
                ini=layout.ini_names[0],
                width=slide.dimensions[0],
                height=slide.dimensions[1],
                levels=len(layout.grids),
                mpp=slide.mpp[0] if slide.mpp else None,
                magnification=slide.magnification,
                images=images,
                format=slide.format,
            )
            return info, reads
        except Exception as err:
            return _failed(name, url, self._one_line(err)), []
        finally:
            self._release(entry)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for path in list(self._open):
                self._drop(path)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _failed(name: str, url: str, error: str) -> SlideInfo:
    images: dict[str, str | None] = {"thumbnail": None, "label": None, "macro": None, "annotations": None}
    return SlideInfo(
        name=name,
        url=url,
        ini="FinalScan.ini",
        width=None,
        height=None,
        levels=0,
        mpp=None,
        magnification=None,
        images=images,
        format="unknown",
        error=error,
    )
