"""from_torch on what users write: a nanoGPT-style language model (a causal-mask buffer sliced
by the traced sequence length, the head's weight tied to the token embedding), and indexing
and sorting ops (gather/scatter with an index smaller than the input, sort with ties).

float64 (values, gradients and a three-step SGD trajectory to 1e-10 relative against torch);
the tied weight is one parameter as in torch (`parameters()` lists it once, its gradient
sums both uses, `state_dict()` names it twice).
"""

import importlib.util
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import funcnets
from funcnets import torch_io
from funcnets.convert import UnsupportedOperationError, from_torch, write_port
from funcnets.errors import FuncnetsError
from helpers import assert_close, to_np

VOCAB, BLOCK, EMBD = 11, 8, 16


class CausalSelfAttention(tnn.Module):  # nanoGPT's, with its mask buffer
    def __init__(self, n_embd=EMBD, n_head=2, block_size=BLOCK):
        super().__init__()
        self.c_attn = tnn.Linear(n_embd, 3 * n_embd)
        self.c_proj = tnn.Linear(n_embd, n_embd)
        self.n_head, self.n_embd = n_head, n_embd
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))  # sliced by the traced T
        y = TF.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class GPT(tnn.Module):
    def __init__(self, tie=True):
        super().__init__()
        self.wte, self.wpe = tnn.Embedding(VOCAB, EMBD), tnn.Embedding(BLOCK, EMBD)
        self.attn, self.ln = CausalSelfAttention(), tnn.LayerNorm(EMBD)
        self.head = tnn.Linear(EMBD, VOCAB, bias=False)
        if tie:
            self.head.weight = self.wte.weight

    def forward(self, idx):
        b, t = idx.size()
        x = self.wte(idx) + self.wpe(torch.arange(0, t, dtype=torch.long, device=idx.device))
        x = x + self.attn(self.ln(x))
        return self.head(self.ln(x))


def _run_port(net, path, x):
    """Write ``net``'s port to ``path``, import it (no torch inside) and run it on ``x``."""
    src_path, _ = write_port(net, path)
    spec = importlib.util.spec_from_file_location(path.stem, src_path)
    mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
        model, params, state = mod.load()
        return model.apply(params, state, jnp.asarray(x.numpy()))[0]
    finally:
        del sys.modules[spec.name]


def _gpt(tie):
    torch.manual_seed(0)
    return GPT(tie).double(), torch.randint(0, VOCAB, (3, 6)), torch.randint(0, VOCAB, (3, 6))


def test_tied_weight_trains_as_one_parameter(x64):
    net, idx, tgt = _gpt(tie=True)
    model, params, state = from_torch(net, idx)
    assert model.shared_tensors() == {"head.weight": "wte.weight"}
    # parameters() lists the tied weight once, under its first name
    assert [n for n, _ in model.named_parameters(params)] == [n for n, _ in net.named_parameters()]
    assert sum(a.size for a in model.parameters(params)) == sum(p.numel() for p in net.parameters())

    def loss(p, x, t):
        y, _ = model.apply(p, state, x, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(y.reshape(-1, VOCAB), t.reshape(-1)).mean()

    step = jax.jit(jax.value_and_grad(loss))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    tx = optax.sgd(0.5, momentum=0.9)
    opt_state, x, t = tx.init(params), jnp.asarray(idx.numpy()), jnp.asarray(tgt.numpy())
    net.train()
    for _ in range(3):  # the gradient of wte.weight sums the embedding's and the head's
        opt.zero_grad()
        ref = TF.cross_entropy(net(idx).reshape(-1, VOCAB), tgt.reshape(-1))
        ref.backward()
        value, g = step(params, x, t)
        assert_close(value, to_np(ref), 1e-10, "loss")
        for name, p in net.named_parameters():
            assert_close(dict(model.named_parameters(g))[name], to_np(p.grad), 1e-9, name)
        opt.step()
        updates, opt_state = tx.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
    # state_dict: both names, torch's values; torch's state_dict loads back into one parameter
    sd = torch_io.state_dict(model, params, state)
    assert list(sd) == list(net.state_dict())
    for k, v in net.state_dict().items():
        assert_close(sd[k], to_np(v), 1e-10, k)
    loaded = torch_io.load_state_dict(model, {k: v.numpy() for k, v in net.state_dict().items()})
    assert (loaded.missing_keys, loaded.unexpected_keys) == ([], [])
    assert jax.tree_util.tree_structure(loaded.params) == jax.tree_util.tree_structure(params)
    assert jax.tree_util.tree_structure(model.init(jax.random.key(0))[0]) == jax.tree_util.tree_structure(params)
    # either name of the tied tensor loads it, as in torch
    only_head = {k: v.numpy() for k, v in net.state_dict().items() if k != "wte.weight"}
    loaded = torch_io.load_state_dict(model, only_head, strict=False)
    assert loaded.missing_keys == ["wte.weight"]
    assert_close(loaded.params["wte"]["weight"], to_np(net.wte.weight), 0, "wte.weight")


def test_buffer_sliced_by_traced_size_converts_and_ports(tmp_path, x64):
    net, idx, _ = _gpt(tie=False)
    net.eval()
    ref = to_np(net(idx))
    model, params, state = from_torch(net, idx)
    y, _ = model.apply(params, state, jnp.asarray(idx.numpy()))
    assert_close(y, ref, 1e-12, "from_torch")
    assert_close(_run_port(net, tmp_path / "gpt_port.py", idx), ref, 1e-12, "port")


def test_port_refuses_tied_weights():
    net, idx, _ = _gpt(tie=True)
    with pytest.raises(FuncnetsError, match=r"'head.weight' is the tensor 'wte.weight' \(tied weights.*from_torch"):
        funcnets.port(net, idx)


def test_untraceable_forward_is_reported_with_its_line():
    class PerRow(tnn.Module):
        def forward(self, x):
            return torch.stack([x[i] * i for i in range(x.size(0))])  # range() of a traced size

    with pytest.raises(UnsupportedOperationError, match=r"torch.fx could not trace forward: TypeError(.|\n)*"
                                                        r"test_from_torch_user.py:\d+ in forward: return torch.stack"):
        from_torch(PerRow())


class IndexOps(tnn.Module):
    def __init__(self):
        super().__init__()
        self.w = tnn.Parameter(torch.randn(4, 6))

    def forward(self, x, idx):
        v = x @ self.w  # (3, 6)
        g = torch.gather(v, 1, idx)  # idx (2, 2): smaller than v in dim 0 as well
        acc = torch.zeros_like(v).scatter_add(1, idx, g * 2)
        put = v.scatter(1, idx, g.tanh()).scatter(0, idx[:, :1] % 3, 0.5)
        acc.scatter_add_(1, idx[:1], v[:1, :2])  # in place: later uses see it
        srt, order = torch.sort(torch.round(v * 2) / 2, dim=1, descending=True, stable=True)  # ties
        up, _ = v.sort(dim=0)
        m = torch.baddbmm(v.new_ones(3, 1, 1), v[:, None, :], v[:, :, None], beta=0.5, alpha=2.0)
        return torch.clamp_min(acc + put + srt + up, -1.0) + m[:, 0] + order.to(v.dtype) + torch.clamp_max(v, 0.3)


def test_index_and_sort_ops_float64(x64):
    torch.manual_seed(0)
    net = IndexOps().double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[1, 4], [5, 1]])
    model, params, state = from_torch(net, x, idx)
    y = net(x, idx)
    weight = torch.randn_like(y)
    (y * weight).sum().backward()

    def loss(p, xj):
        out, _ = model.apply(p, state, (xj, jnp.asarray(idx.numpy())))
        return jnp.sum(out * jnp.asarray(weight.numpy())), out

    (_, out), (g, gx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, jnp.asarray(x.detach().numpy()))
    assert_close(out, to_np(y), 1e-12, "output")
    assert_close(gx, to_np(x.grad), 1e-12, "input gradient")
    assert_close(g["w"], to_np(net.w.grad), 1e-12, "weight gradient")


def _cases():
    """(name, torch function, arguments): NumPy arrays become torch tensors / JAX arrays."""
    r = np.random.default_rng(0)
    a, b, c = r.normal(size=(3, 4)), r.normal(size=(3, 4)), r.normal(size=(3, 4))
    sq, v4, v3 = r.normal(size=(4, 4)), r.normal(size=4), r.normal(size=(2, 3))
    bat1, bat2 = r.normal(size=(2, 3, 5)), r.normal(size=(2, 5, 4))
    pos = r.uniform(0.5, 3.0, size=(3, 4))
    T = torch
    return [
        ("addcmul", T.addcmul, (a, b, c), {"value": 0.5}), ("addcdiv", T.addcdiv, (a, b, pos), {"value": -2.0}),
        ("addmv", T.addmv, (v3[0], r.normal(size=(3, 4)), v4), {"beta": 0.5}),
        ("addbmm", T.addbmm, (r.normal(size=(3, 4)), bat1, bat2), {"alpha": 2.0}),
        ("addmm beta=0 ignores NaN", T.addmm, (np.full((3, 4), np.nan), a, sq), {"beta": 0}),
        ("mv", T.mv, (a, v4), {}), ("dot", T.dot, (v4, v4[::-1].copy()), {}), ("inner", T.inner, (a, b), {}),
        ("kron", T.kron, (v3, sq[:2, :2]), {}), ("absolute", T.absolute, (a,), {}),
        ("deg2rad", T.deg2rad, (a,), {}), ("rad2deg", T.rad2deg, (a,), {}), ("lgamma", T.lgamma, (pos,), {}),
        ("logaddexp", T.logaddexp, (a, b), {}), ("xlogy", T.xlogy, (np.where(a > 0, a, 0), pos), {}),
        ("logcumsumexp", T.logcumsumexp, (a, -1), {}), ("fliplr", T.fliplr, (a,), {}),
        ("flipud", T.flipud, (a,), {}), ("trace", T.trace, (sq,), {}), ("diag 1-d", T.diag, (v4, -1), {}),
        ("diag 2-d", T.diag, (a, 1), {}), ("diagonal", T.diagonal, (bat1, 1, 2, 0), {}),
        ("diag_embed", T.diag_embed, (v3, 1, 0, 2), {}), ("diff", T.diff, (a,), {"n": 2, "dim": 0, "prepend": b}),
        ("rot90", T.rot90, (bat1, 3, [2, 1]), {}), ("isclose", T.isclose, (a, a + 1e-6 * b), {"rtol": 1e-6}),
        ("nanmean", T.nanmean, (np.where(a > 1, np.nan, a), 1), {"keepdim": True}),
        ("count_nonzero", T.count_nonzero, (np.where(a > 0, a, 0), 0), {}),
        ("var_mean", T.var_mean, (a, 1), {"correction": 0}), ("std_mean", T.std_mean, (a, (0, 1), True), {}),
        ("aminmax", T.aminmax, (a,), {"dim": 0, "keepdim": True}), ("argsort", T.argsort, (np.round(a),), {"dim": 1, "descending": True, "stable": True}),
        ("take_along_dim", T.take_along_dim, (a, np.array([[3], [0], [1]]), 1), {}),
        ("tensor_split sections", T.tensor_split, (a, 3, 1), {}), ("tensor_split indices", T.tensor_split, (a, [1, 3], 1), {}),
        ("cross", T.cross, (v3, v3[::-1].copy()), {}), ("cdist", T.cdist, (a, b[:2]), {}),
        ("cdist p=1", T.cdist, (a, b), {"p": 1.0}), ("meshgrid", T.meshgrid, (v4, v3[0]), {"indexing": "xy"}),
        ("hstack", T.hstack, ([a, b],), {}), ("vstack", T.vstack, ([v4, v4],), {}),
        ("broadcast_tensors", T.broadcast_tensors, (v4, a), {}), ("masked_fill", T.masked_fill, (a, a > 0, -1.0), {}),
        ("round decimals", T.round, (a * 100,), {"decimals": -1}), ("clamp_max", T.clamp_max, (a, 0.2), {}),
        ("norm p=0", T.norm, (np.where(a > 0, a, 0),), {"p": 0, "dim": 1}), ("norm p=3", T.norm, (a, 3, 0), {}),
        ("glu", TF.glu, (a, 1), {}), ("tanhshrink", TF.tanhshrink, (a,), {}),
        ("cross_entropy", TF.cross_entropy, (a, np.array([0, 3, 1])), {"label_smoothing": 0.1, "reduction": "sum"}),
        ("nll_loss", TF.nll_loss, (a, np.array([0, -100, 1])), {}), ("mse_loss", TF.mse_loss, (a, b), {}),
        ("l1_loss", TF.l1_loss, (a, b), {"reduction": "none"}), ("smooth_l1_loss", TF.smooth_l1_loss, (a, b), {"beta": 0.5}),
        ("binary_cross_entropy", TF.binary_cross_entropy, (pos / 4, np.ones((3, 4)) * 0.3), {}),
        ("bce_with_logits", TF.binary_cross_entropy_with_logits, (a, (b > 0) * 1.0), {"pos_weight": np.full(4, 2.0)}),
        ("kl_div", TF.kl_div, (np.log(pos / pos.sum()), pos / pos.sum()), {"reduction": "batchmean"}),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_torch_functions_equal_torch_float64(case, x64):
    from funcnets.convert import ops

    _, fn, args, kwargs = case

    def conv(v, f):
        if isinstance(v, np.ndarray):
            return f(v)
        if isinstance(v, (list, tuple)):
            return type(v)(conv(u, f) for u in v)
        return v

    ref = fn(*conv(args, torch.from_numpy), **{k: conv(v, torch.from_numpy) for k, v in kwargs.items()})
    got = ops.resolve(fn)(*conv(args, jnp.asarray), **{k: conv(v, jnp.asarray) for k, v in kwargs.items()})
    refs = ref if isinstance(ref, tuple) else (ref,)
    gots = got if isinstance(got, tuple) else (got,)
    assert len(gots) == len(refs)
    for g, r in zip(gots, refs):
        assert tuple(np.shape(g)) == tuple(r.shape)
        assert_close(g, to_np(r), 1e-12, case[0])


def test_norm_and_cdist_of_zero_have_torch_zero_gradient(x64):
    """An all-zero row (padding) or two equal points: torch's gradient is 0, not NaN."""
    from funcnets.convert import ops

    x = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0]])
    for p in (2, 3):
        xt = torch.tensor(x, requires_grad=True)
        torch.norm(xt, p, dim=1).sum().backward()
        g = jax.grad(lambda v: ops.resolve(torch.norm)(v, p, dim=1).sum())(jnp.asarray(x))
        assert_close(g, to_np(xt.grad), 1e-12, f"norm p={p}")
    xt = torch.tensor(x, requires_grad=True)
    torch.cdist(xt, torch.tensor(x)).sum().backward()
    g = jax.grad(lambda v: ops.resolve(torch.cdist)(v, jnp.asarray(x)).sum())(jnp.asarray(x))
    assert_close(g, to_np(xt.grad), 1e-12, "cdist")


def test_locate_runs_a_float64_model_of_token_ids_in_float64(x64):
    """Integer inputs, float64 weights: locate compares in float64 (it ran float32 and failed)."""
    net, idx, _ = _gpt(tie=True)
    model, params, state = from_torch(net, idx)
    report = funcnets.parity.locate(net, model, params, state, idx)
    assert (report.dtype, report.error, report.first_divergence) == ("f64", None, None)
    grads = {r.name: r.grads for r in report.rows if r.grads}
    assert [g[0] for g in grads["wte"]] == ["wte.weight"]  # the tied weight: its summed gradient, compared
    assert all(r.output_ok for r in report.rows if r.captured)


@pytest.mark.parametrize("wrap", ["hook", "parametrization"])
def test_weight_norm_is_converted_by_from_torch_and_refused_by_port(wrap):
    """from_torch converts weight_norm (tests/test_parametrizations.py has the parity); funcnets port
    does not write it yet and says so, with the fix, rather than writing a layer without it."""
    torch.manual_seed(0)
    lin = tnn.Linear(4, 3)
    lin = tnn.utils.weight_norm(lin) if wrap == "hook" else tnn.utils.parametrizations.weight_norm(lin)
    net = tnn.Sequential(lin, tnn.ReLU())
    x = torch.randn(2, 4)
    model, params, state = from_torch(net, x)
    np.testing.assert_allclose(np.asarray(model.apply(params, state, jnp.asarray(x.numpy()))[0]),
                               net(x).detach().numpy(), rtol=1e-6, atol=1e-7)
    fix = "remove_weight_norm" if wrap == "hook" else "remove_parametrizations"
    with pytest.raises(UnsupportedOperationError, match=fix):
        funcnets.port(net)


def test_other_forward_hooks_are_refused_not_ignored():
    lin = tnn.Linear(4, 3)
    lin.register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(UnsupportedOperationError, match="has forward hooks"):
        from_torch(tnn.Sequential(lin, tnn.ReLU()))


class SharedLayers(tnn.Module):
    """One Linear and one BatchNorm, each registered under two names (state_dict holds both)."""

    def __init__(self):
        super().__init__()
        lin, bn = tnn.Linear(4, 4), tnn.BatchNorm1d(4)
        self.a, self.bn, self.b, self.bn2 = lin, bn, lin, bn

    def forward(self, x):
        return self.bn2(self.b(torch.tanh(self.a(x))))


def test_layer_registered_twice_is_one_layer(x64):
    torch.manual_seed(0)
    net = SharedLayers().double().train()
    x = torch.randn(5, 4, dtype=torch.float64)
    model, params, state = from_torch(net, x)
    assert set(model.shared_tensors()) == {"b.weight", "b.bias", "bn2.weight", "bn2.bias", "bn2.running_mean",
                                           "bn2.running_var", "bn2.num_batches_tracked"}
    weight = torch.randn(5, 4, dtype=torch.float64)
    (net(x) * weight).sum().backward()  # one BatchNorm update, by either name

    def loss(p):
        y, new = model.apply(p, state, jnp.asarray(x.numpy()), train=True)
        return jnp.sum(y * jnp.asarray(weight.numpy())), new

    g, new_state = jax.grad(loss, has_aux=True)(params)
    for name, p in net.named_parameters():
        assert_close(dict(model.named_parameters(g))[name], to_np(p.grad), 1e-10, name)
    sd = torch_io.state_dict(model, params, new_state)
    assert list(sd) == list(net.state_dict())
    for k, v in net.state_dict().items():
        assert_close(sd[k], to_np(v), 1e-12, k)


class ZerosState(tnn.Module):
    """An RNN's initial state made with torch.zeros of the traced batch size (fx alone cannot trace it)."""

    def __init__(self):
        super().__init__()
        self.num_layers, self.hidden = 2, 6
        self.lstm = tnn.LSTM(3, 6, num_layers=2, batch_first=True)
        self.fc = tnn.Linear(6, 2)

    def forward(self, x):
        h0 = torch.zeros(self.num_layers, x.size(0), self.hidden, device=x.device, dtype=x.dtype)
        c0 = torch.zeros(self.num_layers, x.size(0), self.hidden).to(x.device).type_as(x)
        out, _ = self.lstm(x, (h0, c0))
        return self.fc(out[:, -1, :]) + torch.full((x.shape[0], 1), 0.5, dtype=x.dtype)


def test_factory_of_a_traced_size_converts_and_ports(tmp_path, x64):
    torch.manual_seed(0)
    net = ZerosState().double().eval()
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    ref = to_np(net(x))
    factories = torch.zeros, torch.full
    model, params, state = from_torch(net, x)
    assert (torch.zeros, torch.full) == factories  # restored after tracing
    y, _ = model.apply(params, state, jnp.asarray(x.numpy()))
    assert_close(y, ref, 1e-12, "from_torch")
    assert_close(_run_port(net, tmp_path / "zeros_port.py", x), ref, 1e-12, "port")
