"""from_torch on a nanoGPT-style language model: a causal-mask buffer sliced by the traced
sequence length, and the head's weight tied to the token embedding.

float64 (values, gradients and a three-step SGD trajectory to 1e-10 relative against torch);
the tied weight is one parameter as in torch (`parameters()` lists it once, its gradient
sums both uses, `state_dict()` names it twice).
"""

import importlib.util
import math
import sys

import jax
import jax.numpy as jnp
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


def _gpt(tie):
    torch.manual_seed(0)
    return GPT(tie).double(), torch.randint(0, VOCAB, (3, 6)), torch.randint(0, VOCAB, (3, 6))


def test_tied_weight_trains_as_one_parameter(x64):
    net, idx, tgt = _gpt(tie=True)
    model, params, state = from_torch(net, idx)
    assert model.tied_parameters() == {"head.weight": "wte.weight"}
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
    src_path, _ = write_port(net, tmp_path / "gpt_port.py")
    spec = importlib.util.spec_from_file_location("gpt_port", src_path)
    mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
        pmodel, pparams, pstate = mod.load()
        y, _ = pmodel.apply(pparams, pstate, jnp.asarray(idx.numpy()))
    finally:
        del sys.modules[spec.name]
    assert_close(y, ref, 1e-12, "port")


def test_port_refuses_tied_weights():
    net, idx, _ = _gpt(tie=True)
    with pytest.raises(FuncnetsError, match=r"'head.weight' is the parameter 'wte.weight' \(tied weights\).*from_torch"):
        funcnets.port(net, idx)


def test_untraceable_forward_is_reported_with_its_line():
    class PerRow(tnn.Module):
        def forward(self, x):
            return torch.stack([x[i] * i for i in range(x.size(0))])  # range() of a traced size

    with pytest.raises(UnsupportedOperationError, match=r"torch.fx could not trace forward: TypeError(.|\n)*"
                                                        r"test_from_torch_gpt.py:\d+ in forward: return torch.stack"):
        from_torch(PerRow())
