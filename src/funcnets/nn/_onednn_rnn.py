"""oneDNN's LSTM (and linear-before-reset GRU) layers inside XLA:CPU programs, through
XLA's FFI: what torch runs for a float32 ``nn.LSTM``/``nn.GRU`` on CPU
(``at::native::use_mkldnn`` -> ``mkldnn_rnn_layer``).

One call computes one layer, one or both directions (oneDNN's ``bidirectional_concat``),
all time steps: ``forward_training``, which also returns oneDNN's workspace (the gates
and states of every step, its size asked of oneDNN's primitive descriptor while tracing),
and the backward, which reads that workspace and returns the gradients of the input, the
initial states, both weight matrices and the bias. :func:`lstm_layer` and
:func:`gru_layer` are ``jax.custom_vjp`` functions made of the two calls, so
``jax.grad``/``jax.vjp`` run oneDNN's backward; forward mode (``jax.jvp``, ``jacfwd``,
Hessians) is not defined for them: trace such code inside :func:`use_scan`, which makes
:mod:`funcnets.nn.rnn` take its ``lax.scan`` instead. Under ``jax.vmap`` each call runs
once per batch element (``vmap_method="sequential"``).

The kernels are ``funcnets._onednn_rnn`` (``src/funcnets/csrc/onednn_rnn.cc``), built
with ``funcnets._onednn_conv`` when funcnets is installed on x86-64 Linux. :func:`error`
says why they are not available, or ``None``.

Weights are torch's: ``weight_ih (D, G·H, I)``, ``weight_hh (D, G·H, H)`` stacked over the
directions, gates in oneDNN's order (LSTM ``i, f, g, o``: torch's; GRU ``z, r, n``:
torch's ``r, z, n`` permuted by :func:`gru_layer`'s caller), the bias ``(D, 4·H)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import importlib.util
import os
from functools import lru_cache, partial
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array
from funcnets.nn import _onednn

_TARGETS = ("lstm_forward", "lstm_backward", "gru_forward", "gru_backward")


@lru_cache(maxsize=None)
def _library() -> ctypes.CDLL | str:
    """The loaded extension with its FFI targets registered, or why it is not available."""
    not_built = ("funcnets' oneDNN RNN extension is not built; it is built on x86-64 Linux with a C++ "
                 "compiler when funcnets is installed (pip install -e .); the recurrent layers use lax.scan")
    if importlib.util.find_spec("funcnets._onednn_rnn") is None:
        return not_built
    why = _onednn.error()  # loads libdnnl.so.3, which both extensions need
    if why is not None:
        return why
    try:
        lib = _onednn.load_extension("funcnets._onednn_rnn", [f"funcnets_{t}" for t in _TARGETS])
        if lib is None:
            return not_built
        f = lib.funcnets_rnn_workspace_bytes
        f.restype = ctypes.c_int64
        f.argtypes = [ctypes.c_char] + [ctypes.c_int64] * 6 + [ctypes.c_char_p, ctypes.c_int64]
    except (OSError, AttributeError) as e:
        return f"funcnets' oneDNN RNN extension did not load ({type(e).__name__}: {e}); the recurrent layers use lax.scan"
    return lib


def error() -> str | None:
    """``None`` when oneDNN's RNN layers are registered with XLA, else why not."""
    lib = _library()
    return lib if isinstance(lib, str) else None


_SCAN: contextvars.ContextVar[bool] = contextvars.ContextVar("funcnets_rnn_scan", default=False)


@contextlib.contextmanager
def use_scan() -> Iterator[None]:
    """Recurrent layers traced in this block use :mod:`funcnets.nn.rnn`'s ``lax.scan``, never
    oneDNN: for forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``, Hessians) of a
    float32 LSTM or GRU on CPU."""
    token = _SCAN.set(True)
    try:
        yield
    finally:
        _SCAN.reset(token)


def usable(x: Array) -> bool:
    """Whether a layer on input ``x`` takes oneDNN here: float32 on a single CPU device (XLA
    would replicate a custom call it cannot partition), outside :func:`use_scan`, and not
    empty (oneDNN divides by the batch: an empty one is a SIGFPE that kills the process)."""
    return (x.dtype == np.float32 and x.size > 0 and not _SCAN.get() and jax.default_backend() == "cpu"
            and jax.device_count() == 1 and error() is None)


def _chunks(n: int) -> int:
    """Into how many batch chunks a call splits (one per core of XLA's intra-op pool)."""
    return max(1, min(n, len(os.sched_getaffinity(0))))


@lru_cache(maxsize=None)
def _workspace_bytes(kind: str, t: int, n: int, i: int, h: int, d: int) -> int:
    lib = _library()
    if isinstance(lib, str):
        raise RuntimeError(lib)
    msg = ctypes.create_string_buffer(512)
    size = lib.funcnets_rnn_workspace_bytes(kind.encode(), t, n, i, h, d, _chunks(n), msg, len(msg))
    if size <= 0:
        raise RuntimeError(f"oneDNN {'LSTM' if kind == 'l' else 'GRU'} (T={t}, N={n}, input {i}, hidden {h}, "
                           f"{d} direction(s)): {msg.value.decode() or 'no workspace size'}")
    return size


def _call(target: str, outs, *args):
    return jax.ffi.ffi_call(f"funcnets_{target}", outs, vmap_method="sequential")(
        *args, chunks=np.int64(_chunks(args[0].shape[1])))


# ----------------------------------------------------------------------------- LSTM
def _lstm_forward(x, h0, c0, w_ih, w_hh, bias):
    (t, n, i), (d, _, h) = x.shape, h0.shape
    f32 = partial(jax.ShapeDtypeStruct, dtype=np.float32)
    ws = jax.ShapeDtypeStruct((_workspace_bytes("l", t, n, i, h, d),), np.uint8)
    return _call("lstm_forward", (f32((t, n, d * h)), f32(h0.shape), f32(h0.shape), ws), x, h0, c0, w_ih, w_hh, bias)


@jax.custom_vjp
def lstm_layer(x: Array, h0: Array, c0: Array, w_ih: Array, w_hh: Array, bias: Array):
    """One LSTM layer: ``x: (T, N, I)``, ``h0, c0: (D, N, H)``, ``w_ih: (D, 4H, I)``,
    ``w_hh: (D, 4H, H)``, ``bias: (D, 4H)`` (torch's ``b_ih + b_hh``), float32 ->
    ``(y (T, N, D·H), h_n (D, N, H), c_n (D, N, H))``."""
    return _lstm_forward(x, h0, c0, w_ih, w_hh, bias)[:3]


def _lstm_fwd(x, h0, c0, w_ih, w_hh, bias):
    y, hn, cn, ws = _lstm_forward(x, h0, c0, w_ih, w_hh, bias)
    return (y, hn, cn), (x, h0, c0, w_ih, w_hh, bias, y, hn, cn, ws)


def _lstm_bwd(res, cot):
    x, h0, c0, w_ih, w_hh, bias = res[:6]
    outs = tuple(jax.ShapeDtypeStruct(a.shape, np.float32) for a in (x, h0, c0, w_ih, w_hh, bias))
    return _call("lstm_backward", outs, *res, *cot)


lstm_layer.defvjp(_lstm_fwd, _lstm_bwd)


# ----------------------------------------------------------------------------- GRU
def _gru_forward(x, h0, w_ih, w_hh, bias):
    (t, n, i), (d, _, h) = x.shape, h0.shape
    f32 = partial(jax.ShapeDtypeStruct, dtype=np.float32)
    ws = jax.ShapeDtypeStruct((_workspace_bytes("g", t, n, i, h, d),), np.uint8)
    return _call("gru_forward", (f32((t, n, d * h)), f32(h0.shape), ws), x, h0, w_ih, w_hh, bias)


@jax.custom_vjp
def gru_layer(x: Array, h0: Array, w_ih: Array, w_hh: Array, bias: Array):
    """One linear-before-reset GRU layer in oneDNN's gate order ``u, r, o`` (torch's
    ``z, r, n``): ``x: (T, N, I)``, ``h0: (D, N, H)``, ``w_ih: (D, 3H, I)``,
    ``w_hh: (D, 3H, H)``, ``bias: (D, 4H)`` (``b_iz + b_hz, b_ir + b_hr, b_in, b_hn``),
    float32 -> ``(y (T, N, D·H), h_n (D, N, H))``."""
    return _gru_forward(x, h0, w_ih, w_hh, bias)[:2]


def _gru_fwd(x, h0, w_ih, w_hh, bias):
    y, hn, ws = _gru_forward(x, h0, w_ih, w_hh, bias)
    return (y, hn), (x, h0, w_ih, w_hh, bias, y, hn, ws)


def _gru_bwd(res, cot):
    x, h0, w_ih, w_hh, bias = res[:5]
    outs = tuple(jax.ShapeDtypeStruct(a.shape, np.float32) for a in (x, h0, w_ih, w_hh, bias))
    return _call("gru_backward", outs, *res, *cot)


gru_layer.defvjp(_gru_fwd, _gru_bwd)


def lstm_params(p: list[dict], hidden: int) -> tuple[Array, Array, Array]:
    """``(w_ih (D, 4H, I), w_hh (D, 4H, H), bias (D, 4H))`` from :func:`funcnets.nn.rnn._layer`'s
    per-direction weights (torch's gate order is oneDNN's); no bias is a zero bias."""
    w_ih = jnp.stack([q["w_ih"] for q in p])
    w_hh = jnp.stack([q["w_hh"] for q in p])
    if p[0]["b_ih"] is None:
        return w_ih, w_hh, jnp.zeros((len(p), 4 * hidden), w_ih.dtype)
    return w_ih, w_hh, jnp.stack([q["b_ih"] + q["b_hh"] for q in p])


def gru_params(p: list[dict], hidden: int) -> tuple[Array, Array, Array]:
    """``(w_ih (D, 3H, I), w_hh (D, 3H, H), bias (D, 4H))`` for :func:`gru_layer` from
    torch's per-direction GRU weights: the gate rows ``r, z, n`` reordered to oneDNN's
    ``u, r, o`` (``z, r, n``), the bias ``b_iz + b_hz, b_ir + b_hr, b_in, b_hn``; no bias
    is a zero bias."""
    H = hidden

    def zrn(w):
        return jnp.concatenate([w[H : 2 * H], w[:H], w[2 * H :]])

    w_ih = jnp.stack([zrn(q["w_ih"]) for q in p])
    w_hh = jnp.stack([zrn(q["w_hh"]) for q in p])
    if p[0]["b_ih"] is None:
        return w_ih, w_hh, jnp.zeros((len(p), 4 * H), w_ih.dtype)
    b = [zrn(q["b_ih"]) + jnp.concatenate([zrn(q["b_hh"])[: 2 * H], jnp.zeros_like(q["b_hh"][:H])]) for q in p]
    return w_ih, w_hh, jnp.stack([jnp.concatenate([bi, q["b_hh"][2 * H :]]) for bi, q in zip(b, p)])
