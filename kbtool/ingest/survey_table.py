"""``kbtool import-summary``: attach the survey's Table 3 (skill summary) facts to papers.

Each row names a method and a citation ("Gu et al., 2024"); it is matched to a paper by the
method name in the title, else by the first author's surname and the year, else through
``ROW_LINKS`` (rows whose paper title does not contain the method name). Cells are
normalised (typos fixed, labels mapped to node ids) and the printed value is kept in
``source.summary_table[].printed`` where it differs.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from kbtool.core.loader import load_for_import
from kbtool.core.model import Paper, SummaryRowSource
from kbtool.ingest.paper_io import write_paper
from kbtool.ingest.titles import normalize_title

COLUMNS = (
    "section",
    "method",
    "citation",
    "skill",
    "seed_knowledge",
    "teacher",
    "student",
    "elicitation",
    "objective",
)
ELICITATION = {
    "label": "labeling",
    "labeling": "labeling",
    "self-distillation": "self-knowledge",
    "self-knowledge": "self-knowledge",
    "ik": "feature",
    "internal knowledge": "feature",
    "feature": "feature",
    "data curation": "curation",
    "curation": "curation",
    "expansion": "expansion",
    "feedback": "feedback",
}
OBJECTIVE = {
    "sft": "supervised-fine-tuning",
    "d&s": "divergence-and-similarity",
    "rl": "reinforcement-learning",
    "ro": "rank-optimization",
}
SKILLS = {
    "IF": ("Instruction Following", "instruction-following"),
    "MD": ("Multi-turn Dialogue", "multi-turn-dialogue"),
    "RAG": ("Retrieval-Augmented Generation", "rag-capability"),
    "TP": ("Thinking Pattern", "thinking-pattern"),
    "Preference": ("Preference", "preference"),
    "Value": ("Value", "value"),
    "Tool": ("Tool Using", "tool-using"),
    "Planning": ("Planning", "planning"),
    "NLU": ("Natural Language Understanding", "nlu"),
    "NLG": ("Natural Language Generation", "nlg"),
    "IR": ("Information Retrieval", "information-retrieval"),
    "Recommendation": ("Recommendation", "recommendation"),
    "Evaluation": ("Text Generation Evaluation", "text-generation-evaluation"),
    "Code": ("Code", "code"),
    "Math": ("Math", ""),
    "Multiple Modalities": ("Multi-Modality", "multi-modality"),
    "Vision-Language": ("Vision-Language", "multi-modality"),
}
#: Typos of the printed table, fixed in our data (the printed value is kept as provenance).
TYPO_FIXES = {"Alpaca Cata": "Alpaca Data", "LLaMa": "LLaMA", "InstrcutRec": "InstructRec"}
#: One spelling per model family in the teacher/student columns ("GPT4" -> "GPT-4").
MODEL_NAMES = {
    "GPT2": "GPT-2",
    "GPT3": "GPT-3",
    "GPT3.5": "GPT-3.5",
    "GPT4": "GPT-4",
    "GPT4V": "GPT-4V",
}
#: Rows whose paper title does not contain the method name: method -> normalised title prefix.
ROW_LINKS = {
    "Llama-GPT4": "instructiontuningwithgpt4",
    "CoT-Distill": "distillingstepbystep",
    "Phi-1": "textbooksareallyouneed",
    "Phi-1.5": "textbooksareallyouneediiphi15",
    "GPT3 Reward": "rewarddesignwithlanguagemodels",
    "ILF": "traininglanguagemodelswithlanguagefeedback",
    "SANDBOX": "trainingsociallyaligned",
    "UltraChat": "enhancingchatlanguagemodels",
    "KnowPAT": "knowledgeablepreferencealignment",
    "Self-Align": "principledrivenselfalignment",
    "Lion": "lionadversarialdistillation",
    "Koala": "koala",
    "Vicuna": "vicuna",
    "Alpaca": "alpaca",
    "Mixed Distill": "mixeddistillationhelps",
    "Code Clean": "llmassistedcodecleaning",
    "LLaVA": "visualinstructiontuning",
    "NDR": "largelanguagemodelaugmentednarrative",
    "ONCE": "oncebooting",
    "GKD": "onpolicydistillation",
    "UDG": "towardszerolabellanguagelearning",
    "SunGen": "selfguidednoisefreedatageneration",
    "Genie": "genieachievinghumanparity",
    "QUILL": "quillqueryintentwithlarge",
    "DIMSUM+": "impossibledistillation",
    "InheritSumm": "inheritsumm",
    "ALMoST": "aligninglargelanguagemodelsthroughsyntheticfeedback",
    "RLCD": "selfalignmentoflargelanguagemodelsviareinforcementlearningfromcontrast",
    "BabyLlama": "babyllama",
    "Self-Rewarding": "selfrewardinglanguagemodels",
    "STaR": "starbootstrappingreasoning",
    "Reflection-Tuning": "reflectiontuning",
    "Selective Reflection-Tuning": "selectivereflectiontuning",
    "DEBATunE": "canllmsspeakfordiverse",
    "SAIL": "sailsearchaugmented",
    "KARD": "knowledgeaugmentedreasoningdistillation",
    "OpenChat": "openchat",
    "Graph-ToolFormer": "graphtoolformer",
    "MLLM-Tool": "mllmtool",
    "AUTOACT": "autoact",
    "TDG": "targeteddatageneration",
    "InstrcutRec": "recommendationasinstructionfollowing",
    "Prometheus": "prometheusinducing",
    "InstructScore": "instructscore",
    "Magicoder": "magicoder",
    "WaveCoder": "wavecoder",
    "Code Alpaca": "codealpaca",
    "Code Llama": "codellama",
    "SVIT": "svitscalingup",
    "LVIS-Instruct4V": "toseeistobelieve",
    "MIMIC-IT": "mimicit",
    "ChatBridge": "chatbridge",
    "Macaw-LLM": "macawllm",
    "LLaVAR": "llavar",
}


@dataclass
class SummaryReport:
    """Rows attached, rows whose paper was not found, and cells that were normalised."""

    attached: dict[int, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


def _split(cell: str, sep: str = "+") -> list[str]:
    return [part.strip() for part in cell.split(sep) if part.strip() and part.strip() != "-"]


def _fix(text: str) -> str:
    for wrong, right in TYPO_FIXES.items():
        text = re.sub(rf"\b{re.escape(wrong)}\b", right, text)
    return text


def _model(name: str) -> str:
    fixed = _fix(name)
    return MODEL_NAMES.get(fixed, fixed)


def parse_summary(text: str) -> list[dict[str, str]]:
    """Rows of the TSV as dicts; raises ValueError when the header is not the expected one."""
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"unexpected columns {reader.fieldnames}; expected {list(COLUMNS)}")
    rows = []
    for number, row in enumerate(reader, start=1):
        if None in row or any(row[c] is None for c in COLUMNS):
            raise ValueError(
                f"row {number} (line {reader.line_num}) has {len([v for v in row.values() if v])}"
                f" cells; expected {len(COLUMNS)} tab-separated cells ({', '.join(COLUMNS)})"
            )
        rows.append(dict(row))
    return rows


def _label(table: dict[str, str], cell: str, column: str, row: dict[str, str]) -> str:
    try:
        return table[cell.casefold()]
    except KeyError:
        allowed = ", ".join(sorted(table))
        raise ValueError(
            f"row {row['method']!r}: column {column!r}: unknown label {cell!r} (known: {allowed})"
        ) from None


def normalise_row(row: dict[str, str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Our values of a row's facts, and the printed cells that differ from them."""
    skills = [SKILLS.get(s, (s, ""))[0] for s in _split(row["skill"], "/")]
    elicitation = [_label(ELICITATION, e, "elicitation", row) for e in _split(row["elicitation"])]
    objectives = [_label(OBJECTIVE, o, "objective", row) for o in _split(row["objective"])]
    facts = {
        "teachers": [_model(t) for t in _split(row["teacher"])],
        "students": [_model(s) for s in _split(row["student"])],
        "seed_knowledge": [_fix(row["seed_knowledge"].strip())]
        if row["seed_knowledge"].strip() not in ("", "-")
        else [],
        "skills": skills,
        "elicitation": list(dict.fromkeys(elicitation)),
        "objectives": list(dict.fromkeys(objectives)),
    }
    printed = {}
    for column, ours, as_printed in (
        ("seed_knowledge", "".join(facts["seed_knowledge"]), row["seed_knowledge"].strip()),
        ("teacher", " + ".join(facts["teachers"]), " + ".join(_split(row["teacher"]))),
        ("student", " + ".join(facts["students"]), " + ".join(_split(row["student"]))),
        ("method", _fix(row["method"]), row["method"]),
    ):
        if ours != as_printed and as_printed not in ("", "-"):
            printed[column] = row[column]
    return facts, printed


def skill_nodes(row: dict[str, str]) -> list[str]:
    """Taxonomy nodes named by the row's skill column (IF -> instruction-following, ...)."""
    nodes = [SKILLS.get(s, (s, ""))[1] for s in _split(row["skill"], "/")]
    return [n for n in dict.fromkeys(nodes) if n]


def _surname_year(citation: str) -> tuple[str, int | None]:
    match = re.match(r"\s*([^\s,]+).*?(\d{4})", citation)
    if not match:
        return citation.casefold(), None
    return normalize_title(match.group(1)), int(match.group(2))


def find_paper(row: dict[str, str], papers: list[Paper]) -> Paper | None:
    """The paper a row describes, or None."""
    method = row["method"]
    if method in ROW_LINKS:
        prefix = ROW_LINKS[method]
        hits = [p for p in papers if normalize_title(p.title).startswith(prefix)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:  # prefer the shortest title (the exact one)
            return min(hits, key=lambda p: len(p.title))
    key = normalize_title(method)
    surname, year = _surname_year(row["citation"])
    by_name = [p for p in papers if len(key) >= 4 and normalize_title(p.title).startswith(key)]
    if len(by_name) == 1:
        return by_name[0]

    def author_match(p: Paper) -> bool:
        names = {normalize_title(n) for a in p.authors[:1] for n in a.split()}
        return surname in names and (year is None or abs(p.year - year) <= 1)

    narrowed = [p for p in by_name if author_match(p)] or [
        p for p in papers if key and key in normalize_title(p.title) and author_match(p)
    ]
    return narrowed[0] if len(narrowed) == 1 else None


def import_summary(root: Path, text: str) -> SummaryReport:
    """Attach every row's facts to its paper under ``root``; idempotent."""
    records = load_for_import(root)
    papers = {p.id: p for p in records.papers}
    report = SummaryReport()
    for number, row in enumerate(parse_summary(text), start=1):
        paper = find_paper(row, list(papers.values()))
        if paper is None:
            report.unmatched.append(f"row {number}: {row['method']} ({row['citation']})")
            continue
        report.attached[number] = paper.id
        facts, printed = normalise_row(row)
        merged: dict[str, object] = {
            name: list(dict.fromkeys([*getattr(paper, name), *values]))
            for name, values in facts.items()
        }
        provenance = SummaryRowSource(
            row=number, method=_fix(row["method"]), citation=row["citation"], printed=printed
        )
        rows = [r for r in paper.source.summary_table if r.row != number] + [provenance]
        merged["source"] = paper.source.model_copy(
            update={"summary_table": sorted(rows, key=lambda r: r.row)}
        )
        if not paper.nodes:
            merged["nodes"] = skill_nodes(row)
            merged["placements"] = [
                {"node": n, "basis": "survey-list"} for n in skill_nodes(row)
            ]  # the survey's own Table 3 places it
        new = Paper.model_validate(
            {
                **paper.model_dump(),
                **{
                    k: (v.model_dump() if hasattr(v, "model_dump") else v)
                    for k, v in merged.items()
                },
            }
        )
        if new != paper:
            papers[paper.id] = new
            report.updated.append(paper.id)
    for paper_id in dict.fromkeys(report.updated):
        write_paper(root, papers[paper_id])
    return report
