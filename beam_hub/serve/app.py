"""The `beam-hub serve` web app (aiohttp): the TF Hub protocol, Range requests; the pages and the
JSON API are in views.py."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re

from aiohttp import web

from beam_hub import settings
from beam_hub.safety.registry import registered_ops
from beam_hub.serve import views
from beam_hub.serve.catalog import Catalog
from beam_hub.serve.inspection import Inspections
from beam_hub.serve.page import CSP
from beam_hub.serve.store import Archive, ModuleStore

log = logging.getLogger("beam_hub.serve")
CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_MAX_RANGE_DIGITS = 20  # more than any file size; Python refuses int() of 4,300+ digits
STORE = views.STORE
UNCOMPRESSED_BASE = web.AppKey("uncompressed_base", str)


def create_app(
    root: str, *, pack_dir: str | None = None, uncompressed_base: str | None = None
) -> web.Application:
    """Serve every module under ``root`` at the URL path of its directory (or ``<path>.tar.gz``)."""
    if not os.path.isdir(root):
        raise NotADirectoryError(
            f"{root} is not a directory; `beam-hub serve` takes the folder holding the modules"
        )
    app = web.Application(middlewares=[_security_headers])
    app[STORE] = ModuleStore(root, pack_dir or settings.serve_pack_dir())
    app[views.CATALOG] = Catalog(app[STORE])
    app[views.INSPECTIONS] = Inspections()
    app[UNCOMPRESSED_BASE] = (uncompressed_base or "").rstrip("/")
    app.router.add_get("/", views.index)
    app.router.add_get("/api/modules", views.api_search)
    app.router.add_get("/api/modules/{path:.+}", views.api_module)
    app.router.add_get("/{path:.+}", _module)
    return app


@web.middleware
async def _security_headers(request: web.Request, handler) -> web.StreamResponse:
    """Pages run no script and load nothing from elsewhere, whatever a README holds."""
    response = await handler(request)
    if response.content_type == "text/html":
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def _module(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    path = request.match_info["path"]
    module = store.find(path)
    if module is None:  # MODEL/latest or MODEL/NAME (an alias): 302 to the version, any format
        model, _, last = path.rstrip("/").rpartition("/")
        target = (store.latest(model) if last == "latest" else store.alias(model, last)) if model else None
        if target is not None:
            query = f"?{request.query_string}" if request.query_string else ""
            raise web.HTTPFound(f"/{target.path}{query}")
    formats = [f.strip() for f in request.query.get("tf-hub-format", "").split(",") if f.strip()]
    if module is None and not formats:
        page = await views.model_page(request, path)
        if page is not None:
            return page
    if module is None:
        return web.Response(
            status=404, text=f"No module at /{path.strip('/')}. The list of modules is at /.\n"
        )
    if not formats:
        return await views.module_page(request, module)
    if "compressed" in formats:
        archive = await asyncio.get_running_loop().run_in_executor(None, store.archive, module)
        return await _send_archive(request, archive)
    if "uncompressed" in formats:
        base = request.app[UNCOMPRESSED_BASE]
        if not base:
            return web.Response(
                status=406,
                text="This server has no uncompressed mirror (start it with "
                "--uncompressed-base); ask for tf-hub-format=compressed.\n",
            )
        location = f"{base}/{module.path}"
        return web.Response(status=303, text=location, headers={"Location": location})
    return web.Response(
        status=400,
        text=f"Unknown tf-hub-format {formats}; this server offers "
        "'compressed' and, with a mirror, 'uncompressed'.\n",
    )


async def _send_archive(request: web.Request, archive: Archive) -> web.StreamResponse:
    etag = f'"{archive.sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Type": "application/x-gzip",
        "Last-Modified": email.utils.formatdate(archive.mtime, usegmt=True),
    }
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    start, end = 0, archive.size - 1
    status = 200
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if wanted and (if_range is None or if_range == etag):
        match = _RANGE.match(wanted.strip())
        if match and max(len(match.group(1)), len(match.group(2))) > _MAX_RANGE_DIGITS:
            return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{archive.size}"})
        if match and (match.group(1) or match.group(2)):
            first, last = match.group(1), match.group(2)
            if first:
                start, end = int(first), min(int(last), archive.size - 1) if last else archive.size - 1
            else:  # a suffix: the last N bytes
                start = max(0, archive.size - int(last))
            if start > end or start >= archive.size:
                return web.Response(
                    status=416, headers={**headers, "Content-Range": f"bytes */{archive.size}"}
                )
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{archive.size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start + 1
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    loop = asyncio.get_running_loop()
    with open(archive.file, "rb") as f:
        f.seek(start)
        left = end - start + 1
        while left > 0:
            block = await loop.run_in_executor(None, f.read, min(CHUNK, left))
            if not block:
                break
            await response.write(block)
            left -= len(block)
    await response.write_eof()
    return response


def serve(
    root: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    uncompressed_base: str | None = None,
    pack_dir: str | None = None,
    ready=print,
) -> None:
    """Run the server until interrupted; ``ready`` gets one line with the URL once it listens."""
    logging.basicConfig(format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)  # one line per request, whatever the root logger's level
    app = create_app(root, pack_dir=pack_dir, uncompressed_base=uncompressed_base)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=log, access_log_format='%a "%r" %s %b %Tfs')
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]  # the port actually bound when 0 was asked for
        ready(f"Serving {os.path.abspath(root)} at http://{bound[0]}:{bound[1]}/", flush=True)
        # TensorFlow's op names (for the audit), asked of a child process before the first page needs them
        warm = asyncio.get_running_loop().run_in_executor(None, registered_ops)
        try:
            await asyncio.Event().wait()
        finally:
            warm.cancel()
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
