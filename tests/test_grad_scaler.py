"""torch.amp.GradScaler parity: the scale's trajectory, the skipped steps and the
parameters against torch's own GradScaler (float32), and float16/bfloat16 compute with
float32 master weights."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from funcnets import nn, optim
from funcnets.losses import cross_entropy
from funcnets.optim.grad_scaler import GradScaler, cast_floating
from helpers import assert_close


def _problem():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((6, 4)) * 4).astype(np.float32), rng.standard_normal(6).astype(np.float32), rng.standard_normal(4).astype(np.float32)


@pytest.mark.parametrize("which", ["sgd", "adam"])
def test_scale_trajectory_and_skipped_steps_equal_torch(which):
    """init_scale 2**127 overflows the scaled float32 gradients: torch backs off, skips
    those steps (Adam's step count does not advance), grows again every 3 clean steps."""
    a, b, w0 = _problem()
    kw = dict(init_scale=2.0**127, growth_interval=3)
    steps = 30
    w = torch.nn.Parameter(torch.tensor(w0))
    topt = torch.optim.SGD([w], lr=0.01, momentum=0.9) if which == "sgd" else torch.optim.Adam([w], lr=0.05)
    tscaler = torch.amp.GradScaler("cpu", **kw)
    want_scales = []
    for _ in range(steps):
        topt.zero_grad()
        loss = ((torch.tensor(a) @ w - torch.tensor(b)) ** 2).mean()
        tscaler.scale(loss).backward()
        tscaler.step(topt)
        tscaler.update()
        want_scales.append(tscaler.get_scale())

    scaler = GradScaler(**kw)
    opt = scaler.wrap(optim.sgd(0.01, momentum=0.9) if which == "sgd" else optim.adam(0.05))

    def loss_fn(p, s):
        return scaler.scale(s, jnp.mean((jnp.asarray(a) @ p - jnp.asarray(b)) ** 2))

    @jax.jit
    def step(p, opt_state):
        g = jax.grad(loss_fn)(p, scaler.state_of(opt_state))
        u, opt_state = opt.update(g, opt_state, p)
        return optax.apply_updates(p, u), opt_state

    p, opt_state = jnp.asarray(w0), opt.init(jnp.asarray(w0))
    scales, skipped = [], []
    for _ in range(steps):
        p, opt_state = step(p, opt_state)
        scales.append(float(scaler.state_of(opt_state).scale))
        skipped.append(bool(scaler.state_of(opt_state).found_inf))
    assert scales == want_scales
    assert 5 < sum(skipped) < steps - 5  # both kinds of step happened
    # float32: SGD's arithmetic is torch's; Adam's differs by rounding (optim's float32
    # tolerance for optimizer trajectories is 1e-4, tests/test_optim.py)
    assert_close(p, w.detach().numpy(), 1e-6 if which == "sgd" else 1e-4, f"{which} parameters")


MLP = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_compute_with_float32_master_weights(dtype):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((64, 8)), jnp.float32)
    y = jnp.asarray((rng.standard_normal((64, 8)) @ rng.standard_normal((8,)) > 0).astype(np.int32) * 2 + (x[:, 0] > 0))
    params, _ = MLP.init(jax.random.PRNGKey(0))
    scaler = GradScaler(enabled=dtype == jnp.float16)  # bfloat16 needs no loss scaling

    def run(compute_dtype, steps=60):
        opt = scaler.wrap(optim.sgd(0.1, momentum=0.9))

        def loss_fn(p, s):
            logits = MLP.apply(cast_floating(p, compute_dtype), {}, x.astype(compute_dtype))[0]
            loss = cross_entropy(logits.astype(jnp.float32), y)
            return scaler.scale(s, loss), loss

        @jax.jit
        def step(p, opt_state):
            g, loss = jax.grad(loss_fn, has_aux=True)(p, scaler.state_of(opt_state))
            u, opt_state = opt.update(g, opt_state, p)
            return optax.apply_updates(p, u), opt_state, loss

        p, opt_state = params, opt.init(params)
        for _ in range(steps):
            p, opt_state, loss = step(p, opt_state)
        return p, float(loss)

    p_half, loss_half = run(dtype)
    p_full, loss_full = run(jnp.float32)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(p_half))  # master weights
    assert loss_full < 0.5 * float(cross_entropy(MLP.apply(params, {}, x)[0], y))  # it trained
    assert abs(loss_half - loss_full) < 0.05 * loss_full + 1e-3, (loss_half, loss_full)


def test_bad_options():
    with pytest.raises(ValueError, match="growth factor must be > 1.0"):
        GradScaler(growth_factor=1.0)
    with pytest.raises(ValueError, match="backoff factor must be < 1.0"):
        GradScaler(backoff_factor=1.0)
    with pytest.raises(ValueError, match="growth_interval"):
        GradScaler(growth_interval=0)
    with pytest.raises(ValueError, match="holds no GradScaler"):
        GradScaler.state_of(optim.sgd(0.1).init({"w": jnp.ones(2)}))
