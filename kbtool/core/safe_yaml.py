"""Safe YAML reading: plain data only, no aliases, no arbitrary objects, bounded size.

YAML aliases are refused outright (the knowledge base never needs them), which makes
"billion laughs" alias bombs fail at the first ``*ref`` instead of exhausting memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kbtool.core import plain_yaml

MAX_FILE_BYTES = 2_000_000

# The C loader (libyaml) is much faster; PyYAML wheels ship it, the fallback is pure Python.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(ValueError):
    """The file is not readable, plain YAML data."""


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that rejects anchors' aliases (pure-Python composer)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - PyYAML API
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML aliases (*ref) are not allowed in the knowledge base",
                event.start_mark,
            )
        return super().compose_node(parent, index)


MAX_DEPTH = 100
#: Below this many nesting indicators a file cannot be nested deeper than MAX_DEPTH.
_NESTING_SCAN_THRESHOLD = MAX_DEPTH


def _scan(text: str) -> tuple[bool, int]:
    """(has an alias, deepest collection nesting), from libyaml's iterative event parser.

    Composing a very deeply nested document recurses in C and can crash the interpreter, so
    the depth is measured on the event stream first, which uses no recursion.
    """
    loader = _BaseLoader(text)
    depth = deepest = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                return True, deepest
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                deepest = max(deepest, depth)
                if deepest > MAX_DEPTH:  # no need to read further
                    return False, deepest
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return False, deepest
    finally:
        loader.dispose()


def _may_be_deep(text: str) -> bool:
    return text.count("[") + text.count("{") + text.count("- ") > _NESTING_SCAN_THRESHOLD


def _estimated_nesting(text: str) -> int:
    """A rough, parser-independent nesting depth: open flow brackets outside quotes, plus the
    block levels of the current line (indentation steps and leading ``- `` indicators).

    Used only when the YAML library itself refuses a document, to tell "too deeply nested"
    (which recent PyYAML releases refuse on their own, with their own wording) from other
    syntax errors, so the user always gets our message.
    """
    deepest = flow = 0
    indents: list[int] = [0]
    for line in text.splitlines():
        body = line.lstrip(" ")
        if not body or body.startswith("#"):
            continue
        indent = len(line) - len(body)
        while indent < indents[-1]:
            indents.pop()
        if indent > indents[-1]:
            indents.append(indent)
        dashes = 0
        while body.startswith("- ") or body == "-":
            dashes += 1
            body = body[2:].lstrip(" ")
        quote = ""
        for char in body:
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "#":
                break
            elif char in "[{":
                flow += 1
                deepest = max(deepest, flow + len(indents) + dashes)
            elif char in "]}":
                flow = max(flow - 1, 0)
        deepest = max(deepest, flow + len(indents) + dashes)
    return deepest


def parse_yaml(text: str) -> Any:  # noqa: ANN401 - YAML data is untyped until validated
    """Parse ``text`` as plain YAML data; raise YamlError on syntax errors, aliases or nesting
    deeper than ``MAX_DEPTH``. Plain documents are built from the event stream (the same
    data, faster); anything else goes through PyYAML's loader."""
    data = plain_yaml.build(text, MAX_DEPTH)
    if data is not plain_yaml.UNSUPPORTED:
        return data
    try:
        if "*" in text or _may_be_deep(text):
            has_alias, deepest = _scan(text)
            if deepest > MAX_DEPTH:
                raise YamlError(f"collections nested deeper than {MAX_DEPTH} levels")
            if has_alias:
                loader = _NoAliasLoader(text)
                try:
                    return loader.get_single_data()
                finally:
                    loader.dispose()
        return yaml.load(text, Loader=_BaseLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        if _estimated_nesting(text) > MAX_DEPTH:
            raise YamlError(f"collections nested deeper than {MAX_DEPTH} levels") from exc
        raise YamlError(_syntax_message(exc)) from exc


def _syntax_message(exc: yaml.YAMLError) -> str:
    """Our message for a YAML syntax error: where it is (1-based line and column), then what."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return "YAML syntax error: " + " ".join(str(exc).split())


def read_yaml(path: Path) -> Any:  # noqa: ANN401
    """Read a UTF-8 YAML file of plain data, with clear errors for every failure mode."""
    return parse_yaml_bytes(read_file_bytes(path))


def read_file_bytes(path: Path) -> bytes:
    """The bytes of ``path``; YamlError naming the reason when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise YamlError(f"cannot read file: {exc.strerror}") from exc


def parse_yaml_bytes(raw: bytes) -> Any:  # noqa: ANN401
    """Parse the bytes of a YAML file: bounded size, UTF-8, not empty, plain data."""
    if len(raw) > MAX_FILE_BYTES:
        raise YamlError(f"file is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"not valid UTF-8 (byte {exc.start}: {raw[exc.start]:#04x})") from exc
    if not text.strip():
        raise YamlError("file is empty")
    return parse_yaml(text)


def dump_yaml(data: Any) -> str:  # noqa: ANN401
    """Serialise plain data as block-style YAML with stable key order (as given)."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )


class _Dumper(yaml.SafeDumper):
    """SafeDumper that never emits anchors/aliases and indents lists under their key."""

    def ignore_aliases(self, data: Any) -> bool:  # noqa: ANN401
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)
