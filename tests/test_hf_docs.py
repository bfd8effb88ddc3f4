"""The README's Hugging Face script is ``reference_impls/integrations/example.py`` and it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "reference_impls" / "integrations" / "example.py"


def _example_block() -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    match = re.search(r"# --8<-- \[start:example\]\n(.*?)# --8<-- \[end:example\]", text, re.S)
    assert match, "example.py lost its start/end markers"
    return match.group(1)


def test_readme_shows_the_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use with Hugging Face / TRL", 1)[1].split("\n## ", 1)[0]
    assert f"```python\n{_example_block()}```" in section


def test_site_page_shows_the_example_verbatim() -> None:
    page = (ROOT / "site" / "templates" / "huggingface.md.j2").read_text(encoding="utf-8")
    assert f"```python\n{_example_block()}```" in page


def test_example_script_runs_on_cpu(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reference_impls.integrations.example"],
        cwd=tmp_path,  # the Trainer's output directory lands here
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = proc.stdout + proc.stderr
    assert "'kd'" in logs and "'ce'" in logs  # the two terms are logged apart


def _render_trainer_call(loss: str, kind: str, params: str = "") -> str:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROOT / "site" / "templates"), autoescape=True
    )
    template = env.from_string(
        '{% import "_hf.j2" as hf with context %}{{ hf.trainer_call(l, k, p) }}'
    )
    return template.render(l=loss, k=kind, p=params, base="../")


def _code(html: str) -> str:
    match = re.search(r"<code>(.*?)</code>", html, re.S)
    assert match, html
    return unescape(match.group(1))


@pytest.mark.parametrize(
    ("loss", "kind"),
    [
        ("generalized_jsd", "token"),
        ("taid_loss", "token"),  # needs its t: the snippet passes the registry's
        ("sft_loss", "sft"),
        ("kl_regularized_pg_loss", "policy_gradient"),
        ("opd_policy_gradient_loss", "on_policy"),
    ],
)
def test_method_page_snippet_is_a_working_trainer_call(
    tmp_path: Path, loss: str, kind: str
) -> None:
    """The snippet a method page shows runs as written on the tiny models (2 steps)."""
    from kbtool.site.method_code import python_dict
    from reference_impls import SPECS
    from reference_impls.integrations import tiny

    code = _code(_render_trainer_call(loss, kind, python_dict(dict(SPECS[loss].params))))
    assert f'loss="{loss}"' in code
    namespace = {
        "student": tiny.tiny_causal_lm(),
        "teacher": tiny.tiny_teacher(),
        "training_args": tiny.training_args(tmp_path, steps=2, batch_size=4),
        "data": tiny.tiny_dataset(16, seed=0),
    }
    exec(compile(code, f"<{kind} snippet>", "exec"), namespace)  # noqa: S102
    assert namespace["trainer"].state.global_step == 2


def test_sampled_cache_snippet_is_a_working_trainer_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sampled-cache snippet runs as written once the cache it opens exists."""
    from reference_impls.integrations import tiny
    from reference_impls.teacher_cache import write_teacher_cache

    teacher, data = tiny.tiny_teacher(), tiny.tiny_dataset(16, seed=0)
    monkeypatch.chdir(tmp_path)
    write_teacher_cache(
        tmp_path / "teacher.safetensors",
        lambda ids: teacher(input_ids=ids).logits,
        [row["input_ids"] for row in data],
        mode="sampled",
        samples=16,
        progress=False,
    )
    code = _code(_render_trainer_call("sampled_kd_loss", "sampled"))
    assert 'mode="sampled"' in code
    namespace = {
        "student": tiny.tiny_causal_lm(),
        "training_args": tiny.training_args(tmp_path, steps=2, batch_size=4),
        "data": data,
    }
    exec(compile(code, "<sampled snippet>", "exec"), namespace)  # noqa: S102
    assert namespace["trainer"].state.global_step == 2


def test_method_page_snippet_for_a_loss_the_trainer_cannot_feed() -> None:
    html = _render_trainer_call("dpo_loss", "other")
    assert "does not feed this loss" in html and 'REGISTRY["dpo_loss"]' in html
    assert "<code>from" not in html


def test_site_page_says_what_the_readme_section_says() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use with Hugging Face / TRL\n", 1)[1].split("\n## ", 1)[0]
    page = (ROOT / "site" / "templates" / "huggingface.md.j2").read_text(encoding="utf-8")
    body = page.split("{% raw %}", 1)[1].split("{% endraw %}", 1)[0]
    assert body.strip() == section.strip()
