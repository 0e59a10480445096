"""``x @ w.T`` for a weight stored ``(out, in)`` (torch's Linear and flattened OIHW
convolution weights), in the form XLA:CPU runs fastest.

XLA:CPU's GEMM (YNNPACK) packs its right-hand operand on every call, and a transposed
one slowly: in ``x @ w.T`` that is the weight. With few rows the packing is most of the
product, and ``(w @ x.T).T`` (the weight on the left, a real transpose of the small
result) is faster. Same process, interleaved, 2-core AVX-512 CPU, ms for ``x: (M, K)``,
``w: (O, K)``, ``x @ w.T`` / ``(w @ x.T).T``, the mean of two rounds' medians:

=================  ==============  ==============  ==============  ==============
K × O              M = 16          M = 32          M = 64          M = 128
=================  ==============  ==============  ==============  ==============
576 × 256          0.035 / 0.024   0.048 / 0.049   0.070 / 0.085   0.122 / 0.147
2304 × 256         0.111 / 0.103   0.189 / 0.151   0.270 / 0.287   0.539 / 0.647
4608 × 512         0.755 / 0.430   0.947 / 0.594   1.31 / 1.01     1.98 / 1.70
768 × 3072         0.652 / 0.495   0.949 / 0.773   1.35 / 1.35     1.93 / 2.55
=================  ==============  ==============  ==============  ==============

So up to ``WEIGHT_LEFT_MAX_ROWS`` rows (and fewer rows than outputs) the weight goes on
the left. The gradients keep ``x @ w.T``'s own products, ``g @ w`` and ``g.T @ x``: the
left form's input gradient ``w.T @ g.T`` took 2.2-2.8 ms instead of 0.6-0.7 at
``M, K, O = 32, 4608, 512`` (layer4 of ResNet-18 at batch 8, where the forward went from
0.89-1.07 to 0.63-0.72 ms and the frozen-trunk train step from 11.4-11.75 to 10.5-10.9 ms).
"""

from __future__ import annotations

import jax
from jax import lax
from jax.custom_derivatives import SymbolicZero

from funcnets._typing import Array

WEIGHT_LEFT_MAX_ROWS = 32


@jax.custom_jvp
def times_weight(x: Array, w: Array) -> Array:
    """``x @ w.T``: ``x: (M, K)``, ``w: (O, K)`` -> ``(M, O)``."""
    if x.shape[0] <= WEIGHT_LEFT_MAX_ROWS and x.shape[0] < w.shape[0] and jax.default_backend() == "cpu":
        # the barrier keeps XLA from folding the transpose back into the product
        return lax.optimization_barrier(w @ x.T).T
    return x @ w.T


def _times_weight_jvp(primals, tangents):
    (x, w), (tx, tw) = primals, tangents
    ty = None if type(tx) is SymbolicZero else tx @ w.T  # JAX calls this with at least one nonzero
    if type(tw) is not SymbolicZero:
        ty = x @ tw.T if ty is None else ty + x @ tw.T
    return times_weight(x, w), ty


times_weight.defjvp(_times_weight_jvp, symbolic_zeros=True)
