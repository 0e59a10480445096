"""``torch.nn.AdaptiveLogSoftmaxWithLoss`` (``torch/nn/modules/adaptive.py``): the
adaptive softmax as a layer with torch's parameters, init and ``forward``; the
computation is :mod:`funcnets.losses.adaptive`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from funcnets._typing import Array, Params
from funcnets.losses.adaptive import (
    _ASMoutput,
    _check_cutoffs,
    adaptive_log_prob,
    adaptive_log_softmax_with_loss,
    adaptive_predict,
)
from funcnets.nn.container import ModuleList, Sequential
from funcnets.nn.linear import Linear
from funcnets.nn.module import Module

__all__ = ["AdaptiveLogSoftmaxWithLoss"]


@dataclass(frozen=True, repr=False)
class AdaptiveLogSoftmaxWithLoss(Module):
    """Adaptive softmax (Grave et al., 2016): a cheap softmax over many classes sorted by
    frequency (class 0 the most frequent), with the log-likelihood loss.

    ``cutoffs`` ``c_0 < ... < c_{k-1}`` split the classes: the head scores the shortlist
    ``[0, c_0)`` and one logit per tail cluster; cluster ``i`` (classes ``[c_i, c_{i+1})``,
    ``c_k = n_classes``) goes through a projection to ``in_features // div_value**(i+1)``
    features. The formulas are in :mod:`funcnets.losses.adaptive`.

    Parameters (torch's ``state_dict`` names and default init, ``U(±1/sqrt(fan_in))``):
    ``head.weight`` ``(c_0 + k, in_features)``, ``head.bias`` if ``head_bias``, and
    ``tail.{i}.0.weight`` ``(h_i, in_features)``, ``tail.{i}.1.weight`` ``(c_{i+1} - c_i, h_i)``.

    Calling it (the module contract, since it has parameters):
    ``m(params, state, input, target) -> (_ASMoutput(output, loss), state)``, or torch's
    methods with the params first: ``m.forward(params, input, target)``,
    ``m.log_prob(params, input)`` ``(N, n_classes)``, ``m.predict(params, input)`` ``(N,)``.
    ``output`` is each target's log-probability ``(N,)`` (``()`` for an unbatched
    ``input`` ``(in_features,)`` with a scalar target), ``loss`` the mean of ``-output``.

    Unlike torch's attribute, ``cutoffs`` is the constructor's (without ``n_classes``
    appended).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> asm = nn.AdaptiveLogSoftmaxWithLoss(8, 10, cutoffs=[2, 6])  # shortlist {0, 1}, clusters 2-5 and 6-9
        >>> params, state = asm.init(jax.random.key(0))
        >>> [name for name, _ in asm.named_parameters(params)]
        ['head.weight', 'tail.0.0.weight', 'tail.0.1.weight', 'tail.1.0.weight', 'tail.1.1.weight']
        >>> [a.shape for a in asm.parameters(params)]  # projections to 8 // 4 and 8 // 16 features
        [(4, 8), (2, 8), (4, 2), (0, 8), (4, 0)]
        >>> x = jax.random.normal(jax.random.key(1), (3, 8))
        >>> (output, loss), state = asm(params, state, x, jnp.array([0, 5, 9]))
        >>> output.shape, loss.shape
        ((3,), ())
        >>> [round(float(v), 4) for v in jnp.exp(asm.log_prob(params, x)).sum(1)]  # a distribution over the 10
        [1.0, 1.0, 1.0]
    """

    in_features: int
    n_classes: int
    cutoffs: tuple[int, ...]
    div_value: float = 4.0
    head_bias: bool = False
    head: Linear = field(init=False, compare=False)
    tail: ModuleList = field(init=False, compare=False)

    def __post_init__(self):
        cutoffs = _check_cutoffs(self.cutoffs, self.n_classes)
        object.__setattr__(self, "cutoffs", cutoffs)
        cuts = (*cutoffs, self.n_classes)
        object.__setattr__(self, "head", Linear(self.in_features, cuts[0] + len(cutoffs), bias=self.head_bias))
        tail = []
        for i in range(len(cutoffs)):
            hsz = int(self.in_features // (self.div_value ** (i + 1)))
            osz = cuts[i + 1] - cuts[i]
            tail.append(Sequential(Linear(self.in_features, hsz, bias=False), Linear(hsz, osz, bias=False)))
        object.__setattr__(self, "tail", ModuleList(tail))

    @property
    def shortlist_size(self) -> int:
        return self.cutoffs[0]

    @property
    def n_clusters(self) -> int:
        return len(self.cutoffs)

    @property
    def head_size(self) -> int:
        return self.shortlist_size + self.n_clusters

    def _weights(self, params: Params) -> tuple[Array, list[tuple[Array, Array]], Array | None]:
        tail = params["tail"]
        pairs = [(tail[str(i)]["0"]["weight"], tail[str(i)]["1"]["weight"]) for i in range(self.n_clusters)]
        return params["head"]["weight"], pairs, params["head"].get("bias")

    def forward(self, params: Params, input: Array, target: Array) -> _ASMoutput:
        """torch's ``forward`` with the params first: ``_ASMoutput(output, loss)``.

        Args:
          input: ``(N, in_features)`` or ``(in_features,)``.
          target: class indices ``(N,)`` or ``()``, in ``[0, n_classes)``.
        """
        head_w, tail, head_b = self._weights(params)
        return adaptive_log_softmax_with_loss(input, target, head_w, tail, self.cutoffs, head_b)

    def log_prob(self, params: Params, input: Array) -> Array:
        """Log-probabilities of every class: ``(N, in_features) -> (N, n_classes)``."""
        head_w, tail, head_b = self._weights(params)
        return adaptive_log_prob(input, head_w, tail, self.cutoffs, head_b)

    def predict(self, params: Params, input: Array) -> Array:
        """The most probable class of each row, ``(N, in_features) -> (N,)``
        (``log_prob(params, input).argmax(1)``, with torch's tie-breaking)."""
        head_w, tail, head_b = self._weights(params)
        return adaptive_predict(input, head_w, tail, self.cutoffs, head_b)

    def __call__(self, params: Params, state, input: Any, target: Array | None = None, *, train=False, key=None):
        return self.apply(params, state if state is not None else {}, input, target, train=train, key=key)

    def apply(self, params, state, input, target=None, *, train=False, key=None):
        """``(_ASMoutput(output, loss), state)``; ``input`` may be the pair ``(input,
        target)`` (how :func:`funcnets.from_torch` passes a call's arguments)."""
        if target is None:
            if not (isinstance(input, (tuple, list)) and len(input) == 2):
                raise TypeError(
                    "AdaptiveLogSoftmaxWithLoss takes (input, target): call it as m(params, state, input, target) "
                    "or with x = (input, target)."
                )
            input, target = input
        return self.forward(params, input, target), state
