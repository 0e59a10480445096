"""torch.nn.utils.clip_grad_norm_ / clip_grad_value_ parity: the functions, the optax
transformations, the non-finite report, and a train step that clips (float64 1e-12,
float32 1e-6)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from funcnets import nn, optim, torch_io, train
from funcnets.optim import clip_grad as C
from helpers import assert_close

SHAPES = {"conv.weight": (3, 2, 2), "conv.bias": (3,), "fc.weight": (4, 5), "fc.bias": (4,)}


def _grads(seed, dtype, scale=1.0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in SHAPES.items():
        g = rng.standard_normal(shape) * scale * rng.uniform(0.1, 10)
        g[rng.random(shape) < 0.2] = 0.0  # zeros matter to the 0-"norm"
        out[name] = g.astype(dtype)
    return out


def _torch_clip(grads, max_norm, norm_type):
    ps = []
    for g in grads.values():
        p = torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.from_numpy(g.copy()).dtype))
        p.grad = torch.tensor(g.copy())
        ps.append(p)
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
    return {n: p.grad.numpy() for n, p in zip(grads, ps)}, total.item()


def _nest(flat):
    """{"conv.weight": a} -> {"conv": {"weight": a}} (funcnets' params layout)."""
    out = {}
    for k, v in flat.items():
        mod, leaf = k.split(".")
        out.setdefault(mod, {})[leaf] = v
    return out


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    norm_type=st.sampled_from([2.0, 1.0, float("inf"), float("-inf"), 0.0, 3.5, 0.5]),
    max_norm=st.sampled_from([0.0, 0.1, 1.0, 5.0, 1e3]),
    scale=st.sampled_from([1e-3, 1.0, 30.0]),
    f64=st.booleans(),
)
def test_clip_grad_norm_equals_torch(seed, norm_type, max_norm, scale, f64):
    dtype, tol = (np.float64, 1e-12) if f64 else (np.float32, 1e-6)
    grads = _grads(seed, dtype, scale)
    want, want_total = _torch_clip(grads, max_norm, norm_type)
    with jax.enable_x64(f64):
        got, total = C.clip_grad_norm_(_nest({k: jnp.asarray(v) for k, v in grads.items()}), max_norm, norm_type)
        assert total.dtype == dtype
        assert_close(total, want_total, tol, f"total norm p={norm_type}")
        for name, w in want.items():
            mod, leaf = name.split(".")
            assert got[mod][leaf].dtype == dtype
            assert_close(got[mod][leaf], w, tol, f"{name} p={norm_type}")
        # the optax transformation computes the same, and keeps the norm in its state
        t = C.clip_grad_norm(max_norm, norm_type)
        nested = _nest({k: jnp.asarray(v) for k, v in grads.items()})
        upd, state = t.update(nested, t.init(nested))
        assert_close(state.total_norm, want_total, tol, "state.total_norm")
        assert_close(upd["fc"]["weight"], want["fc.weight"], tol, "transformation")


def test_clip_grad_value_equals_torch_including_nan():
    g = np.array([[-3.0, -0.5, 0.0], [0.25, 2.0, np.nan]])
    p = torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
    p.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_([p], 1.0)
    with jax.enable_x64(True):
        got = C.clip_grad_value_({"w": jnp.asarray(g)}, 1.0)["w"]
        upd, _ = C.clip_grad_value(1.0).update({"w": jnp.asarray(g)}, C.clip_grad_value(1.0).init(None))
    np.testing.assert_array_equal(got, p.grad.numpy())
    np.testing.assert_array_equal(upd["w"], p.grad.numpy())


def test_error_if_nonfinite_outside_jit_raises_torchs_error_with_names():
    grads = _nest({k: jnp.asarray(v) for k, v in _grads(0, np.float32).items()})
    grads["fc"]["bias"] = grads["fc"]["bias"].at[1].set(jnp.inf)
    with pytest.raises(RuntimeError, match=r"non-finite.*fc\.bias.*error_if_nonfinite=False"):
        C.clip_grad_norm_(grads, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="cannot raise inside jax.jit"):
        jax.jit(lambda g: C.clip_grad_norm_(g, 1.0, error_if_nonfinite=True))(grads)
    # without the flag torch scales by the coefficient max_norm/(inf + 1e-6) = 0; so does this
    flat = {f"{m}.{k}": np.asarray(v) for m, d in grads.items() for k, v in d.items()}
    want, want_total = _torch_clip(flat, 1.0, 2.0)
    clipped, total = C.clip_grad_norm_(grads, 1.0)
    assert float(total) == want_total == float("inf")
    np.testing.assert_array_equal(clipped["fc"]["bias"], want["fc.bias"])  # 0·inf = nan, as torch
    np.testing.assert_array_equal(clipped["conv"]["weight"], want["conv.weight"])


MLP = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def _torch_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()


def _data(steps, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((steps, n, 5)) * 3, rng.integers(0, 3, (steps, n))


def test_train_step_with_clipping_equals_torch_and_reports_grad_norm(x64):
    steps = 10
    xs, ys = _data(steps)
    tnet = _torch_mlp()
    params = torch_io.load_state_dict(MLP, tnet.state_dict()).params
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9)
    norms = []
    for x, y in zip(xs, ys):
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tnet(torch.tensor(x)), torch.tensor(y)).backward()
        norms.append(torch.nn.utils.clip_grad_norm_(tnet.parameters(), 0.5).item())
        topt.step()
    opt = optax.chain(optim.clip_grad_norm(0.5), optim.sgd(0.1, momentum=0.9))
    ts = train.create_train_state(params, {}, opt, jax.random.PRNGKey(0))
    step = train.make_train_step(train.supervised_loss(MLP), opt)
    got = []
    for x, y in zip(xs, ys):
        ts, metrics = step(ts, (jnp.asarray(x), jnp.asarray(y)))
        got.append(float(metrics["grad_norm"]))
    assert min(norms) > 0.5  # clipping was active
    assert_close(got, norms, 1e-12, "grad_norm metric")
    ours = dict(MLP.named_parameters(ts.params))
    for name, p in tnet.named_parameters():
        assert_close(ours[name], p.detach().numpy(), 1e-12, name)
    # grad_norm=True reports the 2-norm without a clipping transformation
    plain = optim.sgd(0.1)
    ts = train.create_train_state(params, {}, plain, jax.random.PRNGKey(0))
    batch = (jnp.asarray(xs[0]), jnp.asarray(ys[0]))
    _, m = train.make_train_step(train.supervised_loss(MLP), plain, grad_norm=True, donate=False)(ts, batch)
    assert_close(m["grad_norm"], norms[0], 1e-12, "grad_norm=True")
    _, m = train.make_train_step(train.supervised_loss(MLP), plain, donate=False)(ts, batch)
    assert "grad_norm" not in m  # an extra pass over the gradients only when asked


def test_nonfinite_gradient_stops_training_with_step_and_names(x64):
    """A NaN in the batch at step 3: check_finite raises naming step 3 and the params."""
    xs, ys = _data(5)
    xs[3, 1, 2] = np.nan
    params, _ = MLP.init(jax.random.PRNGKey(0))
    opt = optax.chain(optim.clip_grad_norm(1.0, error_if_nonfinite=True), optim.sgd(0.1))
    ts = train.create_train_state(params, {}, opt, jax.random.PRNGKey(0))
    epoch = train.make_train_epoch(train.supervised_loss(MLP), opt)
    ts, metrics = epoch(ts, (jnp.asarray(xs), jnp.asarray(ys)))
    assert np.isfinite(metrics["grad_norm"][:3]).all() and not np.isfinite(metrics["grad_norm"][3])
    with pytest.raises(RuntimeError, match=r"at optimizer step 3 .*non-finite gradients: 0\.weight, 2\.bias, 2\.weight"):
        optim.check_finite(ts.opt_state, norm_type=2.0)
    # a finite run passes the check
    ts = train.create_train_state(params, {}, opt, jax.random.PRNGKey(0))
    ts, _ = epoch(ts, (jnp.asarray(xs[:3]), jnp.asarray(ys[:3])))
    optim.check_finite(ts.opt_state)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: C.clip_grad_norm(-1.0), "max_norm must be a number >= 0"),
        (lambda: C.clip_grad_norm(1.0, norm_type=float("nan")), "norm_type"),
        (lambda: C.clip_grad_value(-0.5), "clip_value must be a number >= 0"),
        (lambda: C.clip_grad_norm_({"w": jnp.ones(2)}, -2.0), "max_norm must be a number >= 0"),
    ],
)
def test_bad_options_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()
