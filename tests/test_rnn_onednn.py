"""oneDNN's LSTM and GRU layers (funcnets.nn._onednn_rnn) against torch.nn.LSTM/GRU, and
when they are taken.

float32 LSTMs (without projections) and GRUs on CPU without lengths run each layer as oneDNN's
forward_training / backward primitives (custom calls); the comparison is
tests/test_rnn.py's: the same weights in torch and funcnets, outputs and final states
within 1e-5, the gradients of the input, h0, c0 and every parameter within 1e-4 relative,
for one random cotangent. Shapes are tiny (L=5, N=3, input 3, hidden 4): N=3 splits into
uneven batch chunks on a multi-core machine.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnets import nn
from funcnets.nn import _onednn_rnn
from test_rnn import HID, IN, L, N, _check_sequence_layer

pytestmark = pytest.mark.skipif(_onednn_rnn.error() is not None, reason=str(_onednn_rnn.error()))


# (num_layers, bidirectional, batch_first, with initial state, bias, batched): every pair of
# the first four options' values appears at least once
CASES = [
    (1, False, False, False, True, True),
    (1, True, True, True, True, True),
    (2, False, True, True, False, True),
    (2, True, False, False, True, True),
    (2, True, True, True, True, True),
    (2, False, False, True, True, False),
]


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,with_hx,bias,batched", CASES)
def test_lstm_matches_torch(num_layers, bidirectional, batch_first, with_hx, bias, batched):
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    _check_sequence_layer(nn.LSTM, kwargs, np.float32, with_hx, batched, False, seed=num_layers * 7 + with_hx)


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,with_hx,bias,batched", CASES[1:5])
def test_gru_matches_torch(num_layers, bidirectional, batch_first, with_hx, bias, batched):
    """torch's GRU is oneDNN's linear-before-reset GRU with the gates reordered (z, r, n)."""
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    _check_sequence_layer(nn.GRU, kwargs, np.float32, with_hx, batched, False, seed=num_layers * 5 + with_hx)


def _hlo(layer, params, x, grad: bool) -> str:
    def f(p, x):
        y, (h, c) = layer.forward(p, x)
        return jnp.sum(y) + jnp.sum(h) + jnp.sum(c)

    return jax.jit(jax.grad(f) if grad else f).lower(params, x).as_text()


def _layer_and_args(dtype=np.float32, **kwargs):
    layer = nn.LSTM(IN, HID, num_layers=2, **kwargs)
    params, _ = layer.init(jax.random.key(0))
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    return layer, params, jnp.ones((L, N, IN), dtype)


def test_onednn_is_the_path_taken():
    layer, params, x = _layer_and_args(bidirectional=True)
    fwd, grad = _hlo(layer, params, x, False), _hlo(layer, params, x, True)
    assert fwd.count("funcnets_lstm_forward") == 2 and "funcnets_lstm_backward" not in fwd
    assert grad.count("funcnets_lstm_backward") == 2
    assert "while" not in grad  # no lax.scan left
    gru = nn.GRU(IN, HID)
    gparams, _ = gru.init(jax.random.key(0))
    text = jax.jit(jax.grad(lambda p, x: jnp.sum(gru.forward(p, x)[0]))).lower(gparams, x).as_text()
    assert "funcnets_gru_forward" in text and "funcnets_gru_backward" in text and "while" not in text


def test_scan_is_kept_where_onednn_does_not_apply():
    layer, params, x = _layer_and_args()
    with _onednn_rnn.use_scan():
        assert "funcnets_lstm" not in _hlo(layer, params, x, False)
    proj, pparams, _ = _layer_and_args(proj_size=2)
    assert "funcnets_lstm" not in _hlo(proj, pparams, x, False)
    with jax.enable_x64(True):
        assert "funcnets_lstm" not in _hlo(*_layer_and_args(np.float64), False)
    lengths = jnp.array([5, 2, 3])
    text = jax.jit(lambda p, x: layer.forward(p, x, lengths=lengths)[0]).lower(params, x).as_text()
    assert "funcnets_lstm" not in text
    rnn = nn.RNN(IN, HID)
    rparams, _ = rnn.init(jax.random.key(0))
    assert "funcnets_" not in jax.jit(lambda p, x: rnn.forward(p, x)[0]).lower(rparams, x).as_text()


def test_forward_mode_under_use_scan():
    """jvp is not defined for the oneDNN layer (a custom VJP); under use_scan it is, and it
    agrees with the oneDNN path's reverse mode."""
    layer, params, x = _layer_and_args()
    f = lambda x: layer.forward(params, x)[0]  # noqa: E731
    t = jnp.asarray(np.random.default_rng(0).standard_normal(x.shape), np.float32)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(f, (x,), (t,))
    with _onednn_rnn.use_scan():
        y, dy = jax.jit(lambda x, t: jax.jvp(f, (x,), (t,)))(x, t)
    y1, pull = jax.vjp(f, x)
    ct = jnp.ones_like(y1)
    # <ct, J t> from forward mode equals <J^T ct, t> from oneDNN's backward
    np.testing.assert_allclose(float(jnp.vdot(ct, dy)), float(jnp.vdot(pull(ct)[0], t)), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y1), rtol=1e-5, atol=1e-6)


def test_vmap_runs_each_sequence():
    """Under vmap each batch element runs its own calls; the result equals one batched call."""
    layer = nn.LSTM(IN, HID)
    params, _ = layer.init(jax.random.key(1))
    xs = jnp.asarray(np.random.default_rng(1).standard_normal((2, L, N, IN)), np.float32)
    g = lambda p, x: jnp.sum(layer.forward(p, x)[0] ** 2)  # noqa: E731
    per = jax.jit(jax.vmap(jax.grad(g), in_axes=(None, 0)))(params, xs)
    grad = jax.jit(jax.grad(g))
    for k in range(2):
        one = grad(params, xs[k])
        for name in one:
            np.testing.assert_allclose(np.asarray(per[name][k]), np.asarray(one[name]), rtol=1e-5, atol=1e-6)


def test_dropout_between_layers_matches_the_scan_path():
    """Dropout sits between layer calls: same key, same masks, same outputs as lax.scan."""
    layer = nn.LSTM(IN, HID, num_layers=2, dropout=0.5)
    params, _ = layer.init(jax.random.key(2))
    x = jnp.ones((L, N, IN), np.float32)
    f = lambda p, x, k: layer.forward(p, x, train=True, key=k)[0]  # noqa: E731
    y = jax.jit(f)(params, x, jax.random.key(3))
    with _onednn_rnn.use_scan():
        y_scan = jax.jit(f)(params, x, jax.random.key(3))
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_scan), rtol=1e-5, atol=1e-6)
