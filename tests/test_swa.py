"""torch.optim.swa_utils parity: AveragedModel (SWA, EMA, use_buffers), update_bn and
SWALR against torch's own on a tiny BatchNorm model (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import swa_utils as TS

from funcnets import nn, torch_io
from funcnets.optim import swa_utils as S
from helpers import assert_close

NET = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def _torch_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(32, 3)
    ).double()


def _perturb(tnet, seed):
    """A training step's worth of change: new weights and buffers, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tnet.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)
        tnet.train()
        tnet(torch.randn(4, 1, 6, 6, generator=g, dtype=torch.float64))  # BN buffers move


def _compare(avg_state, tavg, what):
    loaded = torch_io.load_state_dict(NET, {k[len("module."):]: v for k, v in tavg.state_dict().items() if k != "n_averaged"})
    ours_p = dict(NET.named_parameters(avg_state.params))
    for name, p in NET.named_parameters(loaded.params):
        assert_close(ours_p[name], p, 1e-15, f"{what} {name}")
    ours_b = dict(NET.named_buffers(avg_state.buffers))
    for name, b in NET.named_buffers(loaded.state):
        assert_close(ours_b[name], b, 1e-15, f"{what} {name}")
        assert ours_b[name].dtype == b.dtype, name
    assert int(avg_state.n_averaged) == int(tavg.n_averaged)


CONFIGS = {
    "swa": (dict(), dict()),
    "swa_use_buffers": (dict(use_buffers=True), dict(use_buffers=True)),
    "ema_multi_use_buffers": (
        dict(multi_avg_fn=TS.get_ema_multi_avg_fn(0.9), use_buffers=True),
        dict(multi_avg_fn=S.get_ema_multi_avg_fn(0.9), use_buffers=True),
    ),
    "ema_per_tensor": (dict(avg_fn=TS.get_ema_avg_fn(0.7)), dict(avg_fn=S.get_ema_avg_fn(0.7))),
    "swa_multi": (dict(multi_avg_fn=TS.get_swa_multi_avg_fn()), dict(multi_avg_fn=S.get_swa_multi_avg_fn())),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_averaged_model_equals_torch(x64, name):
    tkw, okw = CONFIGS[name]
    tnet = _torch_net()
    tavg = TS.AveragedModel(tnet, **tkw)
    ours = S.AveragedModel(NET, **okw)
    loaded = torch_io.load_state_dict(NET, tnet.state_dict())
    avg = ours.init(loaded.params, loaded.state)
    update = jax.jit(ours.update_parameters)
    for i in range(5):
        _perturb(tnet, i)
        tavg.update_parameters(tnet)
        cur = torch_io.load_state_dict(NET, tnet.state_dict())
        avg = update(avg, cur.params, cur.state)
        _compare(avg, tavg, f"{name} update {i}")
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6))
    tavg.eval()
    assert_close(ours(avg, jnp.asarray(x))[0], tavg(torch.tensor(x)).detach().numpy(), 1e-12, "forward")


def test_update_bn_equals_torch(x64):
    tnet = _torch_net()
    _perturb(tnet, 0)
    loaded = torch_io.load_state_dict(NET, tnet.state_dict())
    rng = np.random.default_rng(3)
    loader = [(rng.standard_normal((n, 1, 6, 6)), rng.integers(0, 3, n)) for n in (4, 3, 5)]
    TS.update_bn([(torch.tensor(x), torch.tensor(y)) for x, y in loader], tnet)
    state = S.update_bn(loader, NET, loaded.params, loaded.state)
    want = dict(tnet.named_buffers())
    for name, b in NET.named_buffers(state):
        assert_close(b, want[name].numpy(), 1e-12, name)
    assert int(dict(NET.named_buffers(state))["1.num_batches_tracked"]) == 3
    assert NET.layers[1].momentum == 0.1  # the model itself is unchanged
    plain = nn.Sequential(nn.Linear(2, 2))  # no BatchNorm: nothing to do, as torch
    assert S.update_bn(loader, plain, {}, {"x": 1}) == {"x": 1}


def _torch_swalr(n, **kw):
    p = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))]
    o = torch.optim.SGD(p, lr=0.1)
    sched = TS.SWALR(o, **kw)
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        o.step()
        sched.step()
    return np.array(out)


@pytest.mark.parametrize(
    "kw", [dict(swa_lr=0.01), dict(swa_lr=0.3, anneal_epochs=7, anneal_strategy="linear"), dict(swa_lr=0.02, anneal_epochs=0)]
)
def test_swalr_equals_torch(x64, kw):
    want = _torch_swalr(30, **kw)
    sched = S.SWALR(0.1, **kw)
    np.testing.assert_array_equal(sched.lr_table(30), want)
    assert_close(sched(jnp.arange(30)), want, 1e-12, f"SWALR {kw}")


def test_bad_options():
    with pytest.raises(ValueError, match=r"Invalid decay value 1.5"):
        S.get_ema_multi_avg_fn(1.5)
    with pytest.raises(ValueError, match="Only one of avg_fn and multi_avg_fn"):
        S.AveragedModel(NET, avg_fn=S.get_swa_avg_fn(), multi_avg_fn=S.get_swa_multi_avg_fn())
    with pytest.raises(ValueError, match="anneal_epochs must be equal or greater than 0"):
        S.SWALR(0.1, 0.01, anneal_epochs=-1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        S.SWALR(0.1, 0.01, anneal_strategy="exp")
