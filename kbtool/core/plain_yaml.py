"""Build plain YAML data straight from libyaml's event stream, skipping PyYAML's node graph.

PyYAML's C loader parses in C but composes a node graph and constructs every value in Python,
which is most of the cost of reading 10,000 paper files. Our files are plain data: block or
flow mappings and sequences of untagged scalars. For such a document ``build`` gives exactly
what ``yaml.load(text, Loader=yaml.CSafeLoader)`` gives, in one loop over the parser's events:
quoted scalars are strings, and plain scalars are typed by the loader's own implicit resolvers
and constructed by its own constructors (null, bool, int, float, timestamp).

Anything else (tags, anchors, aliases, merge keys, a collection as a key, several documents,
nesting deeper than asked, a syntax error, no C extension) gives ``UNSUPPORTED``, and the caller
reads the document with PyYAML's loader, so errors and rare constructs behave as before.
The loop is iterative: deep nesting cannot exhaust the C stack.
"""

from __future__ import annotations

from typing import Any, Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode


class _Unsupported:
    """The type of ``UNSUPPORTED``: a document ``build`` leaves to PyYAML's loader."""

    def __repr__(self) -> str:
        return "UNSUPPORTED"


UNSUPPORTED: Final = _Unsupported()

#: The loader whose results ``build`` reproduces (None without PyYAML's C extension).
_LOADER: Any = getattr(yaml, "CSafeLoader", None)
_PARSER: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)
#: Tags of plain scalars built here, with the loader's constructor; other tags are unsupported.
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)
_CONSTRUCTOR = SafeConstructor()  # its scalar constructors keep no state
_EXPECT_KEY: Final = object()


def build(text: str, max_depth: int) -> Any:  # noqa: ANN401 - YAML data is untyped
    """The data of the single YAML document ``text``, or ``UNSUPPORTED`` (see the module)."""
    if _PARSER is None or _LOADER.yaml_path_resolvers:
        return UNSUPPORTED
    parser = _PARSER(text)
    try:
        return _build(parser.get_event, max_depth)
    except yaml.YAMLError:
        return UNSUPPORTED
    finally:
        parser.dispose()


def _build(next_event: Any, max_depth: int) -> Any:  # noqa: ANN401, C901 - one event loop
    if type(next_event()) is not StreamStartEvent or type(next_event()) is not DocumentStartEvent:
        return UNSUPPORTED
    resolvers = _LOADER.yaml_implicit_resolvers
    open_collections: list[Any] = []  # the mappings and sequences being filled, innermost last
    pending_keys: list[Any] = []  # per open collection: a mapping's key awaiting its value
    document: Any = UNSUPPORTED
    while True:
        event = next_event()
        kind = type(event)
        if kind is ScalarEvent:
            if event.anchor is not None or event.tag is not None:
                return UNSUPPORTED
            item = _plain_scalar(event.value, resolvers) if event.implicit[0] else event.value
            if item is UNSUPPORTED:
                return UNSUPPORTED
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.anchor is not None or event.tag is not None:
                return UNSUPPORTED
            if len(open_collections) >= max_depth:
                return UNSUPPORTED
            open_collections.append({} if kind is MappingStartEvent else [])
            pending_keys.append(_EXPECT_KEY)
            continue
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            item = open_collections.pop()
            pending_keys.pop()
        elif kind is DocumentEndEvent:
            break
        else:  # an alias
            return UNSUPPORTED
        if not open_collections:
            document = item
            continue
        parent = open_collections[-1]
        if type(parent) is list:
            parent.append(item)
        elif pending_keys[-1] is _EXPECT_KEY:
            if type(item) is dict or type(item) is list:
                return UNSUPPORTED  # a complex key: PyYAML refuses it as unhashable
            pending_keys[-1] = item
        else:
            parent[pending_keys[-1]] = item
            pending_keys[-1] = _EXPECT_KEY
    if type(next_event()) is not StreamEndEvent:
        return UNSUPPORTED  # more than one document
    return document


def _plain_scalar(value: str, resolvers: dict[Any, Any]) -> Any:  # noqa: ANN401
    """A plain scalar typed as PyYAML's resolver types it (first the resolvers for its first
    character, then those for any character), built by the loader's constructor."""
    candidates = resolvers.get(value[0] if value else "", [])
    wildcard = resolvers.get(None)
    for tag, pattern in candidates + wildcard if wildcard else candidates:
        if pattern.match(value):
            if tag not in _SCALAR_TAGS:
                return UNSUPPORTED  # merge keys, '=' values and the like
            return _LOADER.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, value))
    return value
