"""Mixed precision in the train step: float32 master weights, bfloat16/float16 compute,
float16 dynamic loss scaling (skipped steps, the scale's trajectory against torch's
GradScaler), BatchNorm buffers in float32, and a bf16 LeNet run on digits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from funcnets import nn, optim, train
from funcnets.optim import GradScaler

# a tiny model with every kind of state: BatchNorm buffers (float and int), momentum
MODEL = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
LOSS = train.supervised_loss(MODEL)


def _state(opt):
    params, state = MODEL.init(jax.random.PRNGKey(0))
    return train.create_train_state(params, state, opt, jax.random.PRNGKey(1))


def _batches(steps, inf_at=()):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, 4, 5)).astype(np.float32)
    for i in inf_at:
        x[i, 0, 0] = np.inf  # an inf input: inf/NaN gradients in that step
    return jnp.asarray(x), jnp.asarray(rng.integers(0, 3, (steps, 4)), jnp.int32)


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def _fp16_step(scaler, inner=None):
    opt = scaler.wrap(inner or optim.sgd(0.1, momentum=0.9))
    return opt, train.make_train_step(LOSS, opt, donate=False, precision="fp16")


def test_fp16_overflow_step_is_skipped_and_the_scale_halves():
    # 2**24 times a gradient of order 1/4 overflows float16 (max 65504) in the backward
    opt, step = _fp16_step(GradScaler(init_scale=2.0**24))
    ts0 = _state(opt)
    xs, ys = _batches(1)
    ts1, m = step(ts0, (xs[0], ys[0]))
    assert bool(m["step_skipped"]) and float(m["loss_scale"]) == 2.0**24 and np.isfinite(float(m["loss"]))
    assert float(GradScaler.state_of(ts1.opt_state).scale) == 2.0**23
    for what in ("params", "model_state"):
        for a, b in zip(_leaves(getattr(ts0, what)), _leaves(getattr(ts1, what))):
            np.testing.assert_array_equal(a, b, err_msg=what)
    inner0, inner1 = ts0.opt_state.inner, ts1.opt_state.inner
    for a, b in zip(_leaves(inner0), _leaves(inner1)):
        np.testing.assert_array_equal(a, b, err_msg="optimizer state")
    assert int(ts1.step) == 1


def test_fp16_scale_grows_after_growth_interval_clean_steps_and_stays_float32():
    opt, step = _fp16_step(GradScaler(init_scale=256.0, growth_interval=3))
    ts = _state(opt)
    xs, ys = _batches(4)
    scales, skipped = [], []
    for x, y in zip(xs, ys):
        before = ts
        ts, m = step(ts, (x, y))
        scales.append(float(GradScaler.state_of(ts.opt_state).scale))
        skipped.append(bool(m["step_skipped"]))
        assert any((a != b).any() for a, b in zip(_leaves(before.params), _leaves(ts.params)))
    assert skipped == [False] * 4 and scales == [256.0, 256.0, 512.0, 512.0]
    for leaf in jax.tree_util.tree_leaves((ts.params, ts.model_state["1"], ts.opt_state)):
        assert leaf.dtype in (jnp.float32, jnp.int32, jnp.int64, jnp.bool_), leaf.dtype
    assert ts.model_state["1"]["running_mean"].dtype == jnp.float32


def test_fp16_scale_sequence_equals_torch_on_the_same_inf_pattern():
    """Inf inputs at chosen steps: the same skipped steps and scales as torch's GradScaler
    (backoff 0.5 on inf, growth x2 after 2 clean steps)."""
    inf_at = (0, 1, 4, 5, 9)
    steps, kw = 12, dict(init_scale=1024.0, growth_interval=2)
    xs, ys = _batches(steps, inf_at)
    opt, step = _fp16_step(GradScaler(**kw))
    ts, ours, ours_skipped = _state(opt), [], []
    epoch = train.make_train_epoch(LOSS, opt, donate=False, precision="fp16")
    ts, metrics = epoch(ts, (xs, ys))
    ours_skipped = list(np.asarray(metrics["step_skipped"]))
    ours = list(np.asarray(metrics["loss_scale"][1:])) + [float(GradScaler.state_of(ts.opt_state).scale)]

    w = torch.nn.Parameter(torch.ones(5))
    topt = torch.optim.SGD([w], lr=0.1)
    tscaler = torch.amp.GradScaler("cpu", **kw)
    theirs, theirs_skipped = [], []
    for x in np.asarray(xs):
        topt.zero_grad()
        loss = (torch.tensor(x) @ w).mean()
        tscaler.scale(loss).backward()
        before = w.detach().clone()
        tscaler.step(topt)
        tscaler.update()
        theirs_skipped.append(bool(torch.equal(before, w.detach())))
        theirs.append(tscaler.get_scale())
    assert ours_skipped == theirs_skipped == [i in inf_at for i in range(steps)]
    assert ours == theirs
    assert all(np.isfinite(a).all() for a in _leaves(ts.params))


def test_fp16_needs_a_grad_scaler_and_precision_is_checked():
    opt = optim.sgd(0.1)
    xs, ys = _batches(1)
    with pytest.raises(ValueError, match="GradScaler\\(\\).wrap"):
        train.make_train_step(LOSS, opt, donate=False, precision="fp16")(_state(opt), (xs[0], ys[0]))
    with pytest.raises(ValueError, match="precision must be"):
        train.make_train_step(LOSS, opt, precision="fp8")


def test_bf16_step_computes_in_bfloat16_with_float32_master_weights():
    """The forward sees bfloat16 parameters and inputs; gradients, updates, parameters
    and BatchNorm buffers are float32, and the step is close to the float32 one."""
    seen = []

    def loss_fn(params, state, batch, key):
        seen.append((params["0"]["weight"].dtype, batch[0].dtype))
        return LOSS(params, state, batch, key)

    opt = optim.sgd(0.1, momentum=0.9)
    xs, ys = _batches(1)
    ts16, m16 = train.make_train_step(loss_fn, opt, donate=False, precision="bf16")(_state(opt), (xs[0], ys[0]))
    ts32, m32 = train.make_train_step(LOSS, opt, donate=False)(_state(opt), (xs[0], ys[0]))
    assert seen == [(jnp.bfloat16, jnp.bfloat16)]
    for a, b in zip(jax.tree_util.tree_leaves(ts16), jax.tree_util.tree_leaves(ts32)):
        assert a.dtype == b.dtype
        if jnp.issubdtype(a.dtype, jnp.floating):
            np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02)
    assert abs(float(m16["loss"]) - float(m32["loss"])) < 0.02 and m16["loss"].dtype == jnp.float32


def test_bf16_lenet_on_digits_reaches_float32_accuracy():
    from funcnets import data, recipes
    from funcnets.models import LeNet

    split = data.load_digits(size=32, channels=1)
    model = LeNet()
    params, state = model.init(jax.random.PRNGKey(0))
    acc = {}
    for precision in ("fp32", "bf16"):  # 3 epochs: 93.6% fp32, 93.9% bf16 (6 epochs at 3e-3: 94.4%, 94.7%)
        opt = optim.adamw(recipes.lr_schedule(5e-3, "cosine", 3 * (len(split.x_train) // 32)), weight_decay=1e-4)
        _, history = recipes.fit(model, params, state, split, opt, epochs=3, batch_size=32, progress=False,
                                 precision=precision)
        acc[precision] = history[-1]["test_accuracy"]
    assert acc["fp32"] > 0.9, acc
    assert abs(acc["bf16"] - acc["fp32"]) <= 0.02, acc
