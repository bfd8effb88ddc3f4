r"""The zoo's synthetic language: known, multimodal next-token distributions of 2-token contexts.

See :mod:`reference_impls.zoo` for the construction; :class:`ZooConfig` also fixes the student
and the training budget, so that one object describes a zoo run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ZooConfig:
    """The language, the student and the training budget (see the module docstring)."""

    vocab_size: int = 64
    peak_mass: float = 0.85
    tail_size: int = 12
    floor_mass: float = 1e-3
    mix_spread: float = 0.075
    held_out_fraction: float = 0.25
    language_seed: int = 1234
    d_embed: int = 32
    d_hidden: int = 64
    rank: int = 8
    n_pool: int = 16384
    batch_size: int = 64
    lr: float = 1e-2
    steps: int = 1500
    n_curve_points: int = 10


@dataclass(frozen=True)
class Language:
    """The synthetic language: true next-token log-probs and modes of all :math:`V^2` contexts.

    Context ``(a, b)`` has index ``a * V + b``; ``log_probs[i]`` and ``modes[i]`` are its
    distribution and its mode tokens; ``train_ids`` and ``held_out_ids`` split the indices.
    """

    log_probs: Tensor  # [V*V, V] float32
    modes: Tensor  # [V*V, V] bool
    train_ids: Tensor  # [n_train] long
    held_out_ids: Tensor  # [n_held_out] long

    @property
    def vocab_size(self) -> int:
        """Number of tokens :math:`V`."""
        return int(self.log_probs.shape[-1])

    def contexts(self, ids: Tensor) -> Tensor:
        """``[N, 2]`` token pairs ``(a, b)`` of the context indices ``ids``."""
        v = self.vocab_size
        return torch.stack([ids // v, ids % v], dim=-1)

    def index(self, contexts: Tensor) -> Tensor:
        """Context indices of ``[..., 2]`` token pairs (the inverse of :meth:`contexts`)."""
        return contexts[..., 0] * self.vocab_size + contexts[..., 1]

    def teacher_logprobs(self, contexts: Tensor) -> Tensor:
        """``[..., V]`` true next-token log-probabilities of ``[..., 2]`` contexts."""
        return self.log_probs[self.index(contexts)]


def _components(cfg: ZooConfig, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(dists, peaks)`` ``[V, V]``: one component per token (peaks, Zipf tail, floor)."""
    v = cfg.vocab_size
    ranks = torch.arange(1, cfg.tail_size + 1, dtype=torch.float64)
    zipf = (1 / ranks) / (1 / ranks).sum()
    tail_mass = 1.0 - cfg.peak_mass - cfg.floor_mass
    dists = torch.full((v, v), cfg.floor_mass / v, dtype=torch.float64)
    peaks = torch.zeros(v, v, dtype=torch.bool)
    for x in range(v):
        order = torch.randperm(v, generator=gen)
        n_peaks = 1 + int(torch.randint(2, (1,), generator=gen))
        share = 0.35 + 0.3 * float(torch.rand((), generator=gen, dtype=torch.float64))
        weights = torch.tensor([1.0] if n_peaks == 1 else [share, 1 - share], dtype=torch.float64)
        peak_ids, tail_ids = order[:n_peaks], order[n_peaks : n_peaks + cfg.tail_size]
        dists[x, peak_ids] += cfg.peak_mass * weights
        dists[x, tail_ids] += tail_mass * zipf
        peaks[x, peak_ids] = True
    return dists, peaks


def build_language(cfg: ZooConfig, device: torch.device) -> Language:
    """Build the language of ``cfg`` (deterministic in ``cfg.language_seed``) on ``device``."""
    gen = torch.Generator().manual_seed(cfg.language_seed)
    first, first_peaks = _components(cfg, gen)
    second, second_peaks = _components(cfg, gen)
    s = 2 * torch.rand(cfg.vocab_size, generator=gen, dtype=torch.float64) - 1
    lam = (0.5 + cfg.mix_spread * (s[:, None] - s[None, :]))[..., None]  # [V, V, 1]
    probs = lam * first[:, None, :] + (1 - lam) * second[None, :, :]  # [a, b, next]
    modes = first_peaks[:, None, :] | second_peaks[None, :, :]
    v2 = cfg.vocab_size**2
    order = torch.randperm(v2, generator=gen)
    n_held = round(cfg.held_out_fraction * v2)
    return Language(
        probs.reshape(v2, -1).log().float().to(device),
        modes.reshape(v2, -1).to(device),
        order[n_held:].sort().values.to(device),
        order[:n_held].sort().values.to(device),
    )
