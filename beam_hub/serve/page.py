"""HTML pages of `beam-hub serve`: the index (search, filters, paging), a model's versions, a
module version's card. Server-side only: every page works without JavaScript, on a phone-width
screen, and fetches nothing from elsewhere (the server sends a Content-Security-Policy that
allows no script and no foreign image)."""

from __future__ import annotations

import datetime
import html
from typing import Any
from urllib.parse import urlencode

from beam_hub.safety.report import AuditReport
from beam_hub.serve.card import FIELDS
from beam_hub.serve.catalog import Model, Results, Version
from beam_hub.serve.inspection import Inspection
from beam_hub.serve.store import Archive, Module
from beam_hub.signature_defs import describe

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'"
)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;color:#222;"
    "line-height:1.45}a{color:#0645ad}table{border-collapse:collapse;display:block;overflow-x:auto;max-width:100%}"
    "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}"
    "pre{background:#f5f5f5;padding:.8rem;overflow-x:auto;white-space:pre}code{background:#f5f5f5}"
    "img{max-width:100%}.muted{color:#666}.tag{display:inline-block;background:#eef;border-radius:.8rem;"
    "padding:0 .5rem;margin:0 .2rem .2rem 0;font-size:.85rem}form input[type=search]{width:60%;max-width:30rem}"
    "ul.models{list-style:none;padding:0}ul.models li{border-bottom:1px solid #eee;padding:.6rem 0}"
    "nav.facets a{margin-right:.6rem}.card{border-top:1px solid #ddd;margin-top:1rem}"
    ".alias{display:inline-block;background:#efe;border-radius:.3rem;padding:0 .4rem;font-size:.85rem}"
    "@media (max-width:40rem){body{margin:.5rem auto}form input[type=search]{width:100%}}"
)
E = html.escape


def _doc(title: str, body: str, crumbs: str = "") -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{E(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><a href='/'>Modules</a>{crumbs}</header>{body}</body></html>"
    )


def date(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d")


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1000
    return str(n)


def _tags(values: list[str]) -> str:
    return "".join(f"<a class='tag' href='/?{urlencode({'tag': t})}'>{E(t)}</a>" for t in values)


def index_page(results: Results, base_url: str, q: str, task: str, tag: str) -> str:
    def link(**change: Any) -> str:
        params = {"q": q, "task": task, "tag": tag, **change}
        return "/?" + urlencode({k: v for k, v in params.items() if v})

    form = (
        "<form method='get' action='/' role='search'>"
        f"<input type='search' name='q' value='{E(q)}' placeholder='Search names, titles, tags' aria-label='Search'>"
        + (f"<input type='hidden' name='task' value='{E(task)}'>" if task else "")
        + (f"<input type='hidden' name='tag' value='{E(tag)}'>" if tag else "")
        + " <button type='submit'>Search</button></form>"
    )
    facets = "".join(
        f"<a href='{E(link(task='' if t == task else t, page=''))}'>{'<b>' if t == task else ''}{E(t)} ({n})"
        f"{'</b>' if t == task else ''}</a>"
        for t, n in results.tasks
    )
    tagfacets = "".join(
        f"<a href='{E(link(tag='' if t == tag else t, page=''))}'>{'<b>' if t == tag else ''}{E(t)} ({n})"
        f"{'</b>' if t == tag else ''}</a>"
        for t, n in results.tags
    )
    items = "".join(
        f"<li><a href='/{E(m.path)}'><b>{E(m.path)}</b></a> <span class='muted'>{E(m.latest.card.title)}</span>"
        f"<br><span class='muted'>{len(m.versions)} version{'s' if len(m.versions) != 1 else ''}, latest "
        f"{E(m.latest.name or '-')}, {date(m.latest.mtime)}{', ' + E(m.latest.card.task) if m.latest.card.task else ''}"
        f"</span><br>{E(m.latest.card.summary[:200])} {_tags(m.latest.card.tags)}</li>"
        for m in results.models
    )
    filters = " ".join(
        f"<span class='tag'>{E(k)}: {E(v)} <a href='{E(link(**{k: '', 'page': ''}))}' aria-label='remove'>x</a></span>"
        for k, v in (("q", q), ("task", task), ("tag", tag))
        if v
    )
    pager = ""
    if results.pages > 1:
        prev = (
            f"<a rel='prev' href='{E(link(page=results.page - 1))}'>previous</a> " if results.page > 1 else ""
        )
        nxt = (
            f" <a rel='next' href='{E(link(page=results.page + 1))}'>next</a>"
            if results.page < results.pages
            else ""
        )
        pager = f"<p>{prev}page {results.page} of {results.pages}{nxt}</p>"
    body = (
        f"<h1>Modules</h1>{form}<p id='count'>{results.total} model{'s' if results.total != 1 else ''}"
        f"{' matching' if (q or task or tag) else ''} {filters} <span class='muted'>served from {E(base_url)}</span></p>"
        + (f"<nav class='facets'>Tasks: {facets}</nav>" if facets else "")
        + (f"<nav class='facets'>Tags: {tagfacets}</nav>" if tagfacets else "")
        + f"<ul class='models'>{items or '<li>No model matches.</li>'}</ul>{pager}"
    )
    return _doc("Modules", body)


def model_page(
    model: Model, base_url: str, archives: dict[str, Archive], aliases: dict[str, Module] | None = None
) -> str:
    latest = model.latest
    named: dict[str, list[str]] = {}
    for name, target in sorted((aliases or {}).items()):
        named.setdefault(target.path, []).append(name)
    rows = "".join(
        f"<tr><td><a href='/{E(v.module.path)}'>{E(v.name or model.path)}</a>"
        f"{' <b>latest</b>' if v is latest else ''}"
        + "".join(f" <span class='alias'>{E(n)}</span>" for n in named.get(v.module.path, []))
        + f"</td><td>{date(v.mtime)}</td><td>{size_text(v.size)}</td>"
        f"<td><code>{E(archives[v.module.path].sha256) if v.module.path in archives else ''}</code></td></tr>"
        for v in model.versions
    )
    body = (
        f"<h1>{E(model.path)}</h1><p>{E(latest.card.title)}</p><p class='muted'>{E(latest.card.summary)}</p>"
        f"{_tags(latest.card.tags)}<h2>Versions</h2><table id='versions'><tr><th>version</th><th>date</th>"
        f"<th>size</th><th>sha256</th></tr>{rows}</table>"
        f"<p>Always the newest: <code>{E(base_url)}/{E(model.path)}/latest</code></p>"
        + _aliases_table(model, base_url, aliases or {})
    )
    return _doc(model.path, body, f" / <a href='/{E(model.path)}'>{E(model.path)}</a>")


def _aliases_table(model: Model, base_url: str, aliases: dict[str, Module]) -> str:
    if not aliases:
        return ""
    rows = "".join(
        f"<tr><td><code>{E(base_url)}/{E(model.path)}/{E(name)}</code></td>"
        f"<td><a href='/{E(target.path)}'>{E(target.path.rsplit('/', 1)[-1])}</a></td></tr>"
        for name, target in sorted(aliases.items())
    )
    return (
        "<h2>Aliases</h2><table id='aliases'><tr><th>alias (handle: MODEL@NAME)</th><th>version</th></tr>"
        f"{rows}</table>"
    )


def module_page(version: Version, url: str, archive: Archive, seen: Inspection) -> str:
    card = version.card
    parts = [f"<h1>{E(version.module.path)}</h1>", f"<p>Handle: <code id='handle'>{E(url)}</code></p>"]
    if card.meta:
        rows = "".join(
            f"<tr><th>{E(name)}</th><td>{_tags(card.meta[name]) if name == 'tags' else E(', '.join(card.meta[name]))}</td></tr>"
            for name in FIELDS
            if name in card.meta
        )
        parts.append(f"<table id='metadata'>{rows}</table>")
    if card.warning:
        parts.append(f"<p class='muted'>{E(card.warning)}</p>")
    if card.html.strip():
        parts.append(f"<article class='card'>{card.html}</article>")  # rendered with raw HTML off
    parts.append("<h2>Signatures</h2>")
    if seen.signatures:
        rows = "".join(
            f"<tr><td>{E(name)}</td><td>{E(_tensors(spec['inputs']))}</td>"
            f"<td>{E(_tensors(spec['outputs']))}</td><td>{E(', '.join(spec['tags']) or '(none)')}</td></tr>"
            for name, spec in sorted(seen.signatures.items())
        )
        parts.append(
            "<table id='signatures'><tr><th>name</th><th>inputs</th><th>outputs</th><th>graph tags</th></tr>"
            f"{rows}</table><p class='muted'>Read from the module's saved_model.pb: this server never "
            "loads or runs the modules it serves.</p>"
        )
    elif seen.signatures is not None:
        parts.append("<p>None: the module's graphs name no signature and no <code>__call__</code>.</p>")
    else:
        parts.append(f"<p>Not available: {E(seen.error or 'the module could not be read')}</p>")
    parts.append(_audit_section(seen.audit, seen.audit_error))
    parts.append(
        "<h2>Download</h2><table>"
        f"<tr><td>archive</td><td><a href='?tf-hub-format=compressed'>{E(version.module.path)}.tar.gz</a></td></tr>"
        f"<tr><td>size</td><td>{archive.size:,} bytes</td></tr>"
        f"<tr><td>sha256</td><td><code>{archive.sha256}</code></td></tr>"
        f"<tr><td>versions</td><td><a href='/{E(version.model)}'>every version of {E(version.model)}</a></td></tr></table>"
    )
    snippets = {
        "Python": f"import beam_hub\n\nmodule = beam_hub.load({url!r})\noutputs = module(inputs)",
        "Apache Beam": f"import beam_hub\n\npcoll | beam_hub.ApplyHubModule({url!r})",
        "tensorflow_hub": f"import tensorflow_hub as hub\n\nmodule = hub.load({url!r})",
    }
    parts.append("<h2>Use</h2>" + "".join(f"<h3>{E(k)}</h3><pre>{E(v)}</pre>" for k, v in snippets.items()))
    crumbs = f" / <a href='/{E(version.model)}'>{E(version.model)}</a>"
    return _doc(f"{version.module.path}: {card.title}", "".join(parts), crumbs)


def _tensors(tensors: dict[str, Any]) -> str:
    return ", ".join(describe(name, t) for name, t in tensors.items())


def _audit_section(report: AuditReport | None, error: str | None) -> str:
    if report is None:
        return f"<h2>Audit</h2><p>Not audited: {E(error or 'the module could not be read')}</p>"
    scanned = f"{report.scanned} scanned"
    if report.clean:
        unknown = (
            f"or is unknown to {E(report.op_registry)}"
            if report.op_registry
            else "(unknown ops not checked: no TensorFlow here to ask)"
        )
        return (
            "<h2>Audit</h2><p id='audit'>Clean: no op reads or writes files, lists them, calls Python, "
            f"reaches the network {unknown} ({scanned}).</p>"
        )
    rows = "".join(
        f"<tr><td>{E(f.severity)}</td><td>{E(f.kind)}</td><td><code>{E(f.op)}</code>"
        f"{' (' + E(f.detail) + ')' if f.detail else ''}</td>"
        f"<td>{E(f.node)} in {E(f.function or 'the top-level graph')}</td>"
        f"<td>{'<br>'.join(E(r) for r in f.reachable_from)}</td></tr>"
        for f in report.findings
    )
    return (
        f"<h2>Audit</h2><p id='audit'>{len(report.findings)} finding(s) ({len(report.high)} high; {scanned}). "
        "This module does more than compute: load it only if you trust what it does.</p>"
        "<table><tr><th>severity</th><th>kind</th><th>op</th><th>where</th><th>reachable from</th></tr>"
        f"{rows}</table>"
    )
