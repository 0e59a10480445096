"""from_torch of RNN code that packs: pack_padded_sequence -> RNN/GRU/LSTM ->
pad_packed_sequence, by an imported name or spelled out, either layout, with hx,
total_length and padding_value. float64 outputs, final states and parameter gradients
within 1e-12 relative of torch; one compiled program for every lengths vector."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import funcnets
from funcnets.nn import rnn_utils
from helpers import assert_close, to_np


class Tagger(torch.nn.Module):
    """The usual pattern: a batch_first GRU over a padded batch, packed by imported names."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(3, 4, batch_first=True)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)
        return self.out(out), h


class Encoder(torch.nn.Module):
    """A 2-layer bidirectional LSTM given (h0, c0); the packing spelled out as torch.nn.utils.rnn.*,
    packed batch_first into a time-major LSTM (a packed input has no layout of its own)."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 2, num_layers=2, bidirectional=True)

    def forward(self, x, lengths, h0, c0):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h, c) = self.lstm(packed, (h0, c0))
        out, lens = torch.nn.utils.rnn.pad_packed_sequence(out, padding_value=-1.0, total_length=x.shape[1] + 2)
        return out, h, c, lens


def _grads_match(net, params, state, inputs, tmodel, touts_fn):
    tmodel.zero_grad()
    sum(o.sum() for o in touts_fn() if o.is_floating_point()).backward()
    loss = lambda p: sum(jnp.sum(o) for o in net.apply(p, state, inputs)[0]  # noqa: E731
                         if jnp.issubdtype(o.dtype, jnp.floating))
    g = jax.grad(loss)(params)
    tp = dict(tmodel.named_parameters())
    for name, v in net.named_parameters(g):
        assert_close(v, to_np(tp[name].grad), 1e-12, f"grad {name}")


def test_gru_tagger(x64):
    torch.manual_seed(0)
    t = Tagger().double()
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([4, 5, 2])  # unsorted, longest = the padded length
    net, params, state = funcnets.from_torch(t, x, lengths)
    inputs = (jnp.asarray(x.numpy()), jnp.asarray(lengths.numpy()))
    (y, h), _ = net.apply(params, state, inputs)
    ty, th = t(x, lengths)
    assert_close(y, to_np(ty), 1e-12, "output")
    assert_close(h, to_np(th), 1e-12, "h_n")
    _grads_match(net, params, state, inputs, t, lambda: t(x, lengths))


def test_lstm_encoder_with_state_total_length_and_padding_value(x64):
    torch.manual_seed(1)
    t = Encoder().double()
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([2, 4, 1])
    h0, c0 = torch.randn(4, 3, 2, dtype=torch.float64), torch.randn(4, 3, 2, dtype=torch.float64)
    net, params, state = funcnets.from_torch(t, x, lengths, h0, c0)
    inputs = tuple(jnp.asarray(a.numpy()) for a in (x, lengths, h0, c0))
    outs, _ = net.apply(params, state, inputs)
    touts = t(x, lengths, h0, c0)
    assert outs[0].shape == tuple(touts[0].shape) == (6, 3, 4)
    for a, b, what in zip(outs, touts, ("output", "h_n", "c_n", "lengths")):
        assert_close(a, to_np(b), 1e-12, what)
    assert float(outs[0][5, 0, 0]) == -1.0 and float(outs[0][1, 2, 3]) == -1.0  # padding_value past each length
    _grads_match(net, params, state, inputs, t, lambda: t(x, lengths, h0, c0))


def test_one_compiled_program_serves_every_lengths_vector(x64):
    torch.manual_seed(2)
    t = Tagger().double()
    x = torch.randn(2, 3, 3, dtype=torch.float64)
    net, params, state = funcnets.from_torch(t, x, torch.tensor([3, 1]))
    run = jax.jit(lambda p, x, n: net.apply(p, state, (x, n))[0])
    for lengths in ([3, 1], [2, 3], [3, 3]):
        y, h = run(params, jnp.asarray(x.numpy()), jnp.asarray(lengths))
        ty, th = t(x, torch.tensor(lengths))
        assert_close(y, to_np(ty), 1e-12, f"output {lengths}")
        assert_close(h, to_np(th), 1e-12, f"h_n {lengths}")
    assert run._cache_size() == 1


def test_pad_packed_pads_to_the_batch_length_where_torch_pads_to_the_longest():
    """Documented difference: torch's padded length is max(lengths), a data-dependent shape."""
    t = Tagger()
    x = torch.randn(2, 4, 3)
    net, params, state = funcnets.from_torch(t, x, torch.tensor([4, 2]))
    (y, _), _ = net.apply(params, state, (jnp.asarray(x.numpy()), jnp.asarray([3, 2])))
    assert y.shape == (2, 4, 2) and t(x, torch.tensor([3, 2]))[0].shape == (2, 3, 2)
    np.testing.assert_allclose(np.asarray(y)[:, :3], to_np(t(x, torch.tensor([3, 2]))[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spelled_out", [False, True])
def test_the_tracing_patch_is_undone(spelled_out):
    funcnets.from_torch(Encoder() if spelled_out else Tagger(), *(
        (torch.randn(1, 2, 3), torch.tensor([2]), torch.zeros(4, 1, 2), torch.zeros(4, 1, 2)) if spelled_out
        else (torch.randn(1, 2, 3), torch.tensor([2]))))
    assert torch.nn.utils.rnn.pack_padded_sequence is pack_padded_sequence
    assert torch.nn.utils.rnn.pad_packed_sequence is pad_packed_sequence


@pytest.mark.parametrize("cls", [Tagger, Encoder])
def test_port_writes_the_packing_and_runs_as_torch(tmp_path, x64, cls):
    import importlib.util
    import sys

    from funcnets.convert.port import write_port

    torch.manual_seed(3)
    t = cls().double().eval()
    x, lengths = torch.randn(2, 3, 3, dtype=torch.float64), torch.tensor([2, 3])
    inputs = (x, lengths) if cls is Tagger else (x, lengths, torch.randn(4, 2, 2, dtype=torch.float64),
                                                 torch.randn(4, 2, 2, dtype=torch.float64))
    path, _ = write_port(t, tmp_path / f"{cls.__name__.lower()}_port.py")
    assert "ops.pack_padded_sequence(" in path.read_text()
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    model, params, state = mod.load()
    outs, _ = model.apply(params, state, tuple(jnp.asarray(a.numpy()) for a in inputs))
    touts = t(*inputs)
    for a, b in zip(outs, touts):
        assert_close(a, to_np(b), 1e-12, cls.__name__)


def test_native_layers_take_packed_sequences(x64):
    from funcnets import nn

    gru = nn.GRU(3, 4)  # time-major, packed batch-first: the packed sequence has no layout of its own
    params, _ = gru.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    lengths = jnp.array([5, 2])
    (out, h), _ = gru.apply(params, {}, rnn_utils.pack_padded_sequence(x, lengths, batch_first=True))
    (ref, h_ref), _ = gru.apply(params, {}, (jnp.swapaxes(x, 0, 1), None, lengths))
    assert isinstance(out, rnn_utils.PackedSequence) and out.batch_first is False
    padded, lens = rnn_utils.pad_packed_sequence(out, batch_first=True, padding_value=7.0)
    assert_close(padded[0], jnp.swapaxes(ref, 0, 1)[0], 1e-15, "full-length sequence")
    assert_close(padded[1, :2], jnp.swapaxes(ref, 0, 1)[1, :2], 1e-15, "short sequence")
    assert (padded[1, 2:] == 7.0).all() and (lens == lengths).all() and (h == h_ref).all()
    with pytest.raises(funcnets.errors.ShapeError, match="carries its lengths"):
        gru.apply(params, {}, (rnn_utils.pack_padded_sequence(x, lengths, batch_first=True), None, lengths))
    with pytest.raises(funcnets.errors.ShapeError, match=r"lengths of shape \(2,\), one per sequence, got \(3,\)"):
        rnn_utils.pack_padded_sequence(x, jnp.array([1, 2, 3]), batch_first=True)
    with pytest.raises(TypeError, match="expects a PackedSequence"):
        rnn_utils.pad_packed_sequence(x)
