"""``torch.nn.utils.rnn.pack_padded_sequence`` / ``pad_packed_sequence``, kept padded.

torch packs a padded batch so that its RNN skips the padding; funcnets' RNN layers take
the padded batch and the lengths instead (``(input, hx, lengths)``, see
:mod:`funcnets.nn.rnn`), with the same results: outputs past a sequence's length are
zero, ``h_n`` is each sequence's state after its own last element. A
:class:`PackedSequence` here is that padded batch and its lengths, so code written the
torch way (pack, RNN, pad) runs unchanged, and :func:`funcnets.from_torch` converts it::

    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    (out, h_n), _ = gru.apply(params, {}, packed)          # or (packed, h0)
    out, lengths = pad_packed_sequence(out, batch_first=True)

``lengths`` is data, not shape: one compiled program serves every lengths vector.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.errors import ShapeError

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence"]


class PackedSequence(NamedTuple):
    """torch's ``PackedSequence``, kept padded.

    ``data``: the padded batch as it was packed, ``(L, N, *)`` or, with ``batch_first``,
    ``(N, L, *)``; ``lengths``: ``(N,)`` integers in ``[1, L]``. An RNN given one returns
    its output as one (in the RNN's own ``batch_first`` layout: a packed sequence has no
    layout in torch, :func:`pad_packed_sequence` chooses it).
    """

    data: Any
    lengths: Any
    batch_first: bool

    def padded(self, batch_first: bool) -> Array:
        """``data`` in the layout asked for."""
        return self.data if self.batch_first == bool(batch_first) else jnp.swapaxes(self.data, 0, 1)


def pack_padded_sequence(input: Array, lengths: Any, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """``torch.nn.utils.rnn.pack_padded_sequence``: the padded ``input`` ``(L, N, *)`` (``(N, L, *)``
    with ``batch_first``) with its ``lengths`` ``(N,)``.

    ``enforce_sorted`` is accepted and changes nothing: it decides whether torch sorts the
    batch (and refuses unsorted lengths), and the RNN's result per sequence is the same.
    """
    if jnp.ndim(input) < 2:
        raise ShapeError(f"pack_padded_sequence expects input (L, N, *) or (N, L, *), got shape {jnp.shape(input)}")
    lengths = jnp.asarray(lengths)
    n = jnp.shape(input)[0 if batch_first else 1]
    if lengths.shape != (n,):
        raise ShapeError(f"pack_padded_sequence expects lengths of shape ({n},), one per sequence, "
                         f"got {tuple(lengths.shape)}")
    return PackedSequence(input, lengths, bool(batch_first))


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Array, Array]:
    """``torch.nn.utils.rnn.pad_packed_sequence``: ``(padded, lengths)``, the positions at and past
    each sequence's length set to ``padding_value``.

    The padded length is ``total_length`` if given, else the length of the batch that was
    packed. torch pads to ``max(lengths)``, a size that depends on the data, which a compiled
    program cannot have; the two agree when the batch was padded to its longest sequence
    (or given ``total_length``).
    """
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"pad_packed_sequence expects a PackedSequence (from pack_padded_sequence or an RNN given "
                        f"one), got {type(sequence).__name__}")
    data = sequence.padded(batch_first)
    t_axis = 1 if batch_first else 0
    length = data.shape[t_axis] if total_length is None else int(total_length)
    if length > data.shape[t_axis]:
        pad = [(0, 0)] * data.ndim
        pad[t_axis] = (0, length - data.shape[t_axis])
        data = jnp.pad(data, pad)
    data = jax.lax.slice_in_dim(data, 0, length, axis=t_axis)
    steps = jnp.arange(length)
    lengths = sequence.lengths
    valid = steps[None, :] < lengths[:, None] if batch_first else steps[:, None] < lengths[None, :]
    valid = valid.reshape(valid.shape + (1,) * (data.ndim - 2))
    return jnp.where(valid, data, jnp.asarray(padding_value, data.dtype)), lengths
