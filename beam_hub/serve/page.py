"""HTML pages of `beam-hub serve`: the module list and one page per module."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from beam_hub.safety.report import AuditReport
from beam_hub.serve.store import Archive, Module


@dataclass(frozen=True)
class Inspection:
    """What the server knows of a module's contents: signatures (None: not loaded, see error), audit."""

    signatures: dict[str, Any] | None
    error: str | None
    audit: AuditReport | None


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
    "pre{background:#f5f5f5;padding:.8rem;overflow-x:auto}code{background:#f5f5f5}"
)


def _doc(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def index_page(modules: list[Module], base_url: str) -> str:
    rows = "".join(f"<li><a href='/{html.escape(m.path)}'>{html.escape(m.path)}</a></li>" for m in modules)
    return _doc(
        "Modules",
        f"<h1>Modules</h1><p>{len(modules)} modules served from {html.escape(base_url)}</p>"
        f"<ul>{rows or '<li>none yet</li>'}</ul>",
    )


def module_page(
    module: Module,
    url: str,
    archive: Archive,
    readme: str | None,
    seen: Inspection,
) -> str:
    parts = [f"<h1>{html.escape(module.path)}</h1>", f"<p>Handle: <code>{html.escape(url)}</code></p>"]
    if readme:
        parts.append(f"<h2>README</h2><pre>{html.escape(readme)}</pre>")
    parts.append("<h2>Signatures</h2>")
    if seen.signatures:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(', '.join(str(i) for i in spec.inputs.values()))}</td>"
            f"<td>{html.escape(', '.join(str(o) for o in spec.outputs.values()))}</td></tr>"
            for name, spec in sorted(seen.signatures.items())
        )
        parts.append(f"<table><tr><th>name</th><th>inputs</th><th>outputs</th></tr>{rows}</table>")
    else:
        parts.append(f"<p>Not available: {html.escape(seen.error or 'the module did not load')}</p>")
    parts.append(_audit_section(seen.audit))
    parts.append(
        "<h2>Download</h2><table>"
        f"<tr><td>archive</td><td><a href='?tf-hub-format=compressed'>{html.escape(module.path)}.tar.gz</a></td></tr>"
        f"<tr><td>size</td><td>{archive.size:,} bytes</td></tr>"
        f"<tr><td>sha256</td><td><code>{archive.sha256}</code></td></tr></table>"
    )
    usage = (
        f"import beam_hub\n\nmodule = beam_hub.load({url!r})\noutputs = module(inputs)\n\n"
        f"# in a Beam pipeline\npcoll | beam_hub.ApplyHubModule({url!r})\n\n"
        f"# tensorflow_hub reads the same URL\nimport tensorflow_hub as hub\nhub.load({url!r})"
    )
    parts.append(f"<h2>Use</h2><pre>{html.escape(usage)}</pre>")
    return _doc(module.path, "".join(parts))


def _audit_section(report: AuditReport | None) -> str:
    if report is None:
        return "<h2>Audit</h2><p>Not audited (see above).</p>"
    scanned = f"{report.scanned} scanned"
    if report.clean:
        return (
            "<h2>Audit</h2><p id='audit'>Clean: no op reads or writes files, lists them, calls Python, "
            f"reaches the network or is unknown to TensorFlow ({scanned}).</p>"
        )
    rows = "".join(
        f"<tr><td>{html.escape(f.severity)}</td><td>{html.escape(f.kind)}</td><td><code>{html.escape(f.op)}</code>"
        f"{' (' + html.escape(f.detail) + ')' if f.detail else ''}</td>"
        f"<td>{html.escape(f.node)} in {html.escape(f.function or 'the top-level graph')}</td>"
        f"<td>{'<br>'.join(html.escape(r) for r in f.reachable_from)}</td></tr>"
        for f in report.findings
    )
    return (
        f"<h2>Audit</h2><p id='audit'>{len(report.findings)} finding(s) ({len(report.high)} high; {scanned}). "
        "This module does more than compute: load it only if you trust what it does.</p>"
        "<table><tr><th>severity</th><th>kind</th><th>op</th><th>where</th><th>reachable from</th></tr>"
        f"{rows}</table>"
    )
