"""Float64DowncastWarning at funcnets' entry points (issue 27): the functional losses, the
train step and epoch, create_train_state, evaluate/evaluate_metrics and batches warn when
float64 NumPy data would be computed in float32, and stay silent with float64 on, with
float32 data, and under a trace."""

import contextlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnets import config, losses, nn, optim, train
from funcnets.config import Float64DowncastWarning

R = np.random.default_rng(0)
X = R.standard_normal((4, 3))  # float64, as NumPy (and torch users) make them
P = np.full((4, 3), 0.3)  # probabilities
LABELS = np.array([0, 2, 1, 2])
SIGNS = np.array([1.0, -1.0, 1.0, -1.0])

ASM_TAIL = [(R.standard_normal((2, 3)), R.standard_normal((2, 2)))]

# name -> the arguments of one call with float64 NumPy arrays
LOSS_CALLS = {
    "mse_loss": (X, X[::-1]),
    "l1_loss": (X, X[::-1]),
    "smooth_l1_loss": (X, X[::-1]),
    "huber_loss": (X, X[::-1]),
    "cross_entropy": (X, LABELS),
    "nll_loss": (X, LABELS),
    "multi_margin_loss": (X, LABELS),
    "multilabel_margin_loss": (X, np.array([[0, -1, 0], [1, 2, -1], [2, -1, -1], [0, 1, 2]])),
    "binary_cross_entropy": (P, P[::-1]),
    "binary_cross_entropy_with_logits": (X, P),
    "soft_margin_loss": (X, np.sign(X)),
    "multilabel_soft_margin_loss": (X, (X > 0).astype(np.float64)),
    "kl_div": (np.log(P), P, "batchmean"),
    "poisson_nll_loss": (X, np.abs(X)),
    "gaussian_nll_loss": (X, X[::-1], np.ones((4, 3))),
    "cosine_embedding_loss": (X, X[::-1], SIGNS),
    "margin_ranking_loss": (X[:, 0], X[:, 1], SIGNS),
    "hinge_embedding_loss": (X, np.sign(X)),
    "triplet_margin_loss": (X, X[::-1], X + 1),
    "ctc_loss": (np.log(np.full((5, 2, 3), 1 / 3)), np.array([[1, 2], [1, 1]]), [5, 5], [2, 2]),
    "linear_cross_entropy": (X, R.standard_normal((5, 3)), np.array([0, 4, 1, 2])),
    "triplet_margin_with_distance_loss": (X, X[::-1], X + 1),
    # adaptive softmax, cutoffs [2], 4 classes: head (2 + 1 clusters, 3), one tail (proj (2, 3), out (2, 2))
    "adaptive_log_softmax_with_loss": (X, np.array([0, 3, 1, 2]), R.standard_normal((3, 3)), ASM_TAIL, [2]),
    "adaptive_log_prob": (X, R.standard_normal((3, 3)), ASM_TAIL, [2]),
    "adaptive_predict": (X, R.standard_normal((3, 3)), ASM_TAIL, [2]),
}


def _float32(args):
    return tuple(a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a for a in args)


@contextlib.contextmanager
def _silent():
    """A block in which a Float64DowncastWarning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Float64DowncastWarning)
        yield


def test_every_functional_loss_is_covered():
    assert sorted(LOSS_CALLS) == sorted(losses.__all__)


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_a_functional_loss_warns_on_float64_numpy_with_float64_off(name):
    fn, args = getattr(losses, name), LOSS_CALLS[name]
    with config.float64(False):
        with pytest.warns(Float64DowncastWarning, match=rf"^{name}: got a float64 array") as record:
            value = fn(*args)
        value = value[0] if isinstance(value, tuple) else value  # adaptive softmax: (output, loss)
        assert value.dtype == (jnp.int32 if name == "adaptive_predict" else jnp.float32)  # predict: class indices
        assert record[0].filename == __file__  # the warning points at the caller's line
        with _silent():
            fn(*_float32(args))  # float32 NumPy: nothing is lost


@pytest.mark.parametrize("name", ["mse_loss", "cross_entropy", "gaussian_nll_loss"])
def test_a_functional_loss_with_float64_on_or_jax_arrays_is_silent(name):
    fn, args = getattr(losses, name), LOSS_CALLS[name]
    with _silent():
        with config.float64():  # float64 on: computed in float64
            assert fn(*args).dtype == jnp.float64
        with config.float64(False):  # JAX arrays are in JAX's dtype already
            fn(*(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args))


def test_a_loss_under_a_trace_is_silent_and_a_loss_class_warns_through_its_function():
    with config.float64(False):
        with _silent():
            # traced: the arguments are tracers (JAX's dtype already), nothing to say
            jax.jit(jax.grad(losses.mse_loss))(X, X[::-1])
        with pytest.warns(Float64DowncastWarning, match="^mse_loss:"):
            nn.MSELoss()(X, X[::-1])


MODEL = nn.Linear(3, 2)
OPT = optim.sgd(0.1)
LOSS_FN = train.supervised_loss(MODEL)


@pytest.fixture(scope="module")
def compiled():
    """One step and one epoch, compiled once for the module (float64 off)."""
    return train.make_train_step(LOSS_FN, OPT), train.make_train_epoch(LOSS_FN, OPT)


def _state():
    params, state = MODEL.init(jax.random.PRNGKey(0))
    return train.create_train_state(params, state, OPT, jax.random.PRNGKey(1))


def _cache_size(fn) -> int:
    jitted = fn._jitted._jitted if hasattr(fn._jitted, "_jitted") else fn._jitted
    return jitted._cache_size()


def test_the_train_step_warns_on_a_float64_batch_at_the_call_and_never_retraces(compiled):
    step, _ = compiled
    x, y = R.standard_normal((4, 3)), np.array([0, 1, 1, 0])
    with config.float64(False):
        ts, _ = step(_state(), (x.astype(np.float32), y))  # traced and compiled once
        before = _cache_size(step)
        with pytest.warns(Float64DowncastWarning, match=r"^the step of make_train_step: got a float64 array of shape \(4, 3\)") as rec:
            ts, metrics = step(ts, (x, y))
        assert rec[0].filename == __file__
        assert metrics["loss"].dtype == jnp.float32
        # float32 and float64 NumPy batches are one program: the check is at the call,
        # and neither the float64 batch nor the warning costs a trace
        assert _cache_size(step) == before == 1
        with _silent():
            ts, _ = step(ts, (x.astype(np.float32), y))
            ts, _ = step(ts, (jnp.asarray(x), jnp.asarray(y)))
    assert step.lower(_state(), (x.astype(np.float32), y)).as_text()  # still lowers like a jitted function


def test_the_train_step_with_float64_on_is_silent():
    x, y = R.standard_normal((4, 3)), np.array([0, 1, 1, 0])
    with _silent():
        with config.float64():
            params, state = MODEL.init(jax.random.PRNGKey(0))
            params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
            ts = train.create_train_state(params, state, OPT, jax.random.PRNGKey(1))
            step = train.make_train_step(LOSS_FN, OPT, donate=False)
            ts, metrics = step(ts, (x, y))
            assert metrics["loss"].dtype == jnp.float64


def test_the_train_epoch_warns_on_float64_batches(compiled):
    _, epoch = compiled
    xs, ys = R.standard_normal((2, 4, 3)), np.array([[0, 1, 1, 0], [1, 0, 0, 1]])
    with config.float64(False):
        with pytest.warns(Float64DowncastWarning, match=r"^the epoch of make_train_epoch: got a float64 array of shape \(2, 4, 3\)"):
            ts, metrics = epoch(_state(), (xs, ys))
        assert metrics["loss"].shape == (2,)
        with _silent():
            epoch(ts, (xs.astype(np.float32), ys))


def test_create_train_state_evaluate_and_batches_warn_on_float64_numpy():
    params, state = MODEL.init(jax.random.PRNGKey(0))
    params64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)  # e.g. from a torch state_dict
    x, y = R.standard_normal((6, 3)), np.array([0, 1, 1, 0, 1, 0])
    with config.float64(False):
        with pytest.warns(Float64DowncastWarning, match="^create_train_state: got a float64 array"):
            train.create_train_state(params64, state, OPT, jax.random.PRNGKey(1))
        with pytest.warns(Float64DowncastWarning, match=r"^evaluate: got a float64 array of shape \(6, 3\)"):
            acc = train.evaluate(MODEL, params, state, x, y)
        with pytest.warns(Float64DowncastWarning, match="^evaluate_metrics: got a float64"):
            m = train.evaluate_metrics(MODEL, params, state, x, y)
        assert m["accuracy"] == acc
        with pytest.warns(Float64DowncastWarning, match="^batches: got a float64"):
            xs, _ = train.batches(x, y, 3, jax.random.PRNGKey(0))
        assert xs.dtype == jnp.float32
        with _silent():
            x32 = x.astype(np.float32)
            train.create_train_state(params, state, OPT, jax.random.PRNGKey(1))
            assert train.evaluate(MODEL, params, state, x32, y) == acc
            train.evaluate_metrics(MODEL, params, state, x32, y)
            train.batches(x32, y, 3, jax.random.PRNGKey(0))
    with _silent():
        with config.float64():
            train.evaluate(MODEL, params64, state, x, y)
            assert train.batches(x, y, 3, jax.random.PRNGKey(0))[0].dtype == jnp.float64


def test_load_state_dict_warns_on_float64_weights_unless_a_dtype_is_asked_for():
    from funcnets import torch_io

    sd = {"weight": R.standard_normal((2, 3)), "bias": np.zeros(2)}  # a float64 torch model's state_dict
    with config.float64(False):
        with pytest.warns(Float64DowncastWarning, match="^load_state_dict: got a float64 array"):
            loaded = torch_io.load_state_dict(MODEL, sd)
        assert loaded.params["weight"].dtype == jnp.float32
        with _silent():
            torch_io.load_state_dict(MODEL, sd, dtype=jnp.float32)  # asked for: no warning
            torch_io.load_state_dict(MODEL, {k: v.astype(np.float32) for k, v in sd.items()})
    with _silent(), config.float64():
        assert torch_io.load_state_dict(MODEL, sd).params["weight"].dtype == jnp.float64
