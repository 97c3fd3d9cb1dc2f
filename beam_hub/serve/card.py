"""A module's card: its README.md, with YAML front matter, rendered to HTML that runs nothing.

    ---
    license: apache-2.0
    task: text-embedding
    language: [en, fr]
    fine-tunable: true
    tags: [sentence-similarity, minilm]
    base_model: sentence-transformers/all-MiniLM-L6-v2
    ---
    # All MiniLM L6 v2
    Maps sentences to 384 numbers...

Markdown is rendered by markdown-it-py in CommonMark mode with raw HTML off: a README's
``<script>``, ``onerror=`` or ``<iframe>`` comes out as text, and links and images whose URL is
``javascript:``, ``vbscript:``, ``file:`` or ``data:`` (other than images) are not made links.
Images become links to the image: a page never loads anything from another host.
Front matter is read with ``yaml.safe_load``; only the fields below are kept, as short strings.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass, field
from typing import Any

MAX_README_BYTES = 1 << 20
MAX_MEMBERS_SCANNED = 10_000  # an archive without a README is not read to its end beyond this
MAX_FIELD_CHARS = 200
MAX_LIST_ITEMS = 50
#: front matter fields shown and searched, in the order the metadata table shows them
FIELDS = ("license", "task", "language", "fine-tunable", "tags", "base_model")
_ALIASES = {
    "fine_tunable": "fine-tunable",
    "base-model": "base_model",
    "languages": "language",
    "tag": "tags",
}


@dataclass(frozen=True)
class Card:
    title: str
    summary: str  # the first paragraph, as plain text
    html: str
    meta: dict[str, list[str]] = field(default_factory=dict)  # FIELDS present, values as strings
    warning: str = ""  # why the front matter was ignored, when it was

    @property
    def tags(self) -> list[str]:
        return self.meta.get("tags", [])

    @property
    def task(self) -> str:
        return (self.meta.get("task") or [""])[0]


def _markdown() -> Any:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.front_matter import front_matter_plugin

    md = MarkdownIt("commonmark", {"html": False}).enable("table").use(front_matter_plugin)
    md.add_render_rule("image", _image_as_link)
    return md


def _image_as_link(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """Images are links, so that a page never fetches anything from elsewhere (an inline
    ``data:image/...`` stays an image: it is part of the page)."""
    import html

    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = self.renderInlineAsText(token.children or [], options, env)
    if src.startswith("data:image/"):
        return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">'
    return f'<a href="{html.escape(src)}" class="image">[image: {html.escape(alt or src)}]</a>'


def read_card(text: str, default_title: str) -> Card:
    """Parse a README (front matter and Markdown) into a :class:`Card`."""
    md = _markdown()
    tokens = md.parse(text[:MAX_README_BYTES])
    meta: dict[str, Any] = {}
    warning = ""
    if tokens and tokens[0].type == "front_matter":
        meta, warning = _front_matter(tokens[0].content)
        tokens = tokens[1:]
    title, summary = default_title, ""
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h1" and title == default_title:
            title = tokens[i + 1].content.strip() or default_title
        if token.type == "paragraph_open" and not summary:
            summary = tokens[i + 1].content.strip()
    html = md.renderer.render(tokens, md.options, {})
    return Card(title=title[:MAX_FIELD_CHARS], summary=summary[:400], html=html, meta=meta, warning=warning)


def _front_matter(source: str) -> tuple[dict[str, list[str]], str]:
    import yaml

    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as e:
        return {}, f"front matter ignored: not YAML ({str(e).splitlines()[0]})"
    if not isinstance(data, dict):
        return {}, "front matter ignored: not a mapping of fields"
    meta: dict[str, list[str]] = {}
    for key, value in data.items():
        name = _ALIASES.get(str(key), str(key))
        if name not in FIELDS:
            continue
        values = value if isinstance(value, list) else [value]
        kept = [_scalar(v) for v in values[:MAX_LIST_ITEMS]]
        kept = [v for v in kept if v]
        if kept:
            meta[name] = kept
    return meta, ""


def _scalar(value: Any) -> str:
    """A front matter value as a short string; nested structures are dropped, not expanded."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (str, int, float)):
        return str(value).strip()[:MAX_FIELD_CHARS]
    return ""


def readme_of(directory: str | None, archive: str | None) -> str | None:
    """README.md of a module directory, else the one inside its archive (at most 1 MiB)."""
    if directory:
        path = os.path.join(directory, "README.md")
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                return f.read(MAX_README_BYTES).decode("utf-8", "replace")
        return None
    if archive:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for count, member in enumerate(tar):
                    if count >= MAX_MEMBERS_SCANNED:
                        return None
                    if member.name in ("README.md", "./README.md"):
                        if not member.isfile():
                            return None
                        readme = tar.extractfile(member)
                        return (
                            None
                            if readme is None
                            else readme.read(MAX_README_BYTES).decode("utf-8", "replace")
                        )
        except (tarfile.TarError, OSError, EOFError):
            return None
    return None
