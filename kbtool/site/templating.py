"""The jinja2 environment of the site's page templates, its cache of compiled templates, and
the pages' YAML front matter."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

import jinja2
import yaml
from markupsafe import Markup


def _safe_url(value: object) -> bool:
    """Only absolute http(s) links become hrefs (the model checks this too; defence in depth)."""
    return isinstance(value, str) and re.match(r"^https?://[^\s<>\"']+$", value) is not None


def make_env(templates: Path, bytecode_dir: Path | None = None) -> jinja2.Environment:
    """The jinja2 environment for page templates: autoescape everywhere, undefined is an error;
    compiled templates kept in ``bytecode_dir`` (jinja checks each against its source)."""
    env = jinja2.Environment(
        bytecode_cache=bytecode_cache(bytecode_dir),
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.tests["safe_url"] = _safe_url
    return env


def bytecode_cache(directory: Path | None) -> jinja2.FileSystemBytecodeCache | None:
    """A cache of compiled templates in ``directory`` (None: none, or it cannot be made)."""
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(directory))


def front_matter(title: str, **meta: Any) -> Markup:
    """YAML front matter; the title is HTML-escaped because the theme renders titles as HTML."""
    data = {"title": escape(title, quote=False), **meta}
    dumped = yaml.dump(data, Dumper=_YAML_DUMPER, allow_unicode=True, sort_keys=False, width=10_000)
    return Markup(f"---\n{dumped}---\n")


#: libyaml's emitter when PyYAML has it (one front matter per page: 10,000 at scale).
_YAML_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
