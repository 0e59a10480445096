"""Dropout family: distributions (mask fraction, scaling, whole channels, AlphaDropout's
mean and variance), torch's constants, eval identity, p = 0 / p = 1, keys, errors, reprs,
and jit/grad/vmap."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from funcnets import ShapeError, nn
from funcnets.nn import functional as F
from helpers import to_np

KEY = jax.random.PRNGKey(0)
ALPHA = 1.7580993408473766  # -SELU(-inf)


def _binomial_ok(k: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """``k`` successes of ``n`` is within ``sigmas`` standard deviations of ``n·p``."""
    return abs(k - n * p) <= sigmas * np.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_fraction_and_scaling(p):
    x = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2, (100, 50)), jnp.float32)
    y, _ = nn.Dropout(p)({}, {}, x, train=True, key=KEY)
    dropped = np.asarray(y) == 0
    assert _binomial_ok(dropped.sum(), x.size, p)
    np.testing.assert_allclose(np.asarray(y)[~dropped], np.asarray(x)[~dropped] / (1 - p), rtol=1e-6)
    assert y.dtype == x.dtype


# layer, functional form, torch's functional, an input shape, the axes that share one draw
FEATURE = [
    (nn.Dropout1d, F.dropout1d, TF.dropout1d, (40, 30, 5)),
    (nn.Dropout1d, F.dropout1d, TF.dropout1d, (300, 4)),  # unbatched (C, L)
    (nn.Dropout2d, F.dropout2d, TF.dropout2d, (40, 30, 3, 2)),
    (nn.Dropout3d, F.dropout3d, TF.dropout3d, (20, 30, 2, 2, 2)),
    (nn.Dropout3d, F.dropout3d, TF.dropout3d, (300, 2, 3, 2)),  # unbatched (C, D, H, W)
    (nn.FeatureAlphaDropout, F.feature_alpha_dropout, TF.feature_alpha_dropout, (40, 30, 3, 2)),
]


@pytest.mark.parametrize("cls,fn,tfn,shape", FEATURE, ids=lambda v: v.__name__ if hasattr(v, "__name__") else str(v))
def test_feature_dropout_zeroes_whole_channels(cls, fn, tfn, shape):
    """Every channel is all dropped or all kept, ~p of them dropped, independently per
    sample; the kept and dropped values are the ones torch produces."""
    p = 0.3
    alpha = cls is nn.FeatureAlphaDropout
    x = np.ones(shape, np.float32)  # a constant input: torch's values and ours are comparable
    y, _ = cls(p)({}, {}, jnp.asarray(x), train=True, key=KEY)
    y = np.asarray(y)
    unbatched = len(shape) in (2, 4) and cls in (nn.Dropout1d, nn.Dropout3d)
    chan = y.reshape((1 if unbatched else shape[0], shape[0 if unbatched else 1], -1))
    assert (chan == chan[..., :1]).all(), "a channel was partly dropped"
    a = 1 / np.sqrt((ALPHA**2 * p + 1) * (1 - p))
    kept, dropped = (a + ALPHA * a * p, -ALPHA * a * (1 - p)) if alpha else (1 / (1 - p), 0.0)
    is_dropped = np.isclose(chan[..., 0], dropped, rtol=1e-6, atol=1e-7)
    assert (is_dropped | np.isclose(chan[..., 0], kept, rtol=1e-6)).all()
    assert _binomial_ok(is_dropped.sum(), is_dropped.size, p)
    # torch draws its own masks; what it writes into the kept and dropped channels is ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yt = to_np(tfn(torch.tensor(x), p, True))
    assert set(np.unique(np.round(yt, 5))) <= {np.round(np.float32(kept), 5), np.round(np.float32(dropped), 5)}
    np.testing.assert_array_equal(fn(jnp.asarray(x), p, True, KEY), y)  # the layer is its function


def test_alpha_dropout_keeps_selu_statistics_and_torch_constants():
    """On a zero-mean unit-variance input, AlphaDropout keeps mean 0 and variance 1 (as
    torch's does); dropped units take the value torch gives them."""
    x = np.random.default_rng(2).standard_normal(200_000).astype(np.float32)
    for p in (0.1, 0.5):
        y, _ = nn.AlphaDropout(p)({}, {}, jnp.asarray(x), train=True, key=KEY)
        yt = to_np(TF.alpha_dropout(torch.tensor(x), p, True))
        for name, out in (("ours", np.asarray(y)), ("torch", yt)):
            assert abs(out.mean()) < 0.01 and abs(out.var() - 1) < 0.015, (name, p, out.mean(), out.var())
        a = 1 / np.sqrt((ALPHA**2 * p + 1) * (1 - p))
        dropped_value = -ALPHA * a * (1 - p)
        for out in (np.asarray(y), yt):
            dropped = np.isclose(out, dropped_value, rtol=1e-6)
            assert _binomial_ok(dropped.sum(), x.size, p)
            np.testing.assert_allclose(out[~dropped], a * x[~dropped] + ALPHA * a * p, rtol=1e-5, atol=1e-6)


ALL = [nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout]
TORCH = [torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout]
FUNCS = [(F.dropout, TF.dropout), (F.dropout1d, TF.dropout1d), (F.dropout2d, TF.dropout2d), (F.dropout3d, TF.dropout3d),
         (F.alpha_dropout, TF.alpha_dropout), (F.feature_alpha_dropout, TF.feature_alpha_dropout)]  # fmt: skip


SHAPES = [(2, 3, 4, 5), (2, 3, 4), (2, 3, 4, 5), (2, 3, 2, 2, 2), (2, 3, 4, 5), (2, 3, 4, 5)]


@pytest.mark.parametrize("i", range(len(ALL)), ids=[c.__name__ for c in ALL])
def test_eval_identity_p0_p1_and_missing_key(i):
    cls, tcls, (fn, tfn) = ALL[i], TORCH[i], FUNCS[i]
    x = jnp.asarray(np.random.default_rng(3).standard_normal(SHAPES[i]), jnp.float32)
    x = x.at[(0,) * x.ndim].set(jnp.nan)
    # eval: the input itself, no key needed; p = 0 in training likewise
    assert cls(0.5)({}, {}, x, train=False)[0] is x
    assert cls(0.0)({}, {}, x, train=True)[0] is x
    assert fn(x, 0.5, False) is x and fn(x, 0.0, True) is x
    # p = 1: torch multiplies by zero (NaN stays NaN) — the alpha variants too — with no key
    tx = torch.tensor(np.asarray(x), requires_grad=True)
    yt = tfn(tx, 1.0, True)
    yt.sum().backward()
    g = jax.grad(lambda a: jnp.nansum(cls(1.0)({}, {}, a, train=True)[0]))(x)
    np.testing.assert_array_equal(cls(1.0)({}, {}, x, train=True)[0], to_np(yt))
    np.testing.assert_array_equal(g, 0.0)
    np.testing.assert_array_equal(to_np(tx.grad), np.where(np.isnan(to_np(tx.grad)), np.nan, 0.0))
    # training with 0 < p < 1 needs a key
    with pytest.raises(ValueError, match="needs a PRNG key: pass key=jax.random.key"):
        cls(0.5)({}, {}, x, train=True)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fn(x, 0.5, True)
    # constructor: torch's message; repr as torch prints it
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        cls(1.5)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got -0.1"):
        fn(x, -0.1, True, KEY)
    for layer, ref in ((cls(), tcls()), (cls(0.25, True), tcls(0.25, True)), (cls(p=1), tcls(p=1))):
        assert repr(layer) == repr(ref)
        assert layer.param_names() == layer.buffer_names() == () and layer.init_own(KEY) == ({}, {})


def test_default_training_flags_follow_torch():
    """F.dropout* default to training=True, F.alpha_dropout/feature_alpha_dropout to False."""
    x = jnp.ones((2, 3, 4))
    assert F.alpha_dropout(x) is x and F.feature_alpha_dropout(x) is x
    for fn, shape in ((F.dropout, (2, 3)), (F.dropout1d, (2, 3, 4)), (F.dropout2d, (2, 3, 4, 5)), (F.dropout3d, (2, 3, 4, 5, 6))):
        with pytest.raises(ValueError, match="needs a PRNG key"):
            fn(jnp.ones(shape))


def test_shape_errors_warnings_and_layouts():
    key = KEY
    with pytest.raises(ShapeError, match=r"Dropout1d\(p=0.5, inplace=False\) expected input \(N, C, L\) or unbatched \(C, L\), got \(2, 3, 4, 5\)"):
        nn.Dropout1d()({}, {}, jnp.ones((2, 3, 4, 5)), train=True, key=key)
    with pytest.raises(ShapeError, match=r"dropout1d expected a 2-D or 3-D input"):
        F.dropout1d(jnp.ones(4), 0.5, True, key)
    with pytest.raises(ShapeError, match=r"Dropout2d\(p=0.5, inplace=False\) expected input \(N, C, H, W\), got \(4,\)"):
        nn.Dropout2d()({}, {}, jnp.ones(4), train=True, key=key)
    with pytest.raises(ShapeError, match=r"FeatureAlphaDropout.*expected input \(N, C, \*\), got \(4,\)"):
        nn.FeatureAlphaDropout()({}, {}, jnp.ones(4), train=True, key=key)
    with pytest.raises(ShapeError, match="feature .*dropout needs an input \\(N, C, \\*\\)"):
        F.feature_alpha_dropout(jnp.ones(4), 0.5, True, key)
    with pytest.raises(ShapeError, match="floating-point input, got dtype int32"):
        nn.Dropout()({}, {}, jnp.ones(4, jnp.int32), train=True, key=key)
    # torch's deprecation warnings, word for word: a 3-D input to dropout2d is (N, C, L)
    for shape, fn, tfn in (((2, 3, 4), F.dropout2d, TF.dropout2d), ((2, 3), F.dropout2d, TF.dropout2d), ((2, 3, 4), F.dropout3d, TF.dropout3d)):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            y = fn(jnp.ones(shape), 0.5, True, key)
            tfn(torch.ones(shape), 0.5, True)
        mine, theirs = [str(w.message) for w in got[: len(got) // 2]], [str(w.message) for w in got[len(got) // 2 :]]
        assert mine == theirs and mine, shape
        assert y.shape == shape
    with pytest.warns(UserWarning, match="input is interpreted as shape \\(N, C, L\\)"):
        y = np.asarray(F.dropout2d(jnp.ones((50, 40, 3)), 0.5, True, key))  # (N, C, L): whole rows of L
    assert (y == y[..., :1]).all()
    # channel dropout reads NCHW's channel axis: refused inside a layout block, not answered wrongly
    with F.channels_last(), pytest.raises(ShapeError, match=r"Dropout2d\(p=0.5, inplace=False\) zeroes whole channels .*channels_last\(\)"):
        nn.Dropout2d()({}, {}, jnp.ones((2, 4, 4, 3)), train=True, key=key)
    with F.batch_last(), pytest.raises(ShapeError, match=r"batch_last\(\)"):
        F.feature_alpha_dropout(jnp.ones((3, 4, 4, 2)), 0.5, True, key)
    with F.channels_last():  # element-wise dropout is layout-free
        assert nn.Dropout()({}, {}, jnp.ones((2, 4, 4, 3)), train=True, key=key)[0].shape == (2, 4, 4, 3)


def test_jit_grad_vmap_per_sample_keys():
    """Under jit, the gradient is the mask scaled by 1/(1-p); vmap with one key per sample
    gives each sample its own channel mask (unbatched (C, L) inputs)."""
    layer = nn.Dropout1d(0.5)
    x = jnp.ones((8, 6, 5))
    keys = jax.random.split(KEY, 8)

    @jax.jit
    def per_sample(keys, x):
        f = lambda k, a: jnp.sum(layer({}, {}, a, train=True, key=k)[0] * 3.0)  # noqa: E731
        return jax.vmap(jax.value_and_grad(f, argnums=1))(keys, x)

    vals, grads = per_sample(keys, x)
    grads = np.asarray(grads)
    assert set(np.unique(grads)) <= {0.0, 6.0}  # 3 · 1/(1 - 0.5)
    assert (grads == grads[..., :1]).all()  # whole channels
    assert len({g[:, 0].tobytes() for g in grads}) > 1  # the samples' masks differ
    np.testing.assert_allclose(vals, grads.sum(axis=(1, 2)), rtol=1e-6)
    # the same key gives the same mask, in and out of jit
    y1 = layer({}, {}, x[0], train=True, key=keys[0])[0]
    np.testing.assert_array_equal(np.asarray(y1) * 3.0, grads[0])


def test_sequential_splits_the_key():
    """In a Sequential each dropout gets its own sub-key; eval needs none."""
    model = nn.Sequential(nn.Dropout(0.5), nn.AlphaDropout(0.2), nn.Dropout2d(0.5))
    x = jnp.ones((4, 6, 3, 3))
    train = jax.jit(lambda x, key: model({}, {}, x, train=True, key=key))
    y, state = train(x, KEY)
    assert y.shape == x.shape and state == {}
    assert not np.array_equal(y, train(x, jax.random.PRNGKey(1))[0])
    assert model({}, {}, x)[0] is x
    assert repr(model) == repr(torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.AlphaDropout(0.2), torch.nn.Dropout2d(0.5)))
