"""Convolution-like maps as JAX primitives, so that every transformation takes our kernels.

A convolution ``y = F(x, w)`` is bilinear, and so are its two gradients, the input
gradient ``dx = D(dy, w)`` and the weight gradient ``dw = W(x, dy)``. Each of the three
is the transpose of another in one argument, which is how ``lax.conv_general_dilated``
differentiates itself::

    F(x, w):  x -> D(ct, w)    w -> W(x, ct)
    D(dy, w): dy -> F(ct, w)   w -> W(ct, dy)
    W(x, dy): x -> D(dy, ct)   dy -> F(x, ct)

:func:`bilinear_trio` makes three primitives from three implementations (oneDNN's FFI
calls, or XLA ops of our own) with those JVP and transpose rules (``ad.defbilinear``). So
``jax.grad``, ``jax.vjp``, ``jax.jvp``, Hessians and ``jax.linearize`` all run our kernels
for the value and for every derivative, at any order, where a ``custom_vjp`` would refuse
forward mode and a ``custom_jvp`` would hand reverse mode to XLA's own convolutions.
``vmap`` folds a batched input into the batch axis where it can (``x`` of ``F``, ``dy``
of ``D``, with an unbatched weight) and maps the primitive sequentially otherwise.

An implementation is ``impl(a, b, out_shape, *geometry) -> Array``, traced by JAX;
``geometry`` is a tuple of hashable static values (strides, paddings, a layout name).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from funcnets._typing import Array

Impl = Callable[..., Array]


class BilinearTrio(NamedTuple):
    """Bind functions ``(a, b, out_shape, geometry) -> Array`` of the three primitives."""

    forward: Callable[..., Array]  # (x, w, y_shape, geometry) -> y
    backward_data: Callable[..., Array]  # (dy, w, x_shape, geometry) -> dx
    backward_weights: Callable[..., Array]  # (x, dy, w_shape, geometry) -> dw


def bilinear_trio(name: str, forward: Impl, backward_data: Impl, backward_weights: Impl) -> BilinearTrio:
    """The primitives ``{name}_forward``, ``{name}_backward_data``, ``{name}_backward_weights``
    with the transpose rules of the module docstring."""
    f, d, w = (_primitive(f"{name}_{part}", impl, fold)
               for part, impl, fold in (("forward", forward, True), ("backward_data", backward_data, True),
                                        ("backward_weights", backward_weights, False)))

    def shape(v):  # an undefined primal (the argument being transposed for) has only an aval
        return tuple(v.aval.shape)

    ad.defbilinear(f, lambda ct, x, wt, *, out_shape, geometry: d.bind(ct, wt, out_shape=shape(x), geometry=geometry),
                   lambda ct, x, wt, *, out_shape, geometry: w.bind(x, ct, out_shape=shape(wt), geometry=geometry))
    ad.defbilinear(d, lambda ct, dy, wt, *, out_shape, geometry: f.bind(ct, wt, out_shape=shape(dy), geometry=geometry),
                   lambda ct, dy, wt, *, out_shape, geometry: w.bind(ct, dy, out_shape=shape(wt), geometry=geometry))
    ad.defbilinear(w, lambda ct, x, dy, *, out_shape, geometry: d.bind(dy, ct, out_shape=shape(x), geometry=geometry),
                   lambda ct, x, dy, *, out_shape, geometry: f.bind(x, ct, out_shape=shape(dy), geometry=geometry))

    def binder(p):
        return lambda a, b, out_shape, geometry: p.bind(a, b, out_shape=tuple(out_shape), geometry=tuple(geometry))

    return BilinearTrio(binder(f), binder(d), binder(w))


def _primitive(name: str, impl: Impl, fold_first: bool) -> Primitive:
    p = Primitive(name)

    def run(a, b, *, out_shape, geometry):
        return impl(a, b, out_shape, *geometry)

    p.def_impl(jax.jit(run, static_argnames=("out_shape", "geometry")))

    def abstract(a, b, *, out_shape, geometry):
        out = jax.eval_shape(lambda a, b: run(a, b, out_shape=out_shape, geometry=geometry), a, b)
        return ShapedArray(out.shape, out.dtype)

    p.def_abstract_eval(abstract)
    mlir.register_lowering(p, mlir.lower_fun(run, multiple_results=False))
    batching.primitive_batchers[p] = lambda args, dims, **params: _batch(p, fold_first, args, dims, **params)
    return p


def _batch(p: Primitive, fold_first: bool, args, dims, *, out_shape, geometry):
    """``vmap``: the first argument's batch axis folded into its leading (batch) axis when
    the second is unbatched and the map allows it, else one primitive call per element."""
    (a, b), (da, db) = args, dims
    if fold_first and db is None:
        a = jnp.moveaxis(a, da, 0)
        size, n = a.shape[:2]
        y = p.bind(a.reshape(size * n, *a.shape[2:]), b, out_shape=(size * n, *out_shape[1:]), geometry=geometry)
        return y.reshape(size, n, *out_shape[1:]), 0
    if da is not None and db is not None:
        return lax.map(lambda ab: p.bind(*ab, out_shape=out_shape, geometry=geometry),
                       (jnp.moveaxis(a, da, 0), jnp.moveaxis(b, db, 0))), 0
    if db is None:
        return lax.map(lambda a: p.bind(a, b, out_shape=out_shape, geometry=geometry), jnp.moveaxis(a, da, 0)), 0
    return lax.map(lambda b: p.bind(a, b, out_shape=out_shape, geometry=geometry), jnp.moveaxis(b, db, 0)), 0
