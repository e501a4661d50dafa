"""The HTTP server: ``create_app(root)`` serves the CWS directories under ROOT and the viewer.

Routes (all GET/HEAD):

- ``/`` and ``/<file>``: the browser viewer (``composite/web/``: index.html, viewer.js, OpenSeadragon).
- ``/slides/<path>``: any regular file under ROOT — blocks, INI files, companion images — with
  Range, ETag/Last-Modified (304 on revalidation), long immutable caching for images, short
  caching and gzip for INI text. See :mod:`composite.server.files` for the path rules.
- ``/api/slides``: JSON list of the slides found under ROOT (:mod:`composite.server.slides`),
  rescanned when ROOT changes.

``create_handler(root)`` is the same site as one request handler: ``wsi-composite serve`` runs it
on aiohttp's low-level server (``aiohttp.web.Server``), which skips the application's router,
middleware and signal machinery — about 15 % of the CPU time of a block fetch. Both answer every
request identically (the tests use the application, the CLI tests and the load test the handler).

Slides stored in other formats (SVS, TIFF, DICOM series, ACI) are served as *virtual* CWS
directories at ``/slides/<path of the slide>/<file>``: the files ``convert --to cws`` would write,
produced per request by :mod:`composite.server.virtual`. That module (and with it the format
readers) is imported only when a request or the slide list first meets such a slide: a server of
CWS directories stays static files only, and its fast path is unchanged (a virtual file is looked
for only after the static lookup has found nothing). Not supported: directory listings (never),
methods other than GET/HEAD/OPTIONS, multi-range (multipart) responses.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import json
import os
import stat
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from ..errors import SlideNotFoundError
from .files import (
    CACHE_API,
    CACHE_SHORT,
    CACHE_VIEWER,
    FILE_CACHE_BYTES,
    IMAGE_SUFFIXES,
    FileSender,
    lookup,
    resolve,
)
from .slides import (
    DICOM_SUFFIX,
    VIRTUAL_FILE,
    VIRTUAL_SUFFIXES,
    Identity,
    SlideIndex,
    SlideInfo,
    identity_of,
    is_series,
)

if TYPE_CHECKING:
    from .virtual import VirtualSlides

__all__ = ["Handler", "create_app", "create_handler", "web_directory"]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})
SLIDES = "/slides/"
WARM_UP_ENTRIES = 1000  # entries of ROOT looked at for slides stored in other formats
MAX_DIRECTORIES = 4096  # directories remembered as DICOM series or not
OPEN_SLIDES = 16  # composite.server.virtual.MAX_SLIDES (importing it loads the format readers)


def web_directory() -> Path:
    """The viewer's files: the package data ``composite/web``, found through importlib.resources.

    The server hands files to the kernel (sendfile), so the package must be installed as files
    (a wheel or a source checkout), not imported from a zip archive.
    """
    web = importlib.resources.files("composite") / "web"
    if not isinstance(web, Path) or not (web / "index.html").is_file():
        raise SlideNotFoundError(f"{web}: the viewer files (composite/web/index.html) are not installed as files")
    return web


def create_handler(
    root: str | Path,
    *,
    cors: str | None = None,
    web_dir: str | Path | None = None,
    cache_bytes: int = FILE_CACHE_BYTES,
    open_slides: int = OPEN_SLIDES,
    skip_glass: bool = False,
    warm_up: bool = False,
) -> Handler:
    """The site serving ``root`` as one aiohttp request handler.

    ``cors`` is the origin allowed by CORS headers; ``cache_bytes`` bounds the memory kept for
    small files under ROOT and blocks of virtual slides (see :class:`composite.server.files.FileSender`);
    ``open_slides`` bounds the non-CWS slides kept open (:mod:`composite.server.virtual`);
    ``skip_glass`` leaves their glass blocks out, as ``convert --skip-glass`` does. ``warm_up``
    loads the format readers on a thread now when ROOT's top level holds such a slide (only in the
    process that serves: a thread must not be importing when the process forks).
    """
    root = Path(root)
    if not root.is_dir():
        raise SlideNotFoundError(f"{root}: not a directory")
    site = _Site(
        root,
        cors=cors,
        web_dir=web_dir,
        cache_bytes=cache_bytes,
        open_slides=open_slides,
        skip_glass=skip_glass,
        warm_up=warm_up,
    )
    return site.handle


def create_app(
    root: str | Path,
    *,
    cors: str | None = None,
    web_dir: str | Path | None = None,
    cache_bytes: int = FILE_CACHE_BYTES,
    open_slides: int = OPEN_SLIDES,
    skip_glass: bool = False,
) -> web.Application:
    """An aiohttp application serving ``root``; the options are :func:`create_handler`'s."""
    handler = create_handler(
        root, cors=cors, web_dir=web_dir, cache_bytes=cache_bytes, open_slides=open_slides, skip_glass=skip_glass
    )
    app = web.Application()
    app.router.add_route(hdrs.METH_ANY, "/{tail:.*}", handler)
    return app


class _Site:
    """Routes a request by its path: the slide list, a file under ROOT, or the viewer."""

    def __init__(
        self,
        root: Path,
        *,
        cors: str | None,
        web_dir: str | Path | None,
        cache_bytes: int,
        open_slides: int,
        skip_glass: bool,
        warm_up: bool = False,
    ) -> None:
        real_root = os.path.realpath(root)
        self._root = real_root
        self._index = SlideIndex(Path(real_root), describe_virtual=self._describe_virtual)
        self._virtual: VirtualSlides | None = None  # made when a non-CWS slide is first met
        self._virtual_lock = threading.Lock()
        self._open_slides = open_slides
        self._skip_glass = skip_glass
        self._directories: dict[str, tuple[Identity, bool]] = {}  # directory -> is it a DICOM series
        self._slide_files: dict[str, None] = {}  # URL prefixes last seen naming a slide file
        self._web = os.path.realpath(web_dir if web_dir is not None else web_directory())
        self._slides = FileSender(cache_control=CACHE_SHORT, immutable=IMAGE_SUFFIXES, cache_bytes=cache_bytes)
        self._viewer = FileSender(cache_control=CACHE_VIEWER)
        self._cors = cors
        self._allowed = ("GET", "HEAD", "OPTIONS") if cors else ("GET", "HEAD")
        if warm_up:
            # When ROOT's top level holds a slide stored in another format, load the readers now,
            # on a thread, rather than in that slide's first request (about a second).
            threading.Thread(target=self._warm_up, name="composite-warm-up", daemon=True).start()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self._cors is None:
            return await self._route(request)
        try:
            response = await self._route(request)
        except web.HTTPException as error:  # errors carry the CORS headers too
            self._add_cors_headers(error)
            raise
        self._add_cors_headers(response)
        return response

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in METHODS:
            if request.method == hdrs.METH_OPTIONS and self._cors:
                return _preflight()
            raise web.HTTPMethodNotAllowed(request.method, self._allowed)
        # Percent-decoded except %2F and %25, as aiohttp's router matches paths; the rest of
        # the decoding is _tail's, so that an encoded slash still reaches the path checks.
        path = request.rel_url.path_safe
        if path.startswith(SLIDES):
            tail = _tail(path[len(SLIDES) :])
            # A file of a slide file served before (a regular file holds no static files): skip
            # the static lookup, which could only fail. Anything else tries the static file first.
            if tail.rpartition("/")[0] in self._slide_files:
                return await self._virtual_file(request, tail, checked=False)
            found = resolve(self._root, tail)
            if found is None:
                return await self._virtual_file(request, tail, checked=True)
            return await self._slides.send(request, *found)
        if path == "/api/slides":
            return await self._api_slides(request)
        found = resolve(self._web, _tail(path[1:]) or "index.html")
        if found is None:
            raise web.HTTPNotFound()
        return await self._viewer.send(request, *found)

    async def _virtual_file(self, request: web.BaseRequest, tail: str, *, checked: bool) -> web.StreamResponse:
        """A file of a virtual CWS directory: ``<slide path>/<CWS file name>``, else a 404.

        ``checked``: the static lookup has found no file ``tail``; else it is made here when
        ``tail``'s slide file is no longer one (replaced by a directory).
        """
        prefix, _, name = tail.rpartition("/")
        if not prefix or VIRTUAL_FILE.fullmatch(name) is None:
            raise web.HTTPNotFound()
        found = lookup(self._root, prefix)  # the static rules: nothing outside ROOT, nothing hidden
        if found is not None:
            real, st = found
            if stat.S_ISREG(st.st_mode) and os.path.splitext(real)[1].lower() in VIRTUAL_SUFFIXES:
                if prefix not in self._slide_files:
                    if len(self._slide_files) >= MAX_DIRECTORIES:
                        self._slide_files.clear()
                    self._slide_files[prefix] = None
                return await self._virtual_slides().send(request, real, st, name)
        self._slide_files.pop(prefix, None)
        if not checked and (static := resolve(self._root, tail)) is not None:
            return await self._slides.send(request, *static)
        if found is None or not (stat.S_ISDIR(found[1].st_mode) and self._series(*found)):
            raise web.HTTPNotFound()
        return await self._virtual_slides().send(request, *found, name)

    def _warm_up(self) -> None:
        try:
            with os.scandir(self._root) as entries:
                names = [entry.name for _, entry in zip(range(WARM_UP_ENTRIES), entries, strict=False)]
        except OSError:
            return
        suffixes = {os.path.splitext(name)[1].lower() for name in names if not name.startswith(".")}
        if suffixes & VIRTUAL_SUFFIXES or DICOM_SUFFIX in suffixes:
            try:
                self._virtual_slides()
            except Exception:  # only a head start: the first such request tries again
                return

    def _series(self, real: str, st: os.stat_result) -> bool:
        """Whether a directory is a DICOM series, remembered while its stat stays the same: a miss
        in a CWS directory costs no listing after the first, and never loads the format readers."""
        identity = identity_of(st)
        known = self._directories.get(real)
        if known is None or known[0] != identity:
            try:
                known = (identity, is_series(real))
            except OSError:
                return False
            if len(self._directories) >= MAX_DIRECTORIES:
                self._directories.pop(next(iter(self._directories)))
            self._directories[real] = known
        return known[1]

    def _virtual_slides(self) -> VirtualSlides:
        if self._virtual is None:
            with self._virtual_lock:  # the slide list builds it on a worker thread
                if self._virtual is None:
                    from .virtual import VirtualSlides

                    self._virtual = VirtualSlides(
                        self._root,
                        blocks=self._slides.blocks,
                        max_slides=self._open_slides,
                        skip_glass=self._skip_glass,
                    )
        return self._virtual

    def _describe_virtual(self, path: Path, identity: Identity, name: str, url: str) -> tuple[SlideInfo, list[str]]:
        return self._virtual_slides().describe(path, identity, name, url)

    async def _api_slides(self, request: web.BaseRequest) -> web.StreamResponse:
        slides = await asyncio.get_running_loop().run_in_executor(None, self._index.slides)
        body = json.dumps([slide.as_json() for slide in slides], separators=(",", ":")).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {hdrs.CACHE_CONTROL: CACHE_API, hdrs.ETAG: etag}
        if_none_match = request.headers.get(hdrs.IF_NONE_MATCH, "")
        if etag in {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}:
            return web.Response(status=304, headers=headers)
        response = web.Response(body=body, content_type="application/json", headers=headers)
        response.enable_compression()
        return response

    def _add_cors_headers(self, response: web.StreamResponse) -> None:
        assert self._cors is not None
        response.headers["Access-Control-Allow-Origin"] = self._cors
        response.headers["Access-Control-Expose-Headers"] = "Content-Length, Content-Range, ETag, Last-Modified"


def _tail(path: str) -> str:
    return path.replace("%2F", "/").replace("%25", "%") if "%" in path else path


def _preflight() -> web.StreamResponse:
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": "Range, If-None-Match, If-Modified-Since",
            "Access-Control-Max-Age": "86400",
        },
    )
