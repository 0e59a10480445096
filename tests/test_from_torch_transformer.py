"""from_torch / port: the full nn.Transformer (encoder-decoder) with its masks, against torch in float64.

src_mask, a causal tgt_mask from ``nn.Transformer.generate_square_subsequent_mask``, and
key padding masks for source, target and memory; ``batch_first`` both ways. Eval and
train mode (dropout 0): outputs and every parameter's gradient to 1e-10, and the
``port``-generated source gives the same output.
"""

import importlib.util
import sys

import jax
import jax.numpy as jnp
import pytest
import torch
import torch.nn as tnn

from funcnets.convert import from_torch
from funcnets.convert.port import write_port
from helpers import assert_close, to_np


class Seq2Seq(tnn.Module):
    """nn.Transformer called as a user's forward calls it: masks built from the inputs' sizes."""

    def __init__(self, batch_first):
        super().__init__()
        self.batch_first = batch_first
        self.transformer = tnn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                           dim_feedforward=16, dropout=0.0, batch_first=batch_first)

    def forward(self, src, tgt, src_pad, tgt_pad, src_mask):
        length = tgt.size(1 if self.batch_first else 0)
        tgt_mask = tnn.Transformer.generate_square_subsequent_mask(length, dtype=src.dtype)
        return self.transformer(src, tgt, src_mask=src_mask, tgt_mask=tgt_mask, src_key_padding_mask=src_pad,
                                tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)


def _inputs(batch_first):
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(2, 5, 8, generator=g, dtype=torch.float64), torch.randn(2, 4, 8, generator=g,
                                                                                    dtype=torch.float64)
    if not batch_first:
        src, tgt = src.transpose(0, 1).contiguous(), tgt.transpose(0, 1).contiguous()
    src_pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    tgt_pad = torch.tensor([[False] * 4, [False] * 3 + [True]])
    i = torch.arange(5)
    band = torch.where((i[:, None] - i[None]).abs() <= 2, 0.0, float("-inf")).double()  # additive, attends +-2
    return src, tgt, src_pad, tgt_pad, band


@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_with_masks_float64(batch_first, x64):
    torch.manual_seed(0)
    m = Seq2Seq(batch_first).double()
    xs = _inputs(batch_first)
    model, params, state = from_torch(m, *xs)
    weight = torch.linspace(-1, 1, 2 * 4 * 8, dtype=torch.float64).reshape(
        (2, 4, 8) if batch_first else (4, 2, 8))
    jx = tuple(jnp.asarray(to_np(x)) for x in xs)
    for train in (False, True):
        m.train(train)
        m.zero_grad()
        out = m(*xs)
        (out * weight).sum().backward()

        def loss(p):
            y, _ = model.apply(p, state, jx, train=train, key=jax.random.PRNGKey(0))
            return jnp.sum(y * jnp.asarray(to_np(weight))), y

        (_, y), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        assert_close(y, to_np(out), 1e-10, f"train={train} output")
        flat = dict(model.named_parameters(g))
        assert set(flat) == {n for n, _ in m.named_parameters()}
        for n, p in m.named_parameters():
            assert_close(flat[n], to_np(p.grad), 1e-10, f"train={train} grad {n}")


def test_transformer_port_matches_torch(tmp_path, x64):
    torch.manual_seed(1)
    m = Seq2Seq(True).double().eval()
    xs = _inputs(True)
    src, _ = write_port(m, tmp_path / "seq2seq.py")
    spec = importlib.util.spec_from_file_location("seq2seq_port", src)
    mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model, params, state = mod.load()
    y, _ = model.apply(params, state, tuple(jnp.asarray(to_np(x)) for x in xs))
    with torch.no_grad():
        assert_close(y, to_np(m(*xs)), 1e-10, "ported nn.Transformer")
