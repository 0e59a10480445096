"""``torch.nn.modules.loss``: the loss *classes*, as thin objects over :mod:`funcnets.losses`.

A loss class holds its options (``reduction``, ``margin``, ...) and, like torch's
``register_buffer``, its ``weight``/``pos_weight`` arrays; calling it calls the loss
function with them::

    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(logits, labels)            # losses.cross_entropy(logits, labels, ...)

The arrays are constants, not trainable parameters (in torch they are buffers, so they
appear in ``state_dict()`` as ``weight``/``pos_weight``; here :meth:`buffer_names` and
:meth:`init_own` report them the same way). Constructor signatures, defaults and ``repr``
are torch's (``CrossEntropyLoss()`` whatever the options, as torch prints it); torch's
legacy ``size_average``/``reduce`` are accepted only as ``None``. Unlike torch, an
unknown ``reduction`` is refused when the loss is built, not at its first call.

A loss is a :class:`~funcnets.nn.module.Module` (so ``isinstance(criterion, nn.Module)``
and it prints as a child), but its call is torch's ``forward``: ``criterion(input,
target, ...)``, not ``(params, state, x)``. Loss objects compare and hash by identity (they
may hold arrays); pass them to ``jax.jit`` by closure, or their arrays as arguments.

The one loss here with learnable weights, :class:`LinearCrossEntropyLoss` (a ``Linear``
child, as in torch), keeps the module contract instead, since its parameters must be
passed: ``criterion(params, state, input, target) -> (loss, state)``, or
``criterion.forward(params, input, target) -> loss`` (torch's forward, params first).
``nn.AdaptiveLogSoftmaxWithLoss`` (in :mod:`funcnets.nn.adaptive`, as in torch) is called
the same way.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from funcnets import losses
from funcnets._typing import Array, Params, PRNGKey
from funcnets.errors import ShapeError
from funcnets.nn.distance import PairwiseDistance
from funcnets.nn.linear import Linear
from funcnets.nn.module import Module

__all__ = [
    "L1Loss", "MSELoss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "SmoothL1Loss",
    "HuberLoss", "KLDivLoss", "PoissonNLLLoss", "GaussianNLLLoss", "CosineEmbeddingLoss", "MarginRankingLoss",
    "HingeEmbeddingLoss", "MultiLabelMarginLoss", "MultiLabelSoftMarginLoss", "MultiMarginLoss",
    "TripletMarginLoss", "SoftMarginLoss", "CTCLoss", "TripletMarginWithDistanceLoss", "LinearCrossEntropyLoss",
]

_REDUCTIONS = ("none", "mean", "sum")


class _Loss(Module):
    """torch's ``_Loss``: a ``reduction`` and, for weighted losses, array buffers.

    Subclasses set ``_buffers`` (the names of their array arguments, torch's buffer
    order) and define ``forward``; ``__init__`` checks the shared arguments.
    """

    _buffers: tuple[str, ...] = ()
    _reductions: tuple[str, ...] = _REDUCTIONS

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean") -> None:
        if size_average is not None or reduce is not None:
            raise ValueError(
                f"{type(self).__name__}: size_average and reduce are deprecated in torch and not taken "
                f"here; pass reduction='none' | 'mean' | 'sum' instead."
            )
        if reduction not in self._reductions:
            raise ValueError(
                f"{type(self).__name__}: {reduction!r} is not a valid value for reduction; "
                f"use one of {self._reductions}."
            )
        self.reduction = reduction

    def _set_buffer(self, name: str, value: Any) -> None:
        if value is not None and not hasattr(value, "shape"):
            value = jnp.asarray(value)
        setattr(self, name, value)

    # --- the module contract: buffers only, no parameters, no children ----------------
    def children(self) -> list:
        return []

    def buffer_names(self) -> tuple[str, ...]:
        return tuple(n for n in self._buffers if getattr(self, n) is not None)

    def init_own(self, key: PRNGKey) -> tuple[dict, dict]:
        return {}, {n: getattr(self, n) for n in self.buffer_names()}

    def apply(self, params, state, x, *, train=False, key=None):
        raise TypeError(
            f"{self!r} is a loss: call it as torch does, {type(self).__name__.lower()}(input, target, ...), "
            f"not with (params, state, x)."
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Array:
        return self.forward(*args, **kwargs)

    def forward(self, input: Array, target: Array) -> Array:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __setattr__(self, name: str, value: Any) -> None:
        # Set once, in __init__: a loss is a value, like the frozen dataclasses of layers.
        if name in self.__dict__:
            raise AttributeError(f"{type(self).__name__} is immutable; build a new one to change {name!r}")
        object.__setattr__(self, name, value)


class _WeightedLoss(_Loss):
    """torch's ``_WeightedLoss``: a ``weight`` buffer (per class or per element)."""

    _buffers = ("weight",)

    def __init__(self, weight: Array | None = None, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self._set_buffer("weight", weight)


# --- regression ---------------------------------------------------------------------


class L1Loss(_Loss):
    """Mean absolute error ``|x - y|`` (:func:`funcnets.losses.l1_loss`). ``input``, ``target``: any, same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 5.0])
        >>> round(float(nn.L1Loss()(x, y)), 4)  # (0 + 2 + 2) / 3
        1.3333
        >>> float(nn.L1Loss(reduction="sum")(x, y))
        4.0
    """

    def forward(self, input: Array, target: Array) -> Array:
        return losses.l1_loss(input, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error ``(x - y)²`` (:func:`funcnets.losses.mse_loss`). ``input``, ``target``: any, same shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 5.0])
        >>> round(float(nn.MSELoss()(x, y)), 4)  # (0 + 4 + 4) / 3
        2.6667
    """

    def forward(self, input: Array, target: Array) -> Array:
        return losses.mse_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """``0.5 (x-y)²/β`` where ``|x-y| < β``, else ``|x-y| - 0.5β`` (:func:`funcnets.losses.smooth_l1_loss`).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> loss = nn.SmoothL1Loss(reduction="none")  # beta=1
        >>> loss(jnp.array([0.0, 0.0]), jnp.array([0.5, 3.0])).tolist()  # 0.5·0.5², then 3 - 0.5
        [0.125, 2.5]
    """

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(size_average, reduce, reduction)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: beta must be >= 0, got {beta}")
        self.beta = beta

    def forward(self, input: Array, target: Array) -> Array:
        return losses.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """``0.5 (x-y)²`` where ``|x-y| < δ``, else ``δ(|x-y| - 0.5δ)`` (:func:`funcnets.losses.huber_loss`).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> loss = nn.HuberLoss(reduction="none", delta=2.0)
        >>> loss(jnp.array([0.0, 0.0]), jnp.array([1.0, 5.0])).tolist()  # 0.5·1², then 2·(5 - 1)
        [0.5, 8.0]
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        if not isinstance(delta, (float, int)):
            raise TypeError(f"delta must be a float or int, got: {type(delta)}")
        if delta <= 0:
            raise ValueError(f"HuberLoss: delta must be > 0, got {delta}")
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input: Array, target: Array) -> Array:
        return losses.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


# --- classification -----------------------------------------------------------------


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities (:func:`funcnets.losses.nll_loss`).

    ``input``: ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)``; ``target``: class indices
    ``(N,)``/``()``/``(N, d1, ...)``; ``weight``: ``(C,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> log_probs = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
        >>> round(float(nn.NLLLoss()(log_probs, jnp.array([0, 1]))), 4)  # -(log 0.5 + log 0.8) / 2
        0.4581
    """

    def __init__(
        self, weight: Array | None = None, size_average=None, ignore_index: int = -100, reduce=None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Array, target: Array) -> Array:
        return losses.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Cross-entropy of logits (:func:`funcnets.losses.cross_entropy`): class-index or
    probability targets, class ``weight`` ``(C,)``, ``ignore_index``, ``label_smoothing``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> logits, labels = jnp.zeros((2, 3)), jnp.array([0, 2])
        >>> round(float(nn.CrossEntropyLoss()(logits, labels)), 4)  # uniform logits: log 3
        1.0986
        >>> logits = jnp.array([[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
        >>> round(float(nn.CrossEntropyLoss()(logits, labels)), 4)  # log(e⁴ + 2) - 4
        0.036
        >>> round(float(nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels)), 4)  # 0.9·0.036 + 0.1·mean_c(-log p_c)
        0.3026
    """

    def __init__(
        self, weight: Array | None = None, size_average=None, ignore_index: int = -100, reduce=None,
        reduction: str = "mean", label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Array, target: Array) -> Array:
        return losses.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                                    reduction=self.reduction, label_smoothing=self.label_smoothing)


class LinearCrossEntropyLoss(_WeightedLoss):
    """Cross-entropy of the logits of a learnable linear layer
    (:func:`funcnets.losses.linear_cross_entropy`): ``cross_entropy(linear(input), target)``.

    The layer is the child ``linear``, ``Linear(in_features, num_classes ·
    prod(out_features), bias)`` with torch's flat storage and init, so the parameters are
    ``linear.weight`` ``(C·d1⋯dK, in_features)`` and ``linear.bias`` as in torch's
    ``state_dict`` (the class ``weight`` is a buffer, ``weight``); the forward reshapes the
    weight to ``(C, d1, ..., dK, in_features)``: K-dimensional logits
    ``(N, C, d1, ..., dK)`` from one feature vector per sample.

    It has parameters, so it is called with them (the module contract):
    ``criterion(params, state, input, target) -> (loss, state)`` (the class weight taken
    from ``state``), or ``criterion.forward(params, input, target) -> loss``.

    ``ignore_index=None`` means torch's ``-100`` for class-index targets, and must stay
    None for probability targets. torch's ``options`` (chunking the classes to save
    memory) never changes the loss; only its default, None, is taken, and so are
    ``device`` and ``dtype`` (in the signature for torch's sake).

    Shapes: ``input`` ``(N, in_features)`` or ``(in_features,)``; ``target`` class indices
    ``(N,)``/``()``/``(N, d1, ..., dK)`` or probabilities ``(N, C, d1, ..., dK)``/``(C,)``;
    the loss ``target``'s index shape for ``reduction="none"``, else a scalar.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> criterion = nn.LinearCrossEntropyLoss(4, 3, out_features=(2,))
        >>> params, state = criterion.init(jax.random.key(0))
        >>> [(name, a.shape) for name, a in criterion.named_parameters(params)]  # torch's names and storage
        [('linear.weight', (6, 4))]
        >>> params = {"linear": {"weight": jnp.zeros((6, 4))}}  # uniform logits: log 3 everywhere
        >>> loss, state = criterion(params, state, jnp.ones((5, 4)), jnp.zeros((5, 2), int))
        >>> round(float(loss), 4)
        1.0986
    """

    def __init__(
        self, in_features: int, num_classes: int, *, out_features: tuple[int, ...] = (), bias: bool = False,
        device=None, dtype=None, reduction: str = "mean", weight: Array | None = None,
        ignore_index: int | None = None, label_smoothing: float = 0.0, options: None = None,
    ) -> None:
        if device is not None or dtype is not None:
            raise ValueError(
                "LinearCrossEntropyLoss: device and dtype are torch's and not taken here: init() makes float32 "
                "parameters (float64 with jax_enable_x64); cast them with "
                "jax.tree.map(lambda a: a.astype(...), params)."
            )
        if weight is not None and tuple(np.shape(weight)) != (num_classes,):
            raise ValueError(
                f"LinearCrossEntropyLoss: expected weight shape to be {(num_classes,)}, got "
                f"{tuple(np.shape(weight))}; give one weight per class."
            )
        if label_smoothing < 0 or label_smoothing > 1.0:
            raise ValueError(f"LinearCrossEntropyLoss: expected label_smoothing to be in range [0, 1], got "
                             f"{label_smoothing}")
        if options is not None:
            raise ValueError(
                "LinearCrossEntropyLoss: options (torch's LinearCrossEntropyOptions, a chunking strategy) is not "
                "taken; it changes only how torch computes, not the loss. Pass options=None."
            )
        super().__init__(weight, None, None, reduction)
        self.num_classes = num_classes
        self.out_features = tuple(out_features)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.options = None
        # torch's Linear takes only 2-D weights: stored flat, reshaped in forward
        self.linear = Linear(in_features, math.prod(self.out_features, start=num_classes), bias=bias)

    def children(self) -> list:
        return [("linear", self.linear)]

    def extra_repr(self) -> str:
        return (
            f"in_features={self.linear.in_features}, num_classes={self.num_classes}, out_features="
            f"{self.out_features}, bias={self.linear.bias}, reduction={self.reduction}, ignore_index="
            f"{self.ignore_index}, label_smoothing={self.label_smoothing}, options={self.options}"
        )

    def __repr__(self) -> str:  # torch prints the options above the child
        return f"{type(self).__name__}(\n  {self.extra_repr()}\n  (linear): {self.linear!r}\n)"

    def __call__(self, params: Params, state, input: Any, target: Array | None = None, *, train=False, key=None):
        return self.apply(params, state if state is not None else {}, input, target, train=train, key=key)

    def apply(self, params, state, input, target=None, *, train=False, key=None):
        """``(loss, state)``; ``input`` may be the pair ``(input, target)`` (how
        :func:`funcnets.from_torch` passes a call's arguments)."""
        if target is None:
            if not (isinstance(input, (tuple, list)) and len(input) == 2):
                raise TypeError(
                    f"{type(self).__name__} takes (input, target): call it as criterion(params, state, input, "
                    f"target) or with x = (input, target)."
                )
            input, target = input
        weight = (state or {}).get("weight", self.weight)
        return self._loss(params, weight, input, target), state

    def forward(self, params: Params, input: Array, target: Array) -> Array:
        """torch's ``forward`` with the params first: the loss."""
        return self._loss(params, self.weight, input, target)

    def _loss(self, params: Params, weight: Array | None, input: Array, target: Array) -> Array:
        lin = params["linear"]
        w = lin["weight"]
        bias = lin.get("bias")
        want = (self.linear.out_features, self.linear.in_features)
        if tuple(np.shape(w)) != want:
            raise ShapeError(
                f"{type(self).__name__}: params['linear']['weight'] must be {want} (num_classes · "
                f"prod(out_features), in_features), got {tuple(np.shape(w))}."
            )
        return losses.linear_cross_entropy(
            input, w.reshape(self.num_classes, *self.out_features, self.linear.in_features), target,
            linear_bias=None if bias is None else bias.reshape(self.num_classes, *self.out_features),
            weight=weight, reduction=self.reduction, ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )


class MultiMarginLoss(_WeightedLoss):
    """Multi-class hinge ``Σ_{j≠y} w_y max(0, margin - x_y + x_j)^p / C``
    (:func:`funcnets.losses.multi_margin_loss`). ``input``: ``(N, C)`` or ``(C,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x, y = jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([3])
        >>> round(float(nn.MultiMarginLoss()(x, y)), 4)  # ((1 - 0.7) + (1 - 0.6) + (1 - 0.4)) / 4
        0.325
    """

    def __init__(
        self, p: int = 1, margin: float = 1.0, weight: Array | None = None, size_average=None, reduce=None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        if p != 1 and p != 2:
            raise ValueError("only p == 1 and p == 2 supported")
        if self.weight is not None and np.ndim(self.weight) != 1:
            raise ValueError(
                f"MultiMarginLoss: expected weight to be None or 1D tensor, got {np.ndim(self.weight)}D instead"
            )
        self.p = p
        self.margin = margin

    def forward(self, input: Array, target: Array) -> Array:
        return losses.multi_margin_loss(input, target, p=self.p, margin=self.margin, weight=self.weight,
                                        reduction=self.reduction)


class MultiLabelMarginLoss(_Loss):
    """Multi-label hinge over the target classes listed (``-1``-terminated) in ``target``
    (:func:`funcnets.losses.multilabel_margin_loss`). ``input``, ``target``: ``(N, C)`` or ``(C,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x = jnp.array([[0.1, 0.2, 0.4, 0.8]])
        >>> y = jnp.array([[3, 0, -1, 1]])  # classes 3 and 0; -1 ends the list
        >>> round(float(nn.MultiLabelMarginLoss()(x, y)), 4)
        0.85
    """

    def forward(self, input: Array, target: Array) -> Array:
        return losses.multilabel_margin_loss(input, target, reduction=self.reduction)


# --- binary and multi-label -----------------------------------------------------------


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities, logs clamped at -100
    (:func:`funcnets.losses.binary_cross_entropy`). ``weight`` broadcasts to ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> p, y = jnp.array([0.8, 0.2]), jnp.array([1.0, 0.0])
        >>> round(float(nn.BCELoss()(p, y)), 4)  # -log 0.8
        0.2231
    """

    def forward(self, input: Array, target: Array) -> Array:
        return losses.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of logits (:func:`funcnets.losses.binary_cross_entropy_with_logits`).

    ``weight`` broadcasts to ``input``; ``pos_weight`` (one per class, the last
    dimension) scales the positive term: ``-w [p_c y log σ(x) + (1-y) log(1-σ(x))]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> logits, y = jnp.zeros(2), jnp.array([1.0, 0.0])
        >>> round(float(nn.BCEWithLogitsLoss()(logits, y)), 4)  # log 2
        0.6931
        >>> round(float(nn.BCEWithLogitsLoss(pos_weight=jnp.array([3.0, 3.0]))(logits, y)), 4)  # (3 + 1)·log 2 / 2
        1.3863
    """

    _buffers = ("weight", "pos_weight")

    def __init__(
        self, weight: Array | None = None, size_average=None, reduce=None, reduction: str = "mean",
        pos_weight: Array | None = None,
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self._set_buffer("weight", weight)
        self._set_buffer("pos_weight", pos_weight)

    def forward(self, input: Array, target: Array) -> Array:
        return losses.binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                       pos_weight=self.pos_weight)


class SoftMarginLoss(_Loss):
    """Two-class logistic loss ``log(1 + exp(-y x))`` (:func:`funcnets.losses.soft_margin_loss`).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> round(float(nn.SoftMarginLoss()(jnp.array([2.0, -2.0]), jnp.array([1.0, -1.0]))), 4)  # log(1 + exp(-2))
        0.1269
    """

    def forward(self, input: Array, target: Array) -> Array:
        return losses.soft_margin_loss(input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_WeightedLoss):
    """Per-class BCE with logits averaged over classes
    (:func:`funcnets.losses.multilabel_soft_margin_loss`). ``input``, ``target``: ``(N, C)``; ``weight``: ``(C,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x, y = jnp.zeros((1, 3)), jnp.array([[1.0, 0.0, 1.0]])
        >>> round(float(nn.MultiLabelSoftMarginLoss()(x, y)), 4)  # log 2 for every class
        0.6931
    """

    def forward(self, input: Array, target: Array) -> Array:
        return losses.multilabel_soft_margin_loss(input, target, weight=self.weight, reduction=self.reduction)


# --- likelihoods and divergences -------------------------------------------------------


class KLDivLoss(_Loss):
    """``target · (log target - input)`` with ``input`` log-probabilities (:func:`funcnets.losses.kl_div`);
    ``reduction="batchmean"`` divides the sum by the batch size (the mathematical KL).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> log_q, p = jnp.log(jnp.array([[0.25, 0.75]])), jnp.array([[0.5, 0.5]])
        >>> round(float(nn.KLDivLoss(reduction="batchmean")(log_q, p)), 4)  # KL(p || q)
        0.1438
    """

    _reductions = (*_REDUCTIONS, "batchmean")

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input: Array, target: Array) -> Array:
        return losses.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class PoissonNLLLoss(_Loss):
    """Poisson negative log-likelihood (:func:`funcnets.losses.poisson_nll_loss`): ``exp(x) - y x``
    for ``log_input``, else ``x - y log(x + eps)``; ``full`` adds Stirling's term.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> log_rate, counts = jnp.array([0.0, 1.0]), jnp.array([2.0, 1.0])
        >>> round(float(nn.PoissonNLLLoss()(log_rate, counts)), 4)  # ((1 - 0) + (e - 1)) / 2
        1.3591
    """

    def __init__(
        self, log_input: bool = True, full: bool = False, size_average=None, eps: float = 1e-8, reduce=None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_input = log_input
        self.full = full
        self.eps = eps

    def forward(self, log_input: Array, target: Array) -> Array:
        return losses.poisson_nll_loss(log_input, target, log_input=self.log_input, full=self.full, eps=self.eps,
                                       reduction=self.reduction)


class GaussianNLLLoss(_Loss):
    """Gaussian negative log-likelihood ``½(log max(var, eps) + (x - y)²/max(var, eps))``
    (:func:`funcnets.losses.gaussian_nll_loss`); ``full`` adds ``½ log 2π``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x, y, var = jnp.zeros(2), jnp.ones(2), jnp.ones(2)
        >>> round(float(nn.GaussianNLLLoss()(x, y, var)), 4)  # ½(log 1 + 1²/1)
        0.5
        >>> round(float(nn.GaussianNLLLoss(full=True)(x, y, var)), 4)  # + ½ log 2π
        1.4189
    """

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(None, None, reduction)
        self.full = full
        self.eps = eps

    def forward(self, input: Array, target: Array, var: Array | float) -> Array:
        return losses.gaussian_nll_loss(input, target, var, full=self.full, eps=self.eps, reduction=self.reduction)


# --- embeddings and ranking -------------------------------------------------------------


class CosineEmbeddingLoss(_Loss):
    """``1 - cos(x1, x2)`` for ``y = 1``, ``max(0, cos(x1, x2) - margin)`` for ``y = -1``
    (:func:`funcnets.losses.cosine_embedding_loss`). ``input1``, ``input2``: ``(N, D)``; ``target``: ``(N,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x1, x2 = jnp.array([[1.0, 0.0], [1.0, 1.0]]), jnp.array([[1.0, 1.0], [1.0, 1.0]])
        >>> loss = nn.CosineEmbeddingLoss(reduction="none")
        >>> [round(v, 4) for v in loss(x1, x2, jnp.array([1, -1])).tolist()]  # 1 - cos 45°, then cos 0°
        [0.2929, 1.0]
    """

    def __init__(self, margin: float = 0.0, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1: Array, input2: Array, target: Array) -> Array:
        return losses.cosine_embedding_loss(input1, input2, target, margin=self.margin, reduction=self.reduction)


class MarginRankingLoss(_Loss):
    """``max(0, -y (x1 - x2) + margin)`` (:func:`funcnets.losses.margin_ranking_loss`).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> loss = nn.MarginRankingLoss(margin=0.5, reduction="none")
        >>> loss(jnp.array([1.0, 2.0]), jnp.array([2.0, 1.0]), jnp.array([1.0, 1.0])).tolist()  # y = 1: x1 should rank higher
        [1.5, 0.0]
    """

    def __init__(self, margin: float = 0.0, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1: Array, input2: Array, target: Array) -> Array:
        return losses.margin_ranking_loss(input1, input2, target, margin=self.margin, reduction=self.reduction)


class HingeEmbeddingLoss(_Loss):
    """``x`` for ``y = 1``, ``max(0, margin - x)`` for ``y = -1``
    (:func:`funcnets.losses.hinge_embedding_loss`).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> loss = nn.HingeEmbeddingLoss(reduction="none")  # margin=1
        >>> [round(v, 4) for v in loss(jnp.array([0.3, 0.3]), jnp.array([1.0, -1.0])).tolist()]
        [0.3, 0.7]
    """

    def __init__(self, margin: float = 1.0, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input: Array, target: Array) -> Array:
        return losses.hinge_embedding_loss(input, target, margin=self.margin, reduction=self.reduction)


class TripletMarginLoss(_Loss):
    """``max(d(a, p) - d(a, n) + margin, 0)`` with the p-norm pairwise distance ``d``
    (:func:`funcnets.losses.triplet_margin_loss`). ``anchor``, ``positive``, ``negative``: ``(N, D)`` or ``(D,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> anchor, positive, negative = jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 4.0]]), jnp.array([[0.0, 1.0]])
        >>> round(float(nn.TripletMarginLoss()(anchor, positive, negative)), 4)  # 5 - 1 + margin 1
        5.0
    """

    def __init__(
        self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6, swap: bool = False, size_average=None,
        reduce=None, reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        if margin <= 0:
            raise ValueError(f"TripletMarginLoss: expected margin to be greater than 0, got {margin} instead")
        self.margin = margin
        self.p = p
        self.eps = eps
        self.swap = swap

    def forward(self, anchor: Array, positive: Array, negative: Array) -> Array:
        return losses.triplet_margin_loss(anchor, positive, negative, margin=self.margin, p=self.p, eps=self.eps,
                                          swap=self.swap, reduction=self.reduction)


class TripletMarginWithDistanceLoss(_Loss):
    """``max(d(a, p) - d(a, n) + margin, 0)`` with any distance ``d``, by default the
    pairwise distance ``‖x - y + 1e-6‖₂`` (:func:`funcnets.losses.triplet_margin_with_distance_loss`).

    ``distance_function(x, y)`` is a JAX function of two arrays, or a parameterless
    funcnets layer such as ``nn.PairwiseDistance(p=1)``; the default is torch's,
    ``nn.PairwiseDistance()`` (a child, as in torch's repr). ``anchor``, ``positive``,
    ``negative``: ``(N, D)`` or ``(D,)`` for the default distance.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> from funcnets.nn import functional as F
        >>> anchor, positive, negative = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]]), jnp.array([[0.0, 1.0]])
        >>> cosine = nn.TripletMarginWithDistanceLoss(distance_function=lambda x, y: 1 - F.cosine_similarity(x, y))
        >>> round(float(cosine(anchor, positive, negative)), 4)  # (1 - cos 45°) - (1 - cos 90°) + margin 1
        0.2929
    """

    def __init__(
        self, *, distance_function: Callable[[Array, Array], Array] | Module | None = None, margin: float = 1.0,
        swap: bool = False, reduction: str = "mean",
    ) -> None:
        super().__init__(None, None, reduction)
        if margin <= 0:
            raise ValueError(
                f"TripletMarginWithDistanceLoss: expected margin to be greater than 0, got {margin} instead"
            )
        if distance_function is None:  # torch's default, a child module (so it prints as one)
            distance_function = PairwiseDistance()
        if isinstance(distance_function, Module) and (
            distance_function.named_parameters() or distance_function.named_buffers()
        ):
            raise TypeError(
                f"TripletMarginWithDistanceLoss: {distance_function!r} has parameters or buffers; pass a function "
                f"that closes over them, e.g. lambda x, y: layer.apply(params, state, x, y)[0]."
            )
        self.distance_function = distance_function
        self.margin = margin
        self.swap = swap

    def children(self) -> list:
        d = self.distance_function
        return [("distance_function", d)] if isinstance(d, Module) else []

    def forward(self, anchor: Array, positive: Array, negative: Array) -> Array:
        d = self.distance_function
        if isinstance(d, Module):
            layer = d
            d = lambda x, y: layer.apply({}, {}, x, y)[0]  # noqa: E731
        return losses.triplet_margin_with_distance_loss(anchor, positive, negative, distance_function=d,
                                                        margin=self.margin, swap=self.swap,
                                                        reduction=self.reduction)


# --- sequences --------------------------------------------------------------------------


class CTCLoss(_Loss):
    """Connectionist temporal classification (:func:`funcnets.losses.ctc_loss`).

    ``log_probs``: ``(T, N, C)`` or ``(T, C)``; ``targets``: ``(N, S)`` padded or the
    concatenated ``(sum(target_lengths),)``; ``input_lengths``, ``target_lengths``: ``(N,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> log_probs = jnp.log(jnp.full((2, 1, 2), 0.5))  # (T=2, N=1, C=2), class 0 the blank
        >>> targets, input_lengths, target_lengths = jnp.array([[1]]), jnp.array([2]), jnp.array([1])
        >>> round(float(nn.CTCLoss()(log_probs, targets, input_lengths, target_lengths)), 4)  # -log(3 paths × 0.25)
        0.2877
    """

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> None:
        super().__init__(reduction=reduction)
        if blank < 0:
            raise ValueError(f"CTCLoss: blank must be a class index >= 0, got {blank}")
        self.blank = blank
        self.zero_infinity = zero_infinity

    def forward(self, log_probs: Array, targets: Array, input_lengths: Array, target_lengths: Array) -> Array:
        return losses.ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank, self.reduction,
                               self.zero_infinity)
