"""Batches for training and evaluation, on grain.

Why grain: it is the data loader JAX's own ecosystem maintains (google/grain, used by
MaxText and the Flax examples), it runs Python decoding/augmentation in worker
*processes* (so PIL work is not serialised by the GIL), it prefetches, and its pipeline
is index-based: batch ``k`` of epoch ``e`` is a pure function of ``(seed, e, k)``. That
gives the two properties a resumable training run needs, for free and tested upstream:
a deterministic order for a seed, and a small iterator state (``get_state`` /
``set_state``) from which a resumed run produces exactly the batches an uninterrupted
one would. torch's DataLoader cannot resume mid-epoch and is not a JAX dependency;
tf.data would pull in TensorFlow.

Pipeline: ``MapDataset.source(source)`` -> ``shuffle(seed)`` -> ``random_map(decode +
transform)`` (each sample gets a ``numpy.random.Generator`` seeded from the seed and its
position in the stream, so its augmentation does not depend on the worker that runs
it) -> ``batch`` -> ``repeat(num_epochs)`` (a new shuffle and new augmentations each
epoch; the last partial batch of every epoch kept or dropped) -> ``mp_prefetch`` over
``num_workers`` processes. Batches are whole units of work for one worker, interleaved
in order, so the batches are the same for every ``num_workers``.

Workers are started with ``spawn`` (grain's choice), so the source and the transform
must be picklable (the classes of this package are), each worker imports funcnets once
at start-up (seconds), and a script that uses ``num_workers > 0`` must keep its top-level
code under ``if __name__ == "__main__":`` (the workers import the main module), as with
torch's DataLoader under spawn. Close an unfinished iterator (``it.close()``) to stop its
workers at once rather than at garbage collection.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from funcnets.data.transforms import Transform, to_tensor

__all__ = ["Loader", "loader"]


class _Prepare:
    """The per-sample step run in the workers: read, transform with the sample's generator,
    make ``(C, H, W)`` float32 (ToTensor is applied if the transform stopped at an image)."""

    def __init__(self, source: Any, transform: Callable | None):
        self.transform = transform
        self.source_name = type(source).__name__

    def __call__(self, element: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.int32]:
        img, label = element
        if self.transform is not None:
            img = self.transform(img, rng) if isinstance(self.transform, Transform) else self.transform(img)
        if not (isinstance(img, np.ndarray) and np.issubdtype(img.dtype, np.floating)):
            img = to_tensor(img)
        if img.ndim != 3:
            raise ValueError(f"the transform returned an array of shape {img.shape} from a {self.source_name} sample; "
                             f"expected one image (C, H, W). End the transform with ToTensor().")
        return np.asarray(img, np.float32), np.int32(label)


def _stack(items: list[tuple[np.ndarray, np.int32]]) -> tuple[np.ndarray, np.ndarray]:
    shapes = {x.shape for x, _ in items}
    if len(shapes) > 1:
        raise ValueError(f"images in one batch have different shapes {sorted(shapes)}: add a Resize/CenterCrop or "
                         f"RandomResizedCrop to the transform so every image comes out the same size.")
    return np.stack([x for x, _ in items]), np.asarray([y for _, y in items], np.int32)


class Loader:
    """An iterable of ``(x, y)`` batches: ``x: (B, C, H, W)`` float32, ``y: (B,)`` int32.

    ``iter(loader)`` starts from the beginning; ``it.get_state()`` is a small JSON-able
    dict and ``loader.iterator(state)`` (or ``it.set_state(state)``) continues exactly
    where that state was taken. ``len(loader)`` is the number of batches over all epochs;
    ``loader.batches_per_epoch`` those of one.
    """

    def __init__(self, source: Any, transform: Callable | None, batch_size: int, shuffle: bool, seed: int,
                 num_workers: int, drop_remainder: bool, num_epochs: int, prefetch: int):
        import grain

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0 or num_epochs < 1 or prefetch < 0:
            raise ValueError(f"num_workers >= 0, num_epochs >= 1 and prefetch >= 0 are required; got {num_workers}, "
                             f"{num_epochs}, {prefetch}")
        if len(source) == 0:
            raise ValueError(f"the source {source!r} is empty")
        if drop_remainder and len(source) < batch_size:
            raise ValueError(f"drop_remainder=True with {len(source)} samples and batch_size={batch_size} gives no "
                             f"batch at all; lower batch_size or keep the remainder.")
        self.source, self.transform, self.batch_size, self.shuffle, self.seed = source, transform, batch_size, shuffle, seed
        self.num_workers, self.drop_remainder, self.num_epochs = num_workers, drop_remainder, num_epochs
        ds = grain.MapDataset.source(source)
        if shuffle:
            ds = ds.shuffle(seed=seed)
        ds = ds.random_map(_Prepare(source, transform), seed=seed)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=_stack)
        self.batches_per_epoch = len(ds)
        ds = ds.repeat(num_epochs)
        # one reading thread per process (in each worker, or here): it prepares the next batch
        # while the current one is handed over; grain keeps the order whatever the thread count
        it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=max(prefetch, 1)))
        if num_workers:
            from absl import flags

            if not flags.FLAGS.is_parsed():  # grain reads absl flags in mp_prefetch; a library has no argv to parse
                flags.FLAGS.mark_as_parsed()
            it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                                   per_worker_buffer_size=max(prefetch, 1)))
        self._dataset = it_ds

    def __len__(self) -> int:
        return self.batches_per_epoch * self.num_epochs

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(self._dataset)

    def iterator(self, state: dict | None = None) -> Any:
        """A new iterator, at ``state`` (from ``get_state()`` of an earlier iterator) if given."""
        it = iter(self._dataset)
        if state is not None:
            it.set_state(state)
        return it

    def __repr__(self) -> str:
        return (f"Loader({self.source!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"num_workers={self.num_workers}, drop_remainder={self.drop_remainder}, num_epochs={self.num_epochs})")


def loader(source: Any, transform: Callable | None = None, batch_size: int = 32, shuffle: bool = True,
           seed: int = 0, num_workers: int = 0, drop_remainder: bool = False, num_epochs: int = 1,
           prefetch: int = 2) -> Loader:
    """Batches of ``source`` (``len`` and ``source[i] -> (image, label)``, e.g.
    :class:`~funcnets.data.ImageFolder`, :class:`~funcnets.data.CIFAR10`) through ``transform``.

    Args:
        source: the samples; decoded in the workers.
        transform: ``t(img, rng)`` (a :mod:`funcnets.data.transforms` transform) or
            ``t(img)``; its result, or the image itself, becomes ``(C, H, W)`` float32.
        batch_size: samples per batch.
        shuffle: a new permutation per epoch, from ``seed``.
        seed: fixes the order and every augmentation.
        num_workers: decoding/augmenting processes (0: in this process, with one thread).
        drop_remainder: drop each epoch's last partial batch.
        num_epochs: epochs in one pass of the iterator.
        prefetch: batches prepared ahead (per worker).

    Returns:
        a :class:`Loader`; ``for x, y in loader(...)`` gives ``x: (B, C, H, W)`` float32,
        ``y: (B,)`` int32.
    """
    return Loader(source, transform, batch_size, shuffle, seed, num_workers, drop_remainder, num_epochs, prefetch)
