"""Our losses against the peers' own code: TRL's GKD loss and Liger-Kernel's chunked losses.

Every other equivalence in the suite is with formulas we wrote ourselves; these tests call the
installed ``trl`` and ``liger-kernel`` on the same inputs. Where a peer's convention differs
from ours, the test spells out the mapping (argument names, reduction, label layout) instead of
loosening the tolerance:

* TRL ``GKDTrainer.generalized_jsd_loss(student, teacher, labels, beta, temperature)`` with
  ``reduction="batchmean"`` and labels holding -100 at ignored positions is our
  ``generalized_jsd(student, teacher, mask=labels != -100, beta=beta, temperature=temperature)``:
  same β (weight of the teacher in the mixture; β = 0 forward KL, β = 1 reverse KL), both
  divide the logits by T without a T² factor, both average over the counted tokens.
* Liger ``LigerFusedLinearJSDLoss(weight_hard_loss=a, weight_soft_loss=1 - a, beta=b,
  temperature=T)(h_s, W_s, h_t, W_t, labels)`` is our ``fused_linear_distill(h_s, W_s, h_t, W_t,
  loss="generalized_jsd", beta=b, temperature=T, labels=labels, hard_weight=a)``; Liger's
  two weights are free, ours are tied (a and 1 - a): the mapping sets weight_soft = 1 - a.
  Liger has no chunked KL or TVD loss: its KL and TVD (``LigerKLDIVLoss``, ``LigerTVDLoss``) are
  Triton kernels, compared on CUDA only. On CPU the KL directions are covered through the JSD's
  endpoints (β = 0 forward, β = 1 reverse KL).
"""

from __future__ import annotations

import pytest
import torch

from reference_impls import REGISTRY, fused_linear_distill

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BETAS = (0.0, 0.1, 0.5, 0.9, 1.0)
V = 64


def _logits_and_labels(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student/teacher logits [2, 7, V] (float64) and labels with -100 at a few positions."""
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 7, V, generator=g, dtype=torch.float64) * 2.0
    teacher = torch.randn(2, 7, V, generator=g, dtype=torch.float64) * 3.0
    labels = torch.randint(0, V, (2, 7), generator=g)
    labels[0, :3] = -100  # a prompt
    labels[1, 5:] = -100  # padding
    return student, teacher, labels


@pytest.fixture(scope="module")
def trl_gkd_loss():  # type: ignore[no-untyped-def]
    gkd = pytest.importorskip("trl.experimental.gkd")
    return gkd.GKDTrainer.generalized_jsd_loss


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.7])
def test_generalized_jsd_equals_trl_gkd(trl_gkd_loss, beta: float, temperature: float) -> None:  # type: ignore[no-untyped-def]
    student, teacher, labels = _logits_and_labels(seed=int(beta * 10) + int(temperature * 7))
    ours_in = student.clone().requires_grad_(True)
    trl_in = student.clone().requires_grad_(True)
    ours = REGISTRY["generalized_jsd"](
        ours_in, teacher, labels != -100, temperature=temperature, beta=beta
    )
    # TRL: same beta, same temperature; -100 labels mark the ignored tokens; batchmean = token mean
    theirs = trl_gkd_loss(
        trl_in, teacher, labels=labels, beta=beta, temperature=temperature, reduction="batchmean"
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    ours.backward()
    theirs.backward()
    assert ours_in.grad is not None and trl_in.grad is not None
    torch.testing.assert_close(ours_in.grad, trl_in.grad, rtol=1e-9, atol=1e-12)
    assert ours.item() > 0.0


def test_trl_beta_is_the_teacher_weight(trl_gkd_loss) -> None:  # type: ignore[no-untyped-def]
    """The mapping is beta -> beta, not beta -> 1 - beta: the two differ on these inputs."""
    student, teacher, labels = _logits_and_labels(seed=3)
    ours = REGISTRY["generalized_jsd"](student, teacher, labels != -100, beta=0.1)
    swapped = trl_gkd_loss(student, teacher, labels=labels, beta=0.9)
    assert abs(ours.item() - swapped.item()) > 1e-3


def _hidden_and_weights(seed: int, bias: bool) -> tuple[torch.Tensor, ...]:
    """Hidden states [N, H] of different widths, lm heads [V, H], optional biases, labels [N]."""
    g = torch.Generator().manual_seed(seed)
    n, h_s, h_t = 40, 16, 24
    hs = torch.randn(n, h_s, generator=g)
    ws = torch.randn(V, h_s, generator=g) * 0.5
    ht = torch.randn(n, h_t, generator=g)
    wt = torch.randn(V, h_t, generator=g) * 0.5
    bs = torch.randn(V, generator=g) if bias else None
    bt = torch.randn(V, generator=g) if bias else None
    labels = torch.randint(0, V, (n,), generator=g)
    labels[:7] = -100
    labels[30:33] = -100
    return hs, ws, ht, wt, bs, bt, labels  # type: ignore[return-value]


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize(
    ("temperature", "hard_weight", "bias"), [(1.0, 0.0, False), (2.0, 0.3, True)]
)
def test_fused_linear_distill_equals_liger_jsd(
    beta: float, temperature: float, hard_weight: float, bias: bool
) -> None:
    chunked = pytest.importorskip("liger_kernel.chunked_loss")
    hs, ws, ht, wt, bs, bt, labels = _hidden_and_weights(seed=int(beta * 10), bias=bias)
    leaves = [
        [t.clone().requires_grad_(True) if t is not None else None for t in (hs, ws, bs)]
        for _ in range(2)
    ]
    (o_h, o_w, o_b), (l_h, l_w, l_b) = leaves
    ours = fused_linear_distill(
        o_h,
        o_w,
        ht,
        wt,
        loss="generalized_jsd",
        beta=beta,
        temperature=temperature,
        labels=labels,
        hard_weight=hard_weight,
        student_bias=o_b,
        teacher_bias=bt,
        chunk_size=16,
    )
    liger = chunked.LigerFusedLinearJSDLoss(
        weight_hard_loss=hard_weight,
        weight_soft_loss=1.0 - hard_weight,  # ours ties the weights: a CE + (1 - a) KD
        beta=beta,
        temperature=temperature,
        compiled=False,  # eager on CPU; torch.compile would only add minutes
        chunk_size=16,
    )
    theirs = liger(l_h, l_w, ht, wt, labels, l_b, bt)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    ours.backward()
    theirs.backward()
    for mine, peer, name in ((o_h, l_h, "hidden"), (o_w, l_w, "weight"), (o_b, l_b, "bias")):
        if mine is None:
            continue
        assert mine.grad is not None and peer.grad is not None, name
        torch.testing.assert_close(mine.grad, peer.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(("beta", "loss"), [(0.0, "forward_kl"), (1.0, "reverse_kl")])
def test_liger_jsd_endpoints_are_our_kl_directions(beta: float, loss: str) -> None:
    """Liger's β = 0 / β = 1 are our forward / reverse KL through the same fused call."""
    chunked = pytest.importorskip("liger_kernel.chunked_loss")
    hs, ws, ht, wt, _, _, labels = _hidden_and_weights(seed=11, bias=False)
    ours = fused_linear_distill(hs, ws, ht, wt, loss=loss, labels=labels, temperature=1.5)
    liger = chunked.LigerFusedLinearJSDLoss(
        weight_hard_loss=0.0, weight_soft_loss=1.0, beta=beta, temperature=1.5, compiled=False
    )
    torch.testing.assert_close(ours, liger(hs, ws, ht, wt, labels), rtol=1e-5, atol=1e-6)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_total_variation_equals_liger_tvd_on_cuda() -> None:
    """Liger's TVD is a Triton kernel on probabilities; its CPU twin is the JSD test above."""
    liger_tvd = pytest.importorskip("liger_kernel.transformers").LigerTVDLoss
    student, teacher, labels = (t.cuda() for t in _logits_and_labels(seed=5))
    student, teacher = student.float(), teacher.float()
    ours = REGISTRY["total_variation"](student, teacher, labels != -100)
    # Liger takes probabilities (p, q) and pre-shifted labels, batchmean = mean over counted rows
    theirs = liger_tvd(reduction="batchmean")(
        student.softmax(-1).view(-1, V), teacher.softmax(-1).view(-1, V), labels.view(-1)
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@needs_cuda
def test_forward_kl_equals_liger_kldiv_on_cuda() -> None:
    """Liger's KL is ``nn.KLDivLoss(input=log Q, target=log P)``: KL(P || Q), our forward KL."""
    liger_kl = pytest.importorskip("liger_kernel.transformers").LigerKLDIVLoss
    student, teacher, _ = (t.cuda() for t in _logits_and_labels(seed=6))
    student, teacher = student.float().view(-1, V), teacher.float().view(-1, V)
    ours = REGISTRY["forward_kl"](student, teacher)
    theirs = liger_kl(reduction="batchmean", log_target=True)(
        student.log_softmax(-1), teacher.log_softmax(-1)
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
