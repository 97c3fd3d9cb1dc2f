"""MkDocs hooks: the CLI reference from the argparse parsers and the API reference from
``beam_hub.__all__``, made at build time so that neither can drift from the code.

A page holding ``<!-- cli-reference -->`` gets every command's ``--help``; one holding
``<!-- api-reference -->`` gets a mkdocstrings block for each public name. A public name without a
docstring stops the build. The docstrings' Sphinx roles (``:func:`beam_hub.load```) are shown as
code.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
from typing import Any

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.exceptions import PluginError

CLI = "<!-- cli-reference -->"
API = "<!-- api-reference -->"


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")


class _Roles(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        return [_ROLE.sub(r"`\1`", line) for line in lines]


class SphinxRolesAsCode(Extension):
    def extendMarkdown(self, md: Any) -> None:
        md.preprocessors.register(_Roles(md), "sphinx-roles", 30)


def on_config(config: Any) -> Any:
    config.markdown_extensions.append(SphinxRolesAsCode())
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI in markdown:
        markdown = markdown.replace(CLI, cli_reference())
    if API in markdown:
        markdown = markdown.replace(API, api_reference())
    return markdown


def cli_reference() -> str:
    os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal: the same width on every machine
    from beam_hub.cli import build_parser
    from pipelines.embed import help_parser

    parser = build_parser()
    out = [_block("beam-hub", parser)]
    for name, sub in _subcommands(parser):
        if name == "embed":
            sub = help_parser()
        out.append(_block(f"beam-hub {name}", sub))
        out.extend(_block(f"beam-hub {name} {inner}", p) for inner, p in _subcommands(sub))
    return "\n".join(out)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def _block(title: str, parser: argparse.ArgumentParser) -> str:
    return f"## `{title}`\n\n```text\n{parser.format_help().rstrip()}\n```\n"


def api_reference() -> str:
    import beam_hub

    out = []
    for name in sorted(beam_hub.__all__, key=str.lower):
        obj = getattr(beam_hub, name)
        if inspect.ismodule(obj):
            path = obj.__name__
        else:
            path = f"{obj.__module__}.{obj.__qualname__}"
        if not inspect.getdoc(obj):
            raise PluginError(f"beam_hub.{name} ({path}) has no docstring: the API reference needs one")
        out.append(f"## `{name}`\n\n::: {path}\n")
    return "\n".join(out)
