"""ctc_loss against torch (hypothesis): values and gradients through log_softmax in f32
and f64, padded and concatenated targets, unbatched inputs, every reduction, impossible
alignments (inf, torch's NaN gradient; 0 and zero gradient with zero_infinity), empty
inputs and targets; the raw log_probs gradient's relation to torch's; check_grads;
jit/vmap; torch's errors as clear funcnets errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from funcnets import losses
from funcnets.errors import ShapeError
from helpers import to_np
from test_losses import check_parity, dtypes, reductions

T, C = 6, 4  # frames and classes (blank included); few shapes, so few compilations


@st.composite
def ctc_case(draw):
    n = draw(st.sampled_from([None, 1, 3]))  # None: unbatched (T, C)
    s = draw(st.sampled_from([0, 2, 4]))
    rows = 1 if n is None else n
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    blank = draw(st.integers(0, C - 1))
    labels = [c for c in range(C) if c != blank]
    # two labels only, half the time: repeats, which need a blank between them, so that
    # short inputs make impossible alignments
    labels = labels[:2] if draw(st.booleans()) else labels
    targets = rng.choice(labels, (rows, s)) if s else np.zeros((rows, 0), np.int64)
    target_lengths = rng.integers(0, s + 1, rows)
    input_lengths = rng.integers(0, T + 1, rows)
    input_lengths[0] = T  # at least one sample uses every frame
    return dict(
        n=n, targets=targets, target_lengths=target_lengths, input_lengths=input_lengths, blank=blank,
        concatenated=draw(st.booleans()) and n is not None, reduction=draw(reductions),
        zero_infinity=draw(st.booleans()), dtype=draw(dtypes), logits=rng.standard_normal((T, rows, C)) * 2,
    )


@settings(max_examples=10, deadline=None)
@given(case=ctc_case())
def test_ctc_loss_matches_torch(case):
    dtype, n = case["dtype"], case["n"]
    logits = case["logits"].astype(dtype)
    targets, il, tl = case["targets"], case["input_lengths"], case["target_lengths"]
    if case["concatenated"]:
        targets = np.concatenate([targets[i, : tl[i]] for i in range(len(tl))])
    if n is None:  # unbatched: (T, C), targets (S,), scalar lengths
        logits, targets, il, tl = logits[:, 0], targets[0, : tl[0]], np.asarray(il[0]), np.asarray(tl[0])
    kw = dict(blank=case["blank"], reduction=case["reduction"], zero_infinity=case["zero_infinity"])
    cdim = logits.ndim - 1

    def ours(x, t, a, b):
        # one compiled program an example (op by op it was ~20 compiles); targets and lengths
        # closed over stay concrete, so ctc_loss checks their values and sizes the
        # concatenated targets from them as it does eagerly
        return jax.jit(lambda x: losses.ctc_loss(jax.nn.log_softmax(x, cdim), t, a, b, **kw))(x)

    check_parity(
        ours,
        lambda x, t, a, b: TF.ctc_loss(x.log_softmax(cdim), t, a, b, **kw),
        [logits, targets, il, tl], diff=(0,), what=f"ctc {kw} {case['concatenated']=}",
    )


def _impossible_case():
    """Sample 0: labels 1,1 need 3 frames (a blank between), it has 2: inf."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 2, 3))
    targets, il, tl = np.array([[1, 1], [2, 1]]), np.array([2, 4]), np.array([2, 2])
    return logits, targets, il, tl


def test_ctc_impossible_alignment(x64):
    logits, targets, il, tl = _impossible_case()
    lp = jax.nn.log_softmax(jnp.asarray(logits), 2)
    per_sample = losses.ctc_loss(lp, targets, il, tl, reduction="none")
    assert np.isinf(per_sample[0]) and np.isfinite(per_sample[1])
    g = jax.grad(lambda x: losses.ctc_loss(x, targets, il, tl, reduction="sum"))(lp)
    # torch's gradient of an infinite loss: NaN over the sample's frames, 0 past them
    assert np.isnan(g[:2, 0]).all() and (g[2:, 0] == 0).all() and np.isfinite(g[:, 1]).all()
    loss, g = jax.value_and_grad(lambda x: losses.ctc_loss(x, targets, il, tl, zero_infinity=True, reduction="sum"))(lp)
    np.testing.assert_allclose(loss, per_sample[1])
    assert (g[:, 0] == 0).all() and np.abs(g[:, 1]).max() > 0
    zero = losses.ctc_loss(lp, targets, il, tl, zero_infinity=True, reduction="none")
    assert zero[0] == 0


def test_ctc_raw_gradient_is_torch_minus_exp_log_probs(x64):
    """torch's kernel adds exp(log_probs) on the used frames (it assumes a log_softmax
    follows); the rest of its gradient is the true one, which funcnets returns."""
    rng = np.random.default_rng(1)
    lp = np.asarray(jax.nn.log_softmax(jnp.asarray(rng.standard_normal((5, 2, 4))), 2))
    targets, il, tl = np.array([[1, 2, 3], [3, 3, 0]]), np.array([5, 4]), np.array([3, 2])
    g = jax.grad(lambda x: losses.ctc_loss(x, targets, il, tl, reduction="sum"))(jnp.asarray(lp))
    tlp = torch.tensor(lp, requires_grad=True)
    TF.ctc_loss(tlp, torch.tensor(targets), torch.tensor(il), torch.tensor(tl), reduction="sum").backward()
    used = (np.arange(5)[:, None] < il)[:, :, None]
    np.testing.assert_allclose(g, to_np(tlp.grad) - np.exp(lp) * used, rtol=1e-10, atol=1e-12)


def test_ctc_empty_input_and_target(x64):
    lp = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(2).standard_normal((3, 3, 4))), 2)
    targets, il, tl = np.array([[1, 2], [1, 2], [3, 0]]), np.array([0, 0, 3]), np.array([0, 2, 0])
    out = losses.ctc_loss(lp, targets, il, tl, reduction="none")
    ref = TF.ctc_loss(torch.tensor(np.asarray(lp)), torch.tensor(targets), torch.tensor(il), torch.tensor(tl), reduction="none")
    assert out[0] == 0 and np.isinf(out[1])  # nothing to align is certain; labels with no frames impossible
    np.testing.assert_allclose(out, to_np(ref), rtol=1e-12)
    np.testing.assert_allclose(out[2], -jnp.sum(lp[:, 2, 0]), rtol=1e-12)  # all blanks


def test_ctc_check_grads(x64):
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.standard_normal((4, 2, 3)))
    targets, il, tl = jnp.array([[1, 2], [1, 1]]), jnp.array([4, 3]), jnp.array([2, 2])
    f = lambda x: losses.ctc_loss(jax.nn.log_softmax(x, 2), targets, il, tl)  # noqa: E731
    check_grads(f, (logits,), order=1, modes=("fwd", "rev"))


def test_ctc_under_jit_and_vmap():
    rng = np.random.default_rng(4)
    lp = jax.nn.log_softmax(jnp.asarray(rng.standard_normal((2, T, 3, C)), jnp.float32), -1)
    targets = jnp.array([[1, 2, 2], [3, 3, 1], [2, 0, 0]])
    il, tl = jnp.array([6, 5, 4]), jnp.array([3, 2, 1])
    f = lambda x, t, a, b: losses.ctc_loss(x, t, a, b, reduction="sum")  # noqa: E731
    eager = [jax.value_and_grad(f)(lp[i], targets, il, tl) for i in range(2)]
    # targets and lengths are traced too
    value, g = jax.jit(jax.vmap(jax.value_and_grad(f), in_axes=(0, None, None, None)))(lp, targets, il, tl)
    np.testing.assert_allclose(value, [v for v, _ in eager], rtol=1e-6)
    np.testing.assert_allclose(g, np.stack([g for _, g in eager]), rtol=1e-5, atol=1e-7)
    concat = jax.jit(f)(lp[0], jnp.array([1, 2, 2, 3, 3, 2]), il, tl)  # traced lengths: width = len(targets)
    np.testing.assert_allclose(concat, eager[0][0], rtol=1e-6)


def test_ctc_errors():
    lp = jnp.zeros((5, 2, 4))
    t, il, tl = jnp.array([[1, 2], [3, 1]]), jnp.array([5, 5]), jnp.array([2, 2])
    with pytest.raises(ValueError, match=r"target label 4 is out of range: labels must be in \[0, 4\)"):
        losses.ctc_loss(lp, jnp.array([[1, 4], [3, 1]]), il, tl)
    with pytest.raises(ValueError, match=r"input_lengths to have value at most 5 \(the number of frames T\), but got value 6"):
        losses.ctc_loss(lp, t, jnp.array([6, 5]), tl)
    with pytest.raises(ValueError, match=r"target_lengths to have value at most 2 \(the padded target width S\)"):
        losses.ctc_loss(lp, t, il, jnp.array([3, 1]))
    with pytest.raises(ValueError, match="target_lengths to have value at least 0, but got value -1"):
        losses.ctc_loss(lp, t, il, jnp.array([-1, 1]))
    with pytest.raises(ValueError, match=r"blank must be in label range \[0, 4\), got blank=4"):
        losses.ctc_loss(lp, t, il, tl, blank=4)
    with pytest.raises(ValueError, match="concatenated targets hold 3 labels but target_lengths sum to 4"):
        losses.ctc_loss(lp, jnp.array([1, 2, 3]), il, tl)
    with pytest.raises(ShapeError, match=r"input_lengths must have shape \(2,\)"):
        losses.ctc_loss(lp, t, jnp.array([5, 5, 5]), tl)
    with pytest.raises(ShapeError, match=r"log_probs must be \(T, N, C\).*transpose"):
        losses.ctc_loss(jnp.zeros((2, 5, 4, 1)), t, il, tl)
    with pytest.raises(ShapeError, match=r"targets must be padded \(N, S\) = \(2, S\)"):
        losses.ctc_loss(lp, jnp.zeros((3, 2), int), il, tl)
    with pytest.raises(TypeError, match="targets must be integers"):
        losses.ctc_loss(lp, t.astype(float), il, tl)
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.ctc_loss(lp, t, il, tl, reduction="batchmean")
