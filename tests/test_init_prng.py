"""The counter-hash generator of ``Module.init`` (funcnets/nn/_init_prng.py): its draws are
uniform, normal and independent within sampling error, keys are reproducible, and the
init of real modules keeps torch's distributions (the layers' own tests check those)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnets import nn
from funcnets.nn._init_prng import HASH_PRNG, init_key

N = 200_000


@pytest.fixture(scope="module")
def key():
    return init_key(jax.random.key(0))


def test_keys_convert_reproducibly(key):
    assert jax.random.key_impl(key) == HASH_PRNG
    assert init_key(key) is key
    same = init_key(jax.random.PRNGKey(0))  # a raw uint32 key: the same bits, the same key
    np.testing.assert_array_equal(jax.random.key_data(same), jax.random.key_data(key))
    other = init_key(jax.random.key(1))
    assert not np.array_equal(jax.random.key_data(other), jax.random.key_data(key))
    rbg = init_key(jax.random.key(0, impl="rbg"))  # four words folded into two
    assert jax.random.key_data(rbg).shape == (2,)


def test_uniform_bits_and_moments(key):
    bits = np.asarray(jax.random.bits(key, (N,), jnp.uint32))
    per_bit = ((bits[:, None] >> np.arange(32)) & 1).mean(0)
    assert np.all(np.abs(per_bit - 0.5) < 5 * 0.5 / np.sqrt(N)), per_bit
    u = np.asarray(jax.random.uniform(key, (N,)), np.float64)
    hist = np.histogram(u, bins=20, range=(0, 1))[0]
    chi2 = ((hist - N / 20) ** 2 / (N / 20)).sum()
    assert chi2 < 50, chi2  # 19 degrees of freedom: P(chi2 > 50) < 1e-4
    # neighbours in the stream are uncorrelated (counters 0, 1, 2... feed the hash)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / np.sqrt(N)


def test_normal_and_64_bit_draws(key):
    z = np.asarray(jax.random.normal(key, (N,)), np.float64)
    assert abs(z.mean()) < 5 / np.sqrt(N) and abs(z.std() - 1) < 5 / np.sqrt(2 * N)
    assert abs((z**4).mean() - 3) < 0.1
    with jax.enable_x64(True):
        u = np.asarray(jax.random.uniform(init_key(jax.random.key(0)), (N,), jnp.float64))
        assert u.dtype == np.float64 and abs(u.mean() - 0.5) < 5 * 0.29 / np.sqrt(N)
        assert len(np.unique(u)) == N


def test_split_and_fold_in_give_independent_streams(key):
    kids = jax.random.split(key, 64)
    draws = np.asarray(jax.vmap(lambda k: jax.random.uniform(k, (4096,)))(kids))
    corr = np.corrcoef(draws)[np.triu_indices(64, 1)]
    assert np.abs(corr).max() < 6 / np.sqrt(4096), np.abs(corr).max()
    # a child's stream is not a shifted copy of its parent's
    parent = np.asarray(jax.random.uniform(key, (4096,)))
    assert np.abs([np.corrcoef(parent, d)[0, 1] for d in draws]).max() < 6 / np.sqrt(4096)
    folded = [np.asarray(jax.random.uniform(jax.random.fold_in(key, i), (4096,))) for i in range(8)]
    assert np.abs(np.corrcoef(folded)[np.triu_indices(8, 1)]).max() < 6 / np.sqrt(4096)


def test_module_init_is_reproducible_and_keeps_torch_bounds():
    m = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 4, 10))
    p1, _ = m.init(jax.random.key(0))
    p2, _ = m.init(jax.random.key(0))
    p3, _ = m.init(jax.random.key(1))
    for a, b, c in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), jax.tree.leaves(p3)):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    w = np.asarray(p1["0"]["weight"], np.float64)  # U(±1/sqrt(27))
    bound = 1 / np.sqrt(27)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.05
    # init under vmap (an ensemble of models) draws a different model per key
    ps, _ = jax.vmap(m.init_tree)(jax.random.split(jax.random.key(0), 3))
    w3 = np.asarray(ps["3"]["weight"])
    assert not np.array_equal(w3[0], w3[1]) and not np.array_equal(w3[1], w3[2])
