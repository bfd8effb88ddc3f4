"""A fixture knowledge base with post-survey papers and one extension node, for the tests of
issue 14 (placement basis, node origin, --since, the "new since the survey" site page).

Built in a temporary directory from tests/fixtures/kb_small plus the papers below (written by
hand: their facts are made up for the tests, not taken from any source).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kbtool.core.model import Paper
from kbtool.ingest.paper_io import write_paper

KB_SMALL = Path(__file__).parent / "fixtures" / "kb_small"
EXTENSION = "on-policy-distillation"
SECTION = {"repo": "someone/awesome-opd", "section": "Papers > On-Policy"}

NEW_PAPERS = [
    {
        "id": "lee2025onpolicy",
        "title": "On-Policy Distillation for Small Reasoners",
        "authors": ["Ann Lee"],
        "year": 2025,
        "month": 6,
        "venue": "ICLR",
        "venue_year": 2026,
        "arxiv_id": "2506.01234",
        "nodes": [EXTENSION, "reinforcement-learning"],
        "placements": [
            {"node": EXTENSION, "basis": "crosswalk", "sections": [SECTION]},
            {"node": "reinforcement-learning", "basis": "reviewed", "note": "reward model"},
        ],
    },
    {
        "id": "agents2024distilling",
        "title": "Distilling Agents Without Authors",
        "year": 2024,
        "month": 3,
        "venue": "arXiv",
        "arxiv_id": "2403.00002",
        "nodes": ["feedback"],
        "placements": [{"node": "feedback", "basis": "reviewed"}],
    },
    {
        "id": "kim2026self",
        "title": "Self-Distillation With Privileged Context",
        "authors": ["Bo Kim", "Cy Park"],
        "year": 2026,
        "month": 1,
        "venue": "arXiv",
        "arxiv_id": "2601.00003",
        "nodes": ["self-knowledge", EXTENSION],
        "placements": [
            {"node": "self-knowledge", "basis": "crosswalk", "sections": [SECTION]},
            {"node": EXTENSION, "basis": "crosswalk", "sections": [SECTION]},
        ],
    },
]
NEW_IDS = ["kim2026self", "lee2025onpolicy", "agents2024distilling"]  # newest first


def build_post_survey_kb(root: Path) -> Path:
    """Copy kb_small to ``root``, add the extension node and the post-survey papers."""
    shutil.copytree(KB_SMALL, root)
    nodes = root / "taxonomy" / "nodes.yaml"
    with nodes.open("a", encoding="utf-8") as handle:
        handle.write(
            f"  - id: {EXTENSION}\n    name: On-Policy Distillation\n"
            "    parent: distillation-algorithms\n    order: 9\n"
            "    description: Students trained on their own samples, scored by a teacher.\n"
            "    origin: kd-atlas\n"
        )
    for data in NEW_PAPERS:
        write_paper(root, Paper.model_validate(data))
    return root
