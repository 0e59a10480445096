"""Recurrent layers against torch: RNN (tanh/relu), LSTM (proj_size), GRU and the cells.

The option space (mode, num_layers, bidirectional, batch_first, bias, proj_size,
nonlinearity, initial state, unbatched input, variable lengths, dtype) is drawn by
hypothesis; each case copies the same weights into torch and funcnets and compares
outputs, final states and the gradients w.r.t. the input, the initial state and every
parameter for one random cotangent, in float64 (1e-10) and float32 (1e-5 values, 1e-4
gradients), relative to the largest reference value. Variable lengths are compared with
torch's ``pack_padded_sequence`` -> layer -> ``pad_packed_sequence(total_length=L)``.
Sizes are tiny (L=5, N=3, input 3, hidden 4) so each case compiles quickly.
"""

import warnings
from functools import partial

import jax
import jax.test_util
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from funcnets import ShapeError, nn
from helpers import assert_close, to_np

L, N, IN, HID = 5, 3, 3, 4
TOL = {np.float64: (1e-10, 1e-10), np.float32: (1e-5, 1e-4)}  # (values, gradients)
SEEDS = st.integers(0, 2**31 - 1)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


def _abstract_params(layer):
    """The parameter tree's shapes without running (or compiling) the initialiser."""
    return jax.eval_shape(layer.init_tree, jax.random.key(0))[0]


def _copy_random_weights(tlayer, rng):
    """Random weights in torch's init range (a little wider) into the torch layer; the
    same arrays as funcnets params, keyed by torch's names."""
    with torch.no_grad():
        for p in tlayer.parameters():
            p.copy_(torch.tensor(rng.uniform(-0.8, 0.8, tuple(p.shape))))
    return {n: jnp.asarray(to_np(p)) for n, p in tlayer.named_parameters()}


@partial(jax.jit, static_argnums=0)
def _fwd_bwd(layer, params, x, hx, lengths, cot):
    """Outputs and the (params, x, hx) gradients for cotangent ``cot``: one program per layer."""
    out, pull = jax.vjp(lambda p, x, hx: layer.forward(p, x, hx, lengths=lengths), params, x, hx)
    return out, pull(cot)


@partial(jax.jit, static_argnums=0)
def _cell_fwd_bwd(cell, params, x, hx, cot):
    """A cell's output(s) and the (params, x) gradients for cotangent ``cot``: one program."""
    out, pull = jax.vjp(lambda p, x: cell.apply(p, {}, (x, hx))[0], params, x)
    return out, pull(cot)


def _torch_run(tlayer, x, hx, lengths, batch_first):
    if lengths is None:
        return tlayer(x, hx)
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    y, h = tlayer(packed, hx)
    y, _ = pad_packed_sequence(y, batch_first=batch_first, total_length=L)
    return y, h


def _check_sequence_layer(cls, kwargs, dtype, with_hx, batched, use_lengths, seed):
    rng = np.random.default_rng(seed)
    rtol_v, rtol_g = TOL[dtype]
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tlayer = getattr(torch.nn, cls.__name__)(IN, HID, **kwargs).to(tdtype)
    layer = cls(IN, HID, **kwargs)
    params = {k: v.astype(dtype) for k, v in _copy_random_weights(tlayer, rng).items()}
    assert list(params) == list(layer.param_names())
    assert [n for n, _ in layer.named_parameters(params)] == [n for n, _ in tlayer.named_parameters()]

    bf = kwargs.get("batch_first", False)
    shape = ((N, L, IN) if bf else (L, N, IN)) if batched else (L, IN)
    x = rng.standard_normal(shape).astype(dtype)
    D = 2 if kwargs.get("bidirectional") else 1
    nl = kwargs.get("num_layers", 1)
    h_out = kwargs.get("proj_size", 0) or HID
    hs = (D * nl, N) if batched else (D * nl,)
    lstm = cls is nn.LSTM
    hx = None
    if with_hx:
        hx = rng.standard_normal(hs + (h_out,)).astype(dtype)
        if lstm:
            hx = (hx, rng.standard_normal(hs + (HID,)).astype(dtype))
    lengths = rng.integers(1, L + 1, N) if use_lengths else None

    # torch
    xt = torch.tensor(x, requires_grad=True)
    hxt = None if hx is None else (
        tuple(torch.tensor(a, requires_grad=True) for a in hx) if lstm else torch.tensor(hx, requires_grad=True)
    )
    yt, ht = _torch_run(tlayer, xt, hxt, lengths, bf)
    outs_t = [yt, *(ht if lstm else (ht,))]
    cots = [rng.standard_normal(tuple(o.shape)).astype(dtype) for o in outs_t]
    loss = sum((o * torch.tensor(c)).sum() for o, c in zip(outs_t, cots))
    loss.backward()

    # funcnets
    cot = (cots[0], (cots[1], cots[2])) if lstm else (cots[0], cots[1])
    (y, h), (gp, gx, ghx) = _fwd_bwd(layer, params, jnp.asarray(x), hx, None if lengths is None else jnp.asarray(lengths), cot)
    outs = [y, *(h if lstm else (h,))]
    for name, a, b in zip(("output", "h_n", "c_n"), outs, outs_t):
        assert a.dtype == dtype and a.shape == tuple(b.shape), (name, a.shape, b.shape)
        assert_close(a, to_np(b), rtol_v, name)
    assert_close(gx, to_np(xt.grad), rtol_g, "d input")
    if with_hx:
        for name, a, b in zip(("d h0", "d c0"), ghx if lstm else (ghx,), hxt if lstm else (hxt,)):
            assert_close(a, to_np(b.grad), rtol_g, name)
    for name, p in tlayer.named_parameters():
        assert_close(gp[name], to_np(p.grad), rtol_g, f"d {name}")
    if use_lengths:  # what pad_packed_sequence pads with
        t_idx = np.arange(L)[:, None] >= lengths[None, :]
        y_tm = np.asarray(y).transpose(1, 0, 2) if bf else np.asarray(y)
        assert np.all(y_tm[t_idx] == 0)


MODES = st.sampled_from(["RNN_TANH", "RNN_RELU", "LSTM", "GRU"])


@settings(max_examples=16, deadline=None)
@given(
    mode=MODES, num_layers=st.integers(1, 2), bidirectional=st.booleans(), batch_first=st.booleans(),
    bias=st.booleans(), proj=st.booleans(), with_hx=st.booleans(), batched=st.booleans(),
    use_lengths=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]), seed=SEEDS,
)
@example(mode="LSTM", num_layers=2, bidirectional=True, batch_first=True, bias=True, proj=True, with_hx=True,
         batched=True, use_lengths=True, dtype=np.float64, seed=0)
@example(mode="GRU", num_layers=2, bidirectional=True, batch_first=False, bias=True, proj=False, with_hx=True,
         batched=True, use_lengths=True, dtype=np.float64, seed=1)
def test_sequence_layers_match_torch(mode, num_layers, bidirectional, batch_first, bias, proj, with_hx, batched,
                                     use_lengths, dtype, seed):
    kwargs = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    cls = {"RNN_TANH": nn.RNN, "RNN_RELU": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}[mode]
    if mode == "RNN_RELU":
        kwargs["nonlinearity"] = "relu"
    if mode == "LSTM" and proj:
        kwargs["proj_size"] = 2
    with jax.enable_x64(dtype == np.float64):
        _check_sequence_layer(cls, kwargs, dtype, with_hx, batched, use_lengths and batched, seed)


@settings(max_examples=12, deadline=None)
@given(cell=st.sampled_from(["RNNCell_tanh", "RNNCell_relu", "LSTMCell", "GRUCell"]), bias=st.booleans(),
       with_hx=st.booleans(), batched=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]), seed=SEEDS)
def test_cells_match_torch(cell, bias, with_hx, batched, dtype, seed):
    rng = np.random.default_rng(seed)
    name, _, act = cell.partition("_")
    kwargs = {"bias": bias, **({"nonlinearity": act} if act else {})}
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tcell = getattr(torch.nn, name)(IN, HID, **kwargs).to(tdtype)
    fcell = getattr(nn, name)(IN, HID, **kwargs)
    assert repr(fcell) == repr(tcell)
    lstm = name == "LSTMCell"
    rtol_v, rtol_g = TOL[dtype]
    with jax.enable_x64(dtype == np.float64):
        params = {k: v.astype(dtype) for k, v in _copy_random_weights(tcell, rng).items()}
        assert list(params) == list(fcell.param_names())
        x = rng.standard_normal((N, IN) if batched else (IN,)).astype(dtype)
        hs = (N, HID) if batched else (HID,)
        hx = None
        if with_hx:
            hx = tuple(rng.standard_normal(hs).astype(dtype) for _ in range(2 if lstm else 1))
            hx = hx if lstm else hx[0]
        xt = torch.tensor(x, requires_grad=True)
        hxt = None if hx is None else (tuple(torch.tensor(a) for a in hx) if lstm else torch.tensor(hx))
        out_t = tcell(xt, hxt)
        outs_t = list(out_t) if lstm else [out_t]
        cots = [rng.standard_normal(tuple(o.shape)).astype(dtype) for o in outs_t]
        sum((o * torch.tensor(c)).sum() for o, c in zip(outs_t, cots)).backward()

        out, (gp, gx) = _cell_fwd_bwd(fcell, params, jnp.asarray(x), hx, tuple(cots) if lstm else cots[0])
        for a, b in zip(out if lstm else (out,), outs_t):
            assert a.shape == tuple(b.shape)
            assert_close(a, to_np(b), rtol_v, f"{name} output")
        assert_close(gx, to_np(xt.grad), rtol_g, "d input")
        for n, p in tcell.named_parameters():
            assert_close(gp[n], to_np(p.grad), rtol_g, f"d {n}")


def test_lengths_do_not_recompile(x64):
    """Lengths are data: two different lengths vectors run one compiled program."""
    traces = []
    layer = nn.LSTM(IN, HID, bidirectional=True)
    params, _ = layer.init(jax.random.key(0))

    @jax.jit
    def f(params, x, lengths):
        traces.append(1)
        return layer.apply(params, {}, (x, None, lengths))[0]

    x = jnp.asarray(np.random.default_rng(0).standard_normal((L, N, IN)))
    y1, _ = f(params, x, jnp.array([5, 2, 3]))
    y2, _ = f(params, x, jnp.array([1, 4, 5]))
    assert len(traces) == 1
    assert np.all(np.asarray(y1)[3:, 1] == 0) and np.all(np.asarray(y2)[1:, 0] == 0)
    assert np.all(np.asarray(y2)[:, 2] != 0)


def test_vmap_per_sample_gradients_match_torch(x64):
    """Per-sample parameter gradients by vmap(grad) over unbatched sequences equal torch's,
    one backward pass per sample."""
    rng = np.random.default_rng(3)
    tlayer = torch.nn.GRU(IN, HID, num_layers=2, bidirectional=True).double()
    layer = nn.GRU(IN, HID, num_layers=2, bidirectional=True)
    params = _copy_random_weights(tlayer, rng)
    xs = rng.standard_normal((N, L, IN))

    def loss(p, x):  # x: (L, IN), unbatched
        y, h = layer.apply(p, {}, x)[0]
        return (y**2).sum() + h.sum()

    grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, jnp.asarray(xs))
    for i in range(N):
        tlayer.zero_grad()
        y, h = tlayer(torch.tensor(xs[i]))
        ((y**2).sum() + h.sum()).backward()
        for n, p in tlayer.named_parameters():
            assert_close(grads[n][i], to_np(p.grad), 1e-10, f"sample {i} d {n}")


def test_dropout_between_layers():
    """A 2-layer relu RNN whose second layer passes its input through (W_ih = I, W_hh = 0,
    no bias) shows the dropout mask on the first layer's (positive) output: about p of the
    elements are zero, the rest scaled by 1/(1-p), and nothing after the last layer; eval
    and train with p = 0 are the plain network."""
    p_drop, H = 0.3, 16
    layer = nn.RNN(H, H, num_layers=2, nonlinearity="relu", bias=False, dropout=p_drop)
    rng = np.random.default_rng(0)
    params = {
        "weight_ih_l0": jnp.asarray(rng.uniform(0, 0.2, (H, H)), jnp.float32),
        "weight_hh_l0": jnp.asarray(rng.uniform(0, 0.2, (H, H)), jnp.float32),
        "weight_ih_l1": jnp.eye(H),
        "weight_hh_l1": jnp.zeros((H, H)),
    }
    x = jnp.asarray(rng.uniform(0.1, 1, (20, 64, H)), jnp.float32)
    (y_eval, h_eval), _ = layer.apply(params, {}, x, train=False)
    (y_tr, h_tr), _ = layer.apply(params, {}, x, train=True, key=jax.random.key(1))
    (y_tr2, _), _ = layer.apply(params, {}, x, train=True, key=jax.random.key(2))
    y_eval, y_tr = np.asarray(y_eval), np.asarray(y_tr)
    assert np.all(y_eval > 0)  # the plain first layer's output
    zero = y_tr == 0
    assert abs(zero.mean() - p_drop) < 0.01, zero.mean()  # 20480 draws: std 0.003
    np.testing.assert_allclose(y_tr[~zero], y_eval[~zero] / (1 - p_drop), rtol=1e-5)
    np.testing.assert_array_equal(h_tr[0], h_eval[0])  # layer 0 itself is not dropped
    assert not np.array_equal(y_tr, np.asarray(y_tr2))  # the key decides the mask
    with pytest.raises(ValueError, match="PRNG key"):
        layer.apply(params, {}, x, train=True)
    (y0, _), _ = nn.RNN(H, H, num_layers=2, nonlinearity="relu", bias=False).apply(params, {}, x, train=True)
    np.testing.assert_array_equal(y0, y_eval)


@pytest.mark.parametrize(
    "ctor",
    [
        lambda m: m.LSTM(10, 20, num_layers=2, batch_first=True, bidirectional=True),
        lambda m: m.LSTM(10, 20, proj_size=5, bias=False),
        lambda m: m.RNN(3, 4, 2, "relu", dropout=0.5),
        lambda m: m.GRU(3, 4, dropout=1),
        lambda m: m.RNNCell(3, 4, bias=False, nonlinearity="relu"),
        lambda m: m.LSTMCell(3, 4),
        lambda m: m.GRUCell(3, 4, False),
    ],
)
def test_repr_names_and_shapes_match_torch(ctor):
    with warnings.catch_warnings(record=True) as wt:
        warnings.simplefilter("always")
        t = ctor(torch.nn)
    with warnings.catch_warnings(record=True) as wf:
        warnings.simplefilter("always")
        f = ctor(nn)
    assert repr(f) == repr(t)
    assert [str(w.message) for w in wf] == [str(w.message) for w in wt]  # dropout with one layer
    params = _abstract_params(f)
    assert [(n, a.shape) for n, a in f.named_parameters(params)] == [(n, tuple(p.shape)) for n, p in t.named_parameters()]


@pytest.mark.parametrize("ctor", [lambda m: m.LSTM(8, 64, proj_size=16, bidirectional=True), lambda m: m.GRUCell(8, 64)])
def test_default_init_distributions(ctor):
    """Every parameter U(±1/sqrt(hidden_size)) (mean 0, std bound/sqrt(3)), as torch's."""
    f, t = ctor(nn), ctor(torch.nn)
    params, _ = f.init(jax.random.key(0))
    bound = 1 / np.sqrt(64)
    ours = np.concatenate([np.ravel(a) for a in f.parameters(params)])
    theirs = np.concatenate([to_np(p).ravel() for p in t.parameters()])
    for name, v in (("funcnets", ours), ("torch", theirs)):
        assert v.min() >= -bound and v.max() <= bound, name
        assert abs(v.mean()) < 0.05 * bound, name
        assert abs(v.std() - bound / np.sqrt(3)) < 0.02 * bound, name
        assert v.max() > 0.99 * bound and v.min() < -0.99 * bound, name
    for n, a in f.named_parameters(params):  # no parameter left at zero
        assert np.std(np.asarray(a)) > 0.4 * bound, n


def test_errors():
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    params = _abstract_params(lstm)  # every error is raised before the weights are read
    x = jnp.zeros((5, 2, 3))
    with pytest.raises(ShapeError, match=r"LSTM\(3, 4, num_layers=2, bidirectional=True\) expected input \(\.\.\., 3\).*got \(5, 2, 7\).*input_size=7"):
        lstm.apply(params, {}, jnp.zeros((5, 2, 7)))
    with pytest.raises(ShapeError, match=r"expected input \(L, N, 3\).*got \(2, 5, 2, 3\)"):
        lstm.apply(params, {}, jnp.zeros((2, 5, 2, 3)))
    with pytest.raises(ShapeError, match=r"LSTM\(3, 4.*expected h0 of shape \(4, 2, 4\).*got \(2, 2, 4\).*Pass \(h0, c0\)"):
        lstm.apply(params, {}, (x, (jnp.zeros((2, 2, 4)), jnp.zeros((4, 2, 4)))))
    with pytest.raises(ShapeError, match=r"expected c0 of shape \(4, 2, 4\)"):
        lstm.apply(params, {}, (x, (jnp.zeros((4, 2, 4)), jnp.zeros((4, 2, 3)))))
    with pytest.raises(ShapeError, match=r"expected hx = \(h0, c0\)"):
        lstm.apply(params, {}, (x, jnp.zeros((4, 2, 4))))
    with pytest.raises(ShapeError, match=r"lengths: integers of shape \(2,\)"):
        lstm.apply(params, {}, (x, None, jnp.array([5, 5, 5])))
    with pytest.raises(ShapeError, match=r"every length must be in \[1, 5\]"):
        lstm.apply(params, {}, (x, None, jnp.array([6, 0])))
    gru = nn.GRU(3, 4, batch_first=True)
    gp = _abstract_params(gru)
    with pytest.raises(ShapeError, match=r"GRU\(3, 4, batch_first=True\) expected h0 of shape \(1, 2, 4\)"):
        gru.apply(gp, {}, (jnp.zeros((2, 5, 3)), jnp.zeros((1, 5, 4))))
    with pytest.raises(ShapeError, match="Only LSTM takes"):
        gru.apply(gp, {}, (jnp.zeros((2, 5, 3)), (jnp.zeros((1, 2, 4)),) * 2))
    with pytest.raises(ShapeError, match="floating-point"):
        gru.apply(gp, {}, jnp.zeros((2, 5, 3), jnp.int32))
    cell = nn.LSTMCell(3, 4)
    cp = _abstract_params(cell)
    with pytest.raises(ShapeError, match=r"LSTMCell\(3, 4\) expected input \(N, 3\).*got \(5, 2, 3\).*LSTM\(3, 4\)"):
        cell.apply(cp, {}, jnp.zeros((5, 2, 3)))
    with pytest.raises(ShapeError, match=r"expected c of shape \(2, 4\)"):
        cell.apply(cp, {}, (jnp.zeros((2, 3)), (jnp.zeros((2, 4)), jnp.zeros((4,)))))
    for bad, match in [
        (lambda: nn.LSTM(3, 4, proj_size=4), "proj_size has to be smaller than hidden_size"),
        (lambda: nn.RNN(3, 4, nonlinearity="gelu"), "Unknown nonlinearity 'gelu'"),
        (lambda: nn.GRU(3, 4, dropout=1.5), "dropout should be a number in range"),
        (lambda: nn.GRU(3, 0), "hidden_size must be greater than zero"),
        (lambda: nn.RNNCell(3, 4, nonlinearity="sigmoid"), "Unknown nonlinearity"),
    ]:
        with pytest.raises(ValueError, match=match):
            bad()
    with pytest.raises(TypeError, match="bias should be of type bool"):
        nn.LSTM(3, 4, bias=1)


def test_errors_name_the_layer_inside_a_container(x64):
    """A ShapeError from an LSTM deep in a model names its path (the house's Scope)."""
    lstm = nn.LSTM(3, 4)
    scope = nn.Scope({"rnn": _abstract_params(lstm)}, {}, False, None)
    with pytest.raises(ShapeError, match=r"^rnn: LSTM\(3, 4\) expected input"):
        scope("rnn", lstm, jnp.zeros((5, 2, 6)))


def test_forward_mode_and_numerical_gradients_with_lengths(x64):
    """jvp and vjp agree with finite differences (float64), through the masked scan of a
    bidirectional LSTM with projections."""
    layer = nn.LSTM(IN, HID, bidirectional=True, proj_size=2)
    params, _ = layer.init(jax.random.key(1))
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((L, N, IN)))
    lengths = jnp.array([2, 5, 4])
    f = jax.jit(lambda p, x: layer.forward(p, x, lengths=lengths))
    jax.test_util.check_grads(f, (params, x), order=1, modes=("fwd", "rev"))


def test_second_order_through_the_recurrence(x64):
    """The recurrence's custom JVP (weight tangents as one GEMM outside the loop) is itself
    differentiable: second derivatives in both modes agree with finite differences."""
    layer = nn.GRU(IN, HID, bidirectional=True)
    params, _ = layer.init(jax.random.key(3))
    x = jnp.asarray(np.random.default_rng(3).standard_normal((L, N, IN)))
    lengths = jnp.array([3, 5, 1])
    f = jax.jit(lambda p, x: jnp.sum(jnp.sin(layer.forward(p, x, lengths=lengths)[0])))
    jax.test_util.check_grads(f, (params, x), order=2, modes=("fwd", "rev"))

def test_layout_contexts_do_not_change_sequences(x64):
    """The layout contexts reinterpret 4-D image activations only; a sequence layer inside
    channels_last()/batch_last() gives the same answer as outside."""
    from funcnets.nn import functional as F

    layer = nn.GRU(IN, HID, batch_first=True)
    params, _ = layer.init(jax.random.key(2))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((N, L, IN)))
    ref = layer.apply(params, {}, x)[0]
    for ctx in (F.channels_last, F.batch_last):
        with ctx():
            out = layer.apply(params, {}, x)[0]
        np.testing.assert_array_equal(out[0], ref[0])
