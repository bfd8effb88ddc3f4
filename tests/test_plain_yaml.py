"""The event-stream YAML builder gives exactly PyYAML's safe C loader's data, or steps aside.

Exactly means the same types too (``True`` is not ``1``), the same key order and the same
values, on every file of the bundled knowledge base, on documents PyYAML itself writes from
random data in every style, and on random plain scalars (YAML 1.1's implicit typing has many
corners). Whatever it does not build it leaves to PyYAML (``UNSUPPORTED``), and a document
PyYAML refuses is never built.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from kbtool.core.plain_yaml import UNSUPPORTED, build
from kbtool.core.safe_yaml import MAX_DEPTH, YamlError, parse_yaml

REPO = Path(__file__).resolve().parent.parent


def pyyaml(text: str) -> Any:  # noqa: ANN401
    return yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: S506 - the safe C loader


def same(a: object, b: object) -> bool:
    """Equal with equal types at every level, keys in the same order (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        if len(a) != len(b):
            return False
        keys_alike = all(same(x, y) for x, y in zip(a, b, strict=True))  # order and types
        return keys_alike and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def test_same_comparison_can_fail() -> None:
    assert not same({"a": True}, {"a": 1})
    assert not same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not same([1.0], [1])
    assert same({"x": [float("nan")]}, {"x": [float("nan")]})


def bundled_files() -> list[Path]:
    return sorted([*(REPO / "taxonomy").rglob("*.yaml"), *(REPO / "papers").glob("*.yaml")])


def test_every_bundled_file_is_built_as_pyyaml_reads_it() -> None:
    files = bundled_files()
    assert len(files) > 700
    for path in files:
        text = path.read_text(encoding="utf-8")
        data = build(text, MAX_DEPTH)
        assert data is not UNSUPPORTED, f"{path.name} fell back to PyYAML"
        assert same(data, pyyaml(text)), path.name


plain_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), st.just(datetime.UTC))),
)
plain_data = st.recursive(
    plain_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none()),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=25,
)


@given(
    data=plain_data,
    flow=st.sampled_from([None, True, False]),
    unicode=st.booleans(),
    width=st.sampled_from([20, 80, 10_000]),
)
def test_documents_pyyaml_writes_are_built_alike(
    data: object, flow: bool | None, unicode: bool, width: int
) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=unicode, width=width)
    built = build(text, MAX_DEPTH)
    if "!!" not in text:  # PyYAML writes an explicit tag now and then (a wrapped timestamp)
        assert built is not UNSUPPORTED, text
    if built is not UNSUPPORTED:
        assert same(built, pyyaml(text)), text


# Words with a meaning in YAML 1.1 plain scalars, and characters that change how a line parses.
TRICKY = [
    "yes", "No", "ON", "off", "y", "n", "true", "False", "~", "null", "NULL", "", "0", "-0",
    "0x1F", "0o17", "017", "0b101", "1_000", "1:20:30", "-1:05", ".5", "1.", "1e3", "1.0e+3",
    "-.inf", ".NaN", ".nan", "2023-06-01", "2023-6-1 10:00:00", "2023-06-01T10:00:00Z",
    "2023-06", "=", "<<", "+12", "1,000", "é",
]  # fmt: skip
scalar_text = st.lists(
    st.one_of(st.sampled_from(TRICKY), st.sampled_from(list(" :#-'\"[]{},!&*?|>%@`\t."))),
    max_size=5,
).map("".join)


@given(scalar=scalar_text, where=st.sampled_from(["value", "item", "key", "flow"]))
def test_random_scalars_are_built_alike_or_left_to_pyyaml(scalar: str, where: str) -> None:
    text = {
        "value": f"key: {scalar}\n",
        "item": f"- {scalar}\n- end\n",
        "key": f"{scalar}: value\n",
        "flow": f"[{scalar}, end]\n",
    }[where]
    built = build(text, MAX_DEPTH)
    try:
        expected = pyyaml(text)
    except yaml.YAMLError:
        assert built is UNSUPPORTED, text  # never data where PyYAML refuses the document
        return
    if built is not UNSUPPORTED:
        assert same(built, expected), text


LEFT_TO_PYYAML = {
    "core-tag": "a: !!str 1\n",
    "local-tag": "a: !custom x\n",
    "alias": "a: &anchor 1\nb: *anchor\n",
    "anchor": "a: &anchor 1\n",
    "merge": "base: {x: 1}\nmerged:\n  <<: {y: 2}\n",
    "value-key": "a: =\n",
    "sequence-key": "? [a, b]\n: c\n",
    "mapping-key": "? {a: b}\n: c\n",
    "two-documents": "a: 1\n---\nb: 2\n",
    "unclosed-flow": "a: [1, 2\n",
    "unclosed-quote": "a: 'open\n",
    "too-deep": "- " * (MAX_DEPTH + 1) + "x\n",
}


@pytest.mark.parametrize("text", LEFT_TO_PYYAML.values(), ids=LEFT_TO_PYYAML.keys())
def test_what_it_does_not_build_is_left_to_pyyaml(text: str) -> None:
    assert build(text, MAX_DEPTH) is UNSUPPORTED


def test_nesting_up_to_the_limit_is_built() -> None:
    text = "[" * MAX_DEPTH + "x" + "]" * MAX_DEPTH
    data = build(text, MAX_DEPTH)
    assert same(data, pyyaml(text))
    for _ in range(MAX_DEPTH):
        assert isinstance(data, list)
        data = data[0]
    assert data == "x"


def test_a_document_it_leaves_still_gets_our_messages() -> None:
    """parse_yaml falls back to PyYAML's loader: its checks and wording are unchanged."""
    with pytest.raises(YamlError, match="aliases"):
        parse_yaml("a: &x 1\nb: *x\n")
    with pytest.raises(YamlError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_yaml("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(YamlError, match="YAML syntax error at line 2, column 1"):
        parse_yaml("a: [1, 2\n")
    assert parse_yaml("base: {x: 1}\nmerged:\n  <<: {y: 2}\n") == {
        "base": {"x": 1},
        "merged": {"y": 2},
    }
