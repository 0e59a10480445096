"""TripletMarginWithDistanceLoss, LinearCrossEntropyLoss and AdaptiveLogSoftmaxWithLoss
against torch 2.14.1: values and gradients (inputs and learnable weights) in float64
(relative error <= 1e-12) and float32 (<= 2e-6 values, 1e-5 gradients), every reduction,
ignore_index, label smoothing, class weights, probability and K-dimensional targets,
custom distances and swap; torch's errors; the layers' parameter names and init; and
weights carried over from torch by from_torch and by state_dict."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import funcnets
from funcnets import losses, nn, torch_io
from funcnets.errors import ShapeError
from funcnets.nn import functional as F
from helpers import assert_close, to_np

TOL = {np.float64: (1e-12, 1e-12), np.float32: (2e-6, 1e-5)}  # (value, gradient), relative to the largest
REDUCTIONS = ["none", "mean", "sum"]


def parity(ours, theirs, arrays, diff, dtype, what=""):
    """``ours(*jax)`` vs ``theirs(*torch)`` on the same numpy ``arrays``: the value and the
    gradients of its sum w.r.t. ``arrays[i]`` for ``i in diff``. The JAX side runs under one
    ``jit`` (op by op, its ~30 small programs compiled at each new shape took twice as long)."""
    vtol, gtol = TOL[dtype]
    tts = [torch.tensor(a, requires_grad=i in diff) if isinstance(a, np.ndarray) else a for i, a in enumerate(arrays)]
    out_t = theirs(*tts)
    out_t.sum().backward()
    with jax.enable_x64(dtype == np.float64):
        js = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]

        def f(*d):
            full = list(js)
            for i, v in zip(diff, d):
                full[i] = v
            return ours(*full)

        def value_and_grads(*d):
            out, pull = jax.vjp(f, *d)
            return out, pull(jnp.ones_like(out))

        out_j, grads = jax.jit(value_and_grads)(*[js[i] for i in diff])
        assert out_j.dtype == dtype and out_j.shape == tuple(out_t.shape), (what, out_j.dtype, out_j.shape)
        assert_close(out_j, to_np(out_t), vtol, f"{what} value")
        for i, g in zip(diff, grads):
            assert_close(g, to_np(tts[i].grad), gtol, f"{what} grad of argument {i}")


# --- TripletMarginWithDistanceLoss ----------------------------------------------------------

def _l1_jax(x, y):
    return jnp.sum(jnp.abs(x - y), axis=-1)


def _l1_torch(x, y):
    return (x - y).abs().sum(-1)


DISTANCES = {  # name: (funcnets distance or None, torch distance or None)
    "default": (None, None),
    "cosine": (lambda x, y: 1.0 - F.cosine_similarity(x, y, dim=-1),
               lambda x, y: 1.0 - TF.cosine_similarity(x, y, dim=-1)),
    "l1": (_l1_jax, _l1_torch),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("distance", list(DISTANCES))
def test_triplet_with_distance_matches_torch(dtype, distance):
    rng = np.random.default_rng(0)
    ours_d, theirs_d = DISTANCES[distance]
    cases = [  # (shape, reduction, margin, swap)
        ((4, 3), "none", 1.0, False), ((4, 3), "none", 1.0, True), ((4, 3), "mean", 2.5, True),
        ((4, 3), "sum", 1.0, False), ((3,), "none", 1.0, True), ((3,), "mean", 1.0, False),
    ]
    for shape, reduction, margin, swap in cases if dtype == np.float64 else cases[1:5]:
        a, p, n = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
        if len(shape) == 2:  # rows where swap changes the negative distance (positive near the negative)
            p[:2] = n[:2] + 0.1 * rng.standard_normal((2, 3)).astype(dtype)
        kw = dict(margin=margin, swap=swap, reduction=reduction)
        parity(
            lambda a, p, n: losses.triplet_margin_with_distance_loss(a, p, n, distance_function=ours_d, **kw),
            lambda a, p, n: TF.triplet_margin_with_distance_loss(a, p, n, distance_function=theirs_d, **kw),
            [a, p, n], (0, 1, 2), dtype, f"{distance} {shape} {kw}",
        )


def test_triplet_with_distance_swap_changes_the_loss(x64):
    """The swap case above is not vacuous: with the positive beside the negative, swap
    uses the (smaller) positive-negative distance."""
    a, p, n = jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 0.0]]), jnp.array([[3.0, 1.0]])
    plain = losses.triplet_margin_with_distance_loss(a, p, n, distance_function=_l1_jax)
    swapped = losses.triplet_margin_with_distance_loss(a, p, n, distance_function=_l1_jax, swap=True)
    assert float(plain) == pytest.approx(0.0) and float(swapped) == pytest.approx(1 + 3 - 1)


def test_triplet_with_distance_tie_has_no_gradient_as_torch():
    """margin + d(a, p) == d(a, n) exactly: torch's clamp_min passes no gradient."""
    a, p, n = np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])
    parity(lambda a, p, n: losses.triplet_margin_with_distance_loss(a, p, n, distance_function=_l1_jax),
           lambda a, p, n: TF.triplet_margin_with_distance_loss(a, p, n, distance_function=_l1_torch),
           [a, p, n], (0, 1, 2), np.float64, "tie")
    with jax.enable_x64(True):
        g = jax.grad(lambda p: losses.triplet_margin_with_distance_loss(jnp.asarray(a), p, jnp.asarray(n),
                                                                        distance_function=_l1_jax))(jnp.asarray(p))
    assert np.all(np.asarray(g) == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_triplet_with_distance_class_matches_torch_module(reduction):
    rng = np.random.default_rng(1)
    a, p, n = (rng.standard_normal((4, 3)) for _ in range(3))
    pairs = [
        (nn.TripletMarginWithDistanceLoss(reduction=reduction),
         tnn.TripletMarginWithDistanceLoss(reduction=reduction)),
        (nn.TripletMarginWithDistanceLoss(distance_function=nn.PairwiseDistance(p=1.0), margin=0.5, swap=True,
                                          reduction=reduction),
         tnn.TripletMarginWithDistanceLoss(distance_function=tnn.PairwiseDistance(p=1.0), margin=0.5, swap=True,
                                           reduction=reduction)),
        (nn.TripletMarginWithDistanceLoss(distance_function=DISTANCES["cosine"][0], reduction=reduction),
         tnn.TripletMarginWithDistanceLoss(distance_function=DISTANCES["cosine"][1], reduction=reduction)),
    ]
    for ours, theirs in pairs:
        parity(ours, theirs, [a, p, n], (0, 1, 2), np.float64, repr(ours))


def test_triplet_with_distance_jits(x64):
    crit = nn.TripletMarginWithDistanceLoss(distance_function=_l1_jax, swap=True)
    a, p, n = (jax.random.normal(jax.random.key(i), (3, 4)) for i in range(3))
    assert float(jax.jit(crit)(a, p, n)) == pytest.approx(float(crit(a, p, n)), rel=1e-12)


def test_triplet_with_distance_errors():
    x = jnp.ones((2, 3))
    for margin in (0.0, -1.0):
        with pytest.raises(ValueError, match="margin must be greater than 0"):
            losses.triplet_margin_with_distance_loss(x, x, x, margin=margin)
        with pytest.raises(ValueError, match="expected margin to be greater than 0"):
            nn.TripletMarginWithDistanceLoss(margin=margin)
        with pytest.raises(ValueError, match="margin"):
            tnn.TripletMarginWithDistanceLoss(margin=margin)
    with pytest.raises(ShapeError, match="same number of dimensions.*anchor 2D, positive 1D, and negative 2D"):
        losses.triplet_margin_with_distance_loss(x, jnp.ones(3), x)
    with pytest.raises(RuntimeError, match="anchor 2D, positive 1D, and negative 2D"):
        TF.triplet_margin_with_distance_loss(torch.ones(2, 3), torch.ones(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="reduction"):
        losses.triplet_margin_with_distance_loss(x, x, x, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        nn.TripletMarginWithDistanceLoss(reduction="avg")
    with pytest.raises(ShapeError, match="do not broadcast"):
        losses.triplet_margin_with_distance_loss(x, jnp.ones((2, 4)), x)
    with pytest.raises(TypeError, match="has parameters"):
        nn.TripletMarginWithDistanceLoss(distance_function=nn.Linear(3, 1))


# --- linear_cross_entropy / LinearCrossEntropyLoss ---------------------------------------------

LCE_CASES = [  # (batch, out_features, probability targets)
    ((3,), (), False),
    ((), (), False),
    ((3,), (2,), False),
    ((3,), (), True),
    ((), (), True),
    ((3,), (2,), True),
]
C, D = 4, 3  # classes, in_features


def _lce_arrays(rng, dtype, batch, out_features, probs, bias=True, ignore=None):
    x = rng.standard_normal((*batch, D)).astype(dtype)
    w = rng.standard_normal((C, *out_features, D)).astype(dtype)
    b = rng.standard_normal((C, *out_features)).astype(dtype) if bias else None
    if probs:
        t = rng.dirichlet(np.ones(C), size=int(np.prod((*batch, *out_features), dtype=int))).astype(dtype)
        t = np.moveaxis(t.reshape(*batch, *out_features, C), -1, len(batch)).reshape(*batch, C, *out_features)
    else:
        t = rng.integers(0, C, (*batch, *out_features))
        if ignore is not None and t.size > 1:
            t.flat[0] = ignore
    return x, w, b, t


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch,out_features,probs", LCE_CASES)
def test_linear_cross_entropy_matches_torch(dtype, batch, out_features, probs):
    """Gradients w.r.t. the input, the linear weight and bias (and probability targets);
    each option set under one reduction, so every reduction meets every kind of case."""
    rng = np.random.default_rng(2)
    configs = [  # (bias, class weight, label_smoothing, ignore_index)
        (True, False, 0.0, None), (False, True, 0.1, None), (True, True, 0.35, None),
        (True, True, 0.0, None if probs else 2), (False, False, 0.2, None if probs else -100),
        (True, True, 0.1, None if probs else 0),
    ]
    for k, (bias, weighted, smoothing, ignore) in enumerate(configs if dtype == np.float64 else configs[1:4]):
        reduction = REDUCTIONS[k % 3]
        x, w, b, t = _lce_arrays(rng, dtype, batch, out_features, probs, bias=bias, ignore=ignore)
        cw = rng.uniform(0.2, 2.0, C).astype(dtype) if weighted else None
        kw = dict(reduction=reduction, ignore_index=ignore, label_smoothing=smoothing)
        arrays = [x, w, t] + ([b] if bias else []) + ([cw] if weighted else [])

        def split(rest, bias=bias, weighted=weighted):
            rest = list(rest)
            lb = rest.pop(0) if bias else None
            return lb, (rest.pop(0) if weighted else None)

        def ours(x, w, t, *rest, kw=kw, split=split):
            lb, cw_ = split(rest)
            return losses.linear_cross_entropy(x, w, t, linear_bias=lb, weight=cw_, **kw)

        def theirs(x, w, t, *rest, kw=kw, split=split):
            lb, cw_ = split(rest)
            return TF.linear_cross_entropy(x, w, t, linear_bias=lb, weight=cw_, **kw)

        diff = (0, 1) + ((2,) if probs else ()) + ((3,) if bias else ())
        parity(ours, theirs, arrays, diff, dtype, f"batch {batch} out {out_features} probs {probs} {kw} "
                                                   f"bias {bias} weight {weighted}")


def test_linear_cross_entropy_every_target_ignored_gives_torch_nan_and_zero_grad(x64):
    x, w, t = np.ones((2, 3)), np.ones((4, 3)), np.array([-100, -100])
    parity(lambda x, w, t: losses.linear_cross_entropy(x, w, t, reduction="sum"),
           lambda x, w, t: TF.linear_cross_entropy(x, w, t, reduction="sum"), [x, w, t], (0, 1), np.float64)
    out = losses.linear_cross_entropy(jnp.asarray(x), jnp.asarray(w), jnp.asarray(t))
    assert np.isnan(float(out)) and np.isnan(float(TF.linear_cross_entropy(torch.tensor(x), torch.tensor(w),
                                                                            torch.tensor(t))))


def _torch_lce(dtype, **kw):
    torch.manual_seed(0)
    return tnn.LinearCrossEntropyLoss(**kw).to(torch.float64 if dtype == np.float64 else torch.float32)


LCE_MODULE_KW = [
    dict(in_features=5, num_classes=4),
    dict(in_features=5, num_classes=4, out_features=(2, 3), bias=True, reduction="sum", label_smoothing=0.1),
    dict(in_features=5, num_classes=4, out_features=(3,), bias=True, ignore_index=1, reduction="none"),
]


@pytest.mark.parametrize("dtype,kw", [(np.float64, kw) for kw in LCE_MODULE_KW] + [(np.float32, LCE_MODULE_KW[1])])
def test_linear_cross_entropy_module_weights_and_gradients_match_torch(dtype, kw):
    """The torch module's own weights, copied by state_dict names (torch_io.load_state_dict):
    the loss, and the gradients w.r.t. the input and ``linear.weight``/``linear.bias``."""
    tm = _torch_lce(dtype, **kw)
    ours = nn.LinearCrossEntropyLoss(**kw)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5)).astype(dtype)
    t = rng.integers(0, 4, (3, *kw.get("out_features", ())))
    tx = torch.tensor(x, requires_grad=True)
    out_t = tm(tx, torch.tensor(t))
    out_t.sum().backward()
    vtol, gtol = TOL[dtype]
    with jax.enable_x64(dtype == np.float64):
        loaded = torch_io.load_state_dict(ours, tm.state_dict())
        params, state = loaded.params, loaded.state
        assert [n for n, _ in ours.named_parameters(params)] == [n for n, _ in tm.named_parameters()]

        def f(params, x):
            loss, _ = ours(params, state, x, jnp.asarray(t))
            return jnp.sum(loss)

        value, (gp, gx) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(params, jnp.asarray(x))
        assert_close(value, to_np(out_t.sum()), vtol, "loss")
        assert_close(gx, to_np(tx.grad), gtol, "input grad")
        for name, g in ours.named_parameters(gp):
            assert_close(g, to_np(dict(tm.named_parameters())[name].grad), gtol, f"{name} grad")
        # forward (torch's, params first) gives the same loss
        assert_close(jnp.sum(ours.forward(params, jnp.asarray(x), jnp.asarray(t))), value, vtol, "forward")


def test_linear_cross_entropy_from_torch_with_class_weights(x64):
    class Head(tnn.Module):
        def __init__(self):
            super().__init__()
            self.crit = tnn.LinearCrossEntropyLoss(5, 4, out_features=(2,), bias=True, label_smoothing=0.2,
                                                   weight=torch.tensor([0.5, 1.0, 2.0, 1.5]))

        def forward(self, x, t):
            return self.crit(x, t)

    torch.manual_seed(1)
    m = Head().double()
    x, t = torch.randn(3, 5, dtype=torch.float64), torch.randint(0, 4, (3, 2))
    model, params, state = funcnets.from_torch(m, x, t)
    assert sorted(torch_io.flatten(params)) == ["crit.linear.bias", "crit.linear.weight"]
    assert sorted(torch_io.flatten(state)) == ["crit.weight"]
    y, _ = model.apply(params, state, (jnp.asarray(x.numpy()), jnp.asarray(t.numpy())))
    assert_close(y, to_np(m(x, t)), 1e-12, "from_torch loss")
    # the class weight is read from state (the buffer), as torch reads its buffer
    state2 = {"crit": {"weight": jnp.ones(4)}}
    m.crit.weight.fill_(1.0)
    y2, _ = model.apply(params, state2, (jnp.asarray(x.numpy()), jnp.asarray(t.numpy())))
    assert_close(y2, to_np(m(x, t)), 1e-12, "loss with the buffer changed")


def test_linear_cross_entropy_module_init_names_and_repr():
    ours = nn.LinearCrossEntropyLoss(6, 3, out_features=(2,), bias=True, weight=jnp.ones(3))
    theirs = tnn.LinearCrossEntropyLoss(6, 3, out_features=(2,), bias=True, weight=torch.ones(3))
    params, state = ours.init(jax.random.key(0))
    assert {n: tuple(a.shape) for n, a in ours.named_parameters(params)} == {
        n: tuple(p.shape) for n, p in theirs.named_parameters()}
    assert [n for n, _ in ours.named_buffers(state)] == [n for n, _ in theirs.named_buffers()] == ["weight"]
    bound = 1 / math.sqrt(6)  # torch's Linear init, U(-1/sqrt(in), 1/sqrt(in))
    w = np.asarray(params["linear"]["weight"])
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.5 * bound and np.unique(w).size == w.size
    assert repr(ours) == repr(theirs)


def test_linear_cross_entropy_errors():
    x, w = jnp.ones((2, 3)), jnp.ones((4, 3))
    with pytest.raises(ShapeError, match="dimensionality 1 or 2, got 3"):
        losses.linear_cross_entropy(jnp.ones((2, 2, 3)), w, jnp.zeros((2, 2), int))
    with pytest.raises(ShapeError, match="linear_weight with dimensionality at least 2"):
        losses.linear_cross_entropy(x, jnp.ones(3), jnp.zeros(2, int))
    with pytest.raises(ShapeError, match="in_features.*got 3 and 4"):
        losses.linear_cross_entropy(x, jnp.ones((4, 4)), jnp.zeros(2, int))
    with pytest.raises(ShapeError, match=r"expected linear_bias shape \(4,\), got \(3,\)"):
        losses.linear_cross_entropy(x, w, jnp.zeros(2, int), linear_bias=jnp.ones(3))
    with pytest.raises(ShapeError, match="requires batched input"):
        losses.linear_cross_entropy(jnp.ones(3), jnp.ones((4, 2, 3)), jnp.zeros(2, int))
    with pytest.raises(RuntimeError, match="requires batched input"):
        TF.linear_cross_entropy(torch.ones(3), torch.ones(4, 2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="ignore_index cannot be specified when target contains probabilities"):
        losses.linear_cross_entropy(x, w, jnp.full((2, 4), 0.25), ignore_index=1)
    with pytest.raises(ValueError, match="out of bounds"):
        losses.linear_cross_entropy(x, w, jnp.array([0, 4]))
    with pytest.raises(ValueError, match="options"):
        losses.linear_cross_entropy(x, w, jnp.zeros(2, int), options=object())
    with pytest.raises(ValueError, match=r"expected weight shape to be \(4,\), got \(3,\)"):
        nn.LinearCrossEntropyLoss(3, 4, weight=jnp.ones(3))
    with pytest.raises(RuntimeError, match=r"expected weight shape to be \(4,\), got \(3,\)"):
        tnn.LinearCrossEntropyLoss(3, 4, weight=torch.ones(3))
    with pytest.raises(ValueError, match="label_smoothing to be in range"):
        nn.LinearCrossEntropyLoss(3, 4, label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        nn.LinearCrossEntropyLoss(3, 4, reduction="avg")
    with pytest.raises(ValueError, match="device and dtype are torch's"):
        nn.LinearCrossEntropyLoss(3, 4, dtype="float64")
    with pytest.raises(ValueError, match="options"):
        nn.LinearCrossEntropyLoss(3, 4, options=object())
    crit = nn.LinearCrossEntropyLoss(3, 4)
    params, state = crit.init(jax.random.key(0))
    with pytest.raises(TypeError, match="takes \\(input, target\\)"):
        crit(params, state, x)
    with pytest.raises(ShapeError, match="params\\['linear'\\]\\['weight'\\] must be \\(4, 3\\)"):
        crit(params | {"linear": {"weight": jnp.ones((5, 3))}}, state, x, jnp.zeros(2, int))


# --- AdaptiveLogSoftmaxWithLoss ----------------------------------------------------------------

ASM_CASES = [  # (in_features, n_classes, cutoffs, div_value, head_bias)
    (8, 10, [2, 6], 4.0, False),  # the second cluster projects to 8 // 16 = 0 features
    (6, 12, [3, 5, 9], 2.0, True),
    (4, 5, [1], 1.0, True),
]
# float64 on every case, float32 on the richest (three clusters, head bias)
ASM_DTYPE_CASES = [(np.float64, c) for c in ASM_CASES] + [(np.float32, ASM_CASES[1])]


def _asm_pair(dtype, in_features, n_classes, cutoffs, div_value, head_bias):
    torch.manual_seed(0)
    tm = tnn.AdaptiveLogSoftmaxWithLoss(in_features, n_classes, cutoffs, div_value=div_value, head_bias=head_bias)
    tm = tm.to(torch.float64 if dtype == np.float64 else torch.float32)
    ours = nn.AdaptiveLogSoftmaxWithLoss(in_features, n_classes, cutoffs, div_value=div_value, head_bias=head_bias)
    return tm, ours


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("dtype,case", ASM_DTYPE_CASES)
def test_adaptive_log_softmax_matches_torch(dtype, case):
    """output and loss, and the gradients of ``sum(output) + loss`` w.r.t. the input and
    every weight, batched (targets in every cluster) and unbatched."""
    tm, ours = _asm_pair(dtype, *case)
    in_features, n_classes, cutoffs = case[:3]
    rng = np.random.default_rng(4)
    bounds = [0, *cutoffs, n_classes]
    t_batched = np.array([rng.integers(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])] + [0, n_classes - 1])
    vtol, gtol = TOL[dtype]
    for t in (t_batched, np.array(n_classes - 1)):
        x = rng.standard_normal((*t.shape, in_features)).astype(dtype)
        tm.zero_grad()
        tx = torch.tensor(x, requires_grad=True)
        out_t = tm(tx, torch.tensor(t))
        (out_t.output.sum() + out_t.loss).backward()
        with jax.enable_x64(dtype == np.float64):
            loaded = torch_io.load_state_dict(ours, tm.state_dict())
            params, state = loaded.params, loaded.state

            def f(params, x):
                (output, loss), _ = ours(params, state, x, jnp.asarray(t))
                return jnp.sum(output) + loss, (output, loss)

            vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))  # one compile, not op by op
            (_, (output, loss)), (gp, gx) = vg(params, jnp.asarray(x))
            assert output.shape == tuple(out_t.output.shape) and loss.shape == () and output.dtype == dtype
            assert_close(output, to_np(out_t.output), vtol, f"output, target {t}")
            assert_close(loss, to_np(out_t.loss), vtol, f"loss, target {t}")
            assert_close(gx, to_np(tx.grad), gtol, f"input grad, target {t}")
            tgrads = {n: p.grad for n, p in tm.named_parameters()}
            for name, g in ours.named_parameters(gp):
                if tgrads[name] is None:  # torch never evaluated a cluster no target fell in
                    assert np.all(np.asarray(g) == 0), name
                elif g.size:  # a projection to 0 features has an empty weight
                    assert_close(g, to_np(tgrads[name]), gtol, f"{name} grad, target {t}")
            # the namedtuple's fields, as torch's _ASMoutput
            res = ours.forward(params, jnp.asarray(x), jnp.asarray(t))
            assert type(res).__name__ == "_ASMoutput" and res._fields == ("output", "loss")
            assert_close(res.loss, loss, vtol, "forward")


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("dtype,case", ASM_DTYPE_CASES)
def test_adaptive_log_prob_and_predict_match_torch(dtype, case):
    tm, ours = _asm_pair(dtype, *case)
    rng = np.random.default_rng(5)
    x = (3 * rng.standard_normal((16, case[0]))).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    lp_t = tm.log_prob(tx)
    cot = rng.standard_normal(lp_t.shape).astype(dtype)  # a random cotangent: every entry's gradient counts
    (lp_t * torch.tensor(cot)).sum().backward()
    vtol, gtol = TOL[dtype]
    with jax.enable_x64(dtype == np.float64):
        params = torch_io.load_state_dict(ours, tm.state_dict()).params
        lp, pull = jax.vjp(lambda x: ours.log_prob(params, x), jnp.asarray(x))
        assert_close(lp, to_np(lp_t), vtol, "log_prob")
        assert_close(pull(jnp.asarray(cot))[0], to_np(tx.grad), gtol, "log_prob input grad")
        pred = ours.predict(params, jnp.asarray(x))
        want = tm.predict(torch.tensor(x))
        assert np.array_equal(np.asarray(pred), to_np(want)), (pred, want)
        assert np.array_equal(np.asarray(pred), np.asarray(jnp.argmax(lp, axis=1)))
        assert len(set(np.asarray(pred).tolist())) > 1  # not a degenerate all-one-class case


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_adaptive_log_softmax_from_torch(x64):
    class LM(tnn.Module):
        def __init__(self):
            super().__init__()
            self.proj = tnn.Linear(5, 8)
            self.asm = tnn.AdaptiveLogSoftmaxWithLoss(8, 10, [2, 6], head_bias=True)

        def forward(self, x, t):
            out = self.asm(self.proj(x), t)
            return out.output, out.loss

    torch.manual_seed(2)
    m = LM().double()
    x, t = torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 3, 7, 9])
    model, params, state = funcnets.from_torch(m, x, t)
    assert sorted(torch_io.flatten(params)) == sorted(k for k, _ in m.named_parameters())
    (output, loss), _ = model.apply(params, state, (jnp.asarray(x.numpy()), jnp.asarray(t.numpy())))
    want = m(x, t)
    assert_close(output, to_np(want[0]), 1e-12, "output")
    assert_close(loss, to_np(want[1]), 1e-12, "loss")


def test_adaptive_log_softmax_init_names_and_repr():
    ours = nn.AdaptiveLogSoftmaxWithLoss(16, 20, [4, 10, 15], div_value=2.0, head_bias=True)
    theirs = tnn.AdaptiveLogSoftmaxWithLoss(16, 20, [4, 10, 15], div_value=2.0, head_bias=True)
    params, _ = ours.init(jax.random.key(0))
    assert [(n, tuple(a.shape)) for n, a in ours.named_parameters(params)] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    for name, a in ours.named_parameters(params):
        fan_in = 16 if name == "head.bias" else a.shape[1]
        bound = 1 / math.sqrt(fan_in)  # torch's Linear init: U(±1/sqrt(fan_in)), the bias too
        a = np.asarray(a)
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.5 * bound and np.unique(a).size == a.size, name
    assert repr(ours) == repr(theirs)
    assert (ours.shortlist_size, ours.n_clusters, ours.head_size) == (4, 3, 7)


def test_adaptive_log_softmax_jits_and_flags_a_bad_target_with_nan(x64):
    asm = nn.AdaptiveLogSoftmaxWithLoss(4, 6, [2])
    params, state = asm.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 4))
    step = jax.jit(lambda p, x, t: asm(p, state, x, t)[0])
    eager = asm(params, state, x, jnp.array([0, 3, 5]))[0]
    jitted = step(params, x, jnp.array([0, 3, 5]))
    assert_close(jitted.output, eager.output, 1e-14, "jit")
    bad = step(params, x, jnp.array([0, 6, 5]))  # out of range: cannot raise under jit
    assert np.isnan(np.asarray(bad.output)).tolist() == [False, True, False] and np.isnan(float(bad.loss))


def test_adaptive_log_softmax_errors():
    for cutoffs in ([], [6, 2], [2, 2], [0, 3], [2, 10], [2.5]):
        with pytest.raises(ValueError, match="cutoffs should be"):
            nn.AdaptiveLogSoftmaxWithLoss(8, 10, cutoffs)
        with pytest.raises(ValueError, match="cutoffs should be"):
            tnn.AdaptiveLogSoftmaxWithLoss(8, 10, cutoffs)
    asm = nn.AdaptiveLogSoftmaxWithLoss(4, 6, [2])
    params, state = asm.init(jax.random.key(0))
    x = jnp.ones((3, 4))
    with pytest.raises(ValueError, match=r"Target values should be in \[0, 5\], but values in range \[-1, 6\]"):
        asm(params, state, x, jnp.array([-1, 0, 6]))
    with pytest.raises(RuntimeError, match=r"Target values should be in \[0, 5\]"):
        tnn.AdaptiveLogSoftmaxWithLoss(4, 6, [2])(torch.ones(3, 4), torch.tensor([-1, 0, 6]))
    with pytest.raises(ShapeError, match="same size in the batch dimension"):
        asm(params, state, x, jnp.array([0, 1]))
    with pytest.raises(ShapeError, match="1D target tensor expects 2D input"):
        asm(params, state, jnp.ones(3), jnp.array([0, 1, 2]))
    with pytest.raises(ShapeError, match="0D target tensor expects 1D input"):
        asm(params, state, x, jnp.array(0))
    with pytest.raises(ShapeError, match="multi-target not supported"):
        asm(params, state, x, jnp.zeros((3, 1), int))
    with pytest.raises(TypeError, match="integer class indices"):
        asm(params, state, x, jnp.zeros(3))
    with pytest.raises(ShapeError, match=r"expected input \(N, 4\)"):
        asm(params, state, jnp.ones((3, 5)), jnp.zeros(3, int))
    with pytest.raises(ShapeError, match=r"expected input \(N, 4\), got \(4,\); add the batch dimension"):
        asm.log_prob(params, jnp.ones(4))
    with pytest.raises(TypeError, match="takes \\(input, target\\)"):
        asm(params, state, x)
    with pytest.raises(ShapeError, match="tail cluster 0"):
        losses.adaptive_log_softmax_with_loss(x, jnp.zeros(3, int), jnp.ones((3, 4)),
                                              [(jnp.ones((1, 4)), jnp.ones((4, 2)))], [2])
