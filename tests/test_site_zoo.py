"""Loss-zoo results appear on the statistics and method pages when present, and a missing or
malformed zoo output gives a message instead of a failed build."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kbtool.site import build_site
from reference_impls.zoo.results import COLUMNS

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "site_kb"


def _zoo(dir_: Path) -> Path:
    dir_.mkdir(parents=True)
    results = {
        "forward_kl": {
            "mean": {
                "forward_kl": 0.8529,
                "reverse_kl": 2.2459,
                "entropy_ratio": 1.483,
                "hallucination_mass": 0.279,
                "top1_agreement": 0.5417,
                "mode_recall": 0.8072,
                "ms_per_step": 0.877,
            },
            "std": {"forward_kl": 0.0234},
        },
        "reverse_kl": {
            "mean": {"forward_kl": 3.1, "reverse_kl": 0.61, "entropy_ratio": 0.2378},
            "std": {},
        },
    }
    claims = [
        {
            "statement": "Reverse KL is mode-seeking.",
            "reproduced": True,
            "seeds_agreeing": 3,
            "n_seeds": 3,
            "criterion": "entropy ratio < 1",
        },
        {
            "statement": "Skewed forward KL is more stable.",
            "reproduced": False,
            "seeds_agreeing": 0,
            "n_seeds": 3,
            "criterion": "smaller max grad norm",
        },
    ]
    doc = {
        "columns": list(COLUMNS),
        "results": results,
        "claims": claims,
        "seeds": [0, 1, 2],
        "config": {"steps": 1500},
        "device": "cpu",
        "wall_seconds": 54.2,
    }
    (dir_ / "zoo.json").write_text(json.dumps(doc), encoding="utf-8")
    return dir_


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def zoo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("zoo")
    out = base / "site"
    build_site(FIXTURE, out, benchmark_json=None, zoo_dir=_zoo(base / "zoo"))
    return out


def test_statistics_page_shows_the_zoo_table_claims_and_plots(zoo_site: Path) -> None:
    text = _text(zoo_site / "statistics.html")
    assert "2 losses × 3 seeds, 1500 steps each, on cpu in 54 s" in text
    assert "0.853 ± 0.023" in text  # forward_kl's KL(p||q), mean ± std, 3 significant digits
    assert "Reverse KL is mode-seeking. reproduced 3/3" in text
    assert "Skewed forward KL is more stable. not reproduced 0/3" in text
    for name in ("zoo_table.svg", "zoo_fkl_rkl.svg", "zoo_entropy.svg"):
        drawn = zoo_site / "statistics" / "zoo" / name  # drawn by the site from zoo.json
        root = ET.parse(drawn).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert "forward_kl" in drawn.read_text(encoding="utf-8")
        assert f'src="statistics/zoo/{name}"' in (zoo_site / "statistics.html").read_text(
            encoding="utf-8"
        )


def test_method_page_shows_its_loss_row_only_when_the_zoo_has_it(zoo_site: Path) -> None:
    forward = _text(zoo_site / "methods" / "forward-kl.html")
    assert "In the loss zoo" in forward and "0.853 ± 0.023" in forward
    assert "In the loss zoo" not in _text(zoo_site / "methods" / "dpo.html")  # dpo_loss: no row


def test_malformed_zoo_json_gives_a_message_not_a_failed_build(tmp_path: Path) -> None:
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "zoo.json").write_text('{"results": [1, 2', encoding="utf-8")
    out = tmp_path / "site"
    build_site(FIXTURE, out, benchmark_json=None, zoo_dir=zoo)
    assert "could not be read" in _text(out / "statistics.html")


def test_missing_zoo_says_how_to_produce_it(tmp_path: Path) -> None:
    out = tmp_path / "site"
    build_site(FIXTURE, out, benchmark_json=None, zoo_dir=tmp_path / "absent")
    assert "No loss-zoo results yet" in _text(out / "statistics.html")
