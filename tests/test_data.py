"""Checks of the bundled data (taxonomy/, papers/): the issue's taxonomy, provenance, facts."""

from __future__ import annotations

from collections import Counter

import pytest

import kbtool
from kbtool.core.knowledge_base import KnowledgeBase
from kbtool.core.loader import load_records
from kbtool.core.model import NodeOrigin, Paper

#: The 40 taxonomy nodes of the issue and their parents (None for the four pillars).
EXPECTED_PARENTS: dict[str, str | None] = {
    "kd-algorithms": None,
    "knowledge-elicitation": "kd-algorithms",
    "labeling": "knowledge-elicitation",
    "expansion": "knowledge-elicitation",
    "curation": "knowledge-elicitation",
    "feature": "knowledge-elicitation",
    "feedback": "knowledge-elicitation",
    "self-knowledge": "knowledge-elicitation",
    "distillation-algorithms": "kd-algorithms",
    "supervised-fine-tuning": "distillation-algorithms",
    "divergence-and-similarity": "distillation-algorithms",
    "reinforcement-learning": "distillation-algorithms",
    "rank-optimization": "distillation-algorithms",
    "skill-distillation": None,
    "context-following": "skill-distillation",
    "instruction-following": "context-following",
    "multi-turn-dialogue": "context-following",
    "rag-capability": "context-following",
    "alignment": "skill-distillation",
    "thinking-pattern": "alignment",
    "preference": "alignment",
    "value": "alignment",
    "agent": "skill-distillation",
    "tool-using": "agent",
    "planning": "agent",
    "nlp-task-specialization": "skill-distillation",
    "nlu": "nlp-task-specialization",
    "nlg": "nlp-task-specialization",
    "information-retrieval": "nlp-task-specialization",
    "recommendation": "nlp-task-specialization",
    "text-generation-evaluation": "nlp-task-specialization",
    "code": "nlp-task-specialization",
    "multi-modality": "skill-distillation",
    "verticalization-distillation": None,
    "law": "verticalization-distillation",
    "medical-healthcare": "verticalization-distillation",
    "finance": "verticalization-distillation",
    "science": "verticalization-distillation",
    "misc": "verticalization-distillation",
    "encoder-based-kd": None,
}


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    """The bundled knowledge base."""
    return kbtool.load()


def paper(kb: KnowledgeBase, key: str) -> Paper:
    """A paper by id or arXiv id."""
    found = kb.get(key)
    assert isinstance(found, Paper), key
    return found


def test_exactly_the_40_nodes_of_the_issue(kb: KnowledgeBase) -> None:
    """The survey's nodes are exactly the issue's node ids, each under the right parent."""
    assert len(EXPECTED_PARENTS) == 40
    survey = {n.id: n.parent for n in kb.nodes.values() if n.origin == NodeOrigin.SURVEY}
    assert survey == EXPECTED_PARENTS
    assert [n.id for n in kb.children(None)] == [
        "kd-algorithms",
        "skill-distillation",
        "verticalization-distillation",
        "encoder-based-kd",
    ]


def test_extension_nodes_are_marked_and_hang_under_the_survey(kb: KnowledgeBase) -> None:
    """Our extensions say origin kd-atlas, are at most 12, and refine a survey node."""
    extensions = [n for n in kb.nodes.values() if n.origin == NodeOrigin.KD_ATLAS]
    assert 1 <= len(extensions) <= 12
    assert len(extensions) + len(EXPECTED_PARENTS) == len(kb.nodes)
    for node in extensions:
        assert node.id not in EXPECTED_PARENTS
        assert node.parent in EXPECTED_PARENTS, node.id
        assert not kb.children(node.id), f"{node.id} should be a leaf"
    orders = [n.order for n in kb.children("distillation-algorithms")]
    assert len(orders) == len(set(orders))


def test_validate_is_clean() -> None:
    """No problem anywhere in the bundled data."""
    assert load_records().problems == []


def test_summary_table_rows_1_to_82_each_exactly_once(kb: KnowledgeBase) -> None:
    """Table 3 has 82 rows; each is attached to exactly one paper, 82 papers in all."""
    rows = Counter(r.row for p in kb.papers.values() for r in p.source.summary_table)
    assert sorted(rows) == list(range(1, 83))
    assert set(rows.values()) == {1}
    assert sum(1 for p in kb.papers.values() if p.source.summary_table) == 82


def test_arxiv_ids_unique(kb: KnowledgeBase) -> None:
    """No two papers share an arXiv id."""
    ids = [p.arxiv_id for p in kb.papers.values() if p.arxiv_id]
    assert len(ids) == len(set(ids))


def test_unplaced_papers_are_cited_by_the_survey(kb: KnowledgeBase) -> None:
    """A paper without nodes is only there because the survey cites it."""
    assert [p.id for p in kb.papers.values() if not p.nodes and not p.cited_by_survey] == []


def test_minillm_placement(kb: KnowledgeBase) -> None:
    """MiniLLM (2306.08543) is listed under Feature, Feedback and Divergence and Similarity."""
    minillm = paper(kb, "2306.08543")
    assert minillm.title == "MiniLLM: Knowledge Distillation of Large Language Models"
    assert {"feature", "feedback", "divergence-and-similarity"} <= set(minillm.nodes)
    assert "minillm" in minillm.methods


def test_constitutional_ai_title(kb: KnowledgeBase) -> None:
    """The list's 'Consitutional' typo is not the stored title."""
    constitutional = paper(kb, "2212.08073")
    assert constitutional.title == "Constitutional AI: Harmlessness from AI Feedback"
    assert not [p.id for p in kb.papers.values() if "Consitutional" in p.title]


def test_gkd_objectives(kb: KnowledgeBase) -> None:
    """GKD (On-Policy Distillation of Language Models, 2306.13649) uses D&S and RL objectives."""
    gkd = paper(kb, "2306.13649")
    assert gkd.title.startswith("On-Policy Distillation of Language Models")
    assert gkd.objectives == ["divergence-and-similarity", "reinforcement-learning"]


def test_printed_typo_kept_as_provenance(kb: KnowledgeBase) -> None:
    """Lion's seed knowledge is 'Alpaca Data'; the table printed 'Alpaca Cata'."""
    lion = paper(kb, "2305.12870")
    assert lion.seed_knowledge == ["Alpaca Data"]
    assert [r.printed for r in lion.source.summary_table] == [{"seed_knowledge": "Alpaca Cata"}]


def test_links_printed_with_trailing_space_are_present(kb: KnowledgeBase) -> None:
    """The list prints a few links as '(url )'; they must not have been dropped on import."""
    assert paper(kb, "2401.10020").code == [
        "https://github.com/lucidrains/self-rewarding-lm-pytorch?tab=readme-ov-file"
    ]
    assert paper(kb, "2401.10491").code == ["https://github.com/fanqiwan/FuseLLM"]
    assert "https://github.com/timinar/BabyLlama" in paper(kb, "2308.02019").data


def test_every_method_loss_resolves_to_a_registered_callable(kb: KnowledgeBase) -> None:
    """Each method's ``loss`` names a function of reference_impls.REGISTRY (imports torch)."""
    import reference_impls

    with_loss = [m for m in kb.methods.values() if m.loss]
    assert with_loss
    for method in with_loss:
        assert method.loss is not None
        package, name = method.loss.rsplit(".", 1)
        assert package == "reference_impls", method.id
        assert name in reference_impls.REGISTRY, method.id
        function = getattr(reference_impls, name)
        assert callable(function) and function is reference_impls.REGISTRY[name], method.id


def test_every_method_utility_is_exported_and_every_demo_is_known(kb: KnowledgeBase) -> None:
    """``utilities`` name public objects of reference_impls; ``demo`` names a scenario (with a
    token-level loss), a standalone demo or a registry loss (imports torch)."""
    import shlex

    import reference_impls
    from reference_impls.demos.cli import STANDALONE_DEMOS
    from reference_impls.demos.tasks import SCENARIOS

    utilities = [(m.id, u) for m in kb.methods.values() for u in m.utilities]
    demos = [(m.id, shlex.split(m.demo)) for m in kb.methods.values() if m.demo]
    assert len(utilities) >= 7 and len(demos) >= 3
    for method_id, dotted in utilities:
        name = dotted.removeprefix("reference_impls.")
        assert name in reference_impls.__all__, method_id
        assert callable(getattr(reference_impls, name)), method_id
    for method_id, argv in demos:
        if argv[0] in SCENARIOS:
            assert argv[1] == "--loss" and argv[2] in reference_impls.TOKEN_LEVEL_LOSSES, method_id
        else:
            assert argv[0] in STANDALONE_DEMOS or argv[0] in reference_impls.REGISTRY, method_id


def test_method_references_resolve(kb: KnowledgeBase) -> None:
    """Introducing papers list their method, so the graph has both directions."""
    missing = [
        (m.id, pid)
        for m in kb.methods.values()
        for pid in m.papers
        if m.id not in kb.papers[pid].methods
    ]
    assert missing == []
