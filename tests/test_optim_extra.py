"""torch.optim parity for Rprop, ASGD (and its averaged parameters ``ax``) and SparseAdam.

LeNet (float64, the test of semantics): parameters after 100 steps within 1e-9 relative;
float32 (realistic use): after 10 steps within 1e-4. SparseAdam's torch side needs sparse
gradients: on LeNet each gradient goes through ``grad.to_sparse()`` (present = nonzero,
our default), and an ``nn.Embedding(sparse=True)`` model checks the row mask
(``present_rows``), where looked-up rows have zero gradient columns.
"""

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as TF
from jax.test_util import check_grads

from funcnets import nn, optim, torch_io
from helpers import TorchNet, rel_err, to_np
from test_optim_more import _GRAD, MODEL, _lenet_run

OPTIMIZERS = {  # ours, torch's
    "rprop": (optim.rprop, torch.optim.Rprop),
    "asgd": (optim.asgd, torch.optim.ASGD),
    "sparse_adam": (optim.sparse_adam, torch.optim.SparseAdam),
}


@pytest.fixture
def torch_x64():
    """torch with float64 as its default dtype: ASGD keeps ``eta`` and ``mu`` in torch's
    default dtype (float32 otherwise, even for float64 parameters), funcnets in JAX's."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


class _SparseGrads:
    """torch's SparseAdam on dense-layout gradients, as its documentation suggests:
    each ``.grad`` replaced by ``grad.to_sparse()`` (its nonzero entries) before the step."""

    def __init__(self, named, **kw):
        self.params = [p for _, p in named]
        self.opt = torch.optim.SparseAdam(self.params, **kw)
        self.zero_grad, self.state = self.opt.zero_grad, self.opt.state

    def step(self):
        for p in self.params:
            p.grad = p.grad.to_sparse()
        self.opt.step()


# one option set per distinct code path; torch's foreach=True (its multi-tensor kernel)
# where torch has one, which funcnets accepts and ignores
CASES = {
    "rprop": ("rprop", dict()),
    # step sizes shrink to min_step after one sign change and reach max_step after 5 steps
    "rprop_clamps_foreach": ("rprop", dict(lr=2e-3, etas=(0.4, 1.5), step_sizes=(1e-3, 1.5e-2), foreach=True)),
    # small steps: ascending cross-entropy with larger ones drives softmax probabilities
    # subnormal within 12 steps, where XLA:CPU flushes to 0 a gradient torch keeps
    # (1.2e-319), and Rprop's sign(0) = 0 then differs from torch's sign = 1
    "rprop_maximize": ("rprop", dict(lr=1e-3, maximize=True, step_sizes=(1e-4, 5e-3))),
    "asgd": ("asgd", dict()),  # t0 = 1e6: ax follows θ
    # μ < 1 from step t0 + 3 = 5; torch's foreach kernel has its own branch for maximize with weight decay
    "asgd_averaging_wd_maximize_foreach": (
        "asgd", dict(lr=0.01, lambd=1e-3, alpha=0.6, t0=2, weight_decay=1e-2, maximize=True, foreach=True)
    ),
    "sparse_adam": ("sparse_adam", dict()),  # its other options: on the embedding below (torch's sparse kernels are slow on LeNet)
}


def _torch_opt(name, kw):
    if name == "sparse_adam":
        return lambda named: _SparseGrads(named, **kw)
    return lambda named: OPTIMIZERS[name][1](named, **kw)


def _check_case(name, steps, dtype, tol):
    opt_name, kw = CASES[name]
    ours, state, tnet, topt = _lenet_run(OPTIMIZERS[opt_name][0](**kw), _torch_opt(opt_name, kw), steps, dtype)
    err = max(rel_err(ours[n], to_np(p)) for n, p in tnet.named_parameters())
    assert err <= tol, f"parameters: relative error {err:.2e}"
    if opt_name == "asgd":  # the averaged parameters too
        ax = dict(MODEL.named_parameters(optim.averaged_params(state)))
        err = max(rel_err(ax[n], to_np(topt.state[p]["ax"])) for n, p in tnet.named_parameters())
        assert err <= tol, f"ax: relative error {err:.2e}"
        if kw.get("t0", 1e6) < steps - 2:  # averaging has started: ax is not θ
            assert max(rel_err(ax[n], ours[n]) for n in ours) > 100 * tol
    if name == "rprop_clamps_foreach":  # both clamps were hit
        sizes = np.concatenate([np.ravel(s) for s in jax.tree_util.tree_leaves(state[-1].step_size)])
        lo, hi = kw["step_sizes"]
        assert np.isclose(sizes, lo, rtol=1e-6).any() and np.isclose(sizes, hi, rtol=1e-6).any()


@pytest.mark.parametrize("name", list(CASES))
def test_float64_100_steps(x64, torch_x64, name):
    _check_case(name, 100, np.float64, 1e-9)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_10_steps(name):
    _check_case(name, 10, np.float32, 1e-4)


def test_lenet_gradients_have_absent_entries(x64):
    """SparseAdam's LeNet cases test the mask: gradients have exact zeros (fc1 inputs
    that ReLU and max-pooling zero), which torch's ``to_sparse`` leaves out."""
    torch.manual_seed(0)
    params = torch_io.load_state_dict(MODEL, TorchNet().double().state_dict()).params
    rng = np.random.default_rng(1)
    g = _GRAD(params, jnp.asarray(rng.standard_normal((4, 1, 32, 32))), jnp.asarray(rng.integers(0, 10, 4), jnp.int32))
    zeros = sum(int(jnp.sum(leaf == 0)) for leaf in jax.tree_util.tree_leaves(g))
    assert zeros > 100


# -- SparseAdam on nn.Embedding(sparse=True): torch's row semantics through present_rows


EMBEDDING_OPTIONS = [dict(lr=0.05, betas=(0.8, 0.95)), dict(lr=0.02, eps=1e-6, maximize=True)]


def _embedding_run(steps, dtype, kw, use_mask=True):
    """An embedding (padding_idx 0) looked up at 5 random rows of 12 per step, then ReLU and
    a fixed head into cross-entropy: looked-up rows get zero gradient columns (ReLU),
    which torch's sparse gradient holds all the same."""
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(0)
    temb = torch.nn.Embedding(12, 6, padding_idx=0, sparse=True).to(tdtype)
    head = torch.randn(6, 3, dtype=tdtype)
    rng = np.random.default_rng(2)
    idx, ys = rng.integers(0, 12, (steps, 5)), rng.integers(0, 3, (steps, 5))
    init = to_np(temb.weight).copy()
    topt = torch.optim.SparseAdam(temb.parameters(), **kw)
    for i, y in zip(idx, ys):
        topt.zero_grad()
        TF.cross_entropy(temb(torch.tensor(i)).relu() @ head, torch.tensor(y)).backward()
        assert temb.weight.grad.is_sparse
        topt.step()

    emb = nn.Embedding(12, 6, padding_idx=0)
    jhead = jnp.asarray(to_np(head))
    params = {"weight": jnp.asarray(init)}

    def loss(p, i, y):
        logits = jax.nn.relu(emb.apply(p, {}, i)[0]) @ jhead
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    opt = optim.sparse_adam(**kw)

    @jax.jit
    def step(p, s, i, y):
        mask = {"weight": optim.present_rows(i, 12, padding_idx=0)} if use_mask else None
        u, s = opt.update(jax.grad(loss)(p, i, y), s, p, mask=mask)
        return optax.apply_updates(p, u), s

    state = opt.init(params)
    for i, y in zip(idx, ys):
        params, state = step(params, state, jnp.asarray(i), jnp.asarray(y))
    err = rel_err(params["weight"], to_np(temb.weight))
    moments = max(rel_err(state[-2].exp_avg["weight"], to_np(topt.state[temb.weight]["exp_avg"])),
                  rel_err(state[-2].exp_avg_sq["weight"], to_np(topt.state[temb.weight]["exp_avg_sq"])))
    return err, moments


@pytest.mark.parametrize("kw", EMBEDDING_OPTIONS)
def test_embedding_rows_float64_100_steps(x64, torch_x64, kw):
    err, moments = _embedding_run(100, np.float64, kw)
    assert err <= 1e-9 and moments <= 1e-9


@pytest.mark.parametrize("kw", EMBEDDING_OPTIONS)
def test_embedding_rows_float32_10_steps(kw):
    err, moments = _embedding_run(10, np.float32, kw)
    assert err <= 1e-4 and moments <= 1e-4


def test_embedding_without_mask_is_not_torchs_rows(x64, torch_x64):
    """The default (present = nonzero) skips the zero columns of looked-up rows, which torch
    updates: the two definitions differ on this model, so the mask matters."""
    err, moments = _embedding_run(20, np.float64, EMBEDDING_OPTIONS[0], use_mask=False)
    assert err > 1e-4 and moments > 1e-4


def test_present_rows_is_torchs_sparse_gradient_indices():
    idx = torch.tensor([[0, 3, 3], [7, 1, 0]])
    for padding_idx in (None, 0, -1):
        temb = torch.nn.Embedding(8, 2, padding_idx=padding_idx, sparse=True)
        temb(idx).sum().backward()
        rows = set(temb.weight.grad.coalesce().indices()[0].tolist())
        mask = optim.present_rows(jnp.asarray(idx.numpy()), 8, padding_idx)
        assert mask.shape == (8, 1)
        assert set(np.flatnonzero(np.asarray(mask[:, 0])).tolist()) == rows


def test_sparse_adam_leaves_absent_entries_and_their_moments():
    opt = optim.sparse_adam(lr=0.1)
    params = jnp.array([1.0, 2.0, 3.0])
    state = opt.init(params)
    u, state = opt.update(jnp.array([1.0, 1.0, 1.0]), state, params)
    u, state = opt.update(jnp.array([0.0, -1.0, 5.0]), state, params, mask=jnp.array([True, True, False]))
    m = state[0].exp_avg
    np.testing.assert_allclose(m, [0.09, 0.09 - 0.1, 0.1], rtol=1e-6)  # entry 0 present (g = 0), entry 2 absent
    assert u[2] == 0 and u[0] != 0
    assert int(state[0].count) == 2
    with pytest.raises(ValueError, match="mask must be a pytree like the gradients"):
        opt.update({"a": params, "b": params}, opt.init({"a": params, "b": params}), mask={"a": jnp.array(True)})


# -- ASGD's averaged parameters, schedules


def test_averaged_params_through_param_groups(x64):
    """Each group's ``ax`` holds only its own parameters; ``averaged_params`` merges them."""
    params = {"fc1": {"weight": jnp.ones((3, 2)), "bias": jnp.ones(3)}, "fc3": {"weight": jnp.ones((2, 3))}}
    grads = jax.tree_util.tree_map(lambda p: 0.5 * p, params)
    grouped = optim.param_groups(optim.asgd, [{"params": "fc3", "lambd": 1e-3}], lr=0.1, t0=0)
    single = optim.asgd(lr=0.1, t0=0)
    out = []
    for opt in (grouped, single):
        state, p, update = opt.init(params), params, jax.jit(opt.update)
        for _ in range(4):
            u, state = update(grads, state, p)
            p = optax.apply_updates(p, u)
        out.append(optim.averaged_params(state))
    assert jax.tree_util.tree_structure(out[0]) == jax.tree_util.tree_structure(params)
    np.testing.assert_array_equal(out[0]["fc1"]["weight"], out[1]["fc1"]["weight"])
    np.testing.assert_array_equal(out[0]["fc1"]["bias"], out[1]["fc1"]["bias"])
    assert not np.array_equal(out[0]["fc3"]["weight"], out[1]["fc3"]["weight"])  # its own λ


def test_averaged_params_error():
    with pytest.raises(ValueError, match="expected the state of optim.asgd"):
        optim.averaged_params(optim.sgd(0.1).init({"w": jnp.ones(2)}))


class _Scheduled:
    """A torch optimizer whose ``step`` also steps ``ExponentialLR(gamma=0.9)``."""

    def __init__(self, opt):
        self.opt, self.sched = opt, torch.optim.lr_scheduler.ExponentialLR(getattr(opt, "opt", opt), gamma=0.9)
        self.zero_grad, self.state = opt.zero_grad, opt.state

    def step(self):
        self.opt.step()
        self.sched.step()


@pytest.mark.parametrize("name,kw", [
    ("asgd", dict(lr=0.02, lambd=0.05, t0=3)),  # η of step t+1 uses the lr of step t
    ("sparse_adam", dict(lr=2e-3)),
    ("rprop", dict(lr=2e-3)),  # torch reads lr once, at the first step
])
def test_lr_schedule_is_torchs_scheduler(x64, torch_x64, name, kw):
    ours = OPTIMIZERS[name][0](**{**kw, "lr": optax.exponential_decay(kw["lr"], 1, 0.9)})
    ours_state = _lenet_run(ours, lambda p: _Scheduled(_torch_opt(name, kw)(p)), 10, np.float64)
    err = max(rel_err(ours_state[0][n], to_np(p)) for n, p in ours_state[2].named_parameters())
    assert err <= 1e-9


# -- Rprop's sign rule, step by step against torch


def test_rprop_states_step_by_step(x64, torch_x64):
    """The gradient zeroed after a sign change (``prev = 0``, so the next step keeps its
    size), both clamps, and NaN-free zeros, on a hand-picked gradient sequence."""
    gs = np.array([[1.0, 1.0, 0.0, 2.0], [2.0, -1.0, 0.0, 3.0], [-1.0, -1.0, 1.0, 4.0],
                   [-1.0, 1.0, 1.0, 5.0], [3.0, 1.0, -1.0, 6.0], [3.0, 1.0, -1.0, 7.0]])
    kw = dict(lr=0.1, etas=(0.5, 1.5), step_sizes=(0.04, 0.2))
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.Rprop([w], **kw)
    opt = optim.rprop(**kw)
    p = jnp.zeros(4)
    state = opt.init(p)
    for g in gs:
        w.grad = torch.tensor(g)
        topt.step()
        u, state = opt.update(jnp.asarray(g), state, p)
        p = optax.apply_updates(p, u)
        np.testing.assert_array_equal(p, to_np(w))
        np.testing.assert_array_equal(state[-1].prev, to_np(topt.state[w]["prev"]))
        np.testing.assert_array_equal(state[-1].step_size, to_np(topt.state[w]["step_size"]))
    assert set(np.asarray(state[-1].step_size).tolist()) >= {0.04, 0.2}


def test_optax_rprop_is_not_torchs():
    """Why rprop is not optax.rprop: optax's first update is 0 (it moves one step late)."""
    g = jnp.array([1.0, -2.0])
    ours, theirs = optim.rprop(lr=0.1), optax.rprop(0.1)
    np.testing.assert_allclose(ours.update(g, ours.init(g))[0], [-0.1, 0.1])
    np.testing.assert_array_equal(theirs.update(g, theirs.init(g))[0], [0.0, 0.0])


# -- signatures, ignored arguments, dtypes, errors, differentiability


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_signature_is_torchs(name):
    """Names, order, positional/keyword-only and defaults of torch's constructor."""
    ours, theirs = OPTIMIZERS[name]
    t = [(p.name, p.kind, p.default) for p in inspect.signature(theirs.__init__).parameters.values()][2:]
    o = [(p.name, p.kind, p.default) for p in inspect.signature(ours).parameters.values()]
    assert o == t


@pytest.mark.parametrize("name", ["rprop", "asgd"])
def test_torch_kernel_arguments_change_nothing(x64, name):
    ours, _ = OPTIMIZERS[name]
    kernel = dict(foreach=True, capturable=True, differentiable=True)
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}

    def three_steps(opt):
        s, p = opt.init(params), params
        for k in range(3):
            u, s = opt.update({"w": jnp.cos(p["w"] * 3 + k)}, s, p)
            p = optax.apply_updates(p, u)
        return p["w"]

    np.testing.assert_array_equal(three_steps(ours(t0=1, **kernel) if name == "asgd" else ours(**kernel)),
                                  three_steps(ours(t0=1) if name == "asgd" else ours()))


@pytest.mark.parametrize("name,kw", [("rprop", dict(lr=0.1)), ("asgd", dict(lr=0.1, t0=0)), ("sparse_adam", dict(lr=0.1))])
def test_inject_hyperparams_under_jit(name, kw):
    """Every numeric hyperparameter as a traced array (``optax.inject_hyperparams``) gives
    the same steps as the plain numbers."""
    ours = OPTIMIZERS[name][0]
    params = {"w": jnp.array([1.0, 2.0, 3.0])}
    injected, plain = optax.inject_hyperparams(ours)(**kw), ours(**kw)
    s1, s2 = injected.init(params), plain.init(params)
    update = jax.jit(injected.update)
    for k in range(3):
        g = {"w": jnp.array([1.0, 0.0, -1.0]) * (k - 0.5)}
        u1, s1 = update(g, s1, params)
        u2, s2 = plain.update(g, s2, params)
        np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float32_params_stay_float32_under_x64(x64, name):
    ours, _ = OPTIMIZERS[name]
    params = {"w": jnp.ones((2, 3), jnp.float32)}
    opt = ours(t0=0) if name == "asgd" else ours()
    state = opt.init(params)
    for _ in range(3):
        updates, state = opt.update({"w": jnp.full((2, 3), 0.5, jnp.float32)}, state, params)
        params = optax.apply_updates(params, updates)
        assert updates["w"].dtype == jnp.float32
    if name == "asgd":
        assert optim.averaged_params(state)["w"].dtype == jnp.float32


@pytest.mark.parametrize("name,kw", [
    ("rprop", dict(lr=0.3)), ("asgd", dict(lr=0.1, t0=0, weight_decay=0.1)), ("sparse_adam", dict(lr=0.1)),
])
def test_update_is_differentiable(x64, name, kw):
    """torch's ``differentiable=True`` analog: gradients through three steps agree with
    finite differences (Rprop's moves are piecewise constant in θ: its derivative is the
    identity, which finite differences see too)."""
    opt = OPTIMIZERS[name][0](**kw)
    target = jnp.array([0.3, -1.2, 2.0, 0.0])

    def after_three_steps(p):
        s = opt.init(p)
        for _ in range(3):
            g = jax.grad(lambda q: jnp.sum((q - target) ** 2 * jnp.arange(1.0, 5.0) * jnp.array([1, 1, 1, 0])))(p)
            u, s = opt.update(g, s, p)  # the last entry's gradient is 0: absent for SparseAdam
            p = optax.apply_updates(p, u)
        return p

    check_grads(jax.jit(after_three_steps), (jnp.array([1.0, 0.5, -0.7, 0.4]),), order=1, modes=["rev"])


BAD = [  # (optimizer, options torch refuses)
    ("rprop", dict(lr=-0.1)), ("rprop", dict(etas=(1.0, 1.2))), ("rprop", dict(etas=(0.5, 1.0))),
    ("rprop", dict(etas=(0.0, 2.0))), ("rprop", dict(lr=float("nan"))),
    ("asgd", dict(lr=-1.0)), ("asgd", dict(weight_decay=-0.1)),
    ("sparse_adam", dict(lr=0.0)), ("sparse_adam", dict(lr=-1e-3)), ("sparse_adam", dict(eps=0.0)),
    ("sparse_adam", dict(betas=(1.0, 0.9))), ("sparse_adam", dict(betas=(0.9, -0.1))),
]


@pytest.mark.parametrize("name,kw", BAD)
def test_bad_hyperparameters_torchs_message(name, kw):
    ours, theirs = OPTIMIZERS[name]
    with pytest.raises(ValueError) as torch_error:
        theirs([torch.zeros(2, requires_grad=True)], **kw)
    with pytest.raises(ValueError, match="^" + re.escape(str(torch_error.value))):
        ours(**kw)
