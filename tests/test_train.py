"""Compiled training: scan == loop, stateful models, frozen parameters (checkpoints: test_checkpoint.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnets import nn, optim, train
from funcnets.models import LeNet
from funcnets.nn._conv import conv_lowering


def _setup(model, opt, trainable=None, seed=0):
    params, state = model.init(jax.random.PRNGKey(seed))
    return train.create_train_state(params, state, opt, jax.random.PRNGKey(seed + 1), trainable)


def _data(steps, n=8, shape=(1, 32, 32)):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.standard_normal((steps, n) + shape), jnp.float32), jnp.asarray(rng.integers(0, 10, (steps, n)), jnp.int32)


SMALL_BN = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2), nn.Flatten(), nn.Linear(4 * 16 * 16, 10)
)


@pytest.mark.parametrize("model", [LeNet(), SMALL_BN], ids=["lenet", "bn_dropout"])
def test_scanned_epoch_equals_step_loop(x64, model):
    # float64: Adam turns float32 rounding in near-zero gradients into lr-sized steps,
    # so "the same result" is tested where rounding cannot be amplified
    opt = optim.adam(1e-3)
    xs, ys = _data(6)
    xs = xs.astype(jnp.float64)
    loss_fn = train.supervised_loss(model)
    step = train.make_train_step(loss_fn, opt, donate=False)
    ts = _setup(model, opt)
    losses = []
    for x, y in zip(xs, ys):
        ts, m = step(ts, (x, y))
        losses.append(float(m["loss"]))
    ts2, metrics = train.make_train_epoch(loss_fn, opt, donate=False)(_setup(model, opt), (xs, ys))
    np.testing.assert_allclose(metrics["loss"], losses, rtol=1e-12)
    # the epoch's GEMM convolutions round differently from the step's, and six steps carry
    # that into entries near 0 (an absolute 3e-11 on -0.002 in one draw): the absolute
    # tolerance is 1e-9 of the leaf's largest entry, at least 1e-12 (leaves that are ~0)
    for a, b in zip(jax.tree_util.tree_leaves(ts), jax.tree_util.tree_leaves(ts2)):
        atol = max(1e-12, 1e-9 * float(np.abs(np.asarray(b, np.float64)).max(initial=0)))
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=atol)
    assert int(ts2.step) == 6


def test_batchnorm_state_is_threaded_through_training():
    opt = optim.sgd(0.01)
    ts = _setup(SMALL_BN, opt)
    step = train.make_train_step(train.supervised_loss(SMALL_BN), opt)
    xs, ys = _data(3)
    for x, y in zip(xs, ys):
        ts, _ = step(ts, (x, y))
    bn = ts.model_state["1"]
    assert int(bn["num_batches_tracked"]) == 3
    assert float(jnp.abs(bn["running_mean"]).sum()) > 0


def test_frozen_parameters_get_no_gradient_and_no_optimizer_state():
    model = LeNet()
    opt = optim.adam(1e-2)
    trainable = optim.select(model.init(jax.random.PRNGKey(0))[0], include="fc3")
    ts = _setup(model, opt, trainable)
    adam_state = ts.opt_state[0]
    assert set(adam_state.mu) == {"fc3"}  # optimizer state only for trainable leaves
    before = ts.params
    step = train.make_train_step(train.supervised_loss(model), opt, trainable=trainable, donate=False)
    xs, ys = _data(2)
    ts, _ = step(ts, (xs[0], ys[0]))
    for name in ("conv1", "conv2", "fc1", "fc2"):
        np.testing.assert_array_equal(ts.params[name]["weight"], before[name]["weight"])
    assert not np.array_equal(ts.params["fc3"]["weight"], before["fc3"]["weight"])


def _flops(model, trainable, batch):
    opt = optim.sgd(0.01, momentum=0.9)
    ts = _setup(model, opt, trainable)
    step = train.make_train_step(train.supervised_loss(model), opt, trainable=trainable, donate=False)
    cost = step.lower(ts, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost["flops"]


def test_frozen_trunk_step_does_strictly_less_work():
    model = LeNet()
    params = model.init(jax.random.PRNGKey(0))[0]
    xs, ys = _data(1, n=32)
    # XLA counts no flops in a custom call (oneDNN's convolutions): GEMM convolutions it sees
    with conv_lowering("gemm"):
        full = _flops(model, None, (xs[0], ys[0]))
        head = _flops(model, optim.select(params, include="fc*"), (xs[0], ys[0]))
    # the conv backward (both input and weight gradients) is gone, not just masked
    assert head < 0.6 * full, (head, full)


def test_callers_arrays_survive_donation():
    model, opt = LeNet(), optim.sgd(0.1)
    params, state = model.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    ts = train.create_train_state(params, state, opt, key)
    step = train.make_train_step(train.supervised_loss(model), opt)  # donates ts
    xs, ys = _data(1)
    step(ts, (xs[0], ys[0]))
    jax.random.fold_in(key, 1)  # would raise "Buffer has been deleted or donated"
    assert float(jnp.sum(params["fc1"]["weight"])) == float(jnp.sum(params["fc1"]["weight"]))


@pytest.mark.parametrize("frozen", [False, True], ids=["all_trainable", "frozen_trunk"])
def test_donating_step_equals_non_donating_step(frozen):
    model, opt = SMALL_BN, optim.sgd(0.05, momentum=0.9)
    params = model.init(jax.random.PRNGKey(0))[0]
    trainable = optim.select(params, include="6") if frozen else None
    xs, ys = _data(3)
    kept, donated = _setup(model, opt, trainable), _setup(model, opt, trainable)
    plain = train.make_train_step(train.supervised_loss(model), opt, trainable=trainable, donate=False)
    step = train.make_train_step(train.supervised_loss(model), opt, trainable=trainable)
    assert step.lower(donated, (xs[0], ys[0])).compile().cost_analysis()  # lowers like a jitted function
    # on CPU the trainable parameters are not donated (see train._KeepTrainableParams);
    # everything else is, so the old state must not be used afterwards
    cpu = jax.default_backend() == "cpu"
    for x, y in zip(xs, ys):
        kept, _ = plain(kept, (x, y))
        before = donated
        donated, _ = step(donated, (x, y))
        assert before.params["6"]["weight"].is_deleted() is not cpu
        assert jax.tree_util.tree_leaves(before.opt_state)[0].is_deleted()
        if frozen:
            assert before.params["0"]["weight"].is_deleted()
    for a, b in zip(jax.tree_util.tree_leaves(kept), jax.tree_util.tree_leaves(donated)):
        np.testing.assert_array_equal(a, b)
