"""Regressions found by the optim bug hunt: trajectories against torch.optim with a
scheduler that cycles the momentum (torch's OneCycleLR/CyclicLR), float64, parameters
compared after every step within 1e-10 relative."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from funcnets import optim
from funcnets.optim import lr_scheduler as ls

TL = torch.optim.lr_scheduler
_RNG = np.random.default_rng(0)
_M = _RNG.normal(size=(5, 5))
_C = _RNG.normal(size=5)
_P0 = _RNG.normal(size=5)


def _loss_j(p):
    r = jnp.asarray(_M) @ p["w"] - jnp.asarray(_C)
    return 0.5 * jnp.sum(r * r) + 0.3 * jnp.sum(jnp.sin(3 * p["w"]))


def _loss_t(w):
    r = torch.tensor(_M) @ w - torch.tensor(_C)
    return 0.5 * torch.sum(r * r) + 0.3 * torch.sum(torch.sin(3 * w))


def _assert_trajectory(tx, make_torch, make_sched, steps=12, rtol=1e-10):
    """``steps`` steps of ``tx`` and of the torch optimizer (its scheduler stepped after
    each ``optimizer.step()``), the parameters compared after every step."""
    params = {"w": jnp.asarray(_P0)}
    w = torch.tensor(_P0, dtype=torch.float64, requires_grad=True)
    topt = make_torch([w])
    sched = make_sched(topt)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for i in range(steps):
        updates, state = update(jax.grad(_loss_j)(params), state, params)
        params = optax.apply_updates(params, updates)
        topt.zero_grad()
        _loss_t(w).backward()
        topt.step()
        sched.step()
        want = w.detach().numpy()
        err = np.max(np.abs(np.asarray(params["w"]) - want) / np.abs(want))
        assert err < rtol, f"step {i}: relative error {err:.3g}"


def _cyclic_zero_momentum():
    """CyclicLR with base_momentum=0: the momentum is 0 at every peak of the lr."""
    kw = dict(base_lr=0.01, max_lr=0.05, step_size_up=2, base_momentum=0.0, max_momentum=0.9)
    return ls.CyclicLR(**kw), lambda o: TL.CyclicLR(o, **kw)


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_sgd_scheduled_momentum_zero_skips_the_buffer(x64, dampening):
    # torch's SGD at a step whose momentum is 0 uses the gradient as is and leaves the
    # buffer untouched; funcnets overwrote the buffer with (1-τ)·g (0.27 relative off
    # by step 3 without dampening, 0.53 at step 2 with it)
    sched, torch_sched = _cyclic_zero_momentum()
    _assert_trajectory(
        optim.sgd(lr=sched, momentum=sched.momentum, dampening=dampening),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=dampening),
        torch_sched,
    )


@pytest.mark.parametrize("zero_momentum", [False, True])
def test_rmsprop_cycled_momentum_equals_torch(x64, zero_momentum):
    # torch's OneCycleLR/CyclicLR cycle RMSprop's momentum; rmsprop(momentum=schedule)
    # raised "'>' not supported between instances of 'method' and 'int'"
    if zero_momentum:
        sched, torch_sched = _cyclic_zero_momentum()
    else:
        sched = ls.OneCycleLR(0.05, total_steps=12, three_phase=True)
        torch_sched = lambda o: TL.OneCycleLR(o, 0.05, total_steps=12, three_phase=True)  # noqa: E731
    _assert_trajectory(
        optim.rmsprop(lr=sched, momentum=sched.momentum, centered=True),
        lambda p: torch.optim.RMSprop(p, lr=0.05, momentum=0.9, centered=True),
        torch_sched,
    )


def test_rmsprop_inject_hyperparams_momentum(x64):
    # optax.inject_hyperparams passes the momentum as an array (a tracer under jit),
    # which `momentum > 0` could not branch on
    tx = optax.inject_hyperparams(optim.rmsprop)(lr=0.01, momentum=0.9)
    _assert_trajectory(tx, lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.9), lambda o: TL.ConstantLR(o, 1.0))


@pytest.mark.parametrize("name", ["nadam", "radam", "adamax"])
def test_cycled_beta1_equals_torch(x64, name):
    # torch's OneCycleLR (cycle_momentum=True, its default) cycles betas[0] of every
    # optimizer with betas; nadam/radam/adamax took constant betas only (TypeError)
    sched = ls.OneCycleLR(0.05, total_steps=12, three_phase=True)
    tx = getattr(optim, name)(lr=sched, betas=(sched.momentum, 0.95), weight_decay=0.1)
    cls = {"nadam": torch.optim.NAdam, "radam": torch.optim.RAdam, "adamax": torch.optim.Adamax}[name]
    # torch keeps NAdam's mu_product in its default dtype (see optim.nadam's docstring)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _assert_trajectory(
            tx,
            lambda p: cls(p, lr=0.05, betas=(0.9, 0.95), weight_decay=0.1),
            lambda o: TL.OneCycleLR(o, 0.05, total_steps=12, three_phase=True),
        )
    finally:
        torch.set_default_dtype(default)


def _nested_sequential(**kw):
    inner = ls.SequentialLR([ls.ConstantLR(0.1, 0.1, 2), ls.ExponentialLR(0.1, 0.9)], milestones=[3])
    return ls.SequentialLR([inner, ls.StepLR(0.1, 2, 0.5)], milestones=[6], **kw)


def test_nested_sequential_lr_equals_torch(x64):
    # torch's initial step of a SequentialLR nested first in another advances the inner
    # one's epoch but not its schedulers', so the inner milestone 3 acts at epoch 2; the
    # closed form restarted ExponentialLR at epoch 3 (0.1 where torch has 0.09)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    o = torch.optim.SGD([p], lr=0.1)
    inner = TL.SequentialLR(o, [TL.ConstantLR(o, 0.1, 2), TL.ExponentialLR(o, 0.9)], milestones=[3])
    outer = TL.SequentialLR(o, [inner, TL.StepLR(o, 2, 0.5)], milestones=[6])
    want = []
    for _ in range(12):
        want.append(outer.get_last_lr()[0])
        o.step()
        outer.step()
    sched = _nested_sequential(total_epochs=12)
    np.testing.assert_array_equal(np.asarray(sched(jnp.arange(12))), np.asarray(want))
    with pytest.raises(ValueError, match="first scheduler is a SequentialLR.*pass total_epochs"):
        _nested_sequential()


def _fixed_gradient_run(tx, torch_opt, w, steps, dtype):
    """``steps`` steps on the gradients ``g·(i+1)`` (the same in both); the worst relative
    parameter error over the steps."""
    g = np.random.default_rng(0).normal(size=w.shape).astype(dtype)
    params = jnp.zeros(w.shape, dtype)
    state = tx.init(params)
    worst = 0.0
    for i in range(steps):
        updates, state = tx.update(jnp.asarray(g * (i + 1)), state, params)
        params = optax.apply_updates(params, updates)
        w.grad = torch.tensor(g * (i + 1))
        torch_opt.step()
        assert params.dtype == dtype
        want = w.detach().numpy()
        worst = max(worst, float(np.max(np.abs(np.asarray(params) - want) / np.abs(want))))
    return worst


@pytest.mark.parametrize(
    "name, kw",
    [("adam", dict(betas=(0.99, 0.9999))), ("adam", dict(amsgrad=True)), ("radam", dict())],
)
def test_float32_bias_correction_as_torch(name, kw):
    # torch computes 1 - βᵗ (and RAdam's ρₜ) in Python floats; optax.scale_by_adam's
    # float32 1 - βᵗ put Adam 8e-5 off torch for β₂ = 0.9999 (7e-6 for 0.999), and
    # RAdam's float32 ρₜ (1999 - 1994) 8e-5 off at its first rectified step (6)
    w = torch.zeros(200, requires_grad=True)
    cls = {"adam": torch.optim.Adam, "radam": torch.optim.RAdam}[name]
    tx = getattr(optim, name)(lr=1.0, **kw)
    assert _fixed_gradient_run(tx, cls([w], lr=1.0, **kw), w, 8, np.float32) < 2e-6


@pytest.mark.parametrize("name", ["adam", "nadam", "radam"])
def test_float64_beta2_near_one_as_torch(x64, name):
    # for β₂ = 0.999999 torch's own 1 - β₂ᵗ and ρₜ carry a cancellation (ρₜ 1e-5 off
    # its exact value); the float64 steps follow torch's arithmetic (RAdam was 3e-10 off
    # torch at step 6, Adam 3e-11 with an exact -expm1)
    w = torch.zeros(50, dtype=torch.float64, requires_grad=True)
    cls = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam, "radam": torch.optim.RAdam}[name]
    kw = dict(lr=0.1, betas=(0.9, 0.999999))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # NAdam's mu_product, see optim.nadam
    try:
        assert _fixed_gradient_run(getattr(optim, name)(**kw), cls([w], **kw), w, 10, np.float64) < 1e-12
    finally:
        torch.set_default_dtype(default)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_grad_scaler_skipped_step_advances_the_lr_schedule(name):
    # torch skips optimizer.step() on an overflow but scheduler.step() still runs, so the
    # next step takes the schedule's next lr; the wrapped optimizer kept the schedule's
    # count with the rest of its state, and lagged a step behind (0.11 off torch after it)
    g0 = np.random.default_rng(0).normal(size=10).astype(np.float32)
    scaler = optim.GradScaler(init_scale=4.0, growth_interval=100)
    sched = ls.StepLR(0.1, 1, 0.5)
    inner = optim.sgd(lr=sched, momentum=0.9) if name == "sgd" else optim.adam(lr=sched)
    tx = scaler.wrap(inner)
    params = jnp.ones(10, jnp.float32)
    state = tx.init(params)
    w = torch.ones(10, requires_grad=True)
    topt = torch.optim.SGD([w], lr=0.1, momentum=0.9) if name == "sgd" else torch.optim.Adam([w], lr=0.1)
    tscaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=100)
    tsched = TL.StepLR(topt, 1, 0.5)
    for i in range(6):
        overflow = np.inf if i == 2 else 1.0
        grads = jnp.asarray(g0 * (i + 1) * overflow * float(scaler.state_of(state).scale))
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        topt.zero_grad()
        tscaler.scale((w * torch.tensor(g0 * (i + 1))).sum() * overflow).backward()
        tscaler.step(topt)
        tscaler.update()
        tsched.step()
        np.testing.assert_allclose(np.asarray(params), w.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=f"step {i}")
    assert float(scaler.state_of(state).scale) == tscaler.get_scale()


@pytest.mark.parametrize("name", ["adam", "nadam", "radam"])
def test_float32_cycled_beta1_constant_beta2_as_torch(name):
    # a scheduled β₁ (OneCycleLR) took the path for scheduled betas, which rounded the
    # constant β₂ = 0.9999 to float32 before 1 - β₂ᵗ: 1.7e-4 off torch's, Adam 8e-5 off
    # torch's parameters, RAdam rectifying from step 2 (ρ₂ 5.3 where torch's is 2.0)
    sched = ls.OneCycleLR(1.0, total_steps=10)
    tx = getattr(optim, name)(lr=sched, betas=(sched.momentum, 0.9999))
    w = torch.zeros(200, requires_grad=True)
    cls = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam, "radam": torch.optim.RAdam}[name]
    topt = cls([w], lr=1.0, betas=(0.9, 0.9999))
    tsched = TL.OneCycleLR(topt, 1.0, total_steps=10)

    class Stepped:  # the torch optimizer with its scheduler stepped after each step
        def step(self):
            topt.step()
            tsched.step()

    assert _fixed_gradient_run(tx, Stepped(), w, 8, np.float32) < 2e-6


def _torch_lrs(make_sched, n):
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = make_sched(o)
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        o.step()
        sched.step()
    return np.asarray(out)


def _torch_momenta(make_sched, n):
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = make_sched(o)
    out = []
    for _ in range(n):
        out.append(o.param_groups[0]["momentum"])
        o.step()
        sched.step()
    return np.asarray(out)


@pytest.mark.parametrize(
    "ours, make_torch",
    [
        (ls.CosineAnnealingLR(0.1, T_max=500), lambda o: TL.CosineAnnealingLR(o, T_max=500)),
        (ls.CosineAnnealingWarmRestarts(0.1, T_0=100, T_mult=2), lambda o: TL.CosineAnnealingWarmRestarts(o, 100, 2)),
        (ls.OneCycleLR(0.1, total_steps=600), lambda o: TL.OneCycleLR(o, 0.1, total_steps=600)),
        (
            ls.OneCycleLR(0.1, total_steps=600, anneal_strategy="linear"),
            lambda o: TL.OneCycleLR(o, 0.1, total_steps=600, anneal_strategy="linear"),
        ),
        # float32's 1 - e/n, s + (e - s)·k/n, rounded gamma ** e and 1 + e/total - cycle:
        # 1.4e-4, 7e-5, 1.8e-5 (0.9912 rounds 3e-8 off) and 2e-5 off torch
        (ls.PolynomialLR(0.1, 599, 2.0), lambda o: TL.PolynomialLR(o, 599, 2.0)),
        (ls.LinearLR(0.1, 1.0, 0.001, 599), lambda o: TL.LinearLR(o, 1.0, 0.001, 599)),
        (ls.ExponentialLR(0.1, 0.9912), lambda o: TL.ExponentialLR(o, 0.9912)),
        (ls.CyclicLR(0.001, 0.1, 250), lambda o: TL.CyclicLR(o, 0.001, 0.1, 250)),
    ],
)
def test_float32_schedules_near_their_minimum_as_torch(ours, make_torch):
    # float32's (1 + cos(π·e/T))/2 and (end - start)·pct + start cancel where the lr
    # nears its minimum: CosineAnnealingLR's last steps were 2.5e-3 off torch's Python
    # floats, OneCycleLR's 2e-4 (cos) and 6e-3 (linear)
    want = _torch_lrs(make_torch, 600)
    got = np.asarray(ours(jnp.arange(600)))
    if isinstance(ours, ls.CyclicLR):
        np.testing.assert_allclose(np.asarray(ours.momentum(jnp.arange(600))), _torch_momenta(make_torch, 600), rtol=1e-6)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)
    np.testing.assert_array_equal(ours.lr_table(600), want)  # the host port, bit for bit
