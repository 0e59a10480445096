"""The random-number generator of :meth:`Module.init`: a counter-based hash, cheap to compile.

Why not JAX's default (threefry): XLA:CPU compiles each random draw into its own fused
loop, and threefry's twenty rounds make every such loop large. A ResNet-18's ~60 draws
took ~7.6 s to compile on this project's 2-core machine (GoogLeNet 21 s), far more than
its training step; ``rbg`` keys only cut that ~3x. Initialisation needs independent,
well-distributed draws, not cryptographic strength, so ``init`` draws from a counter
hash instead: each 32-bit word is ``mix(mix(i * φ ^ k0) ^ k1)`` for counter ``i`` and
key ``(k0, k1)``, where ``mix`` is Wellons' ``lowbias32`` (a bijective 32-bit avalanche
mix). The compile of a ResNet-18 ``init`` fell ~6x (180 -> 28 s on a loaded machine, where
``rbg`` gave 60 s); tests/test_init_prng.py checks the draws' statistics.

The user still passes an ordinary key (``jax.random.key(0)``); :func:`init_key` turns
its bits into a key of this generator, so the same key gives the same parameters.
Training (dropout, data order) keeps the user's own generator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl

_GOLDEN = np.uint32(0x9E3779B9)  # 2^32 / φ: spreads consecutive counters over the word


def _mix(x):
    """lowbias32 (C. Wellons, "Prospecting for hash functions"): bijective on uint32."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _words(key, n: int):
    """``n`` pseudo-random uint32 words of ``key`` (shape ``(2,)`` uint32)."""
    ctr = jax.lax.iota(jnp.uint32, n)
    return _mix(_mix(ctr * _GOLDEN ^ key[0]) ^ key[1])


def _seed(seed):
    s = jnp.asarray(seed).astype(jnp.uint32)
    return jnp.stack([_mix(s), _mix(s ^ np.uint32(0x85EBCA6B))])


def _split(key, shape):
    n = int(np.prod(shape))
    # keys from the words of a fold of the key, so a child key never equals a stream of its parent
    words = _words(_fold_in(key, np.uint32(0x5851F42D)), 2 * n)
    return words.reshape(*shape, 2)


def _random_bits(key, bit_width: int, shape):
    n = int(np.prod(shape))
    if bit_width == 64:
        hi, lo = _words(key, 2 * n).reshape(2, n)
        return (hi.astype(jnp.uint64) << 32 | lo.astype(jnp.uint64)).reshape(shape)
    bits = _words(key, n).reshape(shape)
    # narrower widths keep the high bits, the best mixed ones
    return bits if bit_width == 32 else (bits >> (32 - bit_width)).astype(f"uint{bit_width}")


def _fold_in(key, data):
    d = jnp.asarray(data).astype(jnp.uint32)
    return jnp.stack([_mix(key[0] ^ _mix(d)), _mix(key[1] + d * _GOLDEN)])


HASH_PRNG = define_prng_impl(
    key_shape=(2,), seed=_seed, split=_split, random_bits=_random_bits, fold_in=_fold_in,
    name="funcnets_init_hash", tag="fih",
)


def init_key(key):
    """``key`` (a typed key of any generator, or a raw ``PRNGKey`` uint32 array) as a key of
    :data:`HASH_PRNG`, built from its bits; a key of that generator is returned as it is."""
    if not _is_typed(key):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))  # a raw PRNGKey of the default generator
    if jax.random.key_impl(key) == HASH_PRNG:
        return key
    data = jax.random.key_data(key).astype(jnp.uint32).reshape(*key.shape, -1)
    # fold every word of the key's data into two (rbg keys have four)
    k0, k1 = data[..., 0], data[..., 1 % data.shape[-1]]
    for i in range(2, data.shape[-1]):
        k0, k1 = _mix(k0 ^ data[..., i]), k1 ^ _mix(data[..., i] + np.uint32(i))
    return jax.random.wrap_key_data(jnp.stack([k0, k1], -1), impl=HASH_PRNG)


def _is_typed(key) -> bool:
    return hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
