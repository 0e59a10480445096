"""The "PyTorch with examples" two-layer network: progression and parity with torch."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funcnets.autograd import my_relu
from funcnets.models import two_layer
from helpers import MyReLU, assert_close, rel_err

N, D_IN, H, D_OUT = 64, 1000, 100, 10
LR = 1e-6


def _start(dtype):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((N, D_IN)), rng.standard_normal((N, D_OUT))
    w1, w2 = rng.standard_normal((D_IN, H)), rng.standard_normal((H, D_OUT))
    return [a.astype(dtype) for a in (x, y, w1, w2)]


def _torch_losses(x, y, w1, w2, relu, steps=500):
    """The tutorial's autograd loop, run with torch."""
    x, y = torch.tensor(x), torch.tensor(y)
    w1, w2 = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)
    losses = []
    for _ in range(steps):
        loss = (relu(x.mm(w1)).mm(w2) - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w1 -= LR * w1.grad
            w2 -= LR * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
    return np.array(losses)


def test_manual_backward_equals_autograd(x64):
    x, y, w1, w2 = _start(np.float64)
    w = {"w1": w1, "w2": w2}
    g_np, loss_np = two_layer.manual_grads(w, x, y, xp=np)
    jw = {k: jnp.asarray(v) for k, v in w.items()}
    g_jax, loss_jax = two_layer.manual_grads(jw, jnp.asarray(x), jnp.asarray(y))
    g_auto, loss_auto = two_layer.grads(jw, jnp.asarray(x), jnp.asarray(y))
    for k in ("w1", "w2"):
        assert_close(g_np[k], g_auto[k], 1e-12, f"numpy manual {k}")
        assert_close(g_jax[k], g_auto[k], 1e-12, f"jax manual {k}")
    assert_close(loss_np, loss_auto, 1e-14, "loss")


def test_parity_float64_every_100_steps(x64):
    x, y, w1, w2 = _start(np.float64)
    ref = _torch_losses(x, y, w1, w2, torch.relu)
    w = {"w1": jnp.asarray(w1), "w2": jnp.asarray(w2)}
    _, losses = two_layer.train(w, jnp.asarray(x), jnp.asarray(y), LR, 500)
    _, manual = two_layer.train(w, jnp.asarray(x), jnp.asarray(y), LR, 500,
                                grad_fn=lambda w, x, y: two_layer.manual_grads(w, x, y))
    for t in range(99, 500, 100):
        assert rel_err(losses[t], ref[t]) <= 1e-9, (t, losses[t], ref[t])
        assert rel_err(manual[t], ref[t]) <= 1e-9, (t, manual[t], ref[t])
    assert ref[499] < 1e-6 * ref[0]  # the loss really falls (by ~7 orders of magnitude)


def test_parity_custom_relu_float64(x64):
    x, y, w1, w2 = _start(np.float64)
    ref = _torch_losses(x, y, w1, w2, MyReLU.apply, steps=200)
    w = {"w1": jnp.asarray(w1), "w2": jnp.asarray(w2)}
    grad_fn = lambda w, x, y: two_layer.grads(w, x, y, relu=my_relu)  # noqa: E731
    _, losses = two_layer.train(w, jnp.asarray(x), jnp.asarray(y), LR, 200, grad_fn=grad_fn)
    for t in (99, 199):
        assert rel_err(losses[t], ref[t]) <= 1e-9, (t, losses[t], ref[t])


def test_parity_float32():
    x, y, w1, w2 = _start(np.float32)
    ref = _torch_losses(x, y, w1, w2, torch.relu)
    w = {"w1": jnp.asarray(w1), "w2": jnp.asarray(w2)}
    _, losses = two_layer.train(w, jnp.asarray(x), jnp.asarray(y), LR, 500)
    assert losses.dtype == jnp.float32
    for t in (99, 199):
        assert rel_err(losses[t], ref[t]) <= 1e-4, (t, losses[t], ref[t])
    assert losses[499] < 1e-3 and ref[499] < 1e-3, (losses[499], ref[499])


def test_scan_equals_python_loop():
    x, y, w1, w2 = _start(np.float32)
    x, y = jnp.asarray(x), jnp.asarray(y)
    w = {"w1": jnp.asarray(w1), "w2": jnp.asarray(w2)}
    w_scan, losses = two_layer.train(w, x, y, LR, 20)
    step = jax.jit(lambda w: two_layer.sgd_step(w, two_layer.grads(w, x, y)[0], LR))
    for _ in range(20):
        w = step(w)
    for k in ("w1", "w2"):
        assert_close(w_scan[k], w[k], 1e-6, k)
