"""Regression tests for pooling, padding, fold/unfold and pixel shuffle: inputs where
funcnets once differed from torch 2.x (values, gradients or errors)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import funcnets.nn.functional as F
from funcnets import nn
from funcnets.errors import ShapeError


@pytest.mark.parametrize(
    "shape,kernel,padding",
    [((1, 1, 1, 4, 4), (2, 3, 3), (1, 1, 1)), ((2, 4, 2, 1), (3, 1, 3), (1, 0, 0))],
)
def test_avg_pool3d_refuses_an_input_smaller_than_the_kernel(shape, kernel, padding):
    # torch's avg_pool3d checks every unpadded input size against the kernel
    # ("input image (T: 1 H: 4 W: 4) smaller than kernel size"); we returned a result
    x = np.ones(shape)
    with pytest.raises(RuntimeError, match="smaller than kernel size"):
        torch.nn.functional.avg_pool3d(torch.tensor(x), kernel, 1, padding, True)
    with pytest.raises(ShapeError, match="smaller than kernel_size"):
        F.avg_pool3d(jnp.asarray(x), kernel, 1, padding, True)
    with pytest.raises(ShapeError, match="smaller than kernel_size"):
        nn.LPPool3d(2, kernel, ceil_mode=True).apply({}, {}, jnp.asarray(x))


def test_avg_pool3d_input_equal_to_the_kernel_still_runs():
    x = np.random.default_rng(0).standard_normal((1, 2, 2, 3, 3))
    want = torch.nn.functional.avg_pool3d(torch.tensor(x), (2, 3, 3), 1, (1, 1, 1), False, False).numpy()
    got = F.avg_pool3d(jnp.asarray(x), (2, 3, 3), 1, (1, 1, 1), False, False)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("output_size,kernel,dilation,stride,shape", [
    ((1, 1), (3, 3), 1, 1, (9, 1)),  # (-1) * (-1) blocks: the count matched L = 1, then a reshape error
    ((3, 1), (3, 1), 2, 2, (2, 6, 0)),  # 0 blocks: we returned zeros
])  # fmt: skip
def test_fold_refuses_a_kernel_that_does_not_fit_the_output(output_size, kernel, dilation, stride, shape):
    x = np.ones(shape)
    with pytest.raises(RuntimeError):
        torch.nn.functional.fold(torch.tensor(x), output_size, kernel, dilation, 0, stride)
    with pytest.raises(ShapeError, match="too small"):
        F.fold(jnp.asarray(x), output_size, kernel, dilation, 0, stride)


@pytest.mark.parametrize("r", [0, -1, -2])
def test_pixel_shuffle_refuses_a_non_positive_factor(r):
    # we raised ZeroDivisionError (r = 0) or a reshape TypeError (r < 0)
    x = np.ones((1, 4, 2, 2), np.float32)
    with pytest.raises(RuntimeError, match="expects a positive upscale_factor"):
        torch.nn.functional.pixel_shuffle(torch.tensor(x), r)
    with pytest.raises(ValueError, match="expects a positive upscale_factor"):
        F.pixel_shuffle(jnp.asarray(x), r)
    with pytest.raises(RuntimeError, match="expects a positive downscale_factor"):
        torch.nn.functional.pixel_unshuffle(torch.tensor(x), r)
    with pytest.raises(ValueError, match="expects a positive downscale_factor"):
        nn.PixelUnshuffle(r).apply({}, {}, jnp.asarray(x))


@pytest.mark.parametrize("pool", ["max_pool1d", "avg_pool1d", "max_pool2d", "avg_pool2d", "max_pool3d", "avg_pool3d"])
@pytest.mark.parametrize("batched", [True, False])
def test_pooling_refuses_zero_channels(pool, batched):
    # torch: "Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size";
    # we returned an empty result
    n = int(pool[-2])
    shape = ((1, 0) if batched else (0,)) + (3,) * n
    with pytest.raises(RuntimeError):
        getattr(torch.nn.functional, pool)(torch.ones(shape), 1)
    with pytest.raises(ShapeError, match="non-zero channel"):
        getattr(F, pool)(jnp.ones(shape), 1)


def test_pooling_of_an_empty_batch_still_runs():
    want = torch.nn.functional.max_pool2d(torch.ones(0, 2, 4, 4), 2).shape
    assert F.max_pool2d(jnp.ones((0, 2, 4, 4)), 2).shape == tuple(want)
    assert F.avg_pool3d(jnp.ones((0, 2, 4, 4, 4)), 2).shape == (0, 2, 2, 2, 2)


@pytest.mark.parametrize("norm_type", [float("inf"), -float("inf")])
def test_lp_pool_inf_gradient_at_a_zero_winner(norm_type):
    # torch's abs has gradient sign(x) = 0 at 0; jnp.abs's is 1, so a window whose
    # winning |x| is 0 sent gradient 1 to it
    x = np.array([[[[0.0, 0.5, 0.7], [0.0, -0.2, 0.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]], np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.lp_pool2d(xt, norm_type, (2, 3), 2, True)
    yt.sum().backward()
    y, vjp = jax.vjp(lambda a: F.lp_pool2d(a, norm_type, (2, 3), 2, True), jnp.asarray(x))
    (gx,) = vjp(jnp.ones(y.shape, y.dtype))
    np.testing.assert_allclose(np.asarray(y), yt.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gx), xt.grad.numpy(), rtol=1e-6, atol=0)
