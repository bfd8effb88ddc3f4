r"""Scenario ``python -m reference_impls.demos difference_sampling``: MiniPLM's data selection.

A synthetic pretraining corpus mixes three sources in equal parts: samples of the demo's random
teacher LM (what the teacher knows), documents that repeat a short random pattern (easy for
any model) and uniform noise (unpredictable for both). A small reference model is trained
with cross-entropy on 15% of the corpus; :func:`~reference_impls.difference_sampling.
difference_scores` then scores every document and :func:`~reference_impls.difference_sampling.
select_by_difference` keeps the top half. Two students from the same initialisation are
pretrained with plain cross-entropy for the same steps, one on a random half, one on the
selected half, and measured on held-out teacher samples: their NLL and KL(teacher || student).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from torch import Tensor

from reference_impls.demos.loop import Adam
from reference_impls.demos.models import DemoConfig, TinyLM, build_student, build_teacher
from reference_impls.demos.run import resolve_device
from reference_impls.demos.world import sample_continuations, token_logps
from reference_impls.difference_sampling import difference_scores, select_by_difference

SOURCES = ("teacher", "pattern", "noise")
PROG = "python -m reference_impls.demos difference_sampling"


def build_corpus(
    teacher: TinyLM, per_source: int, length: int, gen: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(documents [3 n, 1 + length], source index [3 n])``; every document starts with BOS 0."""
    vocab = teacher.head.out_features if teacher.head is not None else 0
    bos = torch.zeros(per_source, 1, dtype=torch.int64, device=device)
    taught = sample_continuations(lambda x: teacher(x).logits.log_softmax(-1), bos, length, gen)
    period = torch.randint(2, 4, (per_source, 1), generator=gen, device=device)
    motif = torch.randint(1, vocab, (per_source, 3), generator=gen, device=device)
    position = torch.arange(length, device=device).expand(per_source, length) % period
    pattern = torch.cat([bos, motif.gather(1, position)], dim=1)
    noise = torch.cat(
        [bos, torch.randint(1, vocab, (per_source, length), generator=gen, device=device)], dim=1
    )
    docs = torch.cat([taught, pattern, noise])
    source = torch.arange(3, device=device).repeat_interleave(per_source)
    return docs, source


def pretrain(
    model: TinyLM, docs: Tensor, steps: int, gen: torch.Generator, lr: float = 1e-2
) -> TinyLM:
    """Plain next-token cross-entropy on ``docs`` (batches of 32 drawn with ``gen``)."""
    optimizer = Adam(list(model.parameters()), lr)
    for _ in range(steps):
        batch = docs[torch.randint(len(docs), (32,), generator=gen, device=docs.device)]
        loss = -token_logps(model(batch[:, :-1]).logits, batch).mean()
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
    return model


@torch.no_grad()
def held_out_fit(student: TinyLM, teacher: TinyLM, docs: Tensor) -> tuple[float, float]:
    """Mean token NLL of ``docs`` and mean KL(teacher || student) at their positions."""
    nll = -token_logps(student(docs[:, :-1]).logits, docs).mean()
    log_p = teacher(docs[:, :-1]).logits.log_softmax(-1)
    log_q = student(docs[:, :-1]).logits.log_softmax(-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    return float(nll), float(kl)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario and print what was selected and how the two students fit the teacher."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300, help="pretraining steps per student")
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the corpus kept")
    parser.add_argument("--per-source", type=int, default=512, help="documents per source")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not 0 < args.fraction <= 1 or args.steps < 1 or args.per_source < 2:
        parser.error("--fraction must lie in (0, 1]; --steps >= 1; --per-source >= 2")
    cfg = DemoConfig()
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: extra threads only add synchronisation cost
    try:
        _run(args, cfg, device)
    finally:
        torch.set_num_threads(threads)
    return 0


def _run(args: argparse.Namespace, cfg: DemoConfig, device: torch.device) -> None:
    """The body of :func:`main`: corpus, reference model, selection, two students."""
    torch.manual_seed(args.seed)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    teacher = build_teacher(cfg, cfg.vocab_size, device)
    length = cfg.seq_len - 1
    docs, source = build_corpus(teacher, args.per_source, length, gen, device)
    held_out, _ = build_corpus(teacher, 256, length, gen, device)
    held_out = held_out[:256]  # the teacher's samples only
    n = len(docs)

    reference_docs = docs[torch.randperm(n, generator=gen, device=device)[: max(1, n * 15 // 100)]]
    reference = pretrain(build_student(cfg, device), reference_docs, args.steps, gen)
    with torch.no_grad():
        scores = difference_scores(
            token_logps(teacher(docs[:, :-1]).logits, docs),
            token_logps(reference(docs[:, :-1]).logits, docs),
            torch.ones(n, length, dtype=torch.bool, device=device),
        )
    chosen = select_by_difference(scores, args.fraction)
    random_half = torch.randperm(n, generator=gen, device=device)[: len(chosen)]

    print(
        f"difference_sampling on {device}: {n} documents of {length} tokens ({args.per_source} "
        f"each: {', '.join(SOURCES)}); reference model trained on 15% of them for {args.steps} "
        f"steps; keep the top {args.fraction:g} by mean log p_teacher - mean log p_ref"
    )
    print(f"{'source':<10} {'mean score':>11} {'selected':>9} {'random':>8}")
    for index, name in enumerate(SOURCES):
        mine = source == index
        print(
            f"{name:<10} {float(scores[mine].mean()):>11.3f} "
            f"{int(mine[chosen].sum()):>9d} {int(mine[random_half].sum()):>8d}"
        )
    init = build_student(cfg, device).state_dict()
    print(f"\nstudents pretrained with cross-entropy for {args.steps} steps, same initialisation")
    print(f"{'training data':<22} {'held-out teacher NLL':>21} {'KL(teacher||student)':>21}")
    for label, subset in (("random subset", random_half), ("difference-selected", chosen)):
        student = build_student(cfg, device)
        student.load_state_dict(init)
        pretrain(student, docs[subset], args.steps, torch.Generator(device).manual_seed(args.seed))
        nll, kl = held_out_fit(student, teacher, held_out)
        print(f"{label:<22} {nll:>21.4f} {kl:>21.4f}")
