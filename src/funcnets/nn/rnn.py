"""Recurrent layers: ``torch.nn.RNN``, ``LSTM``, ``GRU`` and ``RNNCell``, ``LSTMCell``,
``GRUCell``, with torch's gate order, parameter names and default initialisation.

Equations (torch's; ``σ`` the logistic sigmoid, ``⊙`` the elementwise product):

* RNN:  ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, ``act`` tanh or relu.
* LSTM: gates ``i, f, g, o`` (in this order in ``weight_ih``/``weight_hh``' rows):
  ``i = σ(.), f = σ(.), g = tanh(.), o = σ(.)``, ``c' = f ⊙ c + i ⊙ g``,
  ``h' = o ⊙ tanh(c')``, and with ``proj_size > 0``: ``h' = W_hr (o ⊙ tanh(c'))``.
* GRU:  gates ``r, z, n``: ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z`` likewise,
  ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`` (``b_hn`` inside the reset product),
  ``h' = (1 - z) ⊙ n + z ⊙ h``.

How it is computed: a float32 LSTM (without ``proj_size``) or GRU on CPU without
``lengths`` runs each layer (both directions) as oneDNN's LSTM or linear-before-reset GRU
primitive (torch's GRU, gates reordered), torch's own CPU kernels, through
XLA's FFI (:mod:`funcnets.nn._onednn_rnn`): ``forward_training``, which keeps oneDNN's
workspace, and under ``jax.grad``/``jax.vjp`` oneDNN's backward (a ``custom_vjp``), the
batch split over XLA's threads. Forward mode (``jax.jvp``, ``jacfwd``) is not defined for
them: trace such code inside ``funcnets.nn._onednn_rnn.use_scan()``. Everything else
(float64, projections, lengths, RNN, other backends, several devices) takes the
``lax.scan`` lowering: per layer, the input projections of every time step and both
directions are one GEMM before the time loop; the time loop is one ``lax.scan`` that
carries both directions together (the reverse direction reads the time-reversed
projections), so a step is one small batched GEMM ``h @ W_hh^T`` plus the gate math.
Dropout between layers is the same in both: it sits between the layer calls.

Calling the sequence layers (the module contract's ``apply`` takes one ``x``)::

    (output, h_n), state = gru.apply(params, {}, x)                     # h0 = 0
    (output, h_n), state = gru.apply(params, {}, (x, h0))
    (output, h_n), state = gru.apply(params, {}, (x, h0, lengths))      # h0 may be None
    (output, (h_n, c_n)), state = lstm.apply(params, {}, (x, (h0, c0), lengths))
    output, h_n = gru.forward(params, x, h0, lengths=lengths)           # torch's forward

``lengths: (N,)`` integers are the packed-free form of torch's
``pack_padded_sequence(x, lengths, enforce_sorted=False)`` → RNN →
``pad_packed_sequence(total_length=L)``: outputs at and past a sequence's length are
zero, ``h_n``/``c_n`` are each sequence's state after its own last element, and the
reverse direction starts at each sequence's own last element. ``lengths`` is data, not
shape: one compiled program serves every lengths vector. A prefix mask ``(N, L)`` is
``lengths = mask.sum(1)``.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array, Params, PRNGKey
from funcnets.errors import ShapeError
from funcnets.nn import _onednn_rnn, init
from funcnets.nn._layout import _check_float
from funcnets.nn.rnn_utils import PackedSequence
from funcnets.nn.dropout import dropout as _dropout
from funcnets.nn.module import Module

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}

# lax.scan's unroll for the time loop (measured in benchmarks/rnn.py, see its docstring)
_UNROLL = 1


# ------------------------------------------------------------------------------ math
def _update(mode: str, gi: Array, gh: Array, h: Array, c: Array | None) -> tuple[Array, Array | None]:
    """One cell update from the input part ``gi`` and the hidden part ``gh`` of the gates.

    For RNN and LSTM both biases may already be in ``gi``; for GRU ``gh`` must hold
    ``b_hh`` (``b_hn`` is inside the reset product). Returns ``(h', c')`` before the LSTM
    projection (``c'`` is None except for LSTM).
    """
    h_new, c_new, _ = _update_res(mode, gi, gh, h, c)
    return h_new, c_new


def _update_res(mode: str, gi: Array, gh: Array, h: Array, c: Array | None):
    """:func:`_update` and, as one array, the values :func:`_coefficients` needs: the
    activated gates (and for LSTM ``c'``). One array per step keeps the forward loop's
    saved outputs, and so its fusions, few."""
    if mode == "RNN_TANH":
        h_new = jnp.tanh(gi + gh)
        return h_new, None, h_new
    if mode == "RNN_RELU":
        h_new = jax.nn.relu(gi + gh)
        return h_new, None, h_new
    if mode == "LSTM":
        i, f, g, o = jnp.split(gi + gh, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c_new = f * c + i * g
        return o * jnp.tanh(c_new), c_new, jnp.concatenate([i, f, g, o, c_new], axis=-1)
    # GRU
    i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h, None, jnp.concatenate([r, z, n, h_n], axis=-1)


def _coefficients(mode: str, pre: Array, h: Array, c: Array | None) -> tuple[tuple, Array | None]:
    """From :func:`_update_res`'s ``pre`` and the state ``h``, ``c`` before the step (any
    leading axes: all steps at once, outside the loops), the coefficients
    :func:`_update_lin` multiplies (the derivatives JAX's rules give: ``σ' = σ(1-σ)``,
    ``tanh' = 1 - tanh²``), and the LSTM's output before its projection. Final products,
    so the tangent loop does no primal-only work and JAX's reverse mode keeps one
    forward and one backward loop."""
    if mode == "RNN_TANH":
        return (1 - pre * pre,), None
    if mode == "RNN_RELU":
        return ((pre > 0).astype(pre.dtype),), None
    if mode == "LSTM":
        i, f, g, o, c_new = jnp.split(pre, 5, axis=-1)
        tc = jnp.tanh(c_new)
        # d(gates) -> dc' = sum(k_c * d(i, f, g)) + f dc;  dh' = k_o do + k_h dc'
        k_c = jnp.concatenate([i * (1 - i) * g, f * (1 - f) * c, i * (1 - g * g)], axis=-1)
        return (k_c, f, o * (1 - o) * tc, o * (1 - tc * tc)), o * tc
    r, z, n, h_n = jnp.split(pre, 4, axis=-1)
    dn = 1 - n * n
    return (r * (1 - r) * h_n * dn, z * (1 - z) * (h - n), dn, r * dn, 1 - z, z), None


def _update_lin(mode: str, k: tuple, dgi: Array, dgh: Array, dh: Array, dc: Array | None):
    """The tangent ``(dh', dc')`` of :func:`_update` at the point whose coefficients are ``k``."""
    if mode in ("RNN_TANH", "RNN_RELU"):
        return k[0] * (dgi + dgh), None
    if mode == "LSTM":
        k_c, f, k_o, k_h = k
        H = f.shape[-1]
        da = dgi + dgh
        t = k_c * da[..., : 3 * H]
        dc_new = t[..., :H] + t[..., H : 2 * H] + t[..., 2 * H :] + f * dc
        return k_o * da[..., 3 * H :] + k_h * dc_new, dc_new
    k_r, k_z, k_n, k_rn, one_z, z = k
    H = z.shape[-1]
    dr = dgi[..., :H] + dgh[..., :H]
    dz = dgi[..., H : 2 * H] + dgh[..., H : 2 * H]
    # dn = (1 - n²)(di_n + r(1-r) dr h_n + r dh_n);  dh' = (h - n) z(1-z) dz + (1 - z) dn + z dh
    dn = k_r * dr + k_n * dgi[..., 2 * H :] + k_rn * dgh[..., 2 * H :]
    return k_z * dz + one_z * dn + z * dh, None


def _bmm(h: Array, w: Array) -> Array:
    """``h[d] @ w[d].T`` for each direction: ``h: (D, N, K)``, ``w: (D, G, K)`` -> ``(D, N, G)``."""
    if h.shape[0] == 1:  # a plain GEMM, not a batch of one
        return (h[0] @ w[0].T)[None]
    return jnp.einsum("dnk,dgk->dng", h, w)


def _onednn_usable(x: Array, p: list[dict]) -> bool:
    """Whether oneDNN computes this layer (:mod:`funcnets.nn._onednn_rnn`): float32 input,
    states and weights on one CPU device, the extension built, a batch of at least one
    (oneDNN's primitive dies of SIGFPE on an empty batch)."""
    return x.shape[1] > 0 and _onednn_rnn.usable(x) and all(a is None or a.dtype == np.float32 for q in p for a in q.values())


def _layer(
    mode: str, x: Array, p: list[dict], h0: Array, c0: Array | None, mask: Array | None
) -> tuple[Array, Array, Array | None]:
    """One layer, all directions: ``x: (L, N, In)``, ``p[d]`` the direction's weights
    (``w_ih, w_hh, b_ih, b_hh, w_hr``, biases/projection may be None), ``h0: (D, N, H_out)``,
    ``c0: (D, N, H)``, ``mask: (L, N)`` bool or None. Returns ``(L, N, D·H_out)``,
    ``h_n: (D, N, H_out)``, ``c_n``.
    """
    if mode == "LSTM" and mask is None and p[0]["w_hr"] is None and _onednn_usable(x, p):
        return _onednn_rnn.lstm_layer(x, h0, c0, *_onednn_rnn.lstm_params(p, h0.shape[-1]))
    if mode == "GRU" and mask is None and _onednn_usable(x, p):  # torch's GRU is oneDNN's lbr_gru
        return (*_onednn_rnn.gru_layer(x, h0, *_onednn_rnn.gru_params(p, h0.shape[-1])), None)
    D = len(p)
    w_ih = jnp.stack([q["w_ih"] for q in p])  # (D, G, In)
    w_hh = jnp.stack([q["w_hh"] for q in p])  # (D, G, H_out)
    has_bias = p[0]["b_ih"] is not None
    # all time steps' input projections in one GEMM: (L·N, In) @ (In, D·G)
    L, N, _ = x.shape
    G = w_ih.shape[1]
    # the feature size spelled out: with a batch of 0, reshape cannot infer a -1
    gi = (x.reshape(L * N, x.shape[-1]) @ w_ih.reshape(D * G, -1).T).reshape(L, N, D, G)
    b_hh = None
    if has_bias:
        b_ih = jnp.stack([q["b_ih"] for q in p])  # (D, G)
        b_hh = jnp.stack([q["b_hh"] for q in p])
        if mode != "GRU":  # both biases outside the loop; GRU's b_hn must stay inside r ⊙ (.)
            gi = gi + (b_ih + b_hh)
            b_hh = None
        else:
            gi = gi + b_ih
    gi = gi.transpose(0, 2, 1, 3)  # (L, D, N, G)
    if D == 2:  # the reverse direction reads time backwards
        gi = jnp.stack([gi[:, 0], gi[::-1, 1]], axis=1)
    w_hr = jnp.stack([q["w_hr"] for q in p]) if p[0]["w_hr"] is not None else None
    if mask is not None:
        m = mask[:, None, :, None]  # (L, 1, N, 1)
        if D == 2:
            m = jnp.concatenate([m, m[::-1]], axis=1)

    ex = {"b_hh": b_hh, "c0": c0, "w_hr": w_hr, "m": m if mask is not None else None}
    ys, h_n, c_n = _recurrence(mode, gi, w_hh, h0, {k: v for k, v in ex.items() if v is not None})
    if D == 2:
        out = jnp.concatenate([ys[:, 0], ys[::-1, 1]], axis=-1)
    else:
        out = ys[:, 0]
    return out, h_n, c_n


def _scan(mode: str, gi: Array, w_hh: Array, h0: Array, ex: dict, residuals: bool):
    """The time loop: ``gi: (L, D, N, G)``, ``w_hh: (D, G, H_out)``, ``h0: (D, N, H_out)``;
    ``ex`` holds what the layer has of ``b_hh`` (GRU), ``c0`` (LSTM), ``w_hr``
    (projection) and ``m: (L, D, N, 1)`` (lengths). Returns ``ys, h_n, c_n`` and, with
    ``residuals``, the per-step values :func:`_recurrence_jvp` linearises around:
    :func:`_update_res`'s ``pre`` and, with lengths, the carried ``h`` and ``c``."""
    b_hh, w_hr, m = ex.get("b_hh"), ex.get("w_hr"), ex.get("m")

    def step(carry, inp):
        h, c = carry
        g_t = inp[0]
        gh = _bmm(h, w_hh)
        if b_hh is not None:
            gh = gh + b_hh[:, None, :]
        h_raw, c_new, pre = _update_res(mode, g_t, gh, h, c)
        h_new = _bmm(h_raw, w_hr) if w_hr is not None else h_raw
        if m is None:  # the states before each step are the outputs (and pre's c') shifted
            return (h_new, c_new), (h_new, (pre,) if residuals else None)
        m_t = inp[1]
        h_new = jnp.where(m_t, h_new, h)
        if c is not None:
            c_new = jnp.where(m_t, c_new, c)
        return (h_new, c_new), (jnp.where(m_t, h_new, 0), (pre, h_new, c_new) if residuals else None)

    xs = (gi,) if m is None else (gi, m)
    (h_n, c_n), (ys, res) = jax.lax.scan(step, (h0, ex.get("c0")), xs, unroll=_UNROLL)
    return (ys, h_n, c_n), res


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _recurrence(mode: str, gi: Array, w_hh: Array, h0: Array, ex: dict):
    """:func:`_scan`'s outputs ``(ys: (L, D, N, H_out), h_n, c_n)``.

    Differentiated through :func:`_recurrence_jvp`: the tangent of ``h_{t-1} W_hh^T``
    with respect to the weights, ``h_{t-1} dW_hh^T``, is one GEMM over all steps before
    the tangent loop (likewise ``b_hh`` and ``W_hr``), so the loop is linear in the carried
    ``(dh, dc)`` only, and its transpose (reverse mode) computes the weight gradients as
    one GEMM after the backward loop, instead of a small GEMM plus a full-weight add per
    step in the loop, as JAX's scan transpose does for a loop-invariant input (oneDNN and
    cuDNN do the same). Forward mode, vmap and higher derivatives keep working.
    """
    return _scan(mode, gi, w_hh, h0, ex, residuals=False)[0]


@_recurrence.defjvp
def _recurrence_jvp(mode, primals, tangents):
    gi, w_hh, h0, ex = primals
    dgi, dw_hh, dh0, dex = tangents
    out, res = _scan(mode, gi, w_hh, h0, ex, residuals=True)
    w_hr, m = ex.get("w_hr"), ex.get("m")
    pre = res[0]
    if m is None:
        hs, cs = out[0], (jnp.split(pre, 5, axis=-1)[4] if mode == "LSTM" else None)
    else:
        hs, cs = res[1], res[2]
    h_prev = jnp.concatenate([h0[None], hs[:-1]])
    c_prev = jnp.concatenate([ex["c0"][None], cs[:-1]]) if mode == "LSTM" else None
    coef, h_raw = _coefficients(mode, pre, h_prev, c_prev)
    # the weights' tangent contributions of every step at once: (L, D, N, G) and (L, D, N, H_out)
    dgh_w = jnp.einsum("ldnk,dgk->ldng", h_prev, dw_hh)
    if "b_hh" in ex:
        dgh_w = dgh_w + dex["b_hh"][None, :, None, :]
    xs = [coef, dgi, dgh_w]
    if w_hr is not None:
        xs.append(jnp.einsum("ldnk,dgk->ldng", h_raw, dex["w_hr"]))
    if m is not None:
        xs.append(m)

    def tstep(carry, inp):
        dh, dc = carry
        coef_t, dgi_t, dghw_t = inp[:3]
        dh_new, dc_new = _update_lin(mode, coef_t, dgi_t, _bmm(dh, w_hh) + dghw_t, dh, dc)
        if w_hr is not None:
            dh_new = _bmm(dh_new, w_hr) + inp[3]
        if m is None:
            return (dh_new, dc_new), dh_new
        m_t = inp[-1]
        dh_new = jnp.where(m_t, dh_new, dh)
        if dc is not None:
            dc_new = jnp.where(m_t, dc_new, dc)
        return (dh_new, dc_new), jnp.where(m_t, dh_new, 0)

    (dh_n, dc_n), dys = jax.lax.scan(tstep, (dh0, dex.get("c0")), tuple(xs), unroll=_UNROLL)
    return out, (dys, dh_n, dc_n)


# ------------------------------------------------------------------------------ layers
def _check_hparams(m: Any) -> None:
    """torch's ``RNNBase.__init__`` checks, with its messages."""
    d = m.dropout
    if not isinstance(d, numbers.Number) or isinstance(d, bool) or not 0 <= d <= 1:
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the probability of an element being zeroed"
        )
    object.__setattr__(m, "dropout", float(d))
    if d > 0 and m.num_layers == 1:
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
            f"num_layers greater than 1, but got dropout={d} and num_layers={m.num_layers}",
            stacklevel=3,
        )
    for name in ("bias", "batch_first", "bidirectional"):
        if not isinstance(getattr(m, name), bool):
            raise TypeError(f"{name} should be of type bool, got: {type(getattr(m, name)).__name__}")
    for name in ("input_size", "hidden_size"):
        v = getattr(m, name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} should be of type int, got: {type(v).__name__}")
        if v <= 0:
            raise ValueError(f"{name} must be greater than zero")
    if not isinstance(m.num_layers, int) or m.num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
    if m.proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if m.proj_size >= m.hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


class RNNBase(Module):
    """What RNN, LSTM and GRU share (torch's ``RNNBase``). Subclasses are dataclasses with
    torch's constructor fields and a ``mode`` ("RNN_TANH", "RNN_RELU", "LSTM", "GRU").

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> gru = nn.GRU(4, 8, bidirectional=True)
        >>> isinstance(gru, nn.RNNBase), gru.mode
        (True, 'GRU')
        >>> params, state = gru.init(jax.random.key(0))
        >>> (out, h_n), state = gru.apply(params, state, (jnp.ones((5, 3, 4)), None, jnp.array([5, 2, 4])))
        >>> out.shape, h_n.shape, float(abs(out[2:, 1]).max())
        ((5, 3, 16), (2, 3, 8), 0.0)
    """

    mode: str
    proj_size: int = 0

    def __post_init__(self):
        _check_hparams(self)

    # --- names and init -------------------------------------------------------------
    @property
    def _num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _out_size(self) -> int:
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def _layer_names(self, layer: int, direction: int) -> list[str]:
        sfx = "_reverse" if direction == 1 else ""
        names = ["weight_ih_l{}{}", "weight_hh_l{}{}"]
        if self.bias:
            names += ["bias_ih_l{}{}", "bias_hh_l{}{}"]
        if self.proj_size > 0:
            names += ["weight_hr_l{}{}"]
        return [n.format(layer, sfx) for n in names]

    def param_names(self):
        return tuple(
            n for layer in range(self.num_layers) for d in range(self._num_directions) for n in self._layer_names(layer, d)
        )

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        gate = _GATES[self.mode] * self.hidden_size
        shapes = {}
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else self._out_size * self._num_directions
            for d in range(self._num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes[f"weight_ih{sfx}"] = (gate, in_size)
                shapes[f"weight_hh{sfx}"] = (gate, self._out_size)
                if self.bias:
                    shapes[f"bias_ih{sfx}"] = (gate,)
                    shapes[f"bias_hh{sfx}"] = (gate,)
                if self.proj_size > 0:
                    shapes[f"weight_hr{sfx}"] = (self.proj_size, self.hidden_size)
        return {n: shapes[n] for n in self.param_names()}

    def init_own(self, key):
        """Every parameter U(±1/sqrt(hidden_size)), as torch's ``reset_parameters``."""
        bound = init.default_bound(self.hidden_size)
        shapes = self._param_shapes()
        keys = jax.random.split(key, len(shapes))
        return {n: init.uniform(k, s, -bound, bound) for k, (n, s) in zip(keys, shapes.items())}, {}

    # --- forward ----------------------------------------------------------------------
    def apply(self, params, state, x, *, train=False, key=None):
        """``x`` is the input, or a tuple ``(input, hx)`` or ``(input, hx, lengths)``; ``input`` may
        be a :class:`~funcnets.nn.rnn_utils.PackedSequence` (then the output is one too).

        Args:
          input: ``(L, N, H_in)`` (``(N, L, H_in)`` with ``batch_first``) or unbatched ``(L, H_in)``.
          hx: ``(D·num_layers, N, H_out)`` (unbatched ``(D·num_layers, H_out)``), for LSTM a pair
            ``(h0, c0)`` with ``c0: (D·num_layers, N, hidden_size)``; None for zeros.
            ``D = 2`` if bidirectional else 1, ``H_out = proj_size or hidden_size``.
          lengths: ``(N,)`` integers in ``[1, L]`` or None (all ``L``).
        Returns:
          ``((output, h_n), state)`` (LSTM: ``((output, (h_n, c_n)), state)``) with
          ``output: (L, N, D·H_out)`` (``(N, L, D·H_out)`` with ``batch_first``) and
          ``h_n`` shaped as ``hx``.
        """
        hx = lengths = None
        if isinstance(x, PackedSequence):  # a NamedTuple: before the tuple forms
            x = (x,)
        if isinstance(x, tuple):
            if not 1 <= len(x) <= 3:
                raise ShapeError(
                    f"{self!r} takes input, (input, hx) or (input, hx, lengths), got a tuple of {len(x)}"
                )
            x, hx, lengths = (tuple(x) + (None, None))[:3]
        if isinstance(x, PackedSequence):  # torch.nn.utils.rnn's packing: its padded batch and lengths
            if lengths is not None:
                raise ShapeError(f"{self!r}: a PackedSequence carries its lengths; pass (packed, hx), not lengths")
            packed, x, lengths = x, x.padded(self.batch_first), x.lengths
            out, h = self.forward(params, x, hx, lengths=lengths, train=train, key=key)
            return (PackedSequence(out, packed.lengths, self.batch_first), h), state
        return self.forward(params, x, hx, lengths=lengths, train=train, key=key), state

    def forward(
        self,
        params: Params,
        input: Array,
        hx: Any = None,
        *,
        lengths: Array | None = None,
        train: bool = False,
        key: PRNGKey | None = None,
    ) -> tuple[Array, Any]:
        """torch's ``forward(input, hx)`` -> ``(output, h_n)``; see :meth:`apply` for shapes."""
        x = jnp.asarray(input)
        _check_float(self, x)
        D, nl = self._num_directions, self.num_layers
        if x.ndim not in (2, 3):
            raise ShapeError(
                f"{self!r} expected input (L, N, {self.input_size})"
                f"{' with batch_first (N, L, ...)' if self.batch_first else ''} or unbatched "
                f"(L, {self.input_size}), got {tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ShapeError(
                f"{self!r} expected input (..., {self.input_size}) (input_size={self.input_size}), "
                f"got {tuple(x.shape)}: the last dim is the feature size; build the layer with "
                f"input_size={x.shape[-1]} or feed features of size {self.input_size}"
            )
        batched = x.ndim == 3
        if x.shape[1 if batched and self.batch_first else 0] == 0:
            raise ShapeError(
                f"{self!r} expected a sequence length larger than 0, got input {tuple(x.shape)}"
                f"{' (batch_first: (N, L, H_in))' if self.batch_first and batched else ''}"
            )
        wide = jnp.result_type(x, *jax.tree_util.tree_leaves(params))
        if wide != x.dtype:  # torch raises too; here the time loop's carry would change dtype
            raise ShapeError(
                f"{self!r} input dtype ({x.dtype}) does not match the parameters' dtype ({wide}). "
                f"Convert the input, x.astype(jnp.{wide}), or the parameters, "
                f"jax.tree.map(lambda p: p.astype(jnp.{x.dtype}), params)"
            )
        if not batched:
            x = x[:, None]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        L, N = x.shape[0], x.shape[1]
        lstm = self.mode == "LSTM"
        h0, c0 = self._initial_state(hx, batched, N, x.dtype)
        mask = None
        if lengths is not None:
            mask = self._mask(lengths, batched, L, N)

        h_n, c_n = [], []
        p_tree = params
        for layer in range(nl):
            p = []
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                p.append(
                    {
                        "w_ih": p_tree[f"weight_ih{sfx}"],
                        "w_hh": p_tree[f"weight_hh{sfx}"],
                        "b_ih": p_tree.get(f"bias_ih{sfx}") if self.bias else None,
                        "b_hh": p_tree.get(f"bias_hh{sfx}") if self.bias else None,
                        "w_hr": p_tree.get(f"weight_hr{sfx}") if self.proj_size else None,
                    }
                )
            sl = slice(layer * D, (layer + 1) * D)
            x, h, c = _layer(self.mode, x, p, h0[sl], c0[sl] if lstm else None, mask)
            h_n.append(h)
            c_n.append(c)
            if train and self.dropout > 0 and layer < nl - 1:  # torch: between layers, never after the last
                if key is not None:
                    key, sub = jax.random.split(key)
                else:
                    sub = None
                x = _dropout(x, self.dropout, True, sub)
        h_n = jnp.concatenate(h_n, axis=0)
        c_n = jnp.concatenate(c_n, axis=0) if lstm else None
        if not batched:
            x, h_n = x[:, 0], h_n[:, 0]
            c_n = c_n[:, 0] if lstm else None
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        return (x, (h_n, c_n)) if lstm else (x, h_n)

    def _initial_state(self, hx: Any, batched: bool, N: int, dtype) -> tuple[Array, Array | None]:
        D, nl = self._num_directions, self.num_layers
        h_shape = (D * nl, N, self._out_size)
        c_shape = (D * nl, N, self.hidden_size)
        if hx is None:
            return jnp.zeros(h_shape, dtype), jnp.zeros(c_shape, dtype) if self.mode == "LSTM" else None
        fix = "(h0, c0)" if self.mode == "LSTM" else "h0"
        want = lambda s: s if batched else (s[0], s[2])  # noqa: E731
        hint = (
            f" (num_layers·num_directions = {nl}·{D}, batch, "
            f"{'proj_size' if self.proj_size else 'hidden_size'})"
        )
        if self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ShapeError(f"{self!r} expected hx = (h0, c0), a pair of arrays, got {type(hx).__name__}. Pass (h0, c0) or None for zeros")
            pairs = [("h0", jnp.asarray(hx[0]), want(h_shape)), ("c0", jnp.asarray(hx[1]), want(c_shape))]
        else:
            if isinstance(hx, (tuple, list)):
                raise ShapeError(f"{self!r} expected hx = h0, one array, got a {type(hx).__name__}. Only LSTM takes (h0, c0)")
            pairs = [("h0", jnp.asarray(hx), want(h_shape))]
        out = []
        for name, a, shape in pairs:
            if tuple(a.shape) != shape:
                raise ShapeError(
                    f"{self!r} expected {name} of shape {shape}{hint if batched else ''} for an input of "
                    f"{'batch ' + str(N) if batched else 'one unbatched sequence'}, got {tuple(a.shape)}. "
                    f"Pass {fix} with that shape, or None for zeros"
                )
            out.append(a.astype(dtype) if batched else a[:, None].astype(dtype))
        return out[0], (out[1] if len(out) == 2 else None)

    def _mask(self, lengths: Any, batched: bool, L: int, N: int) -> Array:
        lengths = jnp.asarray(lengths)
        want = (N,) if batched else ()
        if lengths.shape not in (want, (N,)) or not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise ShapeError(
                f"{self!r} expected lengths: integers of shape {want} (one per sequence), got "
                f"{lengths.dtype} {tuple(lengths.shape)}. For a prefix mask (N, L) pass mask.sum(1)"
            )
        if not isinstance(lengths, jax.core.Tracer):  # values are data under jit; check them when we can
            v = np.asarray(lengths)
            if np.any((v < 1) | (v > L)):
                raise ShapeError(
                    f"{self!r}: every length must be in [1, {L}] (the input's sequence length), got {v.tolist()}"
                )
        return jnp.arange(L)[:, None] < lengths.reshape(-1)[None, :]  # (L, N)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


@dataclass(frozen=True, repr=False)
class RNN(RNNBase):
    """Elman RNN, ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, ``act`` tanh or relu.

    ``x: (L, N, input_size) -> (output (L, N, D·hidden_size), h_n (D·num_layers, N, hidden_size))``;
    see :meth:`RNNBase.apply`. As torch's, the repr does not show ``nonlinearity``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> rnn = nn.RNN(4, 8, num_layers=2, nonlinearity='relu')
        >>> params, state = rnn.init(jax.random.key(0))
        >>> (out, h_n), state = rnn.apply(params, state, jnp.ones((5, 3, 4)))
        >>> out.shape, h_n.shape
        ((5, 3, 8), (2, 3, 8))
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    nonlinearity: str = "tanh"
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False

    def __post_init__(self):
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__post_init__()

    @property
    def mode(self) -> str:
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"


@dataclass(frozen=True, repr=False)
class LSTM(RNNBase):
    """Long short-term memory, torch's gates ``i, f, g, o`` and optional projection ``weight_hr``.

    ``x: (L, N, input_size) -> (output (L, N, D·H_out), (h_n (D·num_layers, N, H_out),
    c_n (D·num_layers, N, hidden_size)))``, ``H_out = proj_size or hidden_size``;
    see :meth:`RNNBase.apply`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> lstm = nn.LSTM(4, 8, num_layers=2, batch_first=True)
        >>> params, state = lstm.init(jax.random.key(0))
        >>> (out, (h_n, c_n)), state = lstm.apply(params, state, jnp.ones((3, 5, 4)))
        >>> out.shape, h_n.shape
        ((3, 5, 8), (2, 3, 8))
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0

    mode = "LSTM"


@dataclass(frozen=True, repr=False)
class GRU(RNNBase):
    """Gated recurrent unit, torch's gates ``r, z, n`` with ``b_hn`` inside the reset product.

    ``x: (L, N, input_size) -> (output (L, N, D·hidden_size), h_n (D·num_layers, N, hidden_size))``;
    see :meth:`RNNBase.apply`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> gru = nn.GRU(4, 8)
        >>> params, state = gru.init(jax.random.key(0))
        >>> (out, h_n), state = gru.apply(params, state, (jnp.ones((5, 3, 4)), jnp.zeros((1, 3, 8))))
        >>> out.shape, h_n.shape
        ((5, 3, 8), (1, 3, 8))
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False

    mode = "GRU"


# ------------------------------------------------------------------------------ cells
class RNNCellBase(Module):
    """One time step (torch's ``RNNCellBase``): parameters ``weight_ih (G, input_size)``,
    ``weight_hh (G, hidden_size)``, ``bias_ih``, ``bias_hh (G,)``, ``G = gates·hidden_size``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> cell = nn.GRUCell(4, 8)
        >>> isinstance(cell, nn.RNNCellBase), cell.param_names()
        (True, ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'))
    """

    mode: str

    def __post_init__(self):
        for name in ("input_size", "hidden_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} should be of type int, got: {type(v).__name__}")
            if v <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if not isinstance(self.bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(self.bias).__name__}")

    def param_names(self):
        return ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if self.bias else ("weight_ih", "weight_hh")

    def init_own(self, key):
        """Every parameter U(±1/sqrt(hidden_size)), as torch's ``reset_parameters``."""
        g = _GATES[self.mode] * self.hidden_size
        shapes = {"weight_ih": (g, self.input_size), "weight_hh": (g, self.hidden_size), "bias_ih": (g,), "bias_hh": (g,)}
        bound = init.default_bound(self.hidden_size)
        names = self.param_names()
        keys = jax.random.split(key, len(names))
        return {n: init.uniform(k, shapes[n], -bound, bound) for k, n in zip(keys, names)}, {}

    def apply(self, params, state, x, *, train=False, key=None):
        """``x`` is the input or a tuple ``(input, hx)``.

        Args:
          input: ``(N, input_size)`` or unbatched ``(input_size,)``.
          hx: ``(N, hidden_size)`` (unbatched ``(hidden_size,)``); for LSTMCell a pair
            ``(h, c)``; None for zeros.
        Returns:
          ``(h', state)``; LSTMCell: ``((h', c'), state)``.
        """
        hx = None
        if isinstance(x, tuple):
            if len(x) not in (1, 2):
                raise ShapeError(f"{self!r} takes input or (input, hx), got a tuple of {len(x)}")
            x, hx = (tuple(x) + (None,))[:2]
        return self.forward(params, x, hx), state

    def forward(self, params: Params, input: Array, hx: Any = None) -> Any:
        """torch's ``forward(input, hx)``: ``h'`` (LSTMCell: ``(h', c')``)."""
        x = jnp.asarray(input)
        _check_float(self, x)
        H = self.hidden_size
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ShapeError(
                f"{self!r} expected input (N, {self.input_size}) or unbatched ({self.input_size},), "
                f"got {tuple(x.shape)}. One time step per call; for sequences use "
                f"{type(self).__name__[:-4]}({self.input_size}, {H})"
            )
        batched = x.ndim == 2
        x2 = x if batched else x[None]
        N = x2.shape[0]
        lstm = self.mode == "LSTM"
        want = (N, H) if batched else (H,)
        if hx is None:
            h = jnp.zeros((N, H), x.dtype)
            c = jnp.zeros((N, H), x.dtype) if lstm else None
        else:
            if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise ShapeError(f"{self!r} expected hx = (h, c), a pair of arrays, got {type(hx).__name__}")
            if not lstm and isinstance(hx, (tuple, list)):
                raise ShapeError(f"{self!r} expected hx = h, one array, got a {type(hx).__name__}. Only LSTMCell takes (h, c)")
            parts = list(hx) if lstm else [hx]
            for name, a in zip(("h", "c"), parts):
                if tuple(jnp.shape(a)) != want:
                    raise ShapeError(
                        f"{self!r} expected {name} of shape {want} for input {tuple(x.shape)}, got "
                        f"{tuple(jnp.shape(a))}. Pass hx with that shape, or None for zeros"
                    )
            parts = [jnp.asarray(a, x.dtype).reshape(N, H) for a in parts]
            h, c = parts[0], (parts[1] if lstm else None)
        gi = x2 @ params["weight_ih"].T
        gh = h @ params["weight_hh"].T
        if self.bias:
            gi = gi + params["bias_ih"]
            gh = gh + params["bias_hh"]
        h_new, c_new = _update(self.mode, gi, gh, h, c)
        if not batched:
            h_new = h_new[0]
            c_new = c_new[0] if lstm else None
        return (h_new, c_new) if lstm else h_new

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


@dataclass(frozen=True, repr=False)
class RNNCell(RNNCellBase):
    """``h' = act(W_ih x + b_ih + W_hh h + b_hh)``; ``x: (N, input_size) -> (N, hidden_size)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> cell = nn.RNNCell(4, 8)
        >>> params, state = cell.init(jax.random.key(0))
        >>> h, state = cell.apply(params, state, jnp.ones((3, 4)))
        >>> h.shape
        (3, 8)
    """

    input_size: int
    hidden_size: int
    bias: bool = True
    nonlinearity: str = "tanh"

    def __post_init__(self):
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {self.nonlinearity}")
        super().__post_init__()

    @property
    def mode(self) -> str:
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"


@dataclass(frozen=True, repr=False)
class LSTMCell(RNNCellBase):
    """One LSTM step: ``(x (N, input_size), (h, c) (N, hidden_size)) -> (h', c')``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> cell = nn.LSTMCell(4, 8)
        >>> params, state = cell.init(jax.random.key(0))
        >>> (h, c), state = cell.apply(params, state, (jnp.ones((3, 4)), (jnp.zeros((3, 8)), jnp.zeros((3, 8)))))
        >>> h.shape, c.shape
        ((3, 8), (3, 8))
    """

    input_size: int
    hidden_size: int
    bias: bool = True

    mode = "LSTM"


@dataclass(frozen=True, repr=False)
class GRUCell(RNNCellBase):
    """One GRU step: ``(x (N, input_size), h (N, hidden_size)) -> h'``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> cell = nn.GRUCell(4, 8)
        >>> params, state = cell.init(jax.random.key(0))
        >>> h, state = cell.apply(params, state, jnp.ones((4,)))
        >>> h.shape
        (8,)
    """

    input_size: int
    hidden_size: int
    bias: bool = True

    mode = "GRU"
