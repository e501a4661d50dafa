"""The HTTP server: ``create_app(root)`` serves the CWS directories under ROOT and the viewer.

Routes (all GET/HEAD):

- ``/`` and ``/<file>``: the browser viewer (``web/``: index.html, viewer.js, OpenSeadragon).
- ``/slides/<path>``: any regular file under ROOT — blocks, INI files, companion images — with
  Range, ETag/Last-Modified (304 on revalidation), long immutable caching for images, short
  caching and gzip for INI text. See :mod:`composite.server.files` for the path rules.
- ``/api/slides``: JSON list of the slides found under ROOT (:mod:`composite.server.slides`),
  rescanned when ROOT changes.

Static files only: no pixel work per request, and no ``composite.formats`` import — a CWS directory
is complete on disk, and the same ``web/`` works from any static host. Not supported: directory
listings (never), methods other than GET/HEAD/OPTIONS, multi-range (multipart) responses.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

from aiohttp import hdrs, web

from ..errors import SlideNotFoundError
from .files import (
    CACHE_API,
    CACHE_SHORT,
    CACHE_VIEWER,
    IMAGE_SUFFIXES,
    FileSender,
    resolve,
)
from .slides import SlideIndex

__all__ = ["create_app", "web_directory"]

ROOT_KEY = web.AppKey("root", Path)
INDEX_KEY = web.AppKey("slide_index", SlideIndex)
WEB_KEY = web.AppKey("web_directory", Path)
SENDER_KEY = web.AppKey("file_sender", FileSender)
VIEWER_SENDER_KEY = web.AppKey("viewer_sender", FileSender)
CORS_KEY = web.AppKey("cors_origin", str)


def web_directory() -> Path:
    """The viewer's files: ``composite/web`` in an installed wheel, ``web/`` in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "web", package.parent / "web"):
        if (candidate / "index.html").is_file():
            return candidate
    raise SlideNotFoundError(f"{package}: the viewer files (web/index.html) are not installed")


def create_app(root: str | Path, *, cors: str | None = None, web_dir: str | Path | None = None) -> web.Application:
    """An aiohttp application serving ``root``; ``cors`` is the origin allowed by CORS headers."""
    root = Path(root)
    if not root.is_dir():
        raise SlideNotFoundError(f"{root}: not a directory")
    app = web.Application()
    real_root = Path(os.path.realpath(root))
    app[ROOT_KEY] = real_root
    app[INDEX_KEY] = SlideIndex(real_root)
    app[WEB_KEY] = Path(os.path.realpath(web_dir if web_dir is not None else web_directory()))
    app[SENDER_KEY] = FileSender(cache_control=CACHE_SHORT, immutable=IMAGE_SUFFIXES)
    app[VIEWER_SENDER_KEY] = FileSender(cache_control=CACHE_VIEWER)
    app.router.add_get("/api/slides", _api_slides)
    app.router.add_get("/slides/{tail:.*}", _slide_file)
    app.router.add_get("/{tail:.*}", _viewer_file)
    if cors:
        app[CORS_KEY] = cors
        app.router.add_route("OPTIONS", "/{tail:.*}", _preflight)
        app.on_response_prepare.append(_add_cors_headers)
    return app


async def _slide_file(request: web.Request) -> web.StreamResponse:
    app = request.app
    path, st = _resolve(app[ROOT_KEY], request.match_info["tail"])
    return await app[SENDER_KEY].send(request, path, st)


async def _viewer_file(request: web.Request) -> web.StreamResponse:
    app = request.app
    path, st = _resolve(app[WEB_KEY], request.match_info["tail"] or "index.html")
    return await app[VIEWER_SENDER_KEY].send(request, path, st)


def _resolve(base: Path, tail: str) -> tuple[str, os.stat_result]:
    # A few local lstat calls: cheaper on the loop than a round trip through a thread.
    found = resolve(base, tail)
    if found is None:
        raise web.HTTPNotFound()
    return found


async def _api_slides(request: web.Request) -> web.StreamResponse:
    index = request.app[INDEX_KEY]
    slides = await asyncio.get_running_loop().run_in_executor(None, index.slides)
    body = json.dumps([slide.as_json() for slide in slides], separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {hdrs.CACHE_CONTROL: CACHE_API, hdrs.ETAG: etag}
    if_none_match = request.headers.get(hdrs.IF_NONE_MATCH, "")
    if etag in {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}:
        return web.Response(status=304, headers=headers)
    response = web.Response(body=body, content_type="application/json", headers=headers)
    response.enable_compression()
    return response


async def _preflight(request: web.Request) -> web.StreamResponse:
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": "Range, If-None-Match, If-Modified-Since",
            "Access-Control-Max-Age": "86400",
        },
    )


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Access-Control-Allow-Origin"] = request.app[CORS_KEY]
    response.headers["Access-Control-Expose-Headers"] = "Content-Length, Content-Range, ETag, Last-Modified"
