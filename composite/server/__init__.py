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

Static files only: no pixel work per request, and no ``composite.formats`` import — a CWS directory
is complete on disk, and the same ``composite/web/`` works from any static host. Not supported: directory
listings (never), methods other than GET/HEAD/OPTIONS, multi-range (multipart) responses.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import hdrs, web

from ..errors import SlideNotFoundError
from .files import (
    CACHE_API,
    CACHE_SHORT,
    CACHE_VIEWER,
    FILE_CACHE_BYTES,
    IMAGE_SUFFIXES,
    FileSender,
    resolve,
)
from .slides import SlideIndex

__all__ = ["Handler", "create_app", "create_handler", "web_directory"]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})
SLIDES = "/slides/"


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
) -> Handler:
    """The site serving ``root`` as one aiohttp request handler.

    ``cors`` is the origin allowed by CORS headers; ``cache_bytes`` bounds the memory kept for
    small files under ROOT (see :class:`composite.server.files.FileSender`).
    """
    root = Path(root)
    if not root.is_dir():
        raise SlideNotFoundError(f"{root}: not a directory")
    return _Site(root, cors=cors, web_dir=web_dir, cache_bytes=cache_bytes).handle


def create_app(
    root: str | Path,
    *,
    cors: str | None = None,
    web_dir: str | Path | None = None,
    cache_bytes: int = FILE_CACHE_BYTES,
) -> web.Application:
    """An aiohttp application serving ``root``; the options are :func:`create_handler`'s."""
    handler = create_handler(root, cors=cors, web_dir=web_dir, cache_bytes=cache_bytes)
    app = web.Application()
    app.router.add_route(hdrs.METH_ANY, "/{tail:.*}", handler)
    return app


class _Site:
    """Routes a request by its path: the slide list, a file under ROOT, or the viewer."""

    def __init__(self, root: Path, *, cors: str | None, web_dir: str | Path | None, cache_bytes: int) -> None:
        real_root = os.path.realpath(root)
        self._root = real_root
        self._index = SlideIndex(Path(real_root))
        self._web = os.path.realpath(web_dir if web_dir is not None else web_directory())
        self._slides = FileSender(cache_control=CACHE_SHORT, immutable=IMAGE_SUFFIXES, cache_bytes=cache_bytes)
        self._viewer = FileSender(cache_control=CACHE_VIEWER)
        self._cors = cors
        self._allowed = ("GET", "HEAD", "OPTIONS") if cors else ("GET", "HEAD")

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
            found = resolve(self._root, _tail(path[len(SLIDES) :]))
            if found is None:
                raise web.HTTPNotFound()
            return await self._slides.send(request, *found)
        if path == "/api/slides":
            return await self._api_slides(request)
        found = resolve(self._web, _tail(path[1:]) or "index.html")
        if found is None:
            raise web.HTTPNotFound()
        return await self._viewer.send(request, *found)

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
