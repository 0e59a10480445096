"""Gradient accumulation in the train step: equal to the large-batch update (float64
1e-12), and with BatchNorm equal to torch's accumulation loop (statistics per
micro-batch, k running-statistics updates per optimizer step)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from funcnets import nn, optim, torch_io, train
from helpers import assert_close

MLP = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
BN_NET = nn.Sequential(
    nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)
)


def _torch_bn_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(48, 3)
    ).double()


def test_accumulated_step_equals_the_large_batch_step(x64):
    rng = np.random.default_rng(0)
    xs, ys = jnp.asarray(rng.standard_normal((3, 12, 5))), jnp.asarray(rng.integers(0, 3, (3, 12)))
    params, _ = MLP.init(jax.random.PRNGKey(0))
    opt = optim.adam(1e-2)
    loss_fn = train.supervised_loss(MLP)
    big = train.create_train_state(params, {}, opt, jax.random.PRNGKey(1))
    acc = train.create_train_state(params, {}, opt, jax.random.PRNGKey(1))
    big_step = train.make_train_step(loss_fn, opt, grad_norm=True)
    acc_step = train.make_train_step(loss_fn, opt, accumulate_steps=4, grad_norm=True)
    for x, y in zip(xs, ys):
        big, mb = big_step(big, (x, y))
        acc, ma = acc_step(acc, (x, y))
        for k in ("loss", "grad_norm"):  # mean of micro-batch metrics = batch metric
            assert_close(ma[k], mb[k], 1e-12, k)
        assert_close(ma["accuracy"], mb["accuracy"], 1e-6, "accuracy")  # a float32 mean
    for name, p in MLP.named_parameters(big.params):
        assert_close(dict(MLP.named_parameters(acc.params))[name], p, 1e-12, name)
    assert int(acc.step) == 3  # optimizer steps, not micro-batches


def test_batchnorm_accumulation_equals_torchs_loop(x64):
    k, micro, steps = 3, 2, 2
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((steps, k * micro, 1, 6, 6))
    ys = rng.integers(0, 3, (steps, k * micro))
    tnet = _torch_bn_net()
    loaded = torch_io.load_state_dict(BN_NET, tnet.state_dict())
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9)
    for x, y in zip(xs, ys):
        topt.zero_grad()
        for xm, ym in zip(torch.tensor(x).chunk(k), torch.tensor(y).chunk(k)):
            (torch.nn.functional.cross_entropy(tnet(xm), ym) / k).backward()
        topt.step()
    opt = optim.sgd(0.1, momentum=0.9)
    ts = train.create_train_state(loaded.params, loaded.state, opt, jax.random.PRNGKey(0))
    step = train.make_train_step(train.supervised_loss(BN_NET), opt, accumulate_steps=k)
    for x, y in zip(xs, ys):
        ts, _ = step(ts, (jnp.asarray(x), jnp.asarray(y)))
    ours = dict(BN_NET.named_parameters(ts.params))
    for name, p in tnet.named_parameters():
        assert_close(ours[name], p.detach().numpy(), 1e-12, name)
    buffers = dict(BN_NET.named_buffers(ts.model_state))
    for name, b in tnet.named_buffers():
        assert_close(buffers[name], b.numpy(), 1e-12, name)
    assert int(buffers["1.num_batches_tracked"]) == k * steps  # one update per micro-batch


def test_bad_accumulation_is_refused():
    opt = optim.sgd(0.1)
    with pytest.raises(ValueError, match="accumulate_steps must be an integer >= 1"):
        train.make_train_step(train.supervised_loss(MLP), opt, accumulate_steps=0)
    params, _ = MLP.init(jax.random.PRNGKey(0))
    ts = train.create_train_state(params, {}, opt, jax.random.PRNGKey(0))
    step = train.make_train_step(train.supervised_loss(MLP), opt, accumulate_steps=4)
    with pytest.raises(ValueError, match=r"4 equal micro-batches, but got a batch of 10 .*divisible by 4"):
        step(ts, (jnp.zeros((10, 5)), jnp.zeros((10,), jnp.int32)))
    with pytest.raises(ValueError, match="accumulate_steps must be an integer >= 1"):
        optim.split_microbatches(jnp.zeros((4, 2)), 0)
