"""torch.optim.lr_scheduler parity: every scheduler's learning rate at every step equals
torch's ``get_last_lr()`` over a long run.

float64: the host table (torch's recursion, ported) is bit-identical; the JAX schedule
(closed form, or the table with ``total_epochs``) within 1e-12 relative. Momentum
cycling against torch's ``param_groups[0]['momentum']`` / ``['betas'][0]``; per-epoch
stepping and ReduceLROnPlateau against torch training loops.
"""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as TL

from funcnets import optim
from funcnets.optim import lr_scheduler as S
from helpers import assert_close, rel_err

N = 600


def _torch_run(make, n, opt="sgd", lr=0.1):
    """``get_last_lr()[0]`` and the momentum (SGD) / beta1 (Adam) before each of ``n`` steps."""
    p = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))]
    o = torch.optim.SGD(p, lr=lr, momentum=0.9) if opt == "sgd" else torch.optim.Adam(p, lr=lr)
    sched = make(o)
    lrs, moms = [], []
    for _ in range(n):
        lrs.append(sched.get_last_lr()[0])
        g = o.param_groups[0]
        moms.append(g["momentum"] if opt == "sgd" else g["betas"][0])
        o.step()
        sched.step()
    return np.array(lrs), np.array(moms)


def _slow_lambda(e):  # Python control flow on the epoch: JAX cannot trace it
    return min(1.0, (e + 1) / 10) if e < 300 else 0.5


CASES = {
    "StepLR": (lambda o: TL.StepLR(o, 7, 0.9), lambda **k: S.StepLR(0.1, 7, 0.9, **k)),
    "MultiStepLR": (
        lambda o: TL.MultiStepLR(o, [0, 5, 5, 90, 300], 0.5),
        lambda **k: S.MultiStepLR(0.1, [0, 5, 5, 90, 300], 0.5, **k),
    ),
    "ConstantLR": (lambda o: TL.ConstantLR(o, 0.3, 40), lambda **k: S.ConstantLR(0.1, 0.3, 40, **k)),
    "LinearLR": (lambda o: TL.LinearLR(o, 0.2, 0.9, 77), lambda **k: S.LinearLR(0.1, 0.2, 0.9, 77, **k)),
    "ExponentialLR": (lambda o: TL.ExponentialLR(o, 0.99), lambda **k: S.ExponentialLR(0.1, 0.99, **k)),
    "PolynomialLR": (lambda o: TL.PolynomialLR(o, 300, 2.3), lambda **k: S.PolynomialLR(0.1, 300, 2.3, **k)),
    "CosineAnnealingLR": (  # 16 half-periods: torch's recursion drifts from the closed form
        lambda o: TL.CosineAnnealingLR(o, 37, 0.001),
        lambda **k: S.CosineAnnealingLR(0.1, 37, 0.001, **k),
    ),
    "CosineAnnealingWarmRestarts_Tmult2": (
        lambda o: TL.CosineAnnealingWarmRestarts(o, 5, 2, 0.01),
        lambda **k: S.CosineAnnealingWarmRestarts(0.1, 5, 2, 0.01, **k),
    ),
    "CosineAnnealingWarmRestarts": (
        lambda o: TL.CosineAnnealingWarmRestarts(o, 13),
        lambda **k: S.CosineAnnealingWarmRestarts(0.1, 13, **k),
    ),
    "CyclicLR_exp_range": (
        lambda o: TL.CyclicLR(o, 0.01, 0.1, 20, 13, mode="exp_range", gamma=0.997),
        lambda **k: S.CyclicLR(0.01, 0.1, 20, 13, mode="exp_range", gamma=0.997, **k),
    ),
    "CyclicLR_triangular2": (
        lambda o: TL.CyclicLR(o, 0.01, 0.1, 20, mode="triangular2", base_momentum=0.7, max_momentum=0.95),
        lambda **k: S.CyclicLR(0.01, 0.1, 20, mode="triangular2", base_momentum=0.7, max_momentum=0.95, **k),
    ),
    "OneCycleLR": (
        lambda o: TL.OneCycleLR(o, 0.5, total_steps=N),
        lambda **k: S.OneCycleLR(0.5, total_steps=N, **k),
    ),
    "OneCycleLR_three_phase_linear": (
        lambda o: TL.OneCycleLR(o, 0.5, epochs=6, steps_per_epoch=100, three_phase=True, anneal_strategy="linear"),
        lambda **k: S.OneCycleLR(0.5, epochs=6, steps_per_epoch=100, three_phase=True, anneal_strategy="linear", **k),
    ),
    "LambdaLR": (lambda o: TL.LambdaLR(o, lambda e: 0.97**e), lambda **k: S.LambdaLR(0.1, lambda e: 0.97**e, **k)),
    "LambdaLR_host": (
        lambda o: TL.LambdaLR(o, _slow_lambda),
        lambda **k: S.LambdaLR(0.1, _slow_lambda, **{"total_epochs": N, **k}),
    ),
    "MultiplicativeLR": (
        lambda o: TL.MultiplicativeLR(o, lambda e: 0.99 if e % 3 else 1.01),
        lambda **k: S.MultiplicativeLR(0.1, lambda e: 0.99 if e % 3 else 1.01, **{"total_epochs": N, **k}),
    ),
    "SequentialLR": (
        lambda o: TL.SequentialLR(
            o, [TL.LinearLR(o, 0.1, total_iters=10), TL.CosineAnnealingLR(o, 50), TL.ExponentialLR(o, 0.99)], [10, 200]
        ),
        lambda **k: S.SequentialLR(
            [S.LinearLR(0.1, 0.1, total_iters=10), S.CosineAnnealingLR(0.1, 50), S.ExponentialLR(0.1, 0.99)],
            [10, 200],
            **k,
        ),
    ),
    "SequentialLR_warm_restarts": (
        lambda o: TL.SequentialLR(
            o, [TL.ConstantLR(o, 0.5, 20), TL.CosineAnnealingWarmRestarts(o, 10, 2, 1e-3)], [30]
        ),
        lambda **k: S.SequentialLR(
            [S.ConstantLR(0.1, 0.5, 20), S.CosineAnnealingWarmRestarts(0.1, 10, 2, 1e-3)], [30], **k
        ),
    ),
    "ChainedScheduler": (  # cosine's recursion applied to a learning rate others change
        lambda o: TL.ChainedScheduler(
            [TL.LinearLR(o, 0.1, total_iters=10), TL.CosineAnnealingLR(o, 50, 0.01), TL.StepLR(o, 30, 0.5)]
        ),
        lambda **k: S.ChainedScheduler(
            [S.LinearLR(0.1, 0.1, total_iters=10), S.CosineAnnealingLR(0.1, 50, 0.01), S.StepLR(0.1, 30, 0.5)],
            **{"total_epochs": N, **k},
        ),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_equals_torch_get_last_lr(x64, name):
    make_torch, make_ours = CASES[name]
    want, _ = _torch_run(make_torch, N)
    sched = make_ours()
    np.testing.assert_array_equal(sched.lr_table(N), want)  # torch's recursion, bit for bit
    counts = jnp.arange(N)
    assert_close(jax.jit(make_ours(total_epochs=N))(counts), want, 1e-15, f"{name} table")
    if sched.total_epochs is None:  # the closed form, evaluated in JAX under jit
        assert_close(jax.jit(sched)(counts), want, 1e-12, f"{name} closed form")


@pytest.mark.parametrize("name", ["OneCycleLR", "OneCycleLR_three_phase_linear", "CyclicLR_triangular2"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_momentum_cycling_equals_torch_param_groups(x64, name, opt):
    make_torch, make_ours = CASES[name]
    _, want = _torch_run(make_torch, N, opt=opt)
    assert_close(make_ours().momentum(jnp.arange(N)), want, 1e-12, f"{name} {opt} momentum")


def _quadratic_problem():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 4))
    b = rng.standard_normal(6)
    return a, b, rng.standard_normal(4)


def _torch_train(w0, a, b, make_opt, make_sched, steps, steps_per_epoch=1, metric_sched=False):
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = make_opt([w])
    sched = make_sched(opt)
    ta, tb = torch.tensor(a), torch.tensor(b)
    for i in range(steps):
        opt.zero_grad()
        loss = ((ta @ w - tb) ** 2).mean()
        loss.backward()
        opt.step()
        if (i + 1) % steps_per_epoch == 0:
            sched.step(loss.item()) if metric_sched else sched.step()
    return w.detach().numpy()


def _loss(w, a, b):
    return jnp.mean((a @ w - b) ** 2)


def _jax_train(w0, a, b, opt, steps):
    state = opt.init(jnp.asarray(w0))

    @jax.jit
    def step(w, state):
        g = jax.grad(_loss)(w, a, b)
        u, state = opt.update(g, state, w)
        return optax.apply_updates(w, u), state

    w = jnp.asarray(w0)
    for _ in range(steps):
        w, state = step(w, state)
    return np.asarray(w)


def test_per_epoch_stepping_trains_like_torch(x64):
    """``steps_per_epoch=5``: torch's ``scheduler.step()`` once per epoch of 5 batches."""
    a, b, w0 = _quadratic_problem()
    want = _torch_train(
        w0, a, b, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
        lambda o: TL.StepLR(o, 2, 0.5), steps=40, steps_per_epoch=5,
    )
    sched = S.StepLR(0.05, 2, 0.5, steps_per_epoch=5)
    assert float(sched(9)) == 0.05 and float(sched(10)) == 0.025  # epoch 2 starts at step 10
    got = _jax_train(w0, a, b, optim.sgd(sched, momentum=0.9), 40)
    assert_close(got, want, 1e-12, "StepLR per epoch")


def test_one_cycle_momentum_drives_sgd_and_adam_like_torch(x64):
    """The exposed momentum schedule, injected into the momentum / b1 hyperparameter,
    reproduces torch's SGD and Adam under OneCycleLR (which rewrites them every step)."""
    a, b, w0 = _quadratic_problem()
    steps = 60
    sched = S.OneCycleLR(0.1, total_steps=steps)
    for torch_opt, ours in [
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
         optax.inject_hyperparams(optax.sgd)(learning_rate=sched, momentum=sched.momentum)),
        (lambda p: torch.optim.Adam(p, lr=0.1),
         optax.inject_hyperparams(optax.adam)(learning_rate=sched, b1=sched.momentum, eps=1e-8)),
    ]:
        want = _torch_train(w0, a, b, torch_opt, lambda o: TL.OneCycleLR(o, 0.1, total_steps=steps), steps)
        assert_close(_jax_train(w0, a, b, ours, steps), want, 1e-10, "OneCycle momentum training")


def test_float32_schedule_in_a_jitted_optimizer():
    """Without x64 the schedule is float32 (optim passes a float count) and matches torch."""
    want, _ = _torch_run(CASES["OneCycleLR"][0], N)
    sched = S.OneCycleLR(0.5, total_steps=N)
    got = jax.jit(jax.vmap(sched))(jnp.arange(N, dtype=jnp.float32))
    assert got.dtype == jnp.float32
    assert_close(got, want, 1e-6, "float32 OneCycle")
    table = S.CosineAnnealingLR(0.1, 37, total_epochs=100)(jnp.arange(200))
    assert table.dtype == jnp.float32
    opt = optim.adam(sched)
    w = {"w": jnp.ones(3)}
    u, _ = jax.jit(opt.update)({"w": jnp.ones(3)}, opt.init(w), w)
    assert u["w"].dtype == jnp.float32


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["step", "multistep", "linear", "poly", "cos", "warm", "cyclic", "onecycle"]),
    data=st.data(),
)
def test_random_options_match_torch(kind, data):
    ints = lambda lo, hi: data.draw(st.integers(lo, hi))  # noqa: E731
    fracs = lambda lo, hi: data.draw(st.floats(lo, hi, allow_nan=False))  # noqa: E731
    base = fracs(1e-4, 1.0)
    if kind == "step":
        kw = dict(step_size=ints(1, 20), gamma=fracs(0.1, 1.0))
        pair = (TL.StepLR, S.StepLR)
    elif kind == "multistep":
        kw = dict(milestones=sorted(data.draw(st.lists(st.integers(0, 150), max_size=5))), gamma=fracs(0.1, 1.0))
        pair = (TL.MultiStepLR, S.MultiStepLR)
    elif kind == "linear":
        kw = dict(start_factor=fracs(0.01, 1.0), end_factor=fracs(0.0, 1.0), total_iters=ints(1, 150))
        pair = (TL.LinearLR, S.LinearLR)
    elif kind == "poly":
        kw = dict(total_iters=ints(1, 150), power=fracs(0.0, 4.0))
        pair = (TL.PolynomialLR, S.PolynomialLR)
    elif kind == "cos":
        kw = dict(T_max=ints(1, 80), eta_min=base * fracs(0.0, 0.5))
        pair = (TL.CosineAnnealingLR, S.CosineAnnealingLR)
    elif kind == "warm":
        kw = dict(T_0=ints(1, 20), T_mult=ints(1, 3), eta_min=base * fracs(0.0, 0.5))
        pair = (TL.CosineAnnealingWarmRestarts, S.CosineAnnealingWarmRestarts)
    elif kind == "cyclic":
        kw = dict(
            max_lr=base * fracs(1.0, 10.0), step_size_up=ints(1, 30), step_size_down=ints(0, 30),
            mode=data.draw(st.sampled_from(["triangular", "triangular2", "exp_range"])), gamma=fracs(0.9, 1.0),
        )
        pair = (lambda o, **k: TL.CyclicLR(o, base, **k), lambda _b, **k: S.CyclicLR(base, **k))
    else:
        total = ints(20, 160)
        kw = dict(
            total_steps=total, pct_start=fracs(0.05, 0.9), anneal_strategy=data.draw(st.sampled_from(["cos", "linear"])),
            div_factor=fracs(2.0, 50.0), final_div_factor=fracs(2.0, 1e4), three_phase=data.draw(st.booleans()),
        )
        try:
            ours = S.OneCycleLR(base, **kw)
        except ValueError:  # a phase with no steps: torch would divide by zero
            return
        pair = (lambda o, **k: TL.OneCycleLR(o, base, **k), lambda _b, **k: ours)
    make_t, make_o = pair
    n = kw.get("total_steps", 160)
    with jax.enable_x64(True):
        want, _ = _torch_run(lambda o: make_t(o, **kw), n, lr=base)
        sched = make_o(base, **kw)
        np.testing.assert_array_equal(sched.lr_table(n), want)
        # eagerly on one shape, so the examples share compiled operations
        assert_close(sched(jnp.arange(160))[:n], want, 1e-12, f"{kind} {kw}")


def test_past_the_table_closed_form_or_last_value(x64):
    cos = S.CosineAnnealingLR(0.1, 37, total_epochs=50)
    late = jnp.arange(50, 300)
    assert_close(jax.jit(cos)(late), jax.jit(S.CosineAnnealingLR(0.1, 37))(late), 1e-15, "closed form")
    mult = S.MultiplicativeLR(0.1, lambda e: 0.9, total_epochs=10)
    np.testing.assert_array_equal(jax.jit(mult)(jnp.arange(10, 20)), np.full(10, mult.lr_table(10)[-1]))


def test_plugs_into_funcnets_optimizers(x64):
    """``optim.adamw(lr=sched)`` takes the schedule like any optax schedule."""
    a, b, w0 = _quadratic_problem()
    want = _torch_train(
        w0, a, b, lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
        lambda o: TL.SequentialLR(o, [TL.LinearLR(o, 0.1, total_iters=5), TL.CosineAnnealingLR(o, 25)], [5]), 30,
    )
    sched = S.SequentialLR([S.LinearLR(0.05, 0.1, total_iters=5), S.CosineAnnealingLR(0.05, 25)], [5])
    assert_close(_jax_train(w0, a, b, optim.adamw(sched, weight_decay=0.1), 30), want, 1e-12, "AdamW + SequentialLR")


# --- ReduceLROnPlateau ------------------------------------------------------------------


def _torch_plateau(metrics, **kw):
    p = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))]
    o = torch.optim.SGD(p, lr=0.1)
    sched = TL.ReduceLROnPlateau(o, **kw)
    out = []
    for m in metrics:
        sched.step(m)
        out.append((sched.get_last_lr()[0], sched.best, sched.num_bad_epochs, sched.cooldown_counter))
    return out


@settings(max_examples=10, deadline=None)
@given(
    mode=st.sampled_from(["min", "max"]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    factor=st.sampled_from([0.0, 0.1, 0.5, 0.9]),  # XLA flushes denormal results to zero
    patience=st.integers(0, 4),
    cooldown=st.integers(0, 3),
    min_lr=st.sampled_from([0.0, 1e-3]),
    eps=st.sampled_from([1e-8, 1e-3]),
    threshold=st.sampled_from([0.0, 1e-4, 0.1]),
    metrics=st.lists(st.sampled_from([1.0, 0.9, 0.95, 0.5, 0.49, 2.0, -1.0, 0.5]), min_size=5, max_size=40),
)
def test_plateau_equals_torch(mode, threshold_mode, factor, patience, cooldown, min_lr, eps, threshold, metrics):
    kw = dict(mode=mode, threshold_mode=threshold_mode, factor=factor, patience=patience, cooldown=cooldown,
              min_lr=min_lr, eps=eps, threshold=threshold)
    want = _torch_plateau(metrics, **kw)
    with jax.enable_x64(True):
        plateau = S.ReduceLROnPlateau(0.1, **kw)
        state = plateau.init()
        step = jax.jit(plateau.step)
        for i, (m, (lr, best, bad, cool)) in enumerate(zip(metrics, want)):
            state = step(state, m)
            got = (float(state.lr), float(state.best), int(state.num_bad_epochs), int(state.cooldown_counter))
            assert got == (lr, best, bad, cool), f"epoch {i}: {got} != torch's {(lr, best, bad, cool)}"
        assert int(state.last_epoch) == len(metrics)


def test_plateau_state_checkpoints_with_flax_serialization(x64):
    plateau = S.ReduceLROnPlateau(0.1, patience=1)
    state, step = plateau.init(), jax.jit(plateau.step)
    for m in [1.0, 1.0, 1.0]:
        state = step(state, m)
    blob = flax.serialization.to_bytes(state)
    back = flax.serialization.from_bytes(plateau.init(), blob)
    assert isinstance(back, S.PlateauState)
    for a, b in zip(back, state):
        assert a.dtype == b.dtype and a == b
    assert float(back.lr) == pytest.approx(0.01) and float(back.best) == 1.0


def test_plateau_drives_the_optimizer_through_inject_lr(x64):
    """torch: SGD, ``scheduler.step(loss)`` each epoch of 3 batches; ours: inject_lr + set_lr."""
    a, b, w0 = _quadratic_problem()
    kw = dict(factor=0.5, patience=0, threshold=0.2)
    want = _torch_train(w0, a, b, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5),
                        lambda o: TL.ReduceLROnPlateau(o, **kw), 30, steps_per_epoch=3, metric_sched=True)
    plateau = S.ReduceLROnPlateau(0.1, **kw)
    opt = S.inject_lr(optim.sgd, 0.1, momentum=0.5)
    w, state, ps = jnp.asarray(w0), opt.init(jnp.asarray(w0)), plateau.init()

    @jax.jit
    def step(w, state):
        loss, g = jax.value_and_grad(_loss)(w, a, b)
        u, state = opt.update(g, state, w)
        return optax.apply_updates(w, u), state, loss

    for i in range(30):
        w, state, loss = step(w, state)
        if (i + 1) % 3 == 0:
            ps = plateau.step(ps, loss)
            state = S.set_lr(state, ps.lr)
    assert float(S.get_lr(state)) < 0.1  # it did reduce
    assert_close(w, want, 1e-12, "SGD + ReduceLROnPlateau")


# --- bad options --------------------------------------------------------------------------

BAD = [
    (lambda: S.StepLR(-0.1, 3), "learning rate must be a number >= 0"),
    (lambda: S.StepLR(0.1, 0), "step_size >= 1"),
    (lambda: S.MultiStepLR(0.1, [30, 10]), "milestones must be increasing"),
    (lambda: S.ConstantLR(0.1, factor=1.5), "factor expected"),
    (lambda: S.ConstantLR(0.1, factor=0.0), "factor expected"),
    (lambda: S.LinearLR(0.1, start_factor=0.0), "Starting multiplicative factor"),
    (lambda: S.LinearLR(0.1, total_iters=0), "total_iters >= 1"),
    (lambda: S.PolynomialLR(0.1, total_iters=0), "total_iters >= 1"),
    (lambda: S.CosineAnnealingLR(0.1, T_max=0), "T_max > 0"),
    (lambda: S.CosineAnnealingWarmRestarts(0.1, T_0=0), "Expected positive integer T_0"),
    (lambda: S.CosineAnnealingWarmRestarts(0.1, T_0=5, T_mult=0), "T_mult >= 1"),
    (lambda: S.CyclicLR(0.1, 1.0, mode="sawtooth"), "mode is invalid"),
    (lambda: S.CyclicLR(0.1, 1.0, step_size_up=0), "step_size_up >= 1"),
    (lambda: S.OneCycleLR(0.1), "either total_steps OR"),
    (lambda: S.OneCycleLR(0.1, total_steps=0), "positive integer total_steps"),
    (lambda: S.OneCycleLR(0.1, total_steps=10, pct_start=0.1), "too small"),
    (lambda: S.OneCycleLR(0.1, total_steps=10, pct_start=1.5), "pct_start"),
    (lambda: S.OneCycleLR(0.1, total_steps=10, anneal_strategy="cosine"), "anneal_strategy"),
    (lambda: S.LambdaLR(0.1, _slow_lambda), "pass total_epochs"),
    (lambda: S.MultiplicativeLR(0.1, lambda e: 0.9), "pass total_epochs"),
    (lambda: S.ChainedScheduler([S.StepLR(0.1, 3)]), "pass total_epochs"),
    (lambda: S.ChainedScheduler([S.StepLR(0.1, 3), S.ExponentialLR(0.2, 0.9)], total_epochs=9), "one base_lr"),
    (lambda: S.SequentialLR([S.StepLR(0.1, 3), S.ExponentialLR(0.1, 0.9)], [5, 9]), "one more than the number"),
    (lambda: S.SequentialLR([S.StepLR(0.1, 3), S.ExponentialLR(0.1, 0.9), S.StepLR(0.1, 2)], [9, 5]), "increasing"),
    (lambda: S.SequentialLR([S.StepLR(0.1, 3), S.ReduceLROnPlateau(0.1)], [5]), "does not support `ReduceLROnPlateau`"),
    (lambda: S.StepLR(0.1, 3, steps_per_epoch=0), "steps_per_epoch >= 1"),
    (lambda: S.ReduceLROnPlateau(0.1, factor=1.0), "Factor should be < 1.0"),
    (lambda: S.ReduceLROnPlateau(0.1, mode="up"), "mode up is unknown"),
    (lambda: S.ReduceLROnPlateau(0.1, threshold_mode="pct"), "threshold mode pct is unknown"),
    (lambda: S.ReduceLROnPlateau(0.1, patience=-1), "patience >= 0"),
]


@pytest.mark.parametrize("build,match", BAD, ids=[m for _, m in BAD])
def test_bad_options_are_refused_when_built(build, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("`", ".")):
        build()


def test_repr_names_torch_arguments():
    assert repr(S.StepLR(0.1, 30)) == "StepLR(base_lr=0.1, step_size=30, gamma=0.1)"
    assert repr(S.ExponentialLR(0.1, 0.9, steps_per_epoch=50)) == "ExponentialLR(base_lr=0.1, gamma=0.9, steps_per_epoch=50)"
    assert rel_err(S.ExponentialLR(0.1, 0.5)(3), 0.0125) < 1e-7


def test_set_lr_refuses_to_flatten_per_group_rates():
    """Two param groups, each with its own injected rate: one value for both would silently lose their ratio."""
    opt = optim.param_groups(lambda lr, **kw: S.inject_lr(optim.sgd, lr, **kw), [{"params": "b", "lr": 0.01}], lr=0.1)
    state = opt.init({"a": jnp.zeros(2), "b": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"2 injected learning rates with different values \((0.1, 0.01|0.01, 0.1)\)"):
        S.set_lr(state, 0.05)
    single = S.inject_lr(optim.sgd, 0.1).init({"a": jnp.zeros(2)})
    assert float(S.get_lr(S.set_lr(single, 0.05))) == np.float32(0.05)
