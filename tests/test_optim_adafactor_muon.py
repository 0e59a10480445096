"""torch.optim parity for Adafactor and Muon.

Adafactor: LeNet (its 4-D conv kernels and 2-D weights factored, 1-D biases not) float64
parameters after 100 steps within 1e-9 relative, float32 after 10 steps within 1e-4; every
code path (0-D, 1-D, 2-D, 3-D parameters, maximize, weight decay, eps₁ None and given,
beta2_decay, d) on a small tree within 1e-12 in float64.

Muon: its Newton-Schulz iteration runs in bfloat16, as torch's. Ours rounds each product
as torch's CPU kernels do (float32 sums, one rounding), so small matrices orthogonalise
bitwise as torch's; larger ones sum in another order and land within a few bfloat16 ulps
(2⁻⁶ absolute on entries of size ~0.5). Now and then an entry rounds to the other bfloat16
neighbour, so trajectories are compared on fixed gradients (a stack of weight matrices,
nesterov on/off, every adjust_lr_fn, weight decay, schedules) within 5e-4 relative after 30
steps, float64 and float32, where a wrong option gives 7e-3 and more; LeNet (Muon on its
linear weights, AdamW on the rest, split with optax.partition) after one step within 2e-3.
With gradients that depend on the weights the iteration amplifies such a flip (slope up to
a⁵ ≈ 500 at small singular values): torch's own float32 and float64 runs part by 3% in two
LeNet steps, so no longer LeNet trajectory is compared.
"""

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newtonschulz

from funcnets import optim
from funcnets.optim.muon import zeropower_via_newtonschulz
from helpers import rel_err, to_np
import test_optim_more
from test_optim_more import _max_err


class _Scheduled:
    """A torch optimizer whose ``step`` also steps ``ExponentialLR(gamma)``."""

    def __init__(self, opt, gamma):
        self.opt, self.sched = opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
        self.zero_grad = opt.zero_grad

    def step(self):
        self.opt.step()
        self.sched.step()


torch_x64 = test_optim_more.torch_x64  # a fixture: torch's default dtype float64 for the test

# -- Adafactor

LENET_CASES = {
    "default": dict(),
    # eps₁ = 1e-12, not smaller: torch clamps V̂ at eps₁², which underflows to 0 in float32
    # for eps₁ < 1e-23, and then a zero gradient entry steps by 0·∞ = NaN (torch's too)
    "all_options": dict(lr=3e-3, weight_decay=0.1, maximize=True, eps=(1e-12, 1e-2), beta2_decay=-0.5, d=2.0),
}


def test_adafactor_lenet_float64_100_steps(x64, torch_x64):
    assert _max_err(optim.adafactor(), torch.optim.Adafactor, 100, np.float64) <= 1e-9


@pytest.mark.parametrize("name", list(LENET_CASES))
def test_adafactor_lenet_float32_10_steps(name):
    kw = LENET_CASES[name]
    assert _max_err(optim.adafactor(**kw), lambda p: torch.optim.Adafactor(p, **kw), 10, np.float32) <= 1e-4


def test_adafactor_lr_schedule(x64, torch_x64):
    """A schedule moves both ρₜ's cap and the weight decay, as torch's scheduler moves lr."""
    ours = optim.adafactor(optax.exponential_decay(0.5, 1, 0.9), weight_decay=0.5)
    theirs = lambda p: _Scheduled(torch.optim.Adafactor(p, lr=0.5, weight_decay=0.5), 0.9)  # noqa: E731
    assert _run_small(ours, theirs, steps=30) <= 1e-12


SHAPES = {"s": (), "b": (5,), "w": (4, 3), "k": (2, 3, 4), "k4": (2, 1, 3, 5)}


def _run_small(ours, theirs, dtype=np.float64, steps=12, grad_scale=1.0, shapes=SHAPES, pull=0.5):
    """Both optimizers on a tree of ``shapes``, with gradients ``noise + pull·θ`` (scaled by
    ``grad_scale``); the max relative error after ``steps`` steps."""
    rng = np.random.default_rng(0)
    init = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    noise = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()} for _ in range(steps)]
    grad = lambda t, p: {k: (noise[t][k] + pull * np.asarray(p[k])) * dtype(grad_scale) for k in p}  # noqa: E731
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    topt = theirs(list(tparams.values()))
    for t in range(steps):
        for k, v in grad(t, {k: to_np(p) for k, p in tparams.items()}).items():
            tparams[k].grad = torch.tensor(np.asarray(v, dtype))
        topt.step()
    params = {k: jnp.asarray(v) for k, v in init.items()}
    update = jax.jit(ours.update)
    state = ours.init(params)
    for t in range(steps):
        updates, state = update({k: jnp.asarray(v, dtype) for k, v in grad(t, params).items()}, state, params)
        params = optax.apply_updates(params, updates)
    assert all(params[k].dtype == dtype for k in params)
    return max(rel_err(params[k], to_np(p)) for k, p in tparams.items())


PATH_CASES = {
    "default": dict(),
    "eps1_given_eps2": dict(eps=(1e-3, 0.5)),  # eps₂ > RMS(θ): the floor is the step's scale
    "beta2_decay_d": dict(beta2_decay=-0.3, d=1.5),
    "zero_beta2_decay": dict(beta2_decay=0.0),  # β̂ = 0: V̂ is the last g² alone
    "wd_maximize_all": dict(lr=0.2, beta2_decay=-0.6, eps=(1e-4, 1e-2), d=1.2, weight_decay=0.3, maximize=True),
}


@pytest.mark.parametrize("name", list(PATH_CASES))
def test_adafactor_code_paths_float64(x64, torch_x64, name):
    """0-D and 1-D parameters unfactored, 2-D, 3-D and 4-D factored over the last two dims."""
    kw = PATH_CASES[name]
    assert _run_small(optim.adafactor(**kw), lambda p: torch.optim.Adafactor(p, **kw)) <= 1e-12


@pytest.mark.parametrize("dtype,scale", [(np.float32, 1e-9), (np.float64, 1e-10)])
def test_adafactor_eps1_none_is_the_dtypes_eps(x64, torch_x64, dtype, scale):
    """Gradients so small that eps₁ decides the step, with eps₁ the parameters' machine
    epsilon (float32's 1.2e-7, float64's 2.2e-16) when it is None: in float32 g² < eps₁²
    (the last clamp, every parameter), in float64 eps₁^1.5 < g² < eps₁ (the clamp of
    mean(R), factored parameters).
    A large d, so that clipping, which undoes a scale of U, does not hide eps₁."""
    eps1, theirs = float(np.finfo(dtype).eps), lambda p: torch.optim.Adafactor(p, lr=1.0, d=1e4)  # noqa: E731
    err = _run_small(optim.adafactor(lr=1.0, d=1e4), theirs, dtype, grad_scale=scale)
    assert err <= (1e-5 if dtype == np.float32 else 1e-12)
    ours = lambda e: optim.adafactor(lr=1.0, eps=(e, 1e-3), d=1e4)  # noqa: E731
    assert _run_small(ours(eps1), theirs, dtype, grad_scale=scale) == err
    assert _run_small(ours(eps1 * 4), theirs, dtype, grad_scale=scale) > 1e-3


def test_adafactor_float32_small_tree(x64):
    """Under x64 too: float32 parameters keep float32 updates and state."""
    assert _run_small(optim.adafactor(lr=0.05, weight_decay=0.1), lambda p: torch.optim.Adafactor(p, lr=0.05, weight_decay=0.1),
                      np.float32) <= 1e-5


def test_adafactor_torch_foreach_is_the_same_update(x64, torch_x64):
    kw = dict(lr=0.05, weight_decay=0.1, maximize=True)
    assert _run_small(optim.adafactor(**kw, foreach=True), lambda p: torch.optim.Adafactor(p, **kw, foreach=True)) <= 1e-12


def test_adafactor_state_factors_last_two_dims():
    params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
    state = optim.adafactor().init(params)
    assert state.row_var["k4"].shape == (2, 1, 3, 1) and state.col_var["k4"].shape == (2, 1, 1, 5)
    assert state.row_var["w"].shape == (4, 1) and state.col_var["w"].shape == (1, 3)
    assert state.variance["b"].shape == (5,) and state.variance["s"].shape == ()
    assert state.variance["w"].shape == state.row_var["b"].shape == (0,)


def test_adafactor_inject_hyperparams(x64):
    """Every numeric hyperparameter as a traced array (optax.inject_hyperparams): the same step."""
    params = {k: jnp.asarray(np.random.default_rng(0).standard_normal(s)) for k, s in SHAPES.items()}
    kw = dict(lr=0.05, beta2_decay=-0.6, d=1.5, weight_decay=0.1)
    opt, plain = optax.inject_hyperparams(optim.adafactor)(**kw), optim.adafactor(**kw)
    ours = jax.jit(opt.update)(params, opt.init(params), params)[0]
    for k in params:
        np.testing.assert_allclose(ours[k], plain.update(params, plain.init(params), params)[0][k], rtol=1e-14, atol=1e-16)


def test_adafactor_needs_params():
    opt = optim.adafactor()
    g = {"w": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update(g, opt.init(g))


# -- Muon


# A > B and A < B (the transposed iteration), square, and every adjust_lr_fn branch
MUON_SHAPES = {"fc1": (16, 6), "fc2": (10, 16), "fc3": (10, 10), "fc4": (3, 10)}

MUON_CASES = {
    "default": dict(lr=0.02),
    "no_nesterov_original_no_decay": dict(lr=0.02, nesterov=False, momentum=0.9, adjust_lr_fn="original", weight_decay=0.0),
    "match_rms_adamw": dict(lr=0.01, adjust_lr_fn="match_rms_adamw", weight_decay=0.05),
    "spectral_small_momentum_ns": dict(lr=0.05, momentum=0.3, ns_steps=3, ns_coefficients=(2.0, -1.5, 0.5), eps=1e-5,
                                       adjust_lr_fn="spectral_unclamped"),
}
# The bfloat16 iteration sums its products in another order than torch's, and now and then
# an entry rounds to the other bfloat16 neighbour (torch's lerp also rounds its FMA once, we
# twice, a float64 ulp): that step of that weight moves by lr·2⁻⁸·|O| more or less. Over 30
# steps on these matrices that is 1e-6 to 1.1e-4 relative (it depends on XLA's flags); a
# wrong Nesterov flag or a weight decay 0.05 off gives 7e-3 to 7e-2.
MUON_TOL = 5e-4


def _muon_run(kw, dtype, steps=30, theirs=None):
    """Muon on a stack of weight matrices with gradients that do not depend on the weights.
    Where they do (training), a gradient one float ulp away rounds an entry to the other
    bfloat16 neighbour now and then, and the iteration, whose slope at small singular
    values is up to a⁵ ≈ 500, spreads it: LeNet trained by torch's Muon in float32 and in
    float64 parts by 3% in two steps. Fixed gradients compare the optimizer itself."""
    theirs = theirs or (lambda p: torch.optim.Muon(p, **kw))
    return _run_small(optim.muon(**kw), theirs, dtype, steps, shapes=MUON_SHAPES, pull=0.0)


@pytest.mark.parametrize("name", list(MUON_CASES))
def test_muon_float64_30_steps(x64, torch_x64, name):
    assert _muon_run(MUON_CASES[name], np.float64) <= MUON_TOL


@pytest.mark.parametrize("name", ["default", "match_rms_adamw"])
def test_muon_float32_30_steps(name):
    assert _muon_run(MUON_CASES[name], np.float32) <= MUON_TOL


def test_muon_tolerance_sees_a_wrong_option(x64, torch_x64):
    theirs = lambda p: torch.optim.Muon(p, lr=0.02)  # noqa: E731
    assert _muon_run(dict(lr=0.02, weight_decay=0.15), np.float64, theirs=theirs) > 20 * MUON_TOL


def test_muon_lr_schedule(x64, torch_x64):
    kw = dict(lr=optax.exponential_decay(0.02, 1, 0.9))
    assert _muon_run(kw, np.float64, 20, lambda p: _Scheduled(torch.optim.Muon(p, lr=0.02), 0.9)) <= MUON_TOL


class _TwoOptimizers:
    """torch's recipe: Muon for the 2-D parameters, AdamW for the rest."""

    def __init__(self, named, muon_kw, adamw_kw):
        named = list(named)
        self.opts = [torch.optim.Muon([p for _, p in named if p.ndim == 2], **muon_kw),
                     torch.optim.AdamW([p for _, p in named if p.ndim != 2], **adamw_kw)]

    def zero_grad(self):
        for o in self.opts:
            o.zero_grad()

    def step(self):
        for o in self.opts:
            o.step()


def _muon_and_adamw(muon_kw, adamw_kw):
    """Muon on the 2-D parameters, AdamW on the rest, split by ``optax.partition`` on the
    parameters' rank as torch's docs split them."""
    return optax.partition(
        {"muon": optim.muon(**muon_kw), "adamw": optim.adamw(**adamw_kw)},
        lambda params: jax.tree_util.tree_map(lambda p: "muon" if p.ndim == 2 else "adamw", params),
    )


LENET_MUON = dict(lr=0.02, weight_decay=0.01), dict(lr=1e-3, weight_decay=0.01)


def test_muon_with_adamw_on_lenet_first_step(x64, torch_x64):
    """Muon on LeNet's linear weights (120, 576), (84, 120), (10, 84), AdamW on its conv
    kernels and biases: one step, torch's own bfloat16 iteration, within 2e-3 (its ulps at
    these sizes). In float64, so that both iterations start from the same bfloat16 matrix:
    float32 gradients one ulp apart round a few entries to the other bfloat16, which the
    iteration amplifies (5e-3 after one float32 step). Later steps part chaotically (see
    ``_muon_run``)."""
    assert _max_err(_muon_and_adamw(*LENET_MUON), lambda p: _TwoOptimizers(p, *LENET_MUON), 1, np.float64) <= 2e-3


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (1, 7)])
def test_newtonschulz_bitwise_torchs_on_small_matrices(x64, shape):
    g = np.random.default_rng(sum(shape)).standard_normal(shape)
    expected = torch_newtonschulz(torch.tensor(g), (3.4445, -4.775, 2.0315), 5, 1e-7)
    ours = zeropower_via_newtonschulz(jnp.asarray(g))
    assert ours.dtype == jnp.bfloat16 and ours.shape == shape
    np.testing.assert_array_equal(np.asarray(ours, np.float32), expected.float().numpy())


@pytest.mark.parametrize("shape", [(10, 84), (576, 120)])
def test_newtonschulz_within_bfloat16_ulps_on_lenet_sizes(x64, shape):
    """Sums of hundreds of terms in another order: a few bfloat16 ulps (2⁻⁸ relative) apart."""
    g = np.random.default_rng(0).standard_normal(shape)
    expected = torch_newtonschulz(torch.tensor(g), (3.4445, -4.775, 2.0315), 5, 1e-7).float().numpy()
    ours = np.asarray(zeropower_via_newtonschulz(jnp.asarray(g)), np.float32)
    assert np.max(np.abs(ours - expected)) <= 2**-6
    assert np.mean(ours != expected) < 0.9  # and most entries bitwise


def test_muon_refuses_parameters_that_are_not_2d():
    torch_msg = "Muon only supports 2D parameters whereas we found a parameter with size: "
    with pytest.raises(ValueError, match="^" + re.escape(torch_msg)):
        torch.optim.Muon([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="^" + re.escape(torch_msg + "(3,) ('fc.bias')") + ".*optax.partition"):
        optim.muon().init({"fc": {"weight": jnp.zeros((3, 2)), "bias": jnp.zeros(3)}})
    with pytest.raises(ValueError, match="^" + re.escape(torch_msg + "(2, 1, 3, 3)")):
        optim.muon().init({"conv": jnp.zeros((2, 1, 3, 3))})


# -- signatures and bad hyperparameters


@pytest.mark.parametrize("ours,theirs", [(optim.adafactor, torch.optim.Adafactor), (optim.muon, torch.optim.Muon)])
def test_signature_is_torchs(ours, theirs):
    t = [(p.name, p.kind, p.default) for p in inspect.signature(theirs.__init__).parameters.values()][2:]
    o = [(p.name, p.kind, p.default) for p in inspect.signature(ours).parameters.values()]
    assert o == t


BAD = [
    ("adafactor", dict(lr=-0.1)), ("adafactor", dict(lr=float("nan"))), ("adafactor", dict(beta2_decay=0.5)),
    ("adafactor", dict(eps=(-1.0, 1e-3))), ("adafactor", dict(eps=(None, -1e-3))), ("adafactor", dict(d=0.5)),
    ("adafactor", dict(weight_decay=-0.1)),
    ("muon", dict(lr=-1.0)), ("muon", dict(momentum=-0.9)), ("muon", dict(weight_decay=-0.1)),
    ("muon", dict(adjust_lr_fn="rms")),
]


@pytest.mark.parametrize("name,kw", BAD)
def test_bad_hyperparameters_torchs_message(name, kw):
    ours, theirs = {"adafactor": (optim.adafactor, torch.optim.Adafactor), "muon": (optim.muon, torch.optim.Muon)}[name]
    with pytest.raises(ValueError) as torch_error:
        theirs([torch.zeros(2, 2, requires_grad=True)], **kw)
    with pytest.raises(ValueError, match="^" + re.escape(str(torch_error.value)) + "$"):
        ours(**kw)


@pytest.mark.parametrize("kw", [dict(ns_steps=100), dict(ns_coefficients=(1.0, 2.0))])
def test_muon_bad_newtonschulz_options_torchs_message(kw):
    """torch refuses these at its first step; here when the optimizer is built."""
    w = torch.zeros(2, 2, requires_grad=True)
    topt = torch.optim.Muon([w], **kw)
    w.grad = torch.ones(2, 2)
    with pytest.raises(ValueError) as torch_error:
        topt.step()
    with pytest.raises(ValueError, match="^" + re.escape(str(torch_error.value)) + "$"):
        optim.muon(**kw)
