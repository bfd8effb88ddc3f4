r"""The loss zoo: every token-level loss trains the same student on one known language.

``python -m reference_impls.zoo [--losses ...] [--seeds 3] [--steps N] [--device auto|cpu|cuda]
[--out DIR]`` trains one capacity-limited student per loss of
:data:`reference_impls.TOKEN_LEVEL_LOSSES`, plus ``sft_loss`` on teacher samples (the
black-box baseline), from the same initialisation and for the same budget, over several seeds;
measures them on held-out contexts (:mod:`reference_impls.zoo.metrics`); and writes
``zoo.json`` (schema: :mod:`reference_impls.zoo.results`) to ``--out`` (default ``build/zoo``);
the site draws its charts from that file. It also runs unchanged under
``torchrun --nproc_per_node=K -m reference_impls.zoo`` (the loop of
:mod:`reference_impls.demos.loop` is data-parallel; rank 0 writes the file).

**The language.** Vocabulary :math:`V = 64`; a context is the previous two tokens
:math:`(a, b)`, so there are :math:`V^2 = 4096` contexts. Each token :math:`x` owns two fixed
random component distributions, :math:`A_x` (for :math:`x` in the first slot) and :math:`B_x`
(second slot), each made of 1 or 2 *peaks* carrying 85% of the mass (two peaks split it
between 35:65 and 65:35), a Zipfian *tail* of 12 tokens (:math:`\propto 1/r`) carrying 14.9%,
and a floor of 0.1% spread over the whole vocabulary. The true next-token distribution is the
explicit mixture

.. math:: p(\cdot \mid a, b) = \lambda_{ab}\, A_a + (1 - \lambda_{ab})\, B_b, \qquad
    \lambda_{ab} = \tfrac12 + 0.075\,(s_a - s_b) \in [0.35, 0.65]

with fixed :math:`s_x \in [-1, 1]`. **Modes** of a context are the peak tokens of its two
components: 2 to 4 tokens (1 in the 0.5% of contexts where both components peak on the same
token), each with :math:`p \ge 0.35 \cdot 0.85 \cdot 0.35 > 0.1`, while every other token
has :math:`p < 0.06`; so the modes are also exactly the tokens with :math:`p \ge 0.1`. Tail
tokens keep :math:`p > 10^{-3}`; tokens in no peak and no tail (about 40 per context) have
:math:`p = 0.001 / 64`: the teacher rules them out, and student mass there is *hallucination
mass*. A quarter of the contexts are held out and never trained on; the metrics
(:mod:`reference_impls.zoo.metrics`: a mode counts as recalled where the student gives it
:math:`q \ge 0.05`) are averaged over them.

**Teacher and student.** The teacher is the language itself (its logits are :math:`\log p`:
a teacher that matches the data exactly). The student is a two-token-window MLP language model
(Bengio et al., 2003): embeddings of both slots (width 32), summed, a GELU layer of width 64,
then a **rank-8 bottleneck** before the output layer, so its logits over all contexts form a
matrix of rank at most 9 and it cannot match every mixture: each loss decides what to give up.
Training pool: 16,384 (context, next token) pairs with contexts drawn uniformly from the
training contexts and next tokens sampled from :math:`p`; KD losses see the teacher's full
distribution at the pool's contexts, ``sft_loss`` only the sampled token. Adam, lr 0.01,
global batch 64, 1500 steps by default. One seed fixes the student initialisation (the same
for every loss), the pool and the batch order; the language is the same for every seed.

Loss parameters: those of each loss's registry spec, as in the demos (``generalized_jsd``
with :math:`\beta = 0.9`; ``confidence_aware_kl`` with :math:`\gamma` measured on the
training pool by its ``fit_params``).

**Claims.** :data:`~reference_impls.zoo.claims.CLAIMS` states each claim of the literature the
zoo tests with an explicit numeric criterion; ``zoo.json`` records the verdict on the means
over seeds, how many seeds agree on their own, and the numbers used, whether the claim holds or not.
This package depends on torch alone.
"""

from reference_impls.zoo.claims import CLAIMS, Claim, evaluate_claims
from reference_impls.zoo.cli import main
from reference_impls.zoo.language import Language, ZooConfig, build_language
from reference_impls.zoo.run import format_summary, run_one, run_zoo, summarize, write_outputs
from reference_impls.zoo.student import (
    BASELINE,
    DEFAULT_LOSSES,
    ZOO_LOSSES,
    ZooStudent,
    build_zoo_task,
)

__all__ = [
    "BASELINE",
    "CLAIMS",
    "DEFAULT_LOSSES",
    "ZOO_LOSSES",
    "Claim",
    "Language",
    "ZooConfig",
    "ZooStudent",
    "build_language",
    "build_zoo_task",
    "evaluate_claims",
    "format_summary",
    "main",
    "run_one",
    "run_zoo",
    "summarize",
    "write_outputs",
]
