"""Venue normalisation: one spelling per venue ('EMNLP Findings' -> 'Findings of EMNLP')."""

from __future__ import annotations

import re

# Printed spellings of the upstream list and short codes of paper indexes.
_EXACT = {
    "emnlp findings": "Findings of EMNLP",
    "findings of emnlp": "Findings of EMNLP",
    "findings of acl": "Findings of ACL",
    "acl findings": "Findings of ACL",
    "findings of eacl": "Findings of EACL",
    "findings of naacl": "Findings of NAACL",
    "nips": "NeurIPS",
    "neurips": "NeurIPS",
    "nips workshop": "NeurIPS Workshop",
    "neurips workshop": "NeurIPS Workshop",
    "arxiv": "arXiv",
    "corr": "arXiv",
    "biorxiv": "bioRxiv",
    "-": "Other",
    "": "Other",
}
_SHORT_CODE = re.compile(r"^([a-z]+)(\d{4})$")
_CODES = {
    "nips": "NeurIPS",
    "neurips": "NeurIPS",
    "iclr": "ICLR",
    "icml": "ICML",
    "acl": "ACL",
    "emnlp": "EMNLP",
    "naacl": "NAACL",
    "eacl": "EACL",
    "colm": "COLM",
    "aaai": "AAAI",
    "ijcai": "IJCAI",
    "kdd": "KDD",
    "www": "WWW",
    "sigir": "SIGIR",
    "cvpr": "CVPR",
    "iccv": "ICCV",
    "eccv": "ECCV",
    "corl": "CoRL",
    "coling": "COLING",
    "cikm": "CIKM",
    "wsdm": "WSDM",
    "tmlr": "TMLR",
    "tacl": "TACL",
}
# Substrings of long proceedings titles, most specific first.
_CONTAINS = (
    ("findings of the association for computational linguistics: emnlp", "Findings of EMNLP"),
    ("findings of the association for computational linguistics: acl", "Findings of ACL"),
    ("findings of the association for computational linguistics: naacl", "Findings of NAACL"),
    ("findings of the association for computational linguistics: eacl", "Findings of EACL"),
    ("findings of emnlp", "Findings of EMNLP"),
    ("findings of acl", "Findings of ACL"),
    ("neural information processing systems", "NeurIPS"),
    ("neurips", "NeurIPS"),
    ("learning representations", "ICLR"),
    ("international conference on machine learning", "ICML"),
    ("icml", "ICML"),
    ("empirical methods in natural language processing", "EMNLP"),
    ("emnlp", "EMNLP"),
    ("north american chapter", "NAACL"),
    ("european chapter", "EACL"),
    ("transactions of the association for computational linguistics", "TACL"),
    ("annual meeting of the association for computational linguistics", "ACL"),
    ("acl ", "ACL"),
    ("transactions on machine learning research", "TMLR"),
    ("aaai", "AAAI"),
    ("ijcai", "IJCAI"),
    ("knowledge discovery and data mining", "KDD"),
    ("web conference", "WWW"),
    ("www", "WWW"),
    ("sigir", "SIGIR"),
    ("conference on computational natural language learning", "CoNLL"),
    ("conll", "CoNLL"),
    ("computer vision and pattern recognition", "CVPR"),
    ("conference on robot learning", "CoRL"),
    ("information and knowledge management", "CIKM"),
    ("web search and data mining", "WSDM"),
    ("coling", "COLING"),
    ("journal of machine learning research", "JMLR"),
    ("proceedings of the national academy of sciences", "PNAS"),
    ("international journal of computer vision", "IJCV"),
    ("nature", "Nature"),
    ("arxiv", "arXiv"),
    ("corr", "arXiv"),
)


def normalize_venue(raw: str | None) -> str:
    """One canonical spelling of a venue; unknown long strings keep their first clause."""
    text = " ".join((raw or "").split())
    key = text.casefold().replace("{", "").replace("}", "").rstrip(".")
    if key in _EXACT:
        return _EXACT[key]
    code = _SHORT_CODE.match(key)
    if code and code.group(1) in _CODES:
        return _CODES[code.group(1)]
    for needle, venue in _CONTAINS:
        if needle in key:
            return venue
    if re.fullmatch(r"\d{4}", key):  # the reference list sometimes has only a year
        return "Other"
    if len(text) <= 30 and "," not in text and "http" not in key:
        return text
    first = text.split(",")[0].strip()
    if "http" in first.casefold() or not first or re.fullmatch(r"[\d.]+", first):
        return "Other"
    return first
