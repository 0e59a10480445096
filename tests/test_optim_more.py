"""torch.optim parity for RMSprop, Adagrad, Adadelta, Adamax, NAdam, RAdam, Adam's
``decoupled_weight_decay`` and parameter groups.

LeNet (float64, the test of semantics): parameters after 100 steps within 1e-9 relative;
float32 (realistic use): after 10 steps within 1e-4. The forward/backward is compiled once
per dtype and shared by every case; only the optimizer update is compiled per option set.
Wider option spaces are drawn by hypothesis on a small parameter tree against torch.
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
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from funcnets import optim, torch_io, train
from funcnets.models import LeNet
from helpers import TorchNet, rel_err, to_np

MODEL = LeNet()
_LOSS = train.supervised_loss(MODEL)
_GRAD = jax.jit(jax.grad(lambda p, x, y: _LOSS(p, {}, (x, y), jax.random.PRNGKey(0))[0]))

OPTIMIZERS = {  # ours, torch's
    "rmsprop": (optim.rmsprop, torch.optim.RMSprop),
    "adagrad": (optim.adagrad, torch.optim.Adagrad),
    "adadelta": (optim.adadelta, torch.optim.Adadelta),
    "adamax": (optim.adamax, torch.optim.Adamax),
    "nadam": (optim.nadam, torch.optim.NAdam),
    "radam": (optim.radam, torch.optim.RAdam),
    "sgd": (optim.sgd, torch.optim.SGD),
    "adam": (optim.adam, torch.optim.Adam),
    "adamw": (optim.adamw, torch.optim.AdamW),
}
# one option set per distinct code path
CASES = {
    # The float32 runs need options under which float32 itself is well conditioned: the first
    # steps of RMSprop (≈ lr·g/(0.1·|g| + eps)) and NAdam are nearly lr·sign(g), and float32
    # noise on a gradient near eps moves a weight by a part of lr; torch's own float32 run
    # is 3e-4 from its float64 run after 10 steps with RMSprop(lr=1e-3) or NAdam(lr=1e-3,
    # weight_decay=0.1, decoupled), 3e-6 with the options below.
    "rmsprop": ("rmsprop", dict(lr=1e-4)),
    "rmsprop_centered_momentum_wd": ("rmsprop", dict(lr=1e-3, alpha=0.9, momentum=0.8, centered=True, weight_decay=1e-2)),
    "rmsprop_momentum_maximize": ("rmsprop", dict(lr=1e-4, momentum=0.5, eps=1e-6, maximize=True)),
    "adagrad": ("adagrad", dict(lr=0.05)),
    "adagrad_decay_wd_init": ("adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=1e-2, initial_accumulator_value=0.1, eps=1e-6)),
    "adagrad_maximize": ("adagrad", dict(lr=0.01, maximize=True)),
    "adadelta": ("adadelta", dict()),
    "adadelta_rho_wd_maximize": ("adadelta", dict(lr=0.5, rho=0.95, eps=1e-5, weight_decay=1e-2, maximize=True)),
    "adamax": ("adamax", dict()),
    "adamax_betas_wd_maximize": ("adamax", dict(lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2, maximize=True)),
    "nadam": ("nadam", dict()),
    "nadam_decoupled": ("nadam", dict(lr=2e-4, weight_decay=0.5, momentum_decay=0.01, decoupled_weight_decay=True)),
    # eps with lr·wd/eps < 1: fc1 weights on inputs that are always 0 see g = wd·θ alone, and
    # once θ → 0 the step lr·wd·θ/(sqrt(v) + eps) ≈ lr·wd/eps·θ overshoots if that is > 2,
    # growing rounding differences exponentially in torch and here alike (1e-6 at step 100)
    "nadam_wd_maximize": ("nadam", dict(lr=1e-4, betas=(0.8, 0.99), eps=1e-5, weight_decay=1e-2, maximize=True)),
    "radam": ("radam", dict()),  # ρₜ crosses 5 at step 6: both branches
    "radam_decoupled": ("radam", dict(lr=2e-3, weight_decay=0.1, decoupled_weight_decay=True)),
    "radam_wd_maximize": ("radam", dict(lr=1e-4, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2, maximize=True)),
    "adam_decoupled": ("adam", dict(lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True)),
}


def _lenet_run(opt, make_torch, steps, dtype):
    """LeNet after ``steps`` batches of 4 images through ``opt`` and the torch optimizer
    ``make_torch(named_parameters)``: ``(ours by name, our state, torch's net, torch's optimizer)``."""
    torch.manual_seed(0)
    tnet = TorchNet().to(torch.float64 if dtype == np.float64 else torch.float32)
    params = torch_io.load_state_dict(MODEL, tnet.state_dict()).params
    rng = np.random.default_rng(1)
    xs, ys = rng.standard_normal((steps, 4, 1, 32, 32)).astype(dtype), rng.integers(0, 10, (steps, 4))
    topt = make_torch(tnet.named_parameters())
    for x, y in zip(xs, ys):
        topt.zero_grad()
        TF.cross_entropy(tnet(torch.tensor(x)), torch.tensor(y)).backward()
        topt.step()

    @jax.jit
    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    state = opt.init(params)
    for x, y in zip(xs, ys):
        params, state = step(params, state, _GRAD(params, jnp.asarray(x), jnp.asarray(y, jnp.int32)))
    ours = dict(MODEL.named_parameters(params))
    assert ours["fc1.weight"].dtype == dtype
    return ours, state, tnet, topt


def _max_err(opt, make_torch, steps, dtype):
    """max over parameters of the relative error of :func:`_lenet_run`'s two LeNets."""
    ours, _, tnet, _ = _lenet_run(opt, make_torch, steps, dtype)
    return max(rel_err(ours[n], to_np(p)) for n, p in tnet.named_parameters())


def _case(name):
    opt, kw = CASES[name]
    ours, theirs = OPTIMIZERS[opt]
    return ours(**kw), lambda p: theirs(p, **kw)


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    """torch's two threads spin against each other on a loaded 2-core machine (400 ms a
    LeNet step instead of 15); one thread is as fast for batches of 4."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def torch_x64():
    """torch with float64 as its default dtype: NAdam keeps ``mu_product`` in torch's
    default dtype (float32 otherwise, even for float64 parameters), funcnets in JAX's."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("name", list(CASES))
def test_float64_100_steps(x64, torch_x64, name):
    assert _max_err(*_case(name), 100, np.float64) <= 1e-9


@pytest.mark.parametrize("name", list(CASES))
def test_float32_10_steps(name):
    assert _max_err(*_case(name), 10, np.float32) <= 1e-4


def test_schedule_scales_after_the_momentum_buffer(x64):
    """torch's RMSprop buffer sums g/d and the current lr multiplies it (optax.rmsprop
    multiplies each g/d by its own lr before the buffer)."""
    opt = optim.rmsprop(optax.exponential_decay(1e-3, 1, 0.97), momentum=0.9)

    assert _max_err(opt, lambda p: _Scheduled(torch.optim.RMSprop(p, lr=1e-3, momentum=0.9)), 30, np.float64) <= 1e-9


class _Scheduled:
    """A torch optimizer whose ``step`` also steps ``ExponentialLR(gamma=0.97)``."""

    def __init__(self, opt):
        self.opt, self.sched = opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97)
        self.zero_grad = opt.zero_grad

    def step(self):
        self.opt.step()
        self.sched.step()


# -- wider option spaces, drawn at random, on a small tree and a quadratic-plus-noise gradient


def _options(name):
    unit = st.floats(0.0, 0.999)
    common = dict(weight_decay=st.sampled_from([0.0, 1e-2, 0.3]), maximize=st.booleans())
    betas = st.tuples(unit, unit)
    eps = st.sampled_from([0.0, 1e-8, 1e-3]) if name not in ("adadelta", "adamax") else st.sampled_from([1e-8, 1e-3])
    space = {
        # centered with α → 0 takes v - ḡ² of two equal numbers: rounding noise in both
        "rmsprop": dict(lr=st.floats(1e-4, 1e-2), alpha=st.floats(0.5, 0.999), eps=st.sampled_from([1e-8, 1e-3]),
                        momentum=st.sampled_from([0.0, 0.5, 0.9]), centered=st.booleans()),
        "adagrad": dict(lr=st.floats(1e-3, 1e-1), lr_decay=st.sampled_from([0.0, 0.1]), eps=eps,
                        initial_accumulator_value=st.sampled_from([0.0, 0.5])),
        "adadelta": dict(lr=st.floats(0.1, 1.0), rho=st.floats(0.0, 1.0), eps=eps),
        "adamax": dict(lr=st.floats(1e-4, 1e-2), betas=betas, eps=eps),
        "nadam": dict(lr=st.floats(1e-4, 1e-2), betas=betas, eps=eps, momentum_decay=st.sampled_from([0.0, 4e-3, 0.1]),
                      decoupled_weight_decay=st.booleans()),
        "radam": dict(lr=st.floats(1e-4, 1e-2), betas=betas, eps=eps, decoupled_weight_decay=st.booleans()),
    }[name]
    return st.fixed_dictionaries({**space, **common})


def _small_run(name, kw, steps=12):
    ours, theirs = OPTIMIZERS[name]
    rng = np.random.default_rng(0)
    init = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    noise = [{k: rng.standard_normal(v.shape) for k, v in init.items()} for _ in range(steps)]
    grad = lambda t, p: {k: noise[t][k] + 0.5 * np.asarray(p[k]) for k in p}  # noqa: E731
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    topt = theirs(list(tparams.values()), **kw)
    for t in range(steps):
        for k, v in grad(t, {k: to_np(p) for k, p in tparams.items()}).items():
            tparams[k].grad = torch.tensor(v)
        topt.step()
    opt, params = ours(**kw), {k: jnp.asarray(v) for k, v in init.items()}
    state = opt.init(params)
    for t in range(steps):
        updates, state = opt.update({k: jnp.asarray(v) for k, v in grad(t, params).items()}, state, params)
        params = optax.apply_updates(params, updates)
    return max(rel_err(params[k], to_np(p)) for k, p in tparams.items())


@pytest.mark.parametrize("name", ["rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam"])
def test_random_options_float64(x64, torch_x64, name):
    @settings(max_examples=15, deadline=None)
    @given(_options(name))
    def check(kw):
        assert _small_run(name, kw) <= 1e-10, kw

    check()


# -- signatures, ignored arguments, dtypes, errors


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_signature_is_torchs(name):
    """Names, order, positional/keyword-only and defaults of torch's constructor."""
    ours, theirs = OPTIMIZERS[name]
    t = [(p.name, p.kind, p.default) for p in inspect.signature(theirs.__init__).parameters.values()][2:]
    o = [(p.name, p.kind, p.default) for p in inspect.signature(ours).parameters.values()]
    assert o == t


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_torch_kernel_arguments_change_nothing(x64, name):
    ours, _ = OPTIMIZERS[name]
    accepted = set(inspect.signature(ours).parameters)
    kernel = {k: v for k, v in dict(foreach=True, fused=True, capturable=True, differentiable=True).items() if k in accepted}
    assert kernel
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    grads = {"w": jnp.cos(params["w"] * 3)}
    extra = dict(momentum=0.9) if name in ("sgd", "rmsprop") else {}

    def two_steps(opt):
        s = opt.init(params)
        u, s = opt.update(grads, s, params)
        return opt.update(grads, s, optax.apply_updates(params, u))[0]["w"]

    np.testing.assert_array_equal(two_steps(ours(**extra, **kernel)), two_steps(ours(**extra)))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float32_params_stay_float32_under_x64(x64, name):
    ours, _ = OPTIMIZERS[name]
    params = {"w": jnp.ones((2, 3), jnp.float32)}
    opt = ours()
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update({"w": jnp.full((2, 3), 0.5, jnp.float32)}, state, params)
        params = optax.apply_updates(params, updates)
        assert updates["w"].dtype == jnp.float32


@pytest.mark.parametrize("name", ["rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam"])
def test_update_is_differentiable(x64, name):
    """torch's ``differentiable=True`` analog: gradients through three steps agree with
    finite differences."""
    ours, _ = OPTIMIZERS[name]
    opt = ours(weight_decay=0.1)
    target = jnp.array([0.3, -1.2, 2.0])

    def after_three_steps(p):
        s = opt.init(p)
        for _ in range(3):
            u, s = opt.update(jax.grad(lambda q: jnp.sum((q - target) ** 2 * jnp.arange(1.0, 4.0)))(p), s, p)
            p = optax.apply_updates(p, u)
        return p

    check_grads(after_three_steps, (jnp.array([1.0, 0.5, -0.7]),), order=1, modes=["rev"])


BAD = [  # (optimizer, options torch refuses)
    ("rmsprop", dict(lr=-0.1)), ("rmsprop", dict(eps=-1e-8)), ("rmsprop", dict(momentum=-0.5)),
    ("rmsprop", dict(weight_decay=-1.0)), ("rmsprop", dict(alpha=-0.9)),
    ("adagrad", dict(lr_decay=-1.0)), ("adagrad", dict(initial_accumulator_value=-1)), ("adagrad", dict(eps=-1.0)),
    ("adadelta", dict(rho=1.5)), ("adadelta", dict(rho=-0.1)), ("adadelta", dict(lr=-1.0)),
    ("adamax", dict(betas=(1.0, 0.9))), ("adamax", dict(betas=(0.9, -0.1))), ("adamax", dict(eps=-1.0)),
    ("nadam", dict(momentum_decay=-1.0)), ("nadam", dict(betas=(0.9, 1.0))), ("nadam", dict(weight_decay=-0.1)),
    ("radam", dict(betas=(-0.1, 0.9))), ("radam", dict(eps=-1e-8)), ("radam", dict(lr=float("nan"))),
    ("adam", dict(eps=-1.0)), ("sgd", dict(weight_decay=-1.0)),
]


@pytest.mark.parametrize("name,kw", BAD)
def test_bad_hyperparameters_torchs_message(name, kw):
    ours, theirs = OPTIMIZERS[name]
    with pytest.raises(ValueError) as torch_error:
        theirs([torch.zeros(2, requires_grad=True)], **kw)
    with pytest.raises(ValueError, match="^" + re.escape(str(torch_error.value))):
        ours(**kw)


def test_rho_one_is_allowed():
    """Adadelta's ρ is in the closed [0, 1] (torch), unlike betas' [0, 1)."""
    torch.optim.Adadelta([torch.zeros(1, requires_grad=True)], rho=1.0)
    optim.adadelta(rho=1.0)


def test_optax_primitives_that_differ_from_torch():
    """Why rmsprop/adagrad are not optax.rmsprop/optax.adagrad: eps inside the root."""
    g = {"w": jnp.array([1e-4])}
    ours = optim.rmsprop(lr=1.0, alpha=0.0, eps=1e-4)
    theirs = optax.rmsprop(1.0, decay=0.0, eps=1e-4)
    np.testing.assert_allclose(ours.update(g, ours.init(g))[0]["w"], [-0.5])  # g/(|g| + eps)
    assert abs(theirs.update(g, theirs.init(g))[0]["w"][0] + 0.5) > 0.1  # g/sqrt(g² + eps)
    ours, theirs = optim.adagrad(lr=1.0, eps=1e-4), optax.adagrad(1.0, initial_accumulator_value=0.0, eps=1e-4)
    np.testing.assert_allclose(ours.update(g, ours.init(g))[0]["w"], [-0.5])
    assert abs(theirs.update(g, theirs.init(g))[0]["w"][0] + 0.5) > 0.1


# -- parameter groups


def _torch_groups(named, groups):
    """torch param groups from ``[(predicate on the name, options)]``; the rest in a last group."""
    named = list(named)
    out = [dict(params=[p for n, p in named if pred(n)], **kw) for pred, kw in groups]
    out.append(dict(params=[p for n, p in named if not any(pred(n) for pred, _ in groups)]))
    return out


GROUP_CASES = {
    "adamw_no_decay_on_biases": (
        lambda: optim.param_groups(optim.adamw, [{"params": "*.bias", "weight_decay": 0.0}], lr=2e-3, weight_decay=0.1),
        lambda p: torch.optim.AdamW(
            _torch_groups(p, [(lambda n: n.endswith(".bias"), dict(weight_decay=0.0))]), lr=2e-3, weight_decay=0.1
        ),
    ),
    "sgd_lr_and_momentum_per_group": (
        lambda: optim.param_groups(
            optim.sgd,
            [{"params": "fc3", "lr": 0.05, "name": "head"}, {"params": ["conv*.weight"], "momentum": 0.5, "nesterov": True}],
            lr=0.01, momentum=0.9, weight_decay=1e-3,
        ),
        lambda p: torch.optim.SGD(
            _torch_groups(p, [(lambda n: n.startswith("fc3."), dict(lr=0.05)),
                              (lambda n: n.startswith("conv") and n.endswith(".weight"), dict(momentum=0.5, nesterov=True))]),
            lr=0.01, momentum=0.9, weight_decay=1e-3,
        ),
    ),
}


@pytest.mark.parametrize("name", list(GROUP_CASES))
def test_param_groups_float64_100_steps(x64, name):
    ours, theirs = GROUP_CASES[name]
    assert _max_err(ours(), theirs, 100, np.float64) <= 1e-9


@pytest.mark.parametrize("name", list(GROUP_CASES))
def test_param_groups_float32_10_steps(name):
    ours, theirs = GROUP_CASES[name]
    assert _max_err(ours(), theirs, 10, np.float32) <= 1e-4


def _lenet_shapes():
    return jax.eval_shape(lambda: MODEL.init(jax.random.PRNGKey(0))[0])


def test_param_group_labels_and_state():
    params = _lenet_shapes()
    groups = [{"params": "fc3.weight", "name": "head"}, {"params": lambda n: n.endswith("bias"), "weight_decay": 0.0}]
    labels = optim.param_group_labels(params, groups)
    assert labels["fc3.weight"] == "head"
    assert labels["conv1.bias"] == labels["fc3.bias"] == "group1"
    assert labels["conv1.weight"] == labels["fc2.weight"] == "default"
    opt = optim.param_groups(optim.adamw, groups, lr=1e-3)
    state = jax.eval_shape(opt.init, params)
    assert set(state.inner_states) == {"head", "group1", "default"}


def test_no_decay_on_biases_and_norms_matches_torchs_recipe():
    """The usual recipe in torch, ``p.ndim <= 1`` (biases and norm weights), by name on
    ResNet-18."""
    import torchvision

    from funcnets.models import resnet18

    params = jax.eval_shape(lambda: resnet18().init(jax.random.PRNGKey(0))[0])
    norms = {"params": ["*.bias", "bn1.*", "*.bn?.*", "*.downsample.1.*"], "weight_decay": 0.0, "name": "no_decay"}
    labels = optim.param_group_labels(params, [norms])
    expected = {n for n, p in torchvision.models.resnet18().named_parameters() if p.ndim <= 1}
    assert {n for n, g in labels.items() if g == "no_decay"} == expected
    assert set(labels) == {n for n, _ in torchvision.models.resnet18().named_parameters()}


def test_param_group_errors():
    params = _lenet_shapes()
    with pytest.raises(ValueError, match=r"'fc3.bias' is selected by parameter groups \['group0', 'group1'\]"):
        optim.param_groups(optim.sgd, [{"params": "fc3"}, {"params": "*.bias"}], lr=0.1).init(params)
    with pytest.raises(ValueError, match="parameter group 'group1' selects no parameter"):
        optim.param_groups(optim.sgd, [{"params": "fc3"}, {"params": "head.*"}], lr=0.1).init(params)
    with pytest.raises(ValueError, match="Invalid weight_decay value: -1"):
        optim.param_groups(optim.sgd, [{"params": "fc3", "weight_decay": -1.0}], lr=0.1)
    with pytest.raises(TypeError, match="parameter group 'group0'.*momentun"):
        optim.param_groups(optim.sgd, [{"params": "fc3", "momentun": 0.9}], lr=0.1)
    with pytest.raises(ValueError, match="a group is a dict with a 'params' selector"):
        optim.param_groups(optim.sgd, [{"lr": 0.1}], lr=0.1)
    with pytest.raises(ValueError, match="is named 'default', which is taken"):
        optim.param_groups(optim.sgd, [{"params": "fc3", "name": "default"}], lr=0.1)
