"""The hub's pages and JSON API: index with search, a model's versions, a version's card.

GET /                                  index: ?q= &task= &tag= &page=
GET /ORG/MODEL                         every version, newest first
GET /ORG/MODEL/VERSION                 the version's card, signatures, audit, usage
GET /api/modules?q=&task=&tag=&page=   the index as JSON
GET /api/modules/ORG/MODEL[/VERSION]   a model or a version as JSON
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from beam_hub.serve import page
from beam_hub.serve.catalog import Catalog, Model, Results, Version
from beam_hub.serve.inspection import Inspection, Inspections
from beam_hub.serve.store import Archive, Module, ModuleStore

STORE = web.AppKey("store", ModuleStore)
CATALOG = web.AppKey("catalog", Catalog)
INSPECTIONS = web.AppKey("inspections", Inspections)


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _query(request: web.Request) -> tuple[str, str, str, int]:
    q = request.query.get("q", "")[:200]
    task = request.query.get("task", "")[:200]
    tag = request.query.get("tag", "")[:200]
    try:
        number = int(request.query.get("page", "1"))
    except ValueError:
        number = 1
    return q, task, tag, number


async def _run(fn, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def index(request: web.Request) -> web.Response:
    q, task, tag, number = _query(request)
    results = await _run(request.app[CATALOG].search, q, task, tag, number)
    html = page.index_page(results, base_url(request), q, task, tag)
    return web.Response(text=html, content_type="text/html")


async def model_page(request: web.Request, path: str) -> web.Response | None:
    """The page of the model at ``path``, or None when no model is there."""
    model = await _run(request.app[CATALOG].model, path)
    if model is None:
        return None
    archives = await _run(_archives, request.app[STORE], model)
    aliases = await _run(request.app[STORE].aliases, model.path)
    html = page.model_page(model, base_url(request), archives, aliases)
    return web.Response(text=html, content_type="text/html")


async def module_page(request: web.Request, module: Module) -> web.Response:
    version, archive, seen = await _run(_version_details, request.app, module)
    url = f"{base_url(request)}/{module.path}"
    return web.Response(text=page.module_page(version, url, archive, seen), content_type="text/html")


async def api_search(request: web.Request) -> web.Response:
    q, task, tag, number = _query(request)
    results: Results = await _run(request.app[CATALOG].search, q, task, tag, number)
    root = base_url(request)
    return web.json_response(
        {
            "total": results.total,
            "page": results.page,
            "pages": results.pages,
            "models": [_model_summary(m, root) for m in results.models],
            "tasks": dict(results.tasks),
            "tags": dict(results.tags),
        }
    )


async def api_module(request: web.Request) -> web.Response:
    path = request.match_info["path"].strip("/")
    store, root = request.app[STORE], base_url(request)
    module = store.find(path)
    if module is not None:
        version, archive, seen = await _run(_version_details, request.app, module)
        return web.json_response(_version_json(version, archive, seen, root))
    model = await _run(request.app[CATALOG].model, path)
    if model is None:
        return web.json_response({"error": f"no module or model at /{path}"}, status=404)
    archives = await _run(_archives, store, model)
    aliases = await _run(store.aliases, model.path)
    return web.json_response(
        {
            **_model_summary(model, root),
            "aliases": {
                name: {"version": target.path.rsplit("/", 1)[-1], "handle": f"{root}/{target.path}"}
                for name, target in aliases.items()
            },
            "versions": [
                {
                    "version": v.name,
                    "path": v.module.path,
                    "handle": f"{root}/{v.module.path}",
                    "download": f"{root}/{v.module.path}?tf-hub-format=compressed",
                    "date": page.date(v.mtime),
                    "size": archives[v.module.path].size,
                    "sha256": archives[v.module.path].sha256,
                    "latest": v is model.latest,
                }
                for v in model.versions
            ],
        }
    )


def _version_details(app: web.Application, module: Module) -> tuple[Version, Archive, Inspection]:
    version = app[CATALOG].version(module)
    archive = app[STORE].archive(module)
    return version, archive, app[INSPECTIONS].get(module, archive)


def _archives(store: ModuleStore, model: Model) -> dict[str, Archive]:
    return {v.module.path: store.archive(v.module) for v in model.versions}


def _model_summary(model: Model, root: str) -> dict[str, Any]:
    card = model.latest.card
    return {
        "model": model.path,
        "url": f"{root}/{model.path}",
        "title": card.title,
        "summary": card.summary,
        "front_matter": card.meta,
        "latest": model.latest.name,
        "latest_handle": f"{root}/{model.latest.module.path}",
        "version_count": len(model.versions),
    }


def _version_json(version: Version, archive: Archive, seen: Inspection, root: str) -> dict[str, Any]:
    url = f"{root}/{version.module.path}"
    return {
        "path": version.module.path,
        "model": version.model,
        "version": version.name,
        "handle": url,
        "download": f"{url}?tf-hub-format=compressed",
        "date": page.date(version.mtime),
        "size": archive.size,
        "sha256": archive.sha256,
        "title": version.card.title,
        "front_matter": version.card.meta,
        "signatures": seen.signatures_json(),
        "signatures_error": seen.error,
        "audit": None if seen.audit is None else seen.audit.to_json(),
    }
