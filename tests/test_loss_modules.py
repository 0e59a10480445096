"""The loss classes of ``funcnets.nn`` against torch's on the same inputs: values and input
gradients (float64, 1e-10) over each class's options, constructor signatures and defaults,
repr, buffers (torch's ``state_dict`` keys), and bad constructor arguments."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn

from funcnets import nn
from helpers import assert_close

R = ("none", "mean", "sum")
N, C = 3, 4


def _normal(rng, *shape):
    return rng.standard_normal(shape)


def _log_softmax(x, axis):
    return x - np.log(np.exp(x).sum(axis, keepdims=True))


def _signs(rng, *shape):
    return rng.choice([-1.0, 1.0], shape)


def _classes(rng, *shape):
    return rng.integers(0, C, shape)


# Input makers: rng -> (arguments, indices of the arguments to differentiate).
def pair(rng):
    return [_normal(rng, N, C), _normal(rng, N, C)], (0, 1)


def pair_grid(rng):  # multiples of 0.5: exact ties with beta/delta = 0.5 or 1
    return [rng.integers(-4, 5, (N, C)) * 0.5, rng.integers(-4, 5, (N, C)) * 0.5], (0, 1)


def logits_index(rng):
    t = _classes(rng, N)
    t[0] = 1  # class 1 is the ignore_index of some cases
    return [_normal(rng, N, C), t], (0,)


def logits_index_2d(rng):  # (N, C, d1): the K-dimensional case
    return [_normal(rng, 2, C, 5), _classes(rng, 2, 5)], (0,)


def logits_probs(rng):
    return [_normal(rng, N, C), np.exp(_log_softmax(_normal(rng, N, C), 1))], (0, 1)


def logprobs_index(rng):
    x, t = logits_index(rng)[0]
    return [_log_softmax(x, 1), t], (0,)


def probs(rng):
    x, t = rng.uniform(0.05, 0.95, (N, C)), rng.uniform(0, 1, (N, C))
    x[0, :2], t[0, :2] = [0.0, 1.0], [1.0, 0.0]  # torch clamps each log at -100
    return [x, t], (0,)


def logits_soft(rng):
    return [_normal(rng, N, C), rng.uniform(0, 1, (N, C))], (0, 1)


def logits_binary(rng):
    return [_normal(rng, N, C), rng.integers(0, 2, (N, C)).astype(float)], (0,)


def logits_signs(rng):
    return [_normal(rng, N, C), _signs(rng, N, C)], (0,)


def kl_inputs(rng):
    return [_log_softmax(_normal(rng, N, C), 1), np.exp(_log_softmax(_normal(rng, N, C), 1))], (0, 1)


def kl_log_target(rng):
    return [_log_softmax(_normal(rng, N, C), 1), _log_softmax(_normal(rng, N, C), 1)], (0, 1)


def poisson_log(rng):  # counts include 0, where full's Stirling term has no target gradient
    return [_normal(rng, N, C), rng.poisson(2.0, (N, C)).astype(float)], (0,)


def poisson_rate(rng):
    return [rng.uniform(0.1, 3, (N, C)), rng.poisson(2.0, (N, C)).astype(float)], (0,)


def gaussian(rng):
    var = rng.uniform(0.5, 2, (N, C))
    var[0, 0] = 1e-9  # below eps: clamped, with torch's straight-through gradient
    return [_normal(rng, N, C), _normal(rng, N, C), var], (0, 1, 2)


def gaussian_homoscedastic(rng):  # one variance per sample, broadcast over the features
    return [_normal(rng, N, C), _normal(rng, N, C), rng.uniform(0.5, 2, (N, 1))], (0, 1, 2)


def two_vectors_sign(rng):
    return [_normal(rng, N, 5), _normal(rng, N, 5), _signs(rng, N)], (0, 1)


def two_scalars_sign(rng):
    return [_normal(rng, 5), _normal(rng, 5), _signs(rng, 5)], (0, 1)


def multilabel_index(rng):
    t = np.array([[3, 0, -1, 1], [1, -1, 0, 0], [0, 1, 2, 3]])
    return [_normal(rng, N, C), t], (0,)


def triplet(rng):
    return [_normal(rng, N, 5), _normal(rng, N, 5), _normal(rng, N, 5)], (0, 1, 2)


def ctc(rng, blank=0):
    """Logits (T, N, C): the test takes log_softmax first, as torch's CTC gradient assumes
    (its kernel's raw log_probs gradient is off by exp(log_probs); see test_losses_ctc)."""
    labels = [c for c in range(C) if c != blank]
    targets = rng.choice(labels, (2, 3))
    return [_normal(rng, 6, 2, C), targets, np.array([6, 5]), np.array([3, 2])], (0,)


def ctc_blank_last(rng):
    return ctc(rng, blank=C - 1)


def ctc_impossible(rng):  # 3 labels in 2 frames: infinite loss (zero_infinity zeroes it)
    args, diff = ctc(rng)
    args[2] = np.array([6, 2])
    return args, diff


W_CLASS = np.array([0.5, 1.0, 2.0, 0.25])
W_FULL = np.linspace(0.2, 2.0, N * C).reshape(N, C)

CASES = [
    *[("L1Loss", dict(reduction=r), pair) for r in R],
    *[("MSELoss", dict(reduction=r), pair) for r in R],
    *[("SmoothL1Loss", dict(reduction=r, beta=b), pair_grid) for r, b in [("mean", 1.0), ("none", 0.5), ("sum", 0.0)]],
    *[("HuberLoss", dict(reduction=r, delta=d), pair_grid) for r, d in [("mean", 1.0), ("none", 0.5), ("sum", 2)]],
    ("CrossEntropyLoss", {}, logits_index),
    ("CrossEntropyLoss", dict(weight=W_CLASS, ignore_index=1, label_smoothing=0.1), logits_index),
    ("CrossEntropyLoss", dict(weight=W_CLASS, reduction="sum", label_smoothing=0.2), logits_index_2d),
    ("CrossEntropyLoss", dict(reduction="none", ignore_index=1), logits_index),
    ("CrossEntropyLoss", dict(label_smoothing=0.3, weight=W_CLASS), logits_probs),
    ("NLLLoss", {}, logprobs_index),
    ("NLLLoss", dict(weight=W_CLASS, ignore_index=1), logprobs_index),
    ("NLLLoss", dict(weight=W_CLASS, reduction="none"), logprobs_index),
    ("BCELoss", {}, probs),
    ("BCELoss", dict(weight=W_CLASS, reduction="none"), probs),
    ("BCELoss", dict(weight=W_FULL, reduction="sum"), probs),
    ("BCEWithLogitsLoss", {}, logits_soft),
    ("BCEWithLogitsLoss", dict(weight=W_FULL, pos_weight=np.array([1.0, 3.0, 0.5, 2.0])), logits_soft),
    ("BCEWithLogitsLoss", dict(pos_weight=np.array([2.0, 0.1, 1.0, 5.0]), reduction="none"), logits_binary),
    ("KLDivLoss", {}, kl_inputs),
    ("KLDivLoss", dict(reduction="batchmean"), kl_inputs),
    ("KLDivLoss", dict(reduction="sum", log_target=True), kl_log_target),
    ("KLDivLoss", dict(reduction="none", log_target=True), kl_log_target),
    ("PoissonNLLLoss", {}, poisson_log),
    ("PoissonNLLLoss", dict(log_input=True, full=True, reduction="none"), poisson_log),
    ("PoissonNLLLoss", dict(log_input=False, eps=1e-3, reduction="sum"), poisson_rate),
    ("PoissonNLLLoss", dict(log_input=False, full=True), poisson_rate),
    ("GaussianNLLLoss", {}, gaussian),
    ("GaussianNLLLoss", dict(full=True, eps=1e-3, reduction="none"), gaussian),
    ("GaussianNLLLoss", dict(reduction="sum"), gaussian_homoscedastic),
    ("CosineEmbeddingLoss", {}, two_vectors_sign),
    ("CosineEmbeddingLoss", dict(margin=0.2, reduction="none"), two_vectors_sign),
    ("CosineEmbeddingLoss", dict(margin=-0.3, reduction="sum"), two_vectors_sign),
    ("MarginRankingLoss", {}, two_scalars_sign),
    ("MarginRankingLoss", dict(margin=0.5, reduction="none"), two_scalars_sign),
    ("HingeEmbeddingLoss", {}, logits_signs),
    ("HingeEmbeddingLoss", dict(margin=0.5, reduction="none"), logits_signs),
    ("HingeEmbeddingLoss", dict(margin=2.0, reduction="sum"), logits_signs),
    *[("MultiLabelMarginLoss", dict(reduction=r), multilabel_index) for r in R],
    ("MultiLabelSoftMarginLoss", {}, logits_binary),
    ("MultiLabelSoftMarginLoss", dict(weight=W_CLASS, reduction="none"), logits_binary),
    ("MultiLabelSoftMarginLoss", dict(weight=W_CLASS, reduction="sum"), logits_binary),
    ("MultiMarginLoss", {}, logits_index),
    ("MultiMarginLoss", dict(p=2, margin=0.5, weight=W_CLASS), logits_index),
    ("MultiMarginLoss", dict(p=1, margin=2.0, weight=W_CLASS, reduction="none"), logits_index),
    ("MultiMarginLoss", dict(p=2, reduction="sum"), logits_index),
    ("TripletMarginLoss", {}, triplet),
    ("TripletMarginLoss", dict(margin=0.5, p=1.0, swap=True, reduction="none"), triplet),
    ("TripletMarginLoss", dict(margin=2.0, p=3.0, eps=1e-3, reduction="sum"), triplet),
    ("TripletMarginWithDistanceLoss", {}, triplet),
    ("TripletMarginWithDistanceLoss", dict(margin=0.5, swap=True, reduction="none"), triplet),
    *[("SoftMarginLoss", dict(reduction=r), logits_signs) for r in R],
    ("CTCLoss", {}, ctc),
    ("CTCLoss", dict(blank=C - 1, reduction="sum"), ctc_blank_last),
    ("CTCLoss", dict(reduction="none", zero_infinity=True), ctc_impossible),
    ("CTCLoss", dict(reduction="mean", zero_infinity=True), ctc_impossible),
]
CLASSES = sorted({name for name, _, _ in CASES})


def _torch_kwargs(kw):
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}


@pytest.mark.parametrize(
    "name,kw,make", CASES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)]
)
def test_matches_torch(x64, name, kw, make):
    rng = np.random.default_rng(len(name) * 1000 + len(kw))
    args, diff = make(rng)
    ours, theirs = getattr(nn, name)(**kw), getattr(tnn, name)(**_torch_kwargs(kw))
    assert repr(ours) == repr(theirs)
    assert ours.buffer_names() == tuple(theirs.state_dict())
    for b, v in ours.init_own(None)[1].items():
        np.testing.assert_array_equal(np.asarray(v), theirs.state_dict()[b].numpy())

    ctc = name == "CTCLoss"  # differentiate through log_softmax (see ctc())
    t_args = [torch.tensor(a, requires_grad=i in diff) for i, a in enumerate(args)]
    t_out = theirs(t_args[0].log_softmax(2), *t_args[1:]) if ctc else theirs(*t_args)
    cot = rng.uniform(0.5, 1.5, t_out.shape)
    (t_out * torch.tensor(cot)).sum().backward()

    def f(*xs):
        full = [jnp.asarray(a) for a in args]
        for i, x in zip(diff, xs):
            full[i] = x
        if ctc:
            full[0] = jax.nn.log_softmax(full[0], 2)
        out = ours(*full)
        return jnp.sum(out * cot), out

    grads, out = jax.grad(f, argnums=tuple(range(len(diff))), has_aux=True)(*[jnp.asarray(args[i]) for i in diff])
    assert out.dtype == jnp.float64 and out.shape == tuple(t_out.shape)
    assert_close(out, t_out.detach().numpy(), 1e-10, f"{name}{kw} value")
    for i, g in zip(diff, grads):
        assert_close(g, t_args[i].grad.numpy(), 1e-10, f"{name}{kw} d/d arg{i}")


def test_every_class_is_tested_and_torch_shaped():
    """Every loss class: tested above, torch's constructor signature (names, order, defaults)."""
    from funcnets.nn import loss

    # LinearCrossEntropyLoss has parameters (its forward takes them first): tests/test_more_losses.py
    learned = ["LinearCrossEntropyLoss"]
    assert sorted(loss.__all__) == sorted(CLASSES + learned)
    for name in CLASSES + learned:
        ours = inspect.signature(getattr(nn, name).__init__).parameters
        theirs = inspect.signature(getattr(tnn, name).__init__).parameters
        assert [(p.name, p.default, p.kind) for p in ours.values()] == \
            [(p.name, p.default, p.kind) for p in theirs.values()], name
        ours_fwd = list(inspect.signature(getattr(nn, name).forward).parameters)
        theirs_fwd = list(inspect.signature(getattr(tnn, name).forward).parameters)
        assert ours_fwd == (["self", "params"] + theirs_fwd[1:] if name in learned else theirs_fwd), name


def test_a_loss_is_a_module_and_works_under_jit():
    crit = nn.BCEWithLogitsLoss(pos_weight=jnp.array([1.0, 2.0]))
    assert isinstance(crit, nn.Module)
    x, t = jnp.array([[0.3, -1.0]]), jnp.array([[1.0, 0.0]])
    assert jnp.allclose(jax.jit(lambda a: crit(a, t))(x), crit(x, t))
    # a child of a container prints as torch prints it, with its buffer in the state
    seq = nn.Sequential(nn.Linear(2, 2), nn.CrossEntropyLoss(weight=jnp.ones(2)))
    assert "(1): CrossEntropyLoss()" in repr(seq)
    assert [n for n, _ in seq.named_buffers(seq.init(jax.random.PRNGKey(0))[1])] == ["1.weight"]


@pytest.mark.parametrize("make,err,match", [
    (lambda: nn.MSELoss(reduction="avg"), ValueError, "not a valid value for reduction"),
    (lambda: nn.CrossEntropyLoss(reduction="batchmean"), ValueError, "not a valid value for reduction"),
    (lambda: nn.L1Loss(size_average=True), ValueError, "reduction='none' | 'mean' | 'sum'"),
    (lambda: nn.NLLLoss(reduce=False), ValueError, "deprecated"),
    (lambda: nn.MultiMarginLoss(p=3), ValueError, "only p == 1 and p == 2 supported"),
    (lambda: nn.MultiMarginLoss(weight=np.ones((2, 2))), ValueError, "expected weight to be None or 1D tensor"),
    (lambda: nn.TripletMarginLoss(margin=0.0), ValueError, "expected margin to be greater than 0"),
    (lambda: nn.HuberLoss(delta="1"), TypeError, "delta must be a float or int"),
    (lambda: nn.HuberLoss(delta=-1.0), ValueError, "delta must be > 0"),
    (lambda: nn.SmoothL1Loss(beta=-0.5), ValueError, "beta must be >= 0"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing must be between"),
    (lambda: nn.CTCLoss(blank=-1), ValueError, "blank must be"),
    (lambda: nn.GaussianNLLLoss(True), TypeError, "positional"),
    (lambda: nn.MSELoss()(None, None, jnp.zeros(2)), TypeError, "argument"),
])
def test_bad_arguments(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_losses_are_immutable_and_not_called_like_layers():
    crit = nn.KLDivLoss(reduction="batchmean")
    with pytest.raises(AttributeError, match="immutable"):
        crit.reduction = "sum"
    with pytest.raises(TypeError, match=r"call it as torch does"):
        crit.apply({}, {}, jnp.zeros(2))
