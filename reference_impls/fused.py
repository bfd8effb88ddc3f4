r"""Fused, chunked lm-head distillation: any token-level loss without materialising all logits.

The lm head turns hidden states into logits, :math:`z_s = h_s W_s^\top + b_s` (student) and
:math:`z_t = h_t W_t^\top + b_t` (teacher), ``[N, V]`` each. For a 128k vocabulary those two
tensors, and the loss's temporaries over them, dwarf the model's activations. Because every
token-level loss is a sum of independent per-token terms, the rows can be processed
``chunk_size`` at a time: per chunk, compute the logits, then the loss and its gradient
:math:`g = \partial \mathcal{L} / \partial z_s` (block by block, see below), fold :math:`g`
into the parameter gradients and drop the chunk,

.. math:: \nabla_{h_s} = g W_s, \qquad \nabla_{W_s} \mathrel{+}= g^\top h_s, \qquad
    \nabla_{b_s} \mathrel{+}= \textstyle\sum_i g_i .

Two sizes, for two kinds of work: the matmuls run on whole chunks (larger is faster), the loss
on blocks of a few rows whose temporaries fit in a CPU core's cache (on GPU a block is the
whole chunk). Each block's gradient overwrites its own student logits, so a chunk holds just
two ``chunk_size × V`` tensors, the student's logits-then-gradient and the teacher's logits.

Normalisation is global: the loss of a block with :math:`n_b` counted tokens is its
token-mean times :math:`n_b / n`, :math:`n` the count over all rows, so the blocks add up to
exactly the unfused token-mean. The objective, optionally with a hard-label term, is

.. math:: \mathcal{L} = \lambda \frac{1}{n} \sum_{i \in \mathcal{C}}
    -\log \mathrm{softmax}(z_{s,i})_{y_i} + (1 - \lambda)\, \mathrm{KD}(z_s, z_t;
    \mathcal{C}),

with :math:`\lambda` = ``hard_weight``, :math:`\mathcal{C}` the counted tokens (``mask`` True
and, if ``labels`` are given, ``labels != ignore_index``), :math:`n = |\mathcal{C}|`, and
:math:`\mathrm{KD}` the chosen ``REGISTRY`` loss averaged over :math:`\mathcal{C}`. The
cross-entropy uses the untempered student logits; the KD term gets ``temperature``.

Precision: half-precision inputs give half-precision logits (as ``h @ W.T`` would), the loss
and all gradient accumulators are float32 (float64 inputs stay float64); gradients are cast
back to each input's dtype. The teacher never receives a gradient.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from reference_impls.registry import token_level_loss
from reference_impls.tokens import HALF_DTYPES, TokenLevelLoss, check_temperature

_COMPILED_STEP: Callable[..., tuple[Tensor, Tensor | None]] | None = None
#: Inductor stores an elementwise result as a ``block x V`` buffer once more than
#: ``realize_reads_threshold`` consumers read it (default 4), else recomputes it in each. A
#: divergence's backward reads its log-probabilities, probabilities and mixture many times, so
#: the default stores five or six such buffers; 8 recomputes most of them, which measured a
#: few per cent faster on CPU at V = 32k-128k (the step is bound by memory traffic, not by
#: the extra exp/log) and needs less memory.
_REALIZE_READS_THRESHOLD = 8
#: Logits per CPU thread in one loss block (2 MiB in float32): see :func:`_block_rows`.
_CACHE_LOGITS_PER_THREAD = 2**19


@dataclass(frozen=True)
class _Config:
    """Non-tensor settings of one fused call (kept out of ``autograd.Function.apply``'s tensors)."""

    loss_fn: TokenLevelLoss
    temperature: float
    chunk_size: int
    hard_weight: float
    ignore_index: int
    compile: bool
    grad_enabled: bool
    params: Mapping[str, Any] = field(default_factory=dict)


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """Float32 for half inputs, else the promoted input dtype (float64 stays float64)."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.float32 if dtype in HALF_DTYPES else dtype


def _logits(hidden: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``hidden @ weight.T (+ bias)``, rounded as the unfused expression is (no fused addmm)."""
    logits = hidden @ weight.T
    return logits if bias is None else logits + bias


def _block_rows(vocab: int, device: torch.device, chunk_size: int) -> int:
    """Rows per loss block: on CPU about 2 MiB of float32 logits per thread, else the chunk.

    The loss's elementwise passes are bound by memory traffic; on CPU, blocks whose
    temporaries stay in each core's cache run them about twice as fast as chunk-sized ones,
    while the matmuls keep the full chunk (larger is faster there). GPUs want large kernels.
    """
    if device.type != "cpu":
        return chunk_size
    per_thread = max(1, _CACHE_LOGITS_PER_THREAD // vocab)
    return max(1, min(chunk_size, per_thread * torch.get_num_threads()))


def _block_value_and_grad(
    student: Tensor,
    teacher: Tensor | None,
    counted: Tensor,
    labels: Tensor | None,
    kd_scale: Tensor,
    ce_scale: Tensor,
    *,
    loss_fn: TokenLevelLoss,
    temperature: float,
    hard_weight: float,
    ignore_index: int,
    params: Mapping[str, Any],
    with_grad: bool,
    functional: bool,
) -> tuple[Tensor, Tensor | None]:
    """Loss of a block of logit rows (globally normalised) and its gradient w.r.t. ``student``.

    ``kd_scale`` = (1 - hard_weight) n_b / n turns the block's token-mean into its share of the
    global mean; ``ce_scale`` = hard_weight / n does the same for the summed cross-entropy.
    This is the one function run per block, for every loss. Eagerly (``functional=False``) the
    gradient comes from ``torch.autograd.grad``; under ``torch.compile`` from
    ``torch.func.grad_and_value``, which the compiler traces into one forward-and-backward graph.
    """

    def objective(z_s: Tensor) -> Tensor:
        total = z_s.new_zeros(())
        if teacher is not None:
            kd = loss_fn(z_s, teacher, mask=counted, temperature=temperature, **params)
            total = total + kd * kd_scale
        if labels is not None and hard_weight > 0.0:
            targets = torch.where(counted, labels, torch.full_like(labels, ignore_index))
            ce = F.cross_entropy(z_s, targets, ignore_index=ignore_index, reduction="sum")
            total = total + ce * ce_scale
        return total

    if not with_grad:
        return objective(student), None
    if functional:
        grad, value = torch.func.grad_and_value(objective)(student)
        return value, grad
    student = student.detach().requires_grad_(True)  # a leaf sharing the block's storage
    with torch.enable_grad():
        value = objective(student)
    (grad,) = torch.autograd.grad(value, student)
    return value.detach(), grad


def _step_function(compile: bool) -> Callable[..., tuple[Tensor, Tensor | None]]:
    """The per-block step: eager, or compiled once per process on first use."""
    global _COMPILED_STEP
    if not compile:
        return functools.partial(_block_value_and_grad, functional=False)
    if _COMPILED_STEP is None:
        _COMPILED_STEP = torch.compile(
            functools.partial(_block_value_and_grad, functional=True),
            options={"realize_reads_threshold": _REALIZE_READS_THRESHOLD},
        )
    return _COMPILED_STEP


class _FusedLinearDistill(torch.autograd.Function):
    """Loss and gradients computed chunk by chunk in forward; backward only rescales them."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        t_hidden: Tensor,
        t_weight: Tensor,
        t_bias: Tensor | None,
        counted: Tensor,
        labels: Tensor | None,
        cfg: _Config,
    ) -> Tensor:
        # forward always runs without grad mode; whether the caller had it was recorded in cfg
        need_h, need_w, need_b = (cfg.grad_enabled and need for need in ctx.needs_input_grad[:3])
        with_grad = need_h or need_w or need_b
        dtype = _compute_dtype(hidden, weight, t_hidden, t_weight)
        t_hidden, t_weight = t_hidden.detach(), t_weight.detach()
        t_bias = t_bias.detach() if t_bias is not None else None

        grad_h = torch.zeros(hidden.shape, dtype=dtype, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=dtype, device=weight.device) if need_w else None
        grad_b = (
            torch.zeros(bias.shape, dtype=dtype, device=bias.device)
            if need_b and bias is not None
            else None
        )
        total = torch.zeros((), dtype=dtype, device=hidden.device)

        counted_host = counted.cpu()  # block counts on the host: no device sync per block
        n = int(counted_host.sum())
        step = _step_function(cfg.compile)
        kd_weight, ce_weight = 1.0 - cfg.hard_weight, cfg.hard_weight
        ce_scale = torch.tensor(ce_weight / max(n, 1), dtype=dtype, device=hidden.device)
        block = _block_rows(weight.shape[0], hidden.device, cfg.chunk_size)
        for start in range(0, hidden.shape[0], cfg.chunk_size):
            rows = slice(start, start + cfg.chunk_size)
            if not counted_host[rows].any():  # contributes 0 to the value and to every gradient
                continue
            h_c = hidden[rows]
            # the chunk's logits; each block's rows are overwritten by their gradient once used
            z_s = _logits(h_c, weight, bias).to(dtype)
            z_t = None
            if cfg.hard_weight < 1.0:
                z_t = _logits(t_hidden[rows], t_weight, t_bias).to(dtype)
            for b_start in range(0, z_s.shape[0], block):
                b_rows = slice(b_start, b_start + block)
                n_b = int(counted_host[rows][b_rows].sum())
                if n_b == 0:
                    z_s[b_rows] = 0.0
                    continue
                value, g = step(
                    z_s[b_rows],
                    z_t[b_rows] if z_t is not None else None,
                    counted[rows][b_rows],
                    labels[rows][b_rows] if labels is not None else None,
                    torch.tensor(kd_weight * n_b / n, dtype=dtype, device=hidden.device),
                    ce_scale,
                    loss_fn=cfg.loss_fn,
                    temperature=cfg.temperature,
                    hard_weight=cfg.hard_weight,
                    ignore_index=cfg.ignore_index,
                    params=cfg.params,
                    with_grad=with_grad,
                )
                total += value.detach()
                if g is not None and block >= z_s.shape[0]:
                    z_s = g  # a single block: take its gradient as it is, no copy
                elif g is not None:
                    z_s[b_rows] = g
            del z_t
            if not with_grad:
                continue
            g_c = z_s  # now the gradient of the loss w.r.t. the chunk's student logits
            if grad_h is not None:
                grad_h[rows] = g_c.to(weight.dtype) @ weight
            if grad_w is not None:
                grad_w.addmm_(g_c.T, h_c.to(dtype))
            if grad_b is not None:
                grad_b += g_c.sum(dim=0)
            del z_s, g_c  # the chunk's logits and gradient are gone before the next chunk

        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.input_dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        grads = []
        unit = bool(grad_output == 1)
        for grad, dtype in zip(ctx.saved_tensors, ctx.input_dtypes, strict=True):
            if grad is not None:
                grad = grad if unit else grad * grad_output.to(grad.dtype)
                grad = grad.to(dtype)
            grads.append(grad)
        return (*grads, None, None, None, None, None, None)


def _resolve_loss(loss: str | TokenLevelLoss) -> TokenLevelLoss:
    """``loss`` itself, or the registry's token-level loss of that name."""
    return token_level_loss(loss) if isinstance(loss, str) else loss


def _check_inputs(
    student_hidden: Tensor,
    student_weight: Tensor,
    teacher_hidden: Tensor,
    teacher_weight: Tensor,
    student_bias: Tensor | None,
    teacher_bias: Tensor | None,
    mask: Tensor | None,
    labels: Tensor | None,
) -> None:
    """Raise ``ValueError``/``TypeError`` naming the offending shapes before any computation."""
    s_h, t_h = tuple(student_hidden.shape), tuple(teacher_hidden.shape)
    s_w, t_w = tuple(student_weight.shape), tuple(teacher_weight.shape)
    if student_hidden.dim() < 1 or teacher_hidden.dim() < 1:
        raise ValueError(f"hidden states must be [..., H]; got student {s_h}, teacher {t_h}")
    if student_weight.dim() != 2 or teacher_weight.dim() != 2:
        raise ValueError(f"weights must be [V, H]; got student {s_w}, teacher {t_w}")
    if s_h[:-1] != t_h[:-1]:
        raise ValueError(
            f"student hidden {s_h} and teacher hidden {t_h} must have the same leading "
            "(token) dimensions"
        )
    if s_w[1] != s_h[-1]:
        raise ValueError(
            f"student weight {s_w} must be [V, H_s] with H_s = {s_h[-1]} (hidden {s_h})"
        )
    if t_w[1] != t_h[-1]:
        raise ValueError(
            f"teacher weight {t_w} must be [V, H_t] with H_t = {t_h[-1]} (hidden {t_h})"
        )
    if s_w[0] != t_w[0]:
        raise ValueError(
            f"student and teacher vocabularies differ: student weight {s_w}, teacher weight {t_w}"
        )
    for name, bias in (("student_bias", student_bias), ("teacher_bias", teacher_bias)):
        if bias is not None and tuple(bias.shape) != (s_w[0],):
            raise ValueError(f"{name} must have shape ({s_w[0]},), got {tuple(bias.shape)}")
    for t in (student_hidden, student_weight, teacher_hidden, teacher_weight):
        if not t.is_floating_point():
            raise TypeError(f"hidden states and weights must be floating point, got {t.dtype}")
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = token counts), got {mask.dtype}")
        if tuple(mask.shape) != s_h[:-1]:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} must equal hidden.shape[:-1] = {s_h[:-1]}"
            )
    if labels is not None:
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
        if tuple(labels.shape) != s_h[:-1]:
            raise ValueError(
                f"labels shape {tuple(labels.shape)} must equal hidden.shape[:-1] = {s_h[:-1]}"
            )


def fused_linear_distill(
    student_hidden: Tensor,
    student_weight: Tensor,
    teacher_hidden: Tensor,
    teacher_weight: Tensor,
    *,
    loss: str | TokenLevelLoss = "generalized_jsd",
    mask: Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    student_bias: Tensor | None = None,
    teacher_bias: Tensor | None = None,
    labels: Tensor | None = None,
    hard_weight: float = 0.0,
    ignore_index: int = -100,
    compile: bool = False,
    **params: Any,
) -> Tensor:
    r"""Token-level distillation loss on the lm head's output, ``chunk_size`` rows at a time.

    Equal in value and gradients (w.r.t. ``student_hidden``, ``student_weight``,
    ``student_bias``) to

    .. math:: \lambda\, \mathrm{CE}(z_s, y; \mathcal{C}) + (1 - \lambda)\,
        \mathtt{REGISTRY[loss]}(z_s, z_t, \mathcal{C}, T)

    with :math:`z_s` = ``student_hidden @ student_weight.T (+ student_bias)``, likewise
    :math:`z_t`, :math:`\lambda` = ``hard_weight``, and :math:`\mathcal{C}` the counted tokens:
    ``mask`` (all if ``None``) and, if ``labels`` are given, ``labels != ignore_index`` (even
    when ``hard_weight`` is 0). Both terms are means over :math:`\mathcal{C}`; CE uses the
    untempered student logits. No more than ``chunk_size × V`` logits exist at a time.

    Hidden states are ``[..., H_s]`` / ``[..., H_t]`` with equal leading dims (``[N, H]``
    typically), weights ``[V, H_s]`` / ``[V, H_t]``, ``mask``/``labels`` ``[...]``. ``loss`` is
    a name in ``TOKEN_LEVEL_LOSSES`` (or a callable with the same contract); ``params`` go to
    it (``beta=``, ``alpha=``, ``gamma=``...). ``compile=True`` runs each block's step through
    ``torch.compile``: one compilation per distinct setting (loss, parameters, temperature,
    dtype), within torch's recompile limit (8 by default; beyond it the step runs eagerly).
    Returns a 0-dim tensor (float32 for half inputs); 0 with zero gradients when no token
    counts.

    Memory beyond the inputs: the gradient accumulators (one float32 copy of the student
    weight), two ``chunk_size × V`` float32 tensors (student logits, then their gradient;
    teacher logits) and the loss's temporaries over one block of rows (a few MiB on CPU). At
    V ≈ 128k, 256 rows keep that to about 250 MiB at no loss of speed on CPU (see
    ``benchmarks/fused_loss.py``); the default 1024 suits V ≈ 32k. The gradients are computed
    in the forward pass when grad mode is on (so forward costs the backward too);
    ``backward`` only scales them by the incoming gradient. Second derivatives are not
    supported.
    """
    _check_inputs(
        student_hidden,
        student_weight,
        teacher_hidden,
        teacher_weight,
        student_bias,
        teacher_bias,
        mask,
        labels,
    )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if not 0.0 <= hard_weight <= 1.0:
        raise ValueError(f"hard_weight must lie in [0, 1], got {hard_weight}")
    if hard_weight > 0.0 and labels is None:
        raise ValueError("hard_weight > 0 needs labels for the cross-entropy term")
    check_temperature(temperature)
    cfg = _Config(
        loss_fn=_resolve_loss(loss),
        temperature=float(temperature),
        chunk_size=chunk_size,
        hard_weight=float(hard_weight),
        ignore_index=ignore_index,
        compile=compile,
        grad_enabled=torch.is_grad_enabled(),
        params=dict(params),
    )

    token_shape = student_hidden.shape[:-1]
    counted = (
        mask.reshape(-1)
        if mask is not None
        else torch.ones(token_shape.numel(), dtype=torch.bool, device=student_hidden.device)
    )
    flat_labels = labels.reshape(-1).long() if labels is not None else None
    if flat_labels is not None:
        counted = counted & (flat_labels != ignore_index)
    hidden = student_hidden.reshape(-1, student_hidden.shape[-1])
    t_hidden = teacher_hidden.reshape(-1, teacher_hidden.shape[-1])
    total: Tensor = _FusedLinearDistill.apply(  # type: ignore[no-untyped-call]
        hidden,
        student_weight,
        student_bias,
        t_hidden,
        teacher_weight,
        teacher_bias,
        counted,
        flat_labels,
        cfg,
    )
    return total


class FusedLinearDistillLoss(nn.Module):
    """:func:`fused_linear_distill` as an ``nn.Module`` for training loops (settings at init)."""

    def __init__(
        self,
        loss: str | TokenLevelLoss = "generalized_jsd",
        *,
        temperature: float = 1.0,
        chunk_size: int = 1024,
        hard_weight: float = 0.0,
        ignore_index: int = -100,
        compile: bool = False,
        **params: Any,
    ) -> None:
        super().__init__()
        self.loss = loss
        self.temperature = temperature
        self.chunk_size = chunk_size
        self.hard_weight = hard_weight
        self.ignore_index = ignore_index
        self.compile_chunks = compile  # not ``self.compile``: nn.Module.compile is a method
        self.params = params

    def forward(
        self,
        student_hidden: Tensor,
        student_weight: Tensor,
        teacher_hidden: Tensor,
        teacher_weight: Tensor,
        mask: Tensor | None = None,
        labels: Tensor | None = None,
        student_bias: Tensor | None = None,
        teacher_bias: Tensor | None = None,
    ) -> Tensor:
        """Loss for one batch; see :func:`fused_linear_distill` for shapes and semantics."""
        return fused_linear_distill(
            student_hidden,
            student_weight,
            teacher_hidden,
            teacher_weight,
            loss=self.loss,
            mask=mask,
            temperature=self.temperature,
            chunk_size=self.chunk_size,
            student_bias=student_bias,
            teacher_bias=teacher_bias,
            labels=labels,
            hard_weight=self.hard_weight,
            ignore_index=self.ignore_index,
            compile=self.compile_chunks,
            **self.params,
        )
