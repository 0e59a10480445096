"""Regressions found by a bug hunt in ``funcnets.losses``: each case the same input through
torch and funcnets (values and gradients), or the error that invalid input must raise."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from funcnets import losses
from funcnets.errors import ShapeError

from test_losses import check_parity


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_every_target_ignored_has_zero_gradient(dtype, label_smoothing, weighted):
    # mean divides by a total weight of 0: torch's value is NaN but its gradient is 0
    # (ignored targets are masked); multiplying by w = 0 gave 0 · inf = NaN
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(dtype)
    t = np.full(3, -100)
    w = np.array([0.5, 1.0, 2.0, 1.5], dtype)

    def ours(x):
        return losses.cross_entropy(x, jnp.asarray(t), jnp.asarray(w) if weighted else None,
                                    label_smoothing=label_smoothing)

    def theirs(x):
        return TF.cross_entropy(x, torch.tensor(t), torch.tensor(w) if weighted else None,
                                label_smoothing=label_smoothing)

    check_parity(ours, theirs, [x], what="cross_entropy, all ignored")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nll_loss_ignored_unbatched_and_kdim_gradients(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 2)).astype(dtype)  # (N, C, d1), every target ignored
    t = np.full((2, 2), 1)
    check_parity(lambda x: losses.nll_loss(x, jnp.asarray(t), ignore_index=1),
                 lambda x: TF.nll_loss(x, torch.tensor(t), ignore_index=1), [x], what="nll_loss K-dim all ignored")
    v = rng.standard_normal(4).astype(dtype)  # unbatched (C,), its one target ignored
    check_parity(lambda v: losses.cross_entropy(v, jnp.asarray(2), ignore_index=2),
                 lambda v: TF.cross_entropy(v, torch.tensor(2), ignore_index=2), [v], what="unbatched ignored")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_unbatched_input_takes_a_target_of_shape_1(reduction, x64):
    # torch's forward reads a (1,) target as the one sample of a (C,) input and returns a
    # scalar (its backward then fails, so the gradient is compared with a () target's)
    v = np.random.default_rng(2).standard_normal(4)
    w = np.array([0.5, 1.0, 2.0, 1.5])
    for ours, theirs in (
        (lambda v, t: losses.cross_entropy(v, t, jnp.asarray(w), reduction=reduction),
         lambda v, t: TF.cross_entropy(v, t, torch.tensor(w), reduction=reduction)),
        (lambda v, t: losses.nll_loss(v, t, reduction=reduction), lambda v, t: TF.nll_loss(v, t, reduction=reduction)),
    ):
        value = ours(jnp.asarray(v), jnp.array([3]))
        assert value.shape == ()
        np.testing.assert_allclose(value, theirs(torch.tensor(v), torch.tensor([3])).numpy(), rtol=1e-12)
        check_parity(lambda v: ours(v, jnp.array([3])), lambda v: theirs(v, torch.tensor(3)), [v],
                     what=f"(C,) input, (1,) target, {reduction}")


def test_nll_loss_refuses_a_weight_of_the_wrong_size():
    # it used to index the weight with the targets and return a value
    logp = jnp.log(jnp.full((3, 4), 0.25))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\), one per class of the input \(3, 4\), got \(5,\)"):
        losses.nll_loss(logp, jnp.array([0, 1, 2]), weight=jnp.ones(5))


def test_bce_with_logits_weights_must_broadcast_to_the_input():
    # torch computes in place in the input's shape and refuses a larger weight / pos_weight;
    # funcnets used to return a loss over the broadcast shape
    x, t = jnp.zeros((3, 4)), jnp.full((3, 4), 0.5)
    for kw in ({"weight": jnp.ones((2, 3, 4))}, {"pos_weight": jnp.ones((2, 1, 4))}):
        name = next(iter(kw))
        with pytest.raises(ShapeError, match=rf"must broadcast to the input's shape \(3, 4\), got {name} \(2, "):
            losses.binary_cross_entropy_with_logits(x, t, **kw)


@pytest.mark.parametrize("fn", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
def test_regression_losses_name_shapes_that_do_not_broadcast(fn):
    # torch warns that the sizes differ, then raises
    with pytest.warns(UserWarning, match="different to the input size"), \
            pytest.raises(ShapeError, match=rf"{fn}: the shapes of input \(3, 4\), target \(3, 5\) do not broadcast"):
        getattr(losses, fn)(jnp.zeros((3, 4)), jnp.zeros((3, 5)))



@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_multilabel_soft_margin_sums_over_torchs_class_dimension(reduction, x64):
    # a weight of more dimensions than the input broadcasts the loss to (2, 3, 4); torch
    # sums over dimension input.ndim - 1 = 1 (giving (2, 4)), funcnets summed over the last
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((3, 4)), (rng.uniform(size=(3, 4)) > 0.5) * 1.0
    w = rng.uniform(size=(2, 3, 4))
    check_parity(lambda x: losses.multilabel_soft_margin_loss(x, jnp.asarray(t), jnp.asarray(w), reduction=reduction),
                 lambda x: TF.multilabel_soft_margin_loss(x, torch.tensor(t), torch.tensor(w), reduction=reduction), [x],
                 what="multilabel_soft_margin_loss, weight (2, 3, 4)")


def test_soft_margin_loss_refuses_a_target_larger_than_the_input():
    # torch writes the loss in the input's shape and raises; funcnets returned a (3, 4) loss
    with pytest.raises(ShapeError, match=r"soft_margin_loss: target \(3, 4\) must broadcast to the input's shape \(1, 4\)"):
        losses.soft_margin_loss(jnp.zeros((1, 4)), jnp.ones((3, 4)))


def test_binary_cross_entropy_keeps_the_input_dtype_with_a_float64_weight(x64):
    # torch's kernel casts the weight: a float32 loss; funcnets promoted it to float64
    p, t = np.array([0.2, 0.7], np.float32), np.array([0.0, 1.0], np.float32)
    w = np.array([1.5, 0.5])
    ours = losses.binary_cross_entropy(jnp.asarray(p), jnp.asarray(t), jnp.asarray(w))
    theirs = TF.binary_cross_entropy(torch.tensor(p), torch.tensor(t), torch.tensor(w))
    assert ours.dtype == np.float32 and theirs.dtype == torch.float32
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6)
