"""Loader failure modes: each bad file yields a ``Problem`` naming the file and the field.

Every test copies the small valid fixture KB to ``tmp_path``, breaks one thing and checks the
problem reported (``file: field: message``), never a crash.
"""

from __future__ import annotations

import shutil
import time
import tracemalloc
from pathlib import Path

import pytest

import kbtool
from kbtool.core.errors import KnowledgeBaseError, Problem
from kbtool.core.loader import load_records
from kbtool.core.safe_yaml import MAX_FILE_BYTES

KB_SMALL = Path(__file__).parent / "fixtures" / "kb_small"
NODES = "taxonomy/nodes.yaml"
METHODS = "taxonomy/methods/methods.yaml"
MINILLM = "papers/gu2023minillm.yaml"


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    """A writable copy of the small fixture KB."""
    root = tmp_path / "kb"
    shutil.copytree(KB_SMALL, root)
    return root


def edit(root: Path, rel: str, old: str, new: str) -> None:
    """Replace exactly one occurrence of ``old`` in a fixture file."""
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {rel}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def problems_of(root: Path) -> list[Problem]:
    """The problems found in ``root``, sorted."""
    return sorted(load_records(root).problems)


def in_file(root: Path, rel: str) -> list[Problem]:
    """The problems of one file (a paper that fails validation also leaves references to it
    dangling, e.g. ``methods.minillm.papers``, which other tests cover)."""
    return [p for p in problems_of(root) if p.file == rel]


def only(problems: list[Problem]) -> Problem:
    """The single problem of a list (fails with the list shown otherwise)."""
    assert len(problems) == 1, problems
    return problems[0]


def test_valid_fixture_loads_without_problems() -> None:
    """The fixture itself is clean: 18 nodes, 4 methods, 6 papers."""
    records = load_records(KB_SMALL)
    assert records.problems == []
    assert (len(records.nodes), len(records.methods), len(records.papers)) == (18, 4, 6)
    kb = kbtool.load(KB_SMALL)
    assert len(kb.papers) == 6


def test_problem_renders_as_file_field_message() -> None:
    """The one-line format used by ``kbtool validate``."""
    assert str(Problem("papers/x.yaml", "year", "bad")) == "papers/x.yaml: year: bad"


def test_unknown_node_in_paper(kb: Path) -> None:
    """A paper placed under a node that does not exist."""
    edit(kb, MINILLM, "  - feedback\n", "  - feedbak\n")
    edit(kb, MINILLM, "{node: feedback,", "{node: feedbak,")
    p = only(problems_of(kb))
    assert (p.file, p.field) == (MINILLM, "nodes")
    assert "unknown node 'feedbak'" in p.message


def test_unknown_method_in_paper(kb: Path) -> None:
    """A paper that uses a method that does not exist."""
    edit(kb, MINILLM, "  - minillm\n", "  - mini-llm\n")
    p = only(problems_of(kb))
    assert (p.file, p.field) == (MINILLM, "methods")
    assert "unknown method 'mini-llm'" in p.message


def test_unknown_node_in_method(kb: Path) -> None:
    """A method attached to a node that does not exist."""
    edit(kb, METHODS, "nodes: [supervised-fine-tuning]", "nodes: [sft]")
    p = only(problems_of(kb))
    assert (p.file, p.field) == (METHODS, "methods.sft-objective.nodes")
    assert "'sft'" in p.message


def test_unknown_method_in_generalizes(kb: Path) -> None:
    """A reduction pointing at a method that does not exist."""
    edit(kb, METHODS, "- method: reverse-kl", "- method: backward-kl")
    p = only(problems_of(kb))
    assert (p.file, p.field) == (METHODS, "methods.minillm.generalizes")
    assert "unknown method 'backward-kl'" in p.message


def test_unknown_parent(kb: Path) -> None:
    """A taxonomy node whose parent does not exist."""
    edit(kb, NODES, "parent: alignment\n", "parent: alignement\n")
    p = only(problems_of(kb))
    assert (p.file, p.field) == (NODES, "nodes.preference.parent")
    assert "unknown node 'alignement'" in p.message


def test_duplicate_node_id(kb: Path) -> None:
    """Two taxonomy entries with one id."""
    edit(kb, NODES, "  - id: self-knowledge\n", "  - id: feedback\n")
    found = problems_of(kb)
    assert Problem(NODES, "nodes.feedback.id", "duplicate node id") in found


def test_taxonomy_cycle(kb: Path) -> None:
    """A parent chain that loops (a -> b -> a) is reported, not followed forever."""
    edit(
        kb,
        NODES,
        "name: Knowledge Elicitation\n    parent: kd-algorithms\n",
        "name: Knowledge Elicitation\n    parent: labeling\n",
    )
    found = problems_of(kb)
    assert found, "a cycle must be reported"
    assert {p.file for p in found} == {NODES}
    assert all("cycle" in p.message for p in found)
    assert {p.field for p in found} >= {
        "nodes.labeling.parent",
        "nodes.knowledge-elicitation.parent",
    }


def test_duplicate_arxiv_id_across_two_papers(kb: Path) -> None:
    """Two papers claiming one arXiv id: both files are named."""
    edit(kb, "papers/ko2024distillm.yaml", "arxiv_id: '2402.03898'", "arxiv_id: '2306.08543'")
    found = problems_of(kb)
    assert [(p.file, p.field) for p in found] == [
        ("papers/gu2023minillm.yaml", "arxiv_id"),
        ("papers/ko2024distillm.yaml", "arxiv_id"),
    ]
    assert "also used by ko2024distillm" in found[0].message
    assert "also used by gu2023minillm" in found[1].message


def test_duplicate_method_id_across_two_method_files(kb: Path) -> None:
    """The same method id in a second methods file (read after methods.yaml)."""
    (kb / "taxonomy/methods/more.yaml").write_text(
        "methods:\n"
        "  - id: forward-kl\n"
        "    name: Forward KL again\n"
        "    nodes: [divergence-and-similarity]\n"
        "    description: A second definition.\n"
        "    teacher_access: white-box\n"
        "    same_tokenizer_required: true\n"
        "    on_policy: false\n"
        "    formula: x\n",
        encoding="utf-8",
    )
    p = only(problems_of(kb))
    assert (p.file, p.field) == ("taxonomy/methods/more.yaml", "methods.forward-kl.id")
    assert "duplicate method id" in p.message and METHODS in p.message


def test_id_must_match_file_name(kb: Path) -> None:
    """papers/<id>.yaml: renaming the file without the id is an error."""
    (kb / MINILLM).rename(kb / "papers/minillm.yaml")
    found = problems_of(kb)
    id_problem = [p for p in found if p.file == "papers/minillm.yaml"]
    assert [(p.field) for p in id_problem] == ["id"]
    assert "'gu2023minillm'" in id_problem[0].message and "'minillm'" in id_problem[0].message


def test_malformed_yaml(kb: Path) -> None:
    """A syntax error names the file and, in the message, the line."""
    edit(kb, MINILLM, "venue: ICLR\n", "venue: [ICLR\n")
    p = only(in_file(kb, MINILLM))
    assert (p.file, p.field) == (MINILLM, "(file)")
    venue_line = (kb / MINILLM).read_text(encoding="utf-8").splitlines().index("venue: [ICLR")
    assert f"YAML syntax error at line {venue_line + 2}" in p.message


def test_wrong_type(kb: Path) -> None:
    """year: "abc" is reported at the field year."""
    edit(kb, MINILLM, "year: 2023\n", 'year: "abc"\n')
    p = only(in_file(kb, MINILLM))
    assert (p.file, p.field) == (MINILLM, "year")
    assert p.message == "must be an integer"


def test_wrong_type_deep_field_path(kb: Path) -> None:
    """Errors inside lists of records name the index: source.summary_table[0].row."""
    edit(kb, MINILLM, "    - row: 7\n", "    - row: seven\n")
    p = only(in_file(kb, MINILLM))
    assert (p.file, p.field) == (MINILLM, "source.summary_table[0].row")


def test_unquoted_arxiv_id_is_a_type_error(kb: Path) -> None:
    """arxiv_id: 2306.08543 is a YAML float (it would lose trailing zeros): refused."""
    edit(kb, MINILLM, "arxiv_id: '2306.08543'", "arxiv_id: 2306.08543")
    p = only(in_file(kb, MINILLM))
    assert (p.file, p.field) == (MINILLM, "arxiv_id")


def test_extra_field_in_file(kb: Path) -> None:
    """A misspelt key in a paper file."""
    edit(kb, MINILLM, "venue: ICLR\n", "venue: ICLR\nveneu: ICLR\n")
    p = only(in_file(kb, MINILLM))
    assert (p.file, p.field) == (MINILLM, "veneu")
    assert p.message.startswith("unknown field")


def test_method_file_error_names_the_index(kb: Path) -> None:
    """A bad enum value in the 3rd method of the file."""
    edit(
        kb,
        METHODS,
        "    teacher_access: white-box\n    same_tokenizer_required: true\n    on_policy: true",
        "    teacher_access: grey-box\n    same_tokenizer_required: true\n    on_policy: true",
    )
    found = problems_of(kb)
    fields = {(p.file, p.field) for p in found}
    assert (METHODS, "methods[2].teacher_access") in fields


def test_non_utf8_bytes(kb: Path) -> None:
    """Latin-1 bytes: a clear message with the byte offset, not a UnicodeDecodeError."""
    path = kb / MINILLM
    raw = path.read_bytes().replace(b"Furu Wei", b"Fur\xfc Wei")
    path.write_bytes(raw)
    p = only(in_file(kb, MINILLM))
    assert (p.file, p.field) == (MINILLM, "(file)")
    assert "UTF-8" in p.message
    offset = raw.index(b"\xfc")
    assert f"byte {offset}" in p.message


BOMB = (
    "\n".join(
        [
            "id: gu2023minillm",
            'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        ]
        + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
        + ["title: boom"]
    )
    + "\n"
)


def test_alias_bomb_fails_fast_without_memory_blowup(kb: Path) -> None:
    """A billion-laughs file (9**12 leaves once expanded) is refused at the first alias."""
    (kb / MINILLM).write_text(BOMB, encoding="utf-8")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        found = problems_of(kb)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 50 * 2**20
    bomb = [p for p in found if p.file == MINILLM]
    assert [(p.field) for p in bomb] == ["(file)"]
    assert "alias" in bomb[0].message


def test_plain_asterisks_are_not_aliases(kb: Path) -> None:
    """The alias guard must not refuse ordinary text containing '*'."""
    edit(kb, MINILLM, "  - Dolly Dataset\n", "  - '*Dolly* Dataset'\n")
    assert problems_of(kb) == []


@pytest.mark.parametrize("content", [b"", b"   \n\n", b"\n"])
def test_empty_file(kb: Path, content: bytes) -> None:
    """An empty (or blank) paper file is reported as empty."""
    (kb / MINILLM).write_bytes(content)
    found = [p for p in problems_of(kb) if p.file == MINILLM]
    assert [(p.field, p.message) for p in found] == [("(file)", "file is empty")]


def test_comment_only_file_is_not_a_paper(kb: Path) -> None:
    """A file holding only a comment parses to nothing: reported, not crashed on."""
    (kb / MINILLM).write_text("# nothing here\n", encoding="utf-8")
    found = [p for p in problems_of(kb) if p.file == MINILLM]
    assert len(found) == 1 and found[0].field == "(file)"


def test_empty_taxonomy_file(kb: Path) -> None:
    """An empty nodes.yaml is reported (and the papers then fail their node references)."""
    (kb / NODES).write_bytes(b"")
    found = problems_of(kb)
    assert Problem(NODES, "(file)", "file is empty") in found


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['echo pwned']\n",
        "id: !!python/object:os.system {}\n",
        "id: !!python/name:os.system\n",
    ],
)
def test_python_tags_are_refused(kb: Path, payload: str, tmp_path: Path) -> None:
    """Arbitrary-object tags never construct anything; the file is reported."""
    (kb / MINILLM).write_text(payload, encoding="utf-8")
    found = [p for p in problems_of(kb) if p.file == MINILLM]
    assert len(found) == 1 and found[0].field == "(file)"
    assert "constructor" in found[0].message or "tag" in found[0].message


def test_oversized_file(kb: Path) -> None:
    """Files above the size limit are refused before parsing."""
    (kb / MINILLM).write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    found = [p for p in problems_of(kb) if p.file == MINILLM]
    assert len(found) == 1 and "larger than" in found[0].message


def test_missing_taxonomy_and_missing_root(tmp_path: Path, kb: Path) -> None:
    """A KB without nodes.yaml, and a root that does not exist."""
    (kb / NODES).unlink()
    assert Problem(NODES, "(file)", "taxonomy file is missing") in problems_of(kb)
    missing = tmp_path / "nowhere"
    p = only(problems_of(missing))
    assert p.field == "(root)" and "does not exist" in p.message


def test_duplicates_within_a_list(kb: Path) -> None:
    """A node listed twice in one paper."""
    edit(kb, MINILLM, "  - feedback\n", "  - feedback\n  - feedback\n")
    p = only(problems_of(kb))
    assert (p.file, p.field, p.message) == (MINILLM, "nodes", "contains duplicates")


def test_several_problems_are_all_reported(kb: Path) -> None:
    """validate reports everything at once, across files."""
    edit(kb, MINILLM, "year: 2023\n", 'year: "abc"\n')
    edit(kb, "papers/ko2024distillm.yaml", "  - forward-kl\n", "  - nope\n")
    (kb / "papers/taori2023alpaca.yaml").write_bytes(b"")
    files = {p.file for p in problems_of(kb)}
    assert files == {MINILLM, "papers/ko2024distillm.yaml", "papers/taori2023alpaca.yaml", METHODS}


def test_load_raises_with_every_problem(kb: Path) -> None:
    """``kbtool.load`` refuses invalid data and the exception lists the problems."""
    edit(kb, MINILLM, "year: 2023\n", 'year: "abc"\n')
    with pytest.raises(KnowledgeBaseError) as info:
        kbtool.load(kb)
    assert [(p.file, p.field) for p in info.value.problems] == [
        (MINILLM, "year"),
        (METHODS, "methods.minillm.papers"),  # the paper that introduces minillm is gone
    ]
    assert f"{MINILLM}: year: " in str(info.value)


def test_parallel_reading_gives_the_same_records_and_problems(
    kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large knowledge bases are parsed by worker processes; the result must not change."""
    from kbtool.core import paper_files

    (kb / "papers" / "broken.yaml").write_text("id: broken\ntitle: [unclosed\n", encoding="utf-8")
    serial = load_records(kb, cache=False)
    monkeypatch.setattr(paper_files, "PARALLEL_THRESHOLD", 1)
    parallel = load_records(kb, cache=False)
    assert parallel.papers == serial.papers
    assert parallel.problems == serial.problems
    assert any(p.file == "papers/broken.yaml" for p in parallel.problems)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 50_000 + "]" * 50_000,
        "- " * 50_000 + "x",
        "a: " + "{b: " * 200 + "c" + "}" * 200,
        "".join(" " * i + f"k{i}:\n" for i in range(1_200)) + " " * 1_200 + "leaf",
    ],
)
def test_deeply_nested_yaml_is_refused_without_crashing(kb: Path, text: str) -> None:
    """libyaml composes nested collections recursively; very deep nesting must be refused
    before composing (it used to crash the interpreter)."""
    (kb / "papers" / "deep.yaml").write_text(text, encoding="utf-8")
    started = time.perf_counter()
    problem = only(in_file(kb, "papers/deep.yaml"))
    assert "nested deeper than 100 levels" in problem.message
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("text", ["a: [1, 2\nb: 3\n", "title: [" + "[x], " * 200 + "\n"])
def test_shallow_syntax_errors_are_not_reported_as_nesting(kb: Path, text: str) -> None:
    """Only genuinely deep documents get the nesting message; other errors keep theirs."""
    (kb / "papers" / "broken.yaml").write_text(text, encoding="utf-8")
    problem = only(in_file(kb, "papers/broken.yaml"))
    assert "nested deeper" not in problem.message
