"""``torch.nn.functional``'s losses as pure JAX functions: the same names, arguments,
defaults, values and gradients (checked against torch in float64 and float32).

Every loss takes ``reduction="none" | "mean" | "sum"`` (``kl_div`` also
``"batchmean"``), and ``weight``/``ignore_index``/``pos_weight`` where torch has them;
torch's legacy ``size_average``/``reduce`` are not taken. All work under ``jax.jit``,
``jax.grad`` and ``jax.vmap``; value checks (targets out of range, probabilities
outside [0, 1], negative variances) run where values can be seen, outside ``jit``.

One module per kind: ``regression`` (mse, l1, smooth-l1, huber), ``classification``
(nll, cross-entropy, linear cross-entropy, multi-class margins), ``binary`` (BCE, BCE with logits, soft
margins), ``probabilistic`` (KL, Poisson, Gaussian), ``embedding`` (cosine, ranking,
hinge, triplet), ``adaptive`` (adaptive softmax) and ``ctc``; this package is their index.
"""

from funcnets.losses.adaptive import adaptive_log_prob, adaptive_log_softmax_with_loss, adaptive_predict
from funcnets.losses.binary import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    multilabel_soft_margin_loss,
    soft_margin_loss,
)
from funcnets.losses.classification import (
    cross_entropy,
    linear_cross_entropy,
    multi_margin_loss,
    multilabel_margin_loss,
    nll_loss,
)
from funcnets.losses.ctc import ctc_loss
from funcnets.losses.embedding import (
    cosine_embedding_loss,
    hinge_embedding_loss,
    margin_ranking_loss,
    triplet_margin_loss,
    triplet_margin_with_distance_loss,
)
from funcnets.losses.probabilistic import gaussian_nll_loss, kl_div, poisson_nll_loss
from funcnets.losses.regression import huber_loss, l1_loss, mse_loss, smooth_l1_loss

__all__ = [
    # regression
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    # classification
    "cross_entropy",
    "linear_cross_entropy",
    "nll_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    # binary and multi-label
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    # likelihoods and divergences
    "kl_div",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    # embeddings and ranking
    "cosine_embedding_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
    # adaptive softmax
    "adaptive_log_softmax_with_loss",
    "adaptive_log_prob",
    "adaptive_predict",
    # sequences
    "ctc_loss",
]
